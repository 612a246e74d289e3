"""What the route and the ASGI fast path share: record a request's checks, map a failure to its
problem, and render a recorded decision as the `CheckResult` document."""

from typing import Any

from app.checks.batch import CheckInput, Recorded, Submission, TokenRevoked
from app.checks.schemas import CheckRequest
from app.checks.writer import AccessLogWriter, LogUnavailable
from app.errors import CheckUnavailable, Unauthenticated
from app.operations.metrics import Metrics

NOT_RECORDED = "the decision could not be recorded in the access log, so it is a deny; retry"


def to_input(check: CheckRequest) -> CheckInput:
    return CheckInput(
        principal=check.principal,
        dataset=check.dataset,
        action=check.action.value,
        purpose=check.purpose,
        request_id=check.request_id,
        data_subjects=tuple(check.data_subjects),
    )


async def record(
    writer: AccessLogWriter, metrics: Metrics, submission: Submission
) -> list[Recorded]:
    """Decide and durably record the submission's checks, and count them.

    Raises `Unauthenticated` (401) when the token was revoked before the checks were decided,
    and `CheckUnavailable` (503, a deny) when the access log could not record them."""
    try:
        recorded = await writer.submit(submission)
    except TokenRevoked as exc:
        raise Unauthenticated("the token is unknown or revoked") from exc
    except LogUnavailable as exc:
        metrics.count_unrecorded(len(submission.checks))
        raise CheckUnavailable(NOT_RECORDED) from exc
    metrics.count_recorded([r.entry["decision"] for r in recorded])
    return recorded


def result_document(recorded: Recorded) -> dict[str, Any]:
    """`CheckResult` as a dict, fields in the model's order."""
    entry = recorded.entry
    return {
        "decision": entry["decision"],
        "allowed": entry["decision"] == "allow",
        "decision_id": entry["decision_id"],
        "access_log_id": entry["id"],
        "reason": entry["reason"],
        "out_of_audience": entry["out_of_audience"],
        "policy_version": entry["policy_version"],
    }
