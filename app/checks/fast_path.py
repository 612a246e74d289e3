"""``POST /v1/check`` without the framework's per-request machinery, for the common case.

`app.checks.router.check` is the endpoint as documented (OpenAPI, validation, problem
documents) and it still answers every request this module does not. This module answers, as
plain ASGI, only the requests whose outcome cannot depend on the framework:

* exactly one ``Authorization: Bearer`` header whose token is in the process's token cache with
  the ``check`` scope (the cache is filled by the documented route's first lookup and revalidated
  by the access-log writer on every policy-version change, exactly as for the route);
* a JSON content type and a body that ``CheckRequest`` accepts (the same pydantic model).

Anything else (no or unknown token, missing scope, another content type; before its body is
read) or an invalid body is handed to the full application, so every 401, 403 and 422 problem
document is the framework's own. What the fast path answers is the same as the route's answer:
the decision is recorded by the same `app.checks.service.record`, committed and durable before
the first byte is sent, and rendered by the same `result_document`; a log failure is a 503
``decision: "deny"`` problem and a token revoked under the batch a 401, with the headers
`app.errors.problem_headers` gives every `AppError`.
"""

from typing import Any

from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.auth import service as auth_service
from app.auth.scopes import Scope as TokenScope
from app.auth.token_cache import TokenCache
from app.checks.batch import Submission
from app.checks.schemas import CheckRequest
from app.checks.service import record, result_document, to_input
from app.checks.writer import AccessLogWriter
from app.errors import AppError, http_problem, problem_headers, send_json, send_problem
from app.operations.middleware import BodyTooLarge

CHECK_PATH = "/v1/check"
JSON_TYPES = (b"application/json",)


def is_fast_path(scope: Scope) -> bool:
    return bool(
        scope["type"] == "http" and scope["path"] == CHECK_PATH and scope["method"] == "POST"
    )


class CheckFastPath:
    """Middleware answering what `serve_check` can; the innermost one, so the request id,
    access line and latency (`app.operations.middleware.RequestContext`) cover checks too."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if is_fast_path(scope):
            await serve_check(scope["app"].state, scope, receive, send, self.app)
        else:
            await self.app(scope, receive, send)


def _bearer_token(headers: list[tuple[bytes, bytes]]) -> tuple[str | None, bool]:
    """(token, is the content type JSON); the token is None unless the request is plain."""
    authorization: list[bytes] = []
    content_type = b""
    for name, value in headers:
        if name == b"authorization":
            authorization.append(value)
        elif name == b"content-type":
            content_type = value
    is_json = content_type.split(b";", 1)[0].strip().lower() in JSON_TYPES
    if len(authorization) != 1:
        return None, is_json
    scheme, _, token = authorization[0].decode("latin-1").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None, is_json
    return token, is_json


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None when the client went away first."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replaying(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def serve_check(
    state: Any, scope: Scope, receive: Receive, send: Send, application: ASGIApp
) -> None:
    """Answer ``POST /v1/check``; `application` (the full app) answers what this does not.

    The token is looked at first: a request this cannot answer is handed on with its body
    unread, so the application refuses a caller without a valid token before reading it."""
    token, is_json = _bearer_token(scope["headers"])
    cache: TokenCache | None = getattr(state, "token_cache", None)
    writer: AccessLogWriter | None = getattr(state, "log_writer", None)
    caller = None
    token_hash = ""
    if token is not None and is_json and cache is not None and writer is not None:
        token_hash = auth_service.hash_token(token)
        caller = cache.peek(token_hash)
    if caller is None or writer is None or not caller.has_scope(TokenScope.check):
        await application(scope, receive, send)
        return
    try:
        body = await _read_body(receive)
    except BodyTooLarge as exc:  # streamed past ACLAUDIT_MAX_BODY_BYTES
        await send_problem(send, http_problem(exc))
        return
    if body is None:
        return
    try:
        check = CheckRequest.model_validate_json(body)
    except ValidationError:
        await application(scope, _replaying(body, receive), send)
        return
    submission = Submission([to_input(check)], caller.name, token_hash)
    try:
        recorded = await record(writer, state.metrics, submission)
    except AppError as error:  # the token was revoked meanwhile (401), or not recorded (503)
        await send_problem(send, error.to_problem(), problem_headers(error))
        return
    await send_json(send, 200, result_document(recorded[0]))
