from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse

from app.auth.dependencies import AuditReader, AuthorizedFirst
from app.db import SessionDep
from app.errors import Forbidden, NotFound, Unauthenticated, problem_responses
from app.identifiers import Action, PrincipalId, ResourcePattern
from app.pagination import DEFAULT_LIMIT, IdCursor, Limit
from app.policy import service as policy_service
from app.policy.schemas import GrantId, GrantPage, GrantRead, GrantStatus

router = APIRouter(prefix="/v1/grants", tags=["grants"], route_class=AuthorizedFirst)


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


casbin_router = APIRouter(prefix="/v1/policy", tags=["policy"], route_class=AuthorizedFirst)


@casbin_router.get(
    "/casbin",
    response_class=PlainTextResponse,
    summary="The live policy in Casbin's CSV format",
    description="One `p` line per grant rule and hold (`p, sub, obj, act, eft, exp, id`), one `g` "
    "line per membership: loaded into any Casbin enforcer with `policies/model.conf` (and its "
    "`isLive` function registered) it decides as `/v1/check` does, expiries included, for every "
    "registered dataset (an unregistered one `/v1/check` denies as `unknown_dataset`).",
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
        **problem_responses(Unauthenticated, Forbidden),
    },
)
async def casbin_policy(session: SessionDep, _: AuditReader) -> PlainTextResponse:
    return PlainTextResponse(await policy_service.casbin_policy(session))
