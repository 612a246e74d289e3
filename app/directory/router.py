from fastapi import APIRouter

from app.as_of import At
from app.auth.dependencies import AuditReader, AuthorizedFirst
from app.db import SessionDep
from app.directory import service as directory_service
from app.directory.schemas import GroupPage, GroupPath, GroupRead
from app.errors import Busy, Forbidden, InvalidInput, NotFound, Unauthenticated, problem_responses
from app.pagination import DEFAULT_LIMIT, Cursor, Limit

router = APIRouter(prefix="/v1/groups", tags=["directory"], route_class=AuthorizedFirst)
READ = (Unauthenticated, Forbidden, NotFound)
READ_ERRORS = problem_responses(*READ)


@router.get("", response_model=GroupPage, responses=READ_ERRORS)
async def list_groups(
    session: SessionDep, _: AuditReader, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None
) -> GroupPage:
    items, next_cursor = await directory_service.list_groups(session, after=cursor, limit=limit)
    return GroupPage(items=items, next_cursor=next_cursor)


@router.get(
    "/{group}", response_model=GroupRead, responses=problem_responses(*READ, InvalidInput, Busy)
)
async def get_group(
    group: GroupPath,
    at: At,
    session: SessionDep,
    _: AuditReader,
) -> GroupRead:
    """The group's direct members and its direct and transitive member counts, now or as they
    were at `at` (404 if it did not exist then)."""
    gid = directory_service.group_id(group)
    if at is not None:
        return await directory_service.describe_group_at(session, gid, at)
    return await directory_service.describe_group(session, gid)
