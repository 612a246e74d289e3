"""Per-request context: the request id (X-Request-ID in and out), one access line, latency."""

import logging
import time

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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
            if metrics is not None and scope["method"] == "POST":
                metrics.observe_request(scope["path"], elapsed)
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
