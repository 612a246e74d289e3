"""The client's exception tree.

AclauditError
├── TransportError            could not reach aclaudit (connect, timeout, network)
│   └── TimeoutException      connect, read, write or pool timeout
├── ServiceUnavailable        aclaudit answered 5xx (a 503 check carries ``decision: deny``)
├── ProtocolError             an answer that is not what the contract says (malformed body)
├── APIError                  a 4xx problem document: a caller or configuration error
│   ├── AuthenticationError   401: the token is missing, unknown or revoked
│   ├── PermissionDenied      403: the token lacks the scope (not a data-access decision)
│   ├── NotFound              404
│   ├── Conflict              409
│   └── InvalidRequest        422: names the field
└── AccessDenied              a check said no (or could not say yes): raised by ``guard``

``TransportError``, ``ServiceUnavailable`` and ``ProtocolError`` are the *unavailability*
errors: ``check()`` turns them into a deny result (fail closed) instead of raising them, unless
the client was built with ``fail_open=True``. ``APIError`` is always raised: it is never a decision,
and retrying it does not help.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.client._models import CheckResult

__all__ = [
    "APIError",
    "AccessDenied",
    "AclauditError",
    "AuthenticationError",
    "Conflict",
    "InvalidRequest",
    "NotFound",
    "PermissionDenied",
    "ProtocolError",
    "ServiceUnavailable",
    "TimeoutException",
    "TransportError",
]


class AclauditError(Exception):
    """Base class of every error the client raises."""


class TransportError(AclauditError):
    """The request did not get an answer: connection refused or reset, DNS, timeout."""


class TimeoutException(TransportError):
    """A connect, read, write or pool timeout (see ``Timeout``)."""


class ServiceUnavailable(AclauditError):
    """aclaudit answered with a 5xx. For a check that means no decision was recorded."""

    def __init__(self, message: str, *, status_code: int, problem: dict[str, Any] | None = None):
        super().__init__(message)
        self.status_code = status_code
        self.problem = problem or {}


class ProtocolError(AclauditError):
    """The answer does not follow the contract: not JSON, missing fields, contradictions."""


class APIError(AclauditError):
    """A 4xx problem document (RFC 9457): the request was refused before any decision."""

    def __init__(self, message: str, *, status_code: int, problem: dict[str, Any] | None = None):
        super().__init__(message)
        self.status_code = status_code
        self.problem = problem or {}


class AuthenticationError(APIError):
    """401: the token is missing, unknown or revoked."""


class PermissionDenied(APIError):
    """403: the token lacks the scope for this endpoint (check, audit:read, alerts:read, ...).

    Not to be confused with ``AccessDenied``, which is a decision about a data read.
    """


class NotFound(APIError):
    """404."""


class Conflict(APIError):
    """409."""


class InvalidRequest(APIError):
    """422: a field is invalid; ``problem["errors"]`` names it."""


class AccessDenied(AclauditError):
    """A check did not allow the read. ``result`` is the decision that said no.

    ``result.recorded`` tells a recorded deny from aclaudit (``access_log_id`` set) apart from a
    fail-closed deny made by the client because aclaudit could not answer; for the latter
    ``__cause__`` is the unavailability error.
    """

    def __init__(self, result: CheckResult) -> None:
        self.result = result
        super().__init__(
            f"{result.principal or 'principal'} may not {result.action or 'read'} "
            f"{result.dataset or 'the dataset'}: {result.reason.code}"
            + (f" (access log entry {result.access_log_id})" if result.access_log_id else "")
        )

    @property
    def decision(self) -> str:
        return self.result.decision

    @property
    def reason(self) -> str:
        return self.result.reason.code

    @property
    def access_log_id(self) -> int | None:
        return self.result.access_log_id
