from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel

from app.acceptance import ApprovalRequired
from app.auth.dependencies import AuditReader, AuthorizedFirst, PolicyWriter
from app.db import SessionDep
from app.errors import Forbidden, Unauthenticated, problem_responses
from app.holds import repository
from app.holds.schemas import HoldKind, HoldPage, HoldRead, HoldStatus
from app.identifiers import DatasetId, PrincipalId
from app.pagination import DEFAULT_LIMIT, IdCursor, Limit

router = APIRouter(prefix="/v1/holds", tags=["holds"], route_class=AuthorizedFirst)


class HoldReleased(BaseModel):
    """A release as applied through an approval: the hold (the approval's `result` also lists
    the findings it changed; holds do not import the exposure domain, which imports them)."""

    hold: HoldRead


@router.get("", response_model=HoldPage, responses=problem_responses(Unauthenticated, Forbidden))
async def list_holds(
    session: SessionDep,
    _: AuditReader,
    dataset: Annotated[DatasetId | None, Query()] = None,
    principal: Annotated[PrincipalId | None, Query()] = None,
    kind: Annotated[HoldKind | None, Query()] = None,
    status: Annotated[HoldStatus | None, Query(description="Default: active holds.")] = (
        HoldStatus.active
    ),
    limit: Limit = DEFAULT_LIMIT,
    cursor: IdCursor = None,
) -> HoldPage:
    """The automatic denies: `guard` holds (an IdP membership that would have widened a
    block-guarded dataset beyond its audience; released when the principal joins the audience)
    and `inactive` ones (a user the IdP deactivated or deleted, on every dataset: `*`)."""
    rows = await repository.list_page(
        session,
        dataset=dataset,
        principal=principal,
        kind=kind.value if kind else None,
        active=None if status is HoldStatus.all else status is HoldStatus.active,
        after_id=cursor,
        limit=limit + 1,
    )
    items = [HoldRead.model_validate(row) for row in rows[:limit]]
    return HoldPage(items=items, next_cursor=str(items[-1].id) if len(rows) > limit else None)


@router.post(
    "/{hold_id}/release",
    response_model=HoldReleased,
    responses=problem_responses(Unauthenticated, Forbidden),
    response_description="Never answered here (always 403): the `result` of the approval that "
    "releases the hold",
)
async def release_hold(
    hold_id: Annotated[int, Path(ge=1, le=2**62)], _: PolicyWriter
) -> HoldReleased:
    """Releasing a guard hold lets its principal read a block-guarded dataset from outside its
    audience: it takes two people. This route always answers 403 and points to
    `POST /v1/approvals` with `{"change": {"method": "POST", "path":
    "/v1/holds/{hold_id}/release", "body": {}}, "reason", "until"}`; the approval releases it
    (and accepts the exposure that opens)."""
    raise ApprovalRequired(f"releasing hold {hold_id} needs a second person's approval")
