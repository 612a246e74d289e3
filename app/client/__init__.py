"""The Python client for data-platform services: ask aclaudit before every read.

::

    from app.client import AclauditClient, AccessDenied

    client = AclauditClient("http://aclaudit:8000", token=token)   # one per process, shared
    with client.guard(principal="service:trainer", dataset="employee_activity.keystrokes",
                      purpose="model-training", data_subjects=["user:bob"]):
        rows = read_keystrokes(...)

Fail closed: a timeout, a call past its overall ``deadline`` (``DEFAULT_DEADLINE``, 5 s), a
connection error, 5xx or malformed answer is a deny (``check()`` returns it, ``guard``/``require``
raise ``AccessDenied``) unless the client was built with the dangerous ``fail_open=True``.
Only httpx (and its httpcore), pydantic and the standard library are imported.

Exceptions::

    AclauditError
    ├── TransportError
    │   └── TimeoutException
    ├── ServiceUnavailable
    ├── ProtocolError
    ├── APIError
    │   ├── AuthenticationError   (401)
    │   ├── PermissionDenied      (403: the token's scope)
    │   ├── NotFound              (404)
    │   ├── Conflict              (409)
    │   └── InvalidRequest        (422)
    └── AccessDenied              (a check said no, or could not say yes)
"""

from app.client._async_client import AsyncAclauditClient, AsyncGuard
from app.client._base import CheckRequest
from app.client._client import AclauditClient, Guard
from app.client._config import (
    DEFAULT_DEADLINE,
    DEFAULT_LIMITS,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    Limits,
    Retries,
    Timeout,
)
from app.client._exceptions import (
    AccessDenied,
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
    AccessLogEntry,
    AccessLogPage,
    Alert,
    AlertFeed,
    CheckResult,
    ExcessPrincipal,
    Exposure,
    Finding,
    Reason,
    VerifyResult,
)

__all__ = [
    "DEFAULT_DEADLINE",
    "DEFAULT_LIMITS",
    "DEFAULT_RETRIES",
    "DEFAULT_TIMEOUT",
    "APIError",
    "AccessDenied",
    "AccessLogEntry",
    "AccessLogPage",
    "AclauditClient",
    "AclauditError",
    "Alert",
    "AlertFeed",
    "AsyncAclauditClient",
    "AsyncGuard",
    "AuthenticationError",
    "CheckRequest",
    "CheckResult",
    "Conflict",
    "ExcessPrincipal",
    "Exposure",
    "Finding",
    "Guard",
    "InvalidRequest",
    "Limits",
    "NotFound",
    "PermissionDenied",
    "ProtocolError",
    "Reason",
    "Retries",
    "ServiceUnavailable",
    "Timeout",
    "TimeoutException",
    "TransportError",
    "VerifyResult",
]
