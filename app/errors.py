"""The error tree, rendered as RFC 9457 problem documents.

AppError                      (status, problem type)
├── NotFound                  404
├── Gone                      410  (an archived access-log entry: names its segment)
├── Conflict                  409
│   └── MembershipCycle       409
├── InvalidInput              422  (names the field)
├── Unauthenticated           401
├── Forbidden                 403
└── ServiceUnavailable        503
"""

import json
from typing import Any, ClassVar

from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.types import Send

PROBLEM_BASE = "https://aclaudit.dev/problems/"


class AppError(Exception):
    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal"
    title: ClassVar[str] = "Internal error"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    def to_problem(self) -> dict[str, Any]:
        return {
            "type": PROBLEM_BASE + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            **self.extra,
        }


class NotFound(AppError):
    status = 404
    slug = "not-found"
    title = "Not found"


class Gone(AppError):
    status = 410
    slug = "gone"
    title = "Gone"


class Conflict(AppError):
    status = 409
    slug = "conflict"
    title = "Conflict"


class MembershipCycle(Conflict):
    slug = "membership-cycle"
    title = "Membership cycle"


class OwnedByIdp(Conflict):
    slug = "owned-by-idp"
    title = "Group owned by the identity provider"


class InvalidInput(AppError):
    """A semantically invalid field; ``field`` is a location like ``body.justification``."""

    status = 422
    slug = "validation"
    title = "Invalid request"

    def __init__(self, field: str, message: str) -> None:
        loc = field.split(".")
        super().__init__(
            f"{field}: {message}",
            errors=[{"loc": loc, "field": field, "msg": message, "type": "value_error"}],
        )


class Unauthenticated(AppError):
    status = 401
    slug = "unauthenticated"
    title = "Authentication required"


class Forbidden(AppError):
    status = 403
    slug = "forbidden"
    title = "Missing scope"


class ServiceUnavailable(AppError):
    status = 503
    slug = "unavailable"
    title = "Service unavailable"


class Busy(AppError):
    """One such request at a time per process: retry after `RETRY_AFTER` seconds."""

    status = 429
    slug = "busy"
    title = "Busy"
    RETRY_AFTER = 5


class CheckUnavailable(ServiceUnavailable):
    """A check that could not be decided and recorded: always a deny."""

    slug = "check-unavailable"
    title = "Decision not recorded"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, decision="deny", allowed=False)


def problem_headers(error: AppError) -> dict[str, str]:
    """Headers that go with an error's problem document."""
    if error.status == 401:
        return {"WWW-Authenticate": "Bearer"}
    if isinstance(error, Busy):
        return {"Retry-After": str(Busy.RETRY_AFTER)}
    retry_after = getattr(error, "retry_after", None)
    if isinstance(retry_after, int):
        return {"Retry-After": str(retry_after)}
    if error.status in (429, 503):
        return {"Retry-After": "1"}
    return {}


# What the framework's own HTTP errors say, where its words do not tell the caller what to do.
HTTP_DETAILS = {
    413: "the request body is larger than this service accepts (ACLAUDIT_MAX_BODY_BYTES): "
    "send fewer checks per batch, or split the policy document",
}


def http_problem(exc: HTTPException) -> dict[str, Any]:
    """The problem document of one of the framework's HTTP errors (404 route, 405, 413 ...)."""
    return {
        "type": PROBLEM_BASE + f"http-{exc.status_code}",
        "title": str(exc.detail) if exc.status_code < 500 else "Error",
        "status": exc.status_code,
        "detail": HTTP_DETAILS.get(exc.status_code, str(exc.detail)),
    }


# As starlette's JSONResponse renders a body (json.dumps with these arguments, one encoder).
_JSON_BODY = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
)


async def send_json(
    send: Send,
    status: int,
    document: dict[str, Any],
    media_type: bytes = b"application/json",
    headers: dict[str, str] | None = None,
) -> None:
    """Answer with `document` from plain ASGI code, byte for byte as a JSONResponse would."""
    body = _JSON_BODY.encode(document).encode("utf-8")
    raw = [(b"content-length", b"%d" % len(body)), (b"content-type", media_type)]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def send_problem(
    send: Send,
    problem: dict[str, Any],
    headers: dict[str, str] | None = None,
    path: str | None = None,
) -> None:
    """Answer with `problem` from plain ASGI code (middleware), as the handlers would: under
    `/scim/` (`path`) as a SCIM error document."""
    if path is not None and is_scim_path(path):
        await send_json(send, problem["status"], scim_error(problem), SCIM_JSON.encode(), headers)
        return
    await send_json(send, problem["status"], problem, b"application/problem+json", headers)


# SCIM (RFC 7644 §3.12): every error under /scim/ is an Error message, not a problem document.
SCIM_PREFIX = "/scim/"
SCIM_JSON = "application/scim+json"
SCIM_ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"


def is_scim_path(path: str) -> bool:
    return path.startswith(SCIM_PREFIX)


def scim_error(problem: dict[str, Any], scim_type: str | None = None) -> dict[str, Any]:
    """A problem document as a SCIM Error message (`status` a string, as RFC 7644 says)."""
    error: dict[str, Any] = {
        "schemas": [SCIM_ERROR_SCHEMA],
        "status": str(problem["status"]),
        "detail": problem.get("detail") or problem.get("title") or "error",
    }
    scim_type = scim_type or problem.get("scimType")
    if scim_type:
        error["scimType"] = scim_type
    return error


class Problem(BaseModel):
    """RFC 9457 problem document."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[dict[str, Any]] | None = None


def problem_responses(*errors: type[AppError]) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries so OpenAPI lists the problems a route can answer with."""
    out: dict[int | str, dict[str, Any]] = {}
    for err in errors:
        out[err.status] = {
            "model": Problem,
            "description": err.title,
            # The body is served as problem+json; name its schema there, not only under
            # application/json where ``model`` puts it.
            "content": {
                "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
            },
        }
    return out
