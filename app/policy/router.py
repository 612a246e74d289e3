from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, status

from app.acceptance import AcceptQuery
from app.auth.dependencies import AuditReader, AuthorizedFirst, PolicyWriter
from app.db import ReadSessionDep, SessionDep
from app.errors import (
    Busy,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    Unauthenticated,
    problem_responses,
)
from app.exposure import service as exposure_service
from app.exposure.schemas import GrantChanged, SimulateRequest, SimulateResult
from app.fairness import OneAtATime
from app.identifiers import Action, PrincipalId, ResourcePattern
from app.pagination import DEFAULT_LIMIT, IdCursor, Limit
from app.policy import service as policy_service
from app.policy.schemas import GrantCreate, GrantPage, GrantRead, GrantStatus

router = APIRouter(prefix="/v1/grants", tags=["grants"], route_class=AuthorizedFirst)
GrantId = Annotated[int, Path(ge=1, le=2**62, description="Grant id.")]


@router.post(
    "",
    response_model=GrantChanged,
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(Unauthenticated, Forbidden, InvalidInput, Conflict),
)
async def create_grant(
    body: GrantCreate, session: SessionDep, caller: PolicyWriter
) -> GrantChanged:
    """Create a grant; the findings it opens come back with it. On a `guard: block` dataset a
    grant that widens access beyond the audience is refused (409) unless `accept_exposure`."""
    grant, changes = await exposure_service.create_grant(session, body=body, actor=caller.name)
    return GrantChanged(**grant.model_dump(), **changes.model_dump())


async def simulation_turn(request: Request, caller: AuditReader) -> AsyncIterator[None]:
    """Wait for this caller's turn (before the session opens: waiting holds no connection)."""
    gate: OneAtATime = request.app.state.simulations
    async with gate.turn(caller.token_id):
        yield


@router.post(
    "/simulate",
    response_model=SimulateResult,
    responses=problem_responses(Unauthenticated, Forbidden, InvalidInput, Busy),
)
async def simulate(
    body: SimulateRequest,
    _: Annotated[None, Depends(simulation_turn, scope="function")],
    session: ReadSessionDep,
) -> SimulateResult:
    """The findings these additions and removals would open and resolve. Nothing is changed.

    A large proposal computes for seconds (sharing the worker with checks), so a worker runs
    one simulate at a time, callers in turn: a request waits for those of the callers ahead of
    it (up to 30 s). A caller's second request while its first runs or waits, or one arriving
    while 8 callers wait, is refused 429 with Retry-After."""
    return await exposure_service.simulate(session, body=body)


@router.get("", response_model=GrantPage, responses=problem_responses(Unauthenticated, Forbidden))
async def list_grants(
    session: SessionDep,
    _: AuditReader,
    principal: Annotated[PrincipalId | None, Query()] = None,
    resource: Annotated[ResourcePattern | None, Query()] = None,
    action: Annotated[Action | None, Query()] = None,
    status: Annotated[
        GrantStatus | None, Query(description="Default: every grant not revoked.")
    ] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: IdCursor = None,
) -> GrantPage:
    items, next_cursor = await policy_service.list_grants(
        session,
        principal=principal,
        resource=resource,
        action=action.value if action else None,
        status=status,
        after_id=cursor,
        limit=limit,
    )
    return GrantPage(items=items, next_cursor=next_cursor)


@router.get(
    "/{grant_id}",
    response_model=GrantRead,
    responses=problem_responses(Unauthenticated, Forbidden, NotFound),
)
async def get_grant(grant_id: GrantId, session: SessionDep, _: AuditReader) -> GrantRead:
    return await policy_service.get_grant(session, grant_id)


@router.delete(
    "/{grant_id}",
    response_model=GrantChanged,
    responses=problem_responses(Unauthenticated, Forbidden, NotFound, Conflict),
)
async def revoke_grant(
    grant_id: GrantId, session: SessionDep, caller: PolicyWriter, accept: AcceptQuery
) -> GrantChanged:
    """Revoke the grant: it stops matching for every check that starts after this answer.
    Revoking a deny that widens a block-guarded dataset's exposure is refused (409) unless
    `accept_reason` and `accept_until` are given."""
    grant, changes = await exposure_service.revoke_grant(
        session, grant_id=grant_id, actor=caller.name, accept=accept
    )
    return GrantChanged(**grant.model_dump(), **changes.model_dump())
