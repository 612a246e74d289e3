"""Two-person control (`/v1/approvals`) and break-glass (`/v1/break-glass`)."""

from typing import Annotated

from fastapi import APIRouter, Body, Path, Query, status

from app.approvals import breakglass
from app.approvals import service as approvals_service
from app.approvals.schemas import (
    ApprovalCreate,
    ApprovalDecision,
    ApprovalPage,
    ApprovalRead,
    ApprovalStatus,
    BreakGlassCreate,
    BreakGlassPage,
    BreakGlassRead,
    BreakGlassReview,
)
from app.auth.dependencies import AuthorizedFirst, PolicyWriter
from app.config import SettingsDep
from app.db import SessionDep
from app.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    Unauthenticated,
    problem_responses,
)
from app.pagination import DEFAULT_LIMIT, IdCursor, Limit

router = APIRouter(tags=["approvals"], route_class=AuthorizedFirst)
ApprovalId = Annotated[int, Path(ge=1, le=2**62)]
DECIDE_ERRORS = problem_responses(Unauthenticated, Forbidden, NotFound, Conflict, InvalidInput)
NoDecision = Annotated[ApprovalDecision | None, Body()]


@router.post(
    "/v1/approvals",
    response_model=ApprovalRead,
    status_code=status.HTTP_201_CREATED,
    responses=DECIDE_ERRORS,
)
async def request_approval(
    body: ApprovalCreate, session: SessionDep, caller: PolicyWriter, settings: SettingsDep
) -> ApprovalRead:
    """Request a change that needs a second person: accepting exposure on a `block`-guarded
    dataset (a grant, members, a dataset, a finding), releasing a hold, or growing a block
    dataset's audience beyond ACLAUDIT_AUDIENCE_GROWTH_APPROVAL. `change` is the request as it
    would be sent (without `accept_exposure`); `reason` and `until` are its acceptance.
    Validated as its endpoint would validate it; `would_open` is what it would open. Nothing
    changes until another principal approves it."""
    return await approvals_service.request(
        session,
        body=body,
        actor=caller.name,
        ttl=settings.approval_ttl_seconds,
        growth_limit=settings.audience_growth_approval,
    )


@router.get(
    "/v1/approvals",
    response_model=ApprovalPage,
    responses=problem_responses(Unauthenticated, Forbidden),
)
async def list_approvals(
    session: SessionDep,
    _: PolicyWriter,
    status: Annotated[ApprovalStatus | None, Query()] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: IdCursor = None,
) -> ApprovalPage:
    """Requests by id; `status=pending` lists those still open to a decision."""
    items, next_cursor = await approvals_service.list_page(
        session, status=status, after_id=cursor, limit=limit
    )
    return ApprovalPage(items=items, next_cursor=next_cursor)


@router.get(
    "/v1/approvals/{approval_id}",
    response_model=ApprovalRead,
    responses=problem_responses(Unauthenticated, Forbidden, NotFound),
)
async def get_approval(
    approval_id: ApprovalId, session: SessionDep, _: PolicyWriter
) -> ApprovalRead:
    return await approvals_service.get(session, approval_id)


@router.post(
    "/v1/approvals/{approval_id}/approve", response_model=ApprovalRead, responses=DECIDE_ERRORS
)
async def approve(
    approval_id: ApprovalId,
    session: SessionDep,
    caller: PolicyWriter,
    settings: SettingsDep,
    body: NoDecision = None,
) -> ApprovalRead:
    """Apply the requested change with its acceptance, in this transaction. 403 for the
    requester; 409 when expired or decided; the change's own error when it no longer applies
    (the request then stays pending)."""
    return await approvals_service.approve(
        session,
        approval_id=approval_id,
        actor=caller.name,
        note=body.note if body else None,
        growth_limit=settings.audience_growth_approval,
    )


@router.post(
    "/v1/approvals/{approval_id}/reject", response_model=ApprovalRead, responses=DECIDE_ERRORS
)
async def reject(
    approval_id: ApprovalId, session: SessionDep, caller: PolicyWriter, body: NoDecision = None
) -> ApprovalRead:
    """Record the rejection; nothing changes. 403 for the requester; 409 when expired or
    decided."""
    return await approvals_service.reject(
        session, approval_id=approval_id, actor=caller.name, note=body.note if body else None
    )


@router.post(
    "/v1/break-glass",
    tags=["break-glass"],
    response_model=BreakGlassRead,
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(Unauthenticated, Forbidden, InvalidInput, Conflict),
)
async def use_break_glass(
    body: BreakGlassCreate, session: SessionDep, caller: PolicyWriter
) -> BreakGlassRead:
    """Give `principal` read access to `dataset` at once, for `minutes` (1-240), whatever
    the guard and any guard hold: a critical `break_glass.used` alert, and a `break_glass`
    finding that only a different principal can close (`/v1/break-glass/{id}/review`)."""
    return await breakglass.use(session, body=body, actor=caller.name)


@router.get(
    "/v1/break-glass",
    tags=["break-glass"],
    response_model=BreakGlassPage,
    responses=problem_responses(Unauthenticated, Forbidden),
)
async def list_break_glass(
    session: SessionDep, _: PolicyWriter, limit: Limit = DEFAULT_LIMIT, cursor: IdCursor = None
) -> BreakGlassPage:
    items, next_cursor = await breakglass.list_page(session, after_id=cursor, limit=limit)
    return BreakGlassPage(items=items, next_cursor=next_cursor)


@router.post(
    "/v1/break-glass/{break_glass_id}/review",
    tags=["break-glass"],
    response_model=BreakGlassRead,
    responses=DECIDE_ERRORS,
)
async def review_break_glass(
    break_glass_id: ApprovalId, body: BreakGlassReview, session: SessionDep, caller: PolicyWriter
) -> BreakGlassRead:
    """Close the review finding of a use of break-glass: by a principal other than the one who
    used it (403 otherwise); 409 when reviewed already."""
    return await breakglass.review(
        session, break_glass_id=break_glass_id, note=body.note, actor=caller.name
    )
