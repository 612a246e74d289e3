from fastapi import APIRouter

from app.auth.dependencies import AuditReader, AuthorizedFirst
from app.db import SessionDep
from app.directory import service as directory_service
from app.directory.schemas import GroupPage, GroupPath, GroupRead
from app.errors import Forbidden, NotFound, Unauthenticated, problem_responses
from app.pagination import DEFAULT_LIMIT, Cursor, Limit

router = APIRouter(prefix="/v1/groups", tags=["directory"], route_class=AuthorizedFirst)
READ_ERRORS = problem_responses(Unauthenticated, Forbidden, NotFound)


@router.get("", response_model=GroupPage, responses=READ_ERRORS)
async def list_groups(
    session: SessionDep, _: AuditReader, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None
) -> GroupPage:
    items, next_cursor = await directory_service.list_groups(session, after=cursor, limit=limit)
    return GroupPage(items=items, next_cursor=next_cursor)


@router.get("/{group}", response_model=GroupRead, responses=READ_ERRORS)
async def get_group(group: GroupPath, session: SessionDep, _: AuditReader) -> GroupRead:
    return await directory_service.describe_group(session, directory_service.group_id(group))
