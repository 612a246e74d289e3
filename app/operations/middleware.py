"""Per-request context: the request id (X-Request-ID in and out), one access line, latency;
and the request body size limit."""

import logging
import time

from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import http_problem, send_problem
from app.operations.logs import accept_request_id, request_id_var
from app.operations.metrics import Metrics

access_logger = logging.getLogger("aclaudit.access")
HEADER = "X-Request-ID"


class RequestContext:
    """The outermost middleware: sets the request id for everything inside it.

    The id is put in ``scope["state"]`` too (the admin trail and error handlers read it there),
    and every response that leaves through here carries it, errors included.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        request_id = accept_request_id(incoming)
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            state = scope["app"].state
            metrics: Metrics | None = getattr(state, "metrics", None)
            if metrics is not None:
                if scope["method"] == "POST":
                    metrics.observe_request(scope["path"], elapsed)
                if status == 401:
                    metrics.auth_failures.inc()
            settings = getattr(state, "settings", None)
            if (settings is None or settings.access_log) and access_logger.isEnabledFor(
                logging.INFO
            ):
                access_logger.info(
                    "%s %s %d",
                    scope["method"],
                    scope["path"],
                    status,
                    extra={"status": status, "duration_ms": round(elapsed * 1000, 3)},
                )
            request_id_var.reset(token)


class BodyTooLarge(HTTPException):
    """Raised by the body's `receive` once more than the limit has arrived. An HTTPException,
    so the framework answers it like its own errors (FastAPI re-raises those from its body
    reading): a 413 problem document."""

    def __init__(self) -> None:
        super().__init__(status_code=413, detail="Content Too Large")


class BodyLimit:
    """Refuses a request body over `limit` bytes before it is buffered: at once when its
    Content-Length says so, otherwise (a chunked body) as soon as the bytes read pass it.
    A body with a Content-Length within the limit is not counted: the server's HTTP parser
    reads exactly that many bytes as the body.

    Bodies are read before the token is looked at (a route's body is parsed before its
    dependencies run), so without a limit anyone could make a worker hold any amount of memory.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                if value.isdigit() and int(value) <= self.limit:
                    await self.app(scope, receive, send)
                else:
                    await send_problem(send, http_problem(BodyTooLarge()), path=scope["path"])
                return
        received = 0

        async def receive_within_limit() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge()
            return message

        await self.app(scope, receive_within_limit, send)
