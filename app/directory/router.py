from typing import Annotated

from fastapi import APIRouter, Path

from app.acceptance import AcceptQuery
from app.auth.dependencies import AuditReader, AuthorizedFirst, PolicyWriter
from app.db import SessionDep
from app.directory import service as directory_service
from app.directory.schemas import GroupPage, GroupRead, MemberAdd, MembersReplace
from app.errors import Conflict, Forbidden, NotFound, Unauthenticated, problem_responses
from app.exposure import service as exposure_service
from app.exposure.schemas import GroupChanged
from app.identifiers import GroupName, PrincipalId
from app.pagination import DEFAULT_LIMIT, Cursor, Limit

router = APIRouter(prefix="/v1/groups", tags=["directory"], route_class=AuthorizedFirst)
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


@router.put("/{group}/members", response_model=GroupChanged, responses=WRITE_ERRORS)
async def replace_members(
    group: GroupPath,
    body: MembersReplace,
    session: SessionDep,
    caller: PolicyWriter,
) -> GroupChanged:
    """Replace the group's direct members (creating the group and any nested groups)."""
    result, changes = await exposure_service.change_members(
        session,
        gid=directory_service.group_id(group),
        replace_with=body.members,
        actor=caller.name,
        accept=body.accept_exposure,
    )
    return GroupChanged(**result.model_dump(), **changes.model_dump())


@router.post("/{group}/members", response_model=GroupChanged, responses=WRITE_ERRORS)
async def add_member(
    group: GroupPath, body: MemberAdd, session: SessionDep, caller: PolicyWriter
) -> GroupChanged:
    """Add one member; refused (409) where it would widen a block-guarded dataset's exposure."""
    result, changes = await exposure_service.change_members(
        session,
        gid=directory_service.group_id(group),
        add=[body.member],
        actor=caller.name,
        accept=body.accept_exposure,
    )
    return GroupChanged(**result.model_dump(), **changes.model_dump())


@router.delete("/{group}/members/{member}", response_model=GroupChanged, responses=WRITE_ERRORS)
async def remove_member(
    group: GroupPath,
    member: PrincipalId,
    session: SessionDep,
    caller: PolicyWriter,
    accept: AcceptQuery,
) -> GroupChanged:
    """Remove one direct member. Leaving a group that holds a deny widens access: refused (409)
    on block-guarded datasets unless `accept_reason` and `accept_until` are given."""
    result, changes = await exposure_service.change_members(
        session,
        gid=directory_service.group_id(group),
        remove=member,
        actor=caller.name,
        accept=accept,
    )
    return GroupChanged(**result.model_dump(), **changes.model_dump())
