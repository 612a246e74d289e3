"""What the sync and async clients share: request bodies, answer parsing, the fail-closed rule.
No I/O here."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from app.client._deadline import Deadline
from app.client._exceptions import (
    AclauditError,
    APIError,
    AuthenticationError,
    Conflict,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    ProtocolError,
    ServiceUnavailable,
    TimeoutException,
    TransportError,
)
from app.client._models import (
    FAIL_OPEN,
    GRANTED,
    UNAVAILABLE,
    CheckResult,
    Reason,
    WireCheckBatchResult,
    WireCheckResult,
)

logger = logging.getLogger("aclaudit.client")
M = TypeVar("M", bound=BaseModel)

VERSION = "0.1.0"
CHECK_PATH = "/v1/check"
BATCH_PATH = "/v1/check/batch"
JSON_CONTENT = {"Content-Type": "application/json"}
# The connection was never made, so the request was certainly not sent: safe to retry a check.
NOT_SENT: tuple[type[httpx.HTTPError], ...] = (httpx.ConnectError, httpx.ConnectTimeout)
RETRYABLE_STATUS = frozenset({502, 503, 504})
UNAVAILABLE_ERRORS = (TransportError, ServiceUnavailable, ProtocolError)
_STATUS_ERRORS: dict[int, type[APIError]] = {
    401: AuthenticationError,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    422: InvalidRequest,
}


@dataclass(frozen=True, slots=True)
class CheckRequest:
    """One check of a batch (``check_batch``); the fields of ``POST /v1/check``."""

    principal: str
    dataset: str
    action: str = "read"
    purpose: str | None = None
    data_subjects: tuple[str, ...] | list[str] = ()
    request_id: str | None = None


def default_headers(token: str, extra: Mapping[str, str] | None) -> dict[str, str]:
    if not token or not token.strip():
        raise ValueError("token is required: aclaudit answers 401 without one")
    return {
        "Authorization": f"Bearer {token.strip()}",
        "Accept": "application/json",
        "User-Agent": f"aclaudit-client/{VERSION} httpx/{httpx.__version__}",
        **(extra or {}),
    }


def check_body(
    principal: str,
    dataset: str,
    action: str,
    purpose: str | None,
    data_subjects: Iterable[str],
    request_id: str | None,
) -> dict[str, Any]:
    if isinstance(data_subjects, str):  # list("user:bob") would be seven one-letter subjects
        raise TypeError("data_subjects is a list of principals, e.g. ['user:bob']")
    body: dict[str, Any] = {"principal": principal, "dataset": dataset, "action": action}
    if purpose is not None:
        body["purpose"] = purpose
    subjects = list(data_subjects)
    if subjects:
        body["data_subjects"] = subjects
    if request_id is not None:
        body["request_id"] = request_id
    return body


def encode(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def translate(exc: httpx.HTTPError, deadline: Deadline | None = None) -> AclauditError:
    """httpx's errors as the client's; the original stays as ``__cause__``. A timeout once the
    call's deadline has passed is reported as the deadline."""
    timed_out = isinstance(exc, httpx.TimeoutException)
    if timed_out and deadline is not None and deadline.remaining() <= 0:
        return deadline.exceeded()
    message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        return TimeoutException(message)
    if isinstance(exc, httpx.TransportError):
        return TransportError(message)
    return ProtocolError(message)  # e.g. a decoding error of a response


@dataclass(frozen=True, slots=True)
class Answer:
    """An answer read whole (within the call's deadline): what parsing needs of it."""

    status_code: int
    reason_phrase: str
    headers: httpx.Headers
    content: bytes
    method: str
    path: str

    @classmethod
    def of(cls, response: httpx.Response, content: bytes) -> Answer:
        request = response.request
        return cls(
            response.status_code,
            response.reason_phrase,
            response.headers,
            content,
            request.method,
            request.url.path,
        )


def _problem(response: Answer) -> dict[str, Any]:
    try:
        problem = json.loads(response.content)
    except ValueError:
        return {}
    return problem if isinstance(problem, dict) else {}


def raise_for_status(response: Answer) -> None:
    """Raise the client's error for a 4xx or 5xx answer; anything else but 200 (a 201, a
    redirect) is a protocol error: aclaudit answers every read and check with 200."""
    status = response.status_code
    if status == 200:
        return
    problem = _problem(response)
    detail = problem.get("detail") or response.reason_phrase
    message = f"{status} from {response.method} {response.path}: {detail}"
    if status >= 500:
        raise ServiceUnavailable(message, status_code=status, problem=problem)
    if status >= 400:
        raise _STATUS_ERRORS.get(status, APIError)(message, status_code=status, problem=problem)
    raise ProtocolError(f"unexpected {message}")


def parse(response: Answer, model: type[M]) -> M:
    raise_for_status(response)
    try:
        return model.model_validate_json(response.content)
    except ValidationError as exc:
        raise _mismatch(response, exc) from exc


def _mismatch(response: Answer, exc: ValidationError) -> ProtocolError:
    return ProtocolError(
        f"{response.path}: the answer does not match the contract "
        f"({exc.error_count()} errors, first: {exc.errors()[0]['msg']})"
    )


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        keys = [k for k, _ in pairs]
        twice = sorted({k for k in keys if keys.count(k) > 1})
        raise ProtocolError(f"the answer has keys twice: {', '.join(twice)}")
    return obj


def parse_decisions(response: Answer, model: type[M]) -> M:
    """``parse`` for check answers, also refusing a key given twice: JSON parsers disagree on
    which of ``{"decision": "deny", ..., "decision": "allow"}`` counts (ours took the last)."""
    raise_for_status(response)
    try:
        data = json.loads(response.content.decode(), object_pairs_hook=_unique_keys)
    except ValueError as exc:  # not UTF-8, or not one JSON document
        raise ProtocolError(f"{response.path}: the answer is not JSON ({exc})") from exc
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _mismatch(response, exc) from exc


def to_result(wire: WireCheckResult, body: Mapping[str, Any]) -> CheckResult:
    """A validated answer as a decision: an allow must say so three times (``decision``,
    ``allowed``, reason ``granted``); deny codes added to the contract later are denies."""
    is_allow = wire.decision == "allow"
    if wire.allowed != is_allow or (wire.reason.code == GRANTED) != is_allow:
        raise ProtocolError(
            f"contradictory answer: decision {wire.decision!r} with allowed={wire.allowed} "
            f"and reason {wire.reason.code!r}"
        )
    return CheckResult(
        decision=wire.decision,
        allowed=is_allow,
        reason=Reason(wire.reason.code, wire.reason.grant_id, tuple(wire.reason.via)),
        decision_id=wire.decision_id,
        access_log_id=wire.access_log_id,
        out_of_audience=wire.out_of_audience,
        policy_version=wire.policy_version,
        principal=body["principal"],
        dataset=body["dataset"],
        action=body["action"],
    )


def parse_check(response: Answer, body: Mapping[str, Any]) -> CheckResult:
    return to_result(parse_decisions(response, WireCheckResult), body)


def parse_batch(response: Answer, bodies: list[dict[str, Any]]) -> list[CheckResult]:
    wire = parse_decisions(response, WireCheckBatchResult)
    if len(wire.results) != len(bodies):
        raise ProtocolError(f"{len(bodies)} checks sent, {len(wire.results)} answers received")
    return [to_result(w, b) for w, b in zip(wire.results, bodies, strict=True)]


def unavailable(exc: AclauditError, body: Mapping[str, Any], *, fail_open: bool) -> CheckResult:
    """The decision when aclaudit could not answer: deny, unless the caller opted out."""
    where = f"{body['principal']} {body['action']} {body['dataset']}"
    if fail_open:
        logger.error("aclaudit unavailable (%s); FAILING OPEN, unrecorded allow: %s", exc, where)
        code = FAIL_OPEN
    else:
        logger.warning("aclaudit unavailable (%s); failing closed, deny: %s", exc, where)
        code = UNAVAILABLE
    return CheckResult(
        decision="allow" if fail_open else "deny",
        allowed=fail_open,
        reason=Reason(code, detail=str(exc)),
        principal=body["principal"],
        dataset=body["dataset"],
        action=body["action"],
        error=exc,
    )


def retry_after(response: Answer) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


def query(params: Mapping[str, Any]) -> dict[str, str | int]:
    """Query parameters without the unset ones, in the forms aclaudit reads."""
    out: dict[str, str | int] = {}
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, datetime):
            out[key] = value.isoformat()
        elif isinstance(value, int):
            out[key] = value
        else:
            out[key] = str(value)
    return out
