"""FastAPI dependencies: who is calling, and may they."""

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

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


def scoped(scope: Scope) -> Callable[[Caller], Awaitable[Caller]]:
    async def dependency(caller: Annotated[Caller, Depends(current_caller)]) -> Caller:
        return auth_service.require(caller, scope)

    return dependency


CheckCaller = Annotated[Caller, Depends(scoped(Scope.check))]
AuditReader = Annotated[Caller, Depends(scoped(Scope.audit_read))]
PolicyWriter = Annotated[Caller, Depends(scoped(Scope.policy_write))]
AlertsReader = Annotated[Caller, Depends(scoped(Scope.alerts_read))]
AdminCaller = Annotated[Caller, Depends(scoped(Scope.admin))]
