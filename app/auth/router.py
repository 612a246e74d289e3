from typing import Annotated

from fastapi import APIRouter, Query

from app.auth import repository
from app.auth.dependencies import AdminCaller, AuthorizedFirst
from app.auth.schemas import TrailEntryRead, TrailPage
from app.db import SessionDep
from app.errors import Forbidden, Unauthenticated, problem_responses
from app.pagination import DEFAULT_LIMIT, IdCursor, Limit

router = APIRouter(prefix="/v1/admin", tags=["admin"], route_class=AuthorizedFirst)


@router.get(
    "/trail", response_model=TrailPage, responses=problem_responses(Unauthenticated, Forbidden)
)
async def read_trail(
    session: SessionDep,
    _: AdminCaller,
    token_name: Annotated[
        str | None, Query(max_length=160, pattern=r"^[A-Za-z0-9][A-Za-z0-9._@+:-]{0,159}$")
    ] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: IdCursor = None,
) -> TrailPage:
    """Every mutation and every read of the log, findings or exposure; newest first."""
    rows = await repository.list_trail(
        session, after_id=cursor, limit=limit + 1, token_name=token_name
    )
    items = [TrailEntryRead.model_validate(r) for r in rows[:limit]]
    return TrailPage(items=items, next_cursor=str(items[-1].id) if len(rows) > limit else None)
