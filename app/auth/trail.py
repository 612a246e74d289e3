"""The admin trail: who called which mutating or audit-sensitive endpoint, and what it answered
(`/v1/`, and the IdP's SCIM writes under `/scim/`).

A successful mutation's entry is written in the mutation's own transaction
(`record_with_change`, called by `app.db.get_session` just before it commits), so no change
commits without its entry. Every other answer to an authorised caller (reads, errors) is
recorded by `AdminTrailMiddleware` before the response starts; if that fails the caller gets
503 instead of the data, so nothing sensitive is read without a record. Requests refused before
their caller was authorised (401, 403, and 400, 404, 405, 413, 414 before the token was looked
at) are counted instead, written periodically (`app.auth.refusals`), and paced
(`app.auth.pacing`): one write per such request let anyone flood the database.
"""

import logging
import re
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.auth import service as auth_service
from app.auth.pacing import RefusalPacing
from app.auth.refusals import Refusals, refused_path
from app.db import TRAIL_RECORDED, begin_write
from app.errors import AppError, ServiceUnavailable, send_problem

logger = logging.getLogger("aclaudit.trail")

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
UNTRAILED_MUTATIONS = ("/v1/check",)  # recorded in the access log instead
SENSITIVE_READ = re.compile(
    r"^/v1/(access-log|findings|admin|alerts|explain|me/|principals/[^/]+/access"
    r"|datasets/[^/]+/exposure|reports/)"
)
MAX_QUERY = 4000  # longer query strings are refused, so the trail never holds a cut-off one
RECORDED = TRAIL_RECORDED
AUTHORIZED = "authorized"  # set once the caller is authenticated and holds the scope


TRAILED_PREFIXES = ("/v1/", "/scim/")  # the API, and the IdP's SCIM pushes


def is_trailed(method: str, path: str) -> bool:
    if path.startswith("/scim/"):
        return method in MUTATING
    if not path.startswith("/v1/"):
        return False
    if method in MUTATING:
        return not path.startswith(UNTRAILED_MUTATIONS)
    return bool(SENSITIVE_READ.match(path))


def is_refusal(scope: Scope, status: int) -> bool:
    """Refused before the caller was authorised (authenticated and holding the scope)."""
    return status >= 300 and not scope.get("state", {}).get(AUTHORIZED)


class AdminTrailMiddleware:
    """Writes the trail entry of every authorised request to a trailed path before its
    response starts; counts (and paces) every `/v1/` request refused before authorisation."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(TRAILED_PREFIXES):
            await self.app(scope, receive, send)
            return
        trailed = is_trailed(scope["method"], scope["path"])

        if trailed and len(scope.get("query_string", b"")) > MAX_QUERY:
            await _refused(scope, 414, trailed)
            await send_problem(send, QueryTooLong().to_problem(), path=scope["path"])
            return

        state: dict[str, Any] = {"recorded": False, "ok": True}

        async def send_after_trail(message: Message) -> None:
            if message["type"] == "http.response.start" and not state["recorded"]:
                state["recorded"] = True
                status = message["status"]
                if is_refusal(scope, status):
                    await _refused(scope, status, trailed)
                elif trailed and not scope.get("state", {}).get(RECORDED):
                    # (a change's entry was written with the change it describes)
                    state["ok"] = await self._record(scope, status)
                if not state["ok"]:
                    await _send_unavailable(send, scope["path"])
                    return
            if not state["ok"]:
                return  # the data is withheld: its read could not be recorded
            await send(message)

        try:
            await self.app(scope, receive, send_after_trail)
        except Exception:
            # The outermost middleware turns this into a 500 outside this one: record it here.
            if not state["recorded"]:
                state["recorded"] = True
                if is_refusal(scope, 500):
                    await _refused(scope, 500, trailed)
                elif trailed:
                    await self._record(scope, 500)
            raise

    async def _record(self, scope: Scope, status: int) -> bool:
        maker: async_sessionmaker[AsyncSession] = scope["app"].state.sessionmaker
        try:
            async with maker() as session, session.begin():
                await begin_write(session)
                await _add_entry(session, scope, status)
        except Exception:
            logger.exception("admin trail write failed; withholding the response")
            return False
        return True


async def _refused(scope: Scope, status: int, trailed: bool) -> None:
    """Count a refusal (on a trailed path, or any client error) and pace a client error."""
    is_client_error = 400 <= status < 500
    if trailed or is_client_error:
        app_state = scope["app"].state
        refusals: Refusals = app_state.refusals
        refusals.count(refusals.name_of(scope), scope["method"], refused_path(scope), status)
        app_state.metrics.count_refusal(status)
    if is_client_error:
        pacing: RefusalPacing = scope["app"].state.refusal_pacing
        await pacing.pace()


async def record_with_change(request: Request, response: Response, session: AsyncSession) -> None:
    """Add a successful mutation's trail entry to its own transaction (before it commits)."""
    if not is_trailed(request.method, request.url.path):
        return
    route = request.scope.get("route")
    status = response.status_code or getattr(route, "status_code", None) or 200
    await _add_entry(session, request.scope, status)
    request.scope.setdefault("state", {})[RECORDED] = True


async def _add_entry(session: AsyncSession, scope: Scope, status: int) -> None:
    state = scope.get("state", {})
    caller = state.get("caller")
    await auth_service.record_trail(
        session,
        token_name=caller.name if caller else None,
        token_id=caller.token_id if caller else None,
        method=scope["method"],
        # PostgreSQL text cannot hold NUL; a %00 in the URL must not lose the entry
        path=scope["path"].replace("\x00", "%00"),
        query=scope.get("query_string", b"").decode("latin-1")[:MAX_QUERY],
        status=status,
        request_id=state.get("request_id"),
        issuer=caller.issuer if caller else None,
    )


class QueryTooLong(AppError):
    status = 414
    slug = "query-too-long"
    title = "Query string too long"

    def __init__(self) -> None:
        super().__init__(f"the query string is longer than {MAX_QUERY} bytes; send fewer filters")


async def _send_unavailable(send: Send, path: str) -> None:
    await send_problem(
        send,
        ServiceUnavailable(
            "the admin trail could not be recorded, so the response is withheld; retry shortly"
        ).to_problem(),
        path=path,
    )
