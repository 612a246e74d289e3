"""ASGI middleware writing the admin trail before a response leaves.

The trail entry is committed before the response starts; if it cannot be written the caller
gets 503 instead of the data, so nothing sensitive is read without a record.
"""

import json
import logging
import re
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.auth import service as auth_service
from app.db import begin_write
from app.errors import ServiceUnavailable

logger = logging.getLogger("aclaudit.trail")

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
UNTRAILED_MUTATIONS = ("/v1/check",)  # recorded in the access log instead
SENSITIVE_READ = re.compile(
    r"^/v1/(access-log|findings|admin|explain|principals/[^/]+/access|datasets/[^/]+/exposure)"
)


def is_trailed(method: str, path: str) -> bool:
    if not path.startswith("/v1/"):
        return False
    if method in MUTATING:
        return not path.startswith(UNTRAILED_MUTATIONS)
    return bool(SENSITIVE_READ.match(path))


class AdminTrailMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_trailed(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return

        state: dict[str, Any] = {"recorded": False, "ok": True}

        async def send_after_trail(message: Message) -> None:
            if message["type"] == "http.response.start" and not state["recorded"]:
                state["recorded"] = True
                state["ok"] = await self._record(scope, message["status"])
                if not state["ok"]:
                    await _send_unavailable(send)
                    return
            if not state["ok"]:
                return  # the data is withheld: its read could not be recorded
            await send(message)

        await self.app(scope, receive, send_after_trail)

    async def _record(self, scope: Scope, status: int) -> bool:
        maker: async_sessionmaker[AsyncSession] = scope["app"].state.sessionmaker
        caller = scope.get("state", {}).get("caller")
        try:
            async with maker() as session, session.begin():
                await begin_write(session)
                auth_service.record_trail(
                    session,
                    token_name=caller.name if caller else None,
                    token_id=caller.token_id if caller else None,
                    method=scope["method"],
                    # PostgreSQL text cannot hold NUL; a %00 in the URL must not lose the entry
                    path=scope["path"].replace("\x00", "%00"),
                    query=scope.get("query_string", b"").decode("latin-1")[:4000],
                    status=status,
                    request_id=scope.get("state", {}).get("request_id"),
                )
        except Exception:
            logger.exception("admin trail write failed; withholding the response")
            return False
        return True


async def _send_unavailable(send: Send) -> None:
    problem = ServiceUnavailable(
        "the admin trail could not be recorded, so the response is withheld; retry shortly"
    ).to_problem()
    body = json.dumps(problem).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
