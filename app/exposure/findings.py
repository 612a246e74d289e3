"""Findings read, accepted knowingly, and reopened when their acceptance lapses; their alerts."""

from collections.abc import Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app import policy_version
from app.acceptance import AcceptExposure, ApprovalRequired
from app.alerts import service as alerts_service
from app.alerts.schemas import AlertType
from app.alerts.service import AlertEvent
from app.datasets import repository as datasets_repository
from app.db import utcnow
from app.errors import Conflict, NotFound
from app.exposure import repository
from app.exposure.models import Finding
from app.exposure.schemas import FindingKind, FindingRead, FindingStatus

_VERBS = {
    AlertType.finding_opened: "opened",
    AlertType.finding_resolved: "resolved",
    AlertType.finding_accepted: "accepted",
    AlertType.finding_reopened: "reopened",
}


def to_read(finding: Finding) -> FindingRead:
    return FindingRead.model_validate(finding)


def alert_for(row: Mapping[str, Any], kind: AlertType) -> AlertEvent:
    """The alert of a finding's row (its columns, as stored) that opened, resolved, ..."""
    severity = str(row["severity"])
    if row.get("kind", FindingKind.exposure) == FindingKind.unused:
        used = row["last_used_at"]
        return AlertEvent(
            type=kind,
            severity=severity,
            summary=f"{severity} unused finding {_VERBS[kind]}: grant {row['grant_id']} "
            f"({row['principal']} on {row['dataset']}) "
            + ("was never used" if used is None else f"was last used {used:%Y-%m-%dT%H:%M:%SZ}"),
            # a pattern is no one dataset
            dataset=None if row["dataset"].endswith("*") else row["dataset"],
            finding_id=row["id"],
        )
    return AlertEvent(
        type=kind,
        severity=severity,
        summary=f"{severity} finding {_VERBS[kind]}: {row['principal']} (grant "
        f"{row['grant_id']}) lets {row['excess_count']} principals outside the audience read "
        f"{row['dataset']}",
        dataset=row["dataset"],
        finding_id=row["id"],
    )


def finding_alert(finding: FindingRead, kind: AlertType) -> AlertEvent:
    return alert_for(
        {**finding.model_dump(), "severity": finding.severity.value, "kind": finding.kind.value},
        kind,
    )


async def find(session: AsyncSession, finding_id: int) -> Finding:
    finding = await repository.get(session, finding_id)
    if finding is None:
        raise NotFound(f"finding {finding_id} does not exist")
    return finding


async def get_finding(session: AsyncSession, finding_id: int) -> FindingRead:
    return to_read(await find(session, finding_id))


async def list_findings(
    session: AsyncSession,
    *,
    kind: str | None = None,
    status: str | None,
    severity: str | None,
    dataset: str | None,
    after_id: int | None,
    limit: int,
) -> tuple[list[FindingRead], str | None]:
    rows = await repository.list_page(
        session,
        kind=kind,
        status=status,
        severity=severity,
        dataset=dataset,
        after_id=after_id,
        limit=limit + 1,
    )
    page = [to_read(f) for f in rows[:limit]]
    return page, (str(page[-1].id) if len(rows) > limit and page[-1].id else None)


async def accept_finding(
    session: AsyncSession, *, finding_id: int, body: AcceptExposure, actor: str
) -> FindingRead:
    # After any policy change re-analysing this finding has committed, and before the next:
    # otherwise a revoke resolving it meanwhile would be overwritten by this acceptance.
    await policy_version.hold(session)
    finding = await repository.get(session, finding_id)
    if finding is None:
        raise NotFound(f"finding {finding_id} does not exist")
    if finding.status == FindingStatus.resolved:
        raise Conflict(f"finding {finding_id} is resolved; there is nothing to accept")
    if finding.kind == FindingKind.break_glass:
        raise Conflict(
            f"finding {finding_id} reviews a use of break-glass: a second person closes it "
            "with POST /v1/break-glass/{id}/review"
        )
    if finding.kind == FindingKind.exposure and not body.is_approved:
        dataset = await datasets_repository.get(session, finding.dataset)
        if dataset is not None and dataset.guard == "block":
            raise ApprovalRequired(
                f"finding {finding_id} is on the block-guarded dataset {finding.dataset}: "
                "accepting its exposure needs a second person's approval"
            )
    finding.status = FindingStatus.accepted.value
    finding.accepted_by = body.accepted_by(actor)
    finding.reason, finding.until = body.reason, body.until
    finding.updated_at = utcnow()
    await session.flush()
    accepted = to_read(finding)
    await alerts_service.emit(session, [finding_alert(accepted, AlertType.finding_accepted)])
    return accepted


async def reopen_expired_acceptances(session: AsyncSession) -> list[FindingRead]:
    """Accepted findings whose ``until`` has passed are open again."""
    now = utcnow()
    reopened = list(await repository.lapsed_acceptances(session, now))
    for finding in reopened:
        finding.status = FindingStatus.open.value
        finding.updated_at = now
    await session.flush()
    reads = [to_read(f) for f in reopened]
    await alerts_service.emit(
        session, [finding_alert(f, AlertType.finding_reopened) for f in reads]
    )
    return reads
