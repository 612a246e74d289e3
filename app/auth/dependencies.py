"""FastAPI dependencies: who is calling, and may they."""

from collections.abc import Awaitable, Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException

from app.auth import service as auth_service
from app.auth.scopes import Scope
from app.auth.service import Caller
from app.db import SessionDep

bearer = HTTPBearer(auto_error=False, description="A token from `aclaudit token create`.")


async def current_caller(
    request: Request,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Caller:
    header = f"Bearer {credentials.credentials}" if credentials else None
    caller = await auth_service.authenticate(session, header)
    request.state.caller = caller  # read by the admin-trail middleware
    return caller


# The attribute naming the scope a dependency requires (see AuthorizedFirst).
REQUIRED_SCOPE = "required_scope"


def scoped(scope: Scope) -> Callable[[Caller], Awaitable[Caller]]:
    async def dependency(caller: Annotated[Caller, Depends(current_caller)]) -> Caller:
        return auth_service.require(caller, scope)

    setattr(dependency, REQUIRED_SCOPE, scope)  # read by AuthorizedFirst
    return dependency


def _authorization(dependant: Dependant) -> tuple[bool, Scope | None]:
    """(does the route authenticate its caller, the scope it requires) from its dependencies."""
    for sub in dependant.dependencies:
        scope = getattr(sub.call, REQUIRED_SCOPE, None)
        if scope is not None:
            return True, scope
        if sub.call is current_caller:
            return True, None
        found = _authorization(sub)
        if found[0]:
            return found
    return False, None


def _unparsed_body(exc: Exception) -> bool:
    if isinstance(exc, RequestValidationError):
        return any(error.get("type") == "json_invalid" for error in exc.errors())
    return isinstance(exc, HTTPException) and exc.status_code == 400


class AuthorizedFirst(APIRoute):
    """A route that answers 401 or 403 before it reports a body it could not parse.

    FastAPI reads and parses the JSON body before it runs any dependency, so a caller without
    a valid token (or without the scope) would learn that the body is malformed instead of
    being refused, and the admin trail would not know who sent it. Bodies that parse are
    validated after the dependencies, which authenticate first anyway.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        authenticates, scope = _authorization(self.dependant)
        if not authenticates:
            return handler

        async def authorized_first(request: Request) -> Response:
            try:
                return await handler(request)
            except (RequestValidationError, HTTPException) as exc:
                if not _unparsed_body(exc):
                    raise
                async with request.app.state.sessionmaker() as session:
                    caller = await auth_service.authenticate(
                        session, request.headers.get("authorization")
                    )
                request.state.caller = caller
                if scope is not None:
                    auth_service.require(caller, scope)
                if isinstance(exc, RequestValidationError):
                    raise
                # FastAPI's bare 400 for a body JSON cannot read (nested too deeply, say):
                # a 422 naming the body, like every other unreadable body
                raise RequestValidationError(
                    [
                        {
                            "type": "json_invalid",
                            "loc": ("body",),
                            "msg": "the body could not be read as JSON (nested too deeply?)",
                        }
                    ]
                ) from exc

        return authorized_first


CheckCaller = Annotated[Caller, Depends(scoped(Scope.check))]
AuditReader = Annotated[Caller, Depends(scoped(Scope.audit_read))]
PolicyWriter = Annotated[Caller, Depends(scoped(Scope.policy_write))]
AlertsReader = Annotated[Caller, Depends(scoped(Scope.alerts_read))]
AdminCaller = Annotated[Caller, Depends(scoped(Scope.admin))]
