from typing import Annotated

from fastapi import APIRouter, Path

from app.auth.dependencies import AuditReader, PolicyWriter
from app.db import SessionDep
from app.directory import service as directory_service
from app.directory.schemas import GroupPage, GroupRead, MemberAdd, MembersReplace
from app.errors import Conflict, Forbidden, NotFound, Unauthenticated, problem_responses
from app.identifiers import GroupName, PrincipalId
from app.pagination import DEFAULT_LIMIT, Cursor, Limit

router = APIRouter(prefix="/v1/groups", tags=["directory"])
GroupPath = Annotated[GroupName, Path(description="Bare group id: `eng` for `group:eng`.")]
READ_ERRORS = problem_responses(Unauthenticated, Forbidden, NotFound)
WRITE_ERRORS = problem_responses(Unauthenticated, Forbidden, NotFound, Conflict)


@router.get("", response_model=GroupPage, responses=READ_ERRORS)
async def list_groups(
    session: SessionDep, _: AuditReader, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None
) -> GroupPage:
    items, next_cursor = await directory_service.list_groups(session, after=cursor, limit=limit)
    return GroupPage(items=items, next_cursor=next_cursor)


@router.get("/{group}", response_model=GroupRead, responses=READ_ERRORS)
async def get_group(group: GroupPath, session: SessionDep, _: AuditReader) -> GroupRead:
    return await directory_service.describe_group(session, directory_service.group_id(group))


@router.put("/{group}/members", response_model=GroupRead, responses=WRITE_ERRORS)
async def replace_members(
    group: GroupPath, body: MembersReplace, session: SessionDep, caller: PolicyWriter
) -> GroupRead:
    """Replace the group's direct members (creating the group and any nested groups)."""
    return await directory_service.replace_members(
        session, gid=directory_service.group_id(group), members=body.members, actor=caller.name
    )


@router.post("/{group}/members", response_model=GroupRead, responses=WRITE_ERRORS)
async def add_member(
    group: GroupPath, body: MemberAdd, session: SessionDep, caller: PolicyWriter
) -> GroupRead:
    return await directory_service.add_member(
        session, gid=directory_service.group_id(group), member=body.member, actor=caller.name
    )


@router.delete("/{group}/members/{member}", response_model=GroupRead, responses=WRITE_ERRORS)
async def remove_member(
    group: GroupPath, member: PrincipalId, session: SessionDep, _: PolicyWriter
) -> GroupRead:
    return await directory_service.remove_member(
        session, gid=directory_service.group_id(group), member=member
    )
