"""The routes that change the policy: grants, group members, datasets. Their reads stay with
their domains (`policy`, `directory`, `datasets`)."""

from fastapi import APIRouter, Response, status

from app.acceptance import AcceptQuery
from app.auth.dependencies import AuthorizedFirst, PolicyWriter
from app.changes import datasets as dataset_changes
from app.changes import grants as grant_changes
from app.changes import members as member_changes
from app.changes.schemas import DatasetChanged, GrantChanged, GroupChanged
from app.config import SettingsDep
from app.datasets.schemas import DatasetPath, DatasetWrite
from app.db import SessionDep
from app.directory import service as directory_service
from app.directory.schemas import GroupPath, MemberAdd, MembersReplace
from app.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    Unauthenticated,
    problem_responses,
)
from app.identifiers import PrincipalId
from app.policy.schemas import GrantCreate, GrantId

router = APIRouter(route_class=AuthorizedFirst)
WRITE_ERRORS = problem_responses(Unauthenticated, Forbidden, NotFound, Conflict)


# -- grants ------------------------------------------------------------------------------------


@router.post(
    "/v1/grants",
    tags=["grants"],
    response_model=GrantChanged,
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(Unauthenticated, Forbidden, InvalidInput, Conflict),
)
async def create_grant(
    body: GrantCreate, session: SessionDep, caller: PolicyWriter
) -> GrantChanged:
    """Create a grant; the findings it opens come back with it. On a `guard: block` dataset a
    grant that widens access beyond the audience is refused (409); accepting it takes two
    people (`POST /v1/approvals`: `accept_exposure` given here on a block dataset is 403)."""
    grant, changes = await grant_changes.create_grant(session, body=body, actor=caller.name)
    return GrantChanged(**grant.model_dump(), **changes.model_dump())


@router.delete(
    "/v1/grants/{grant_id}", tags=["grants"], response_model=GrantChanged, responses=WRITE_ERRORS
)
async def revoke_grant(
    grant_id: GrantId,
    session: SessionDep,
    caller: PolicyWriter,
    accept: AcceptQuery,
) -> GrantChanged:
    """Revoke the grant: it stops matching for every check that starts after this answer.
    Revoking a deny that widens a block-guarded dataset's exposure is refused (409) unless
    `accept_reason` and `accept_until` are given."""
    grant, changes = await grant_changes.revoke_grant(
        session, grant_id=grant_id, actor=caller.name, accept=accept
    )
    return GrantChanged(**grant.model_dump(), **changes.model_dump())


# -- group members -----------------------------------------------------------------------------


@router.put(
    "/v1/groups/{group}/members",
    tags=["directory"],
    response_model=GroupChanged,
    responses=WRITE_ERRORS,
)
async def replace_members(
    group: GroupPath,
    body: MembersReplace,
    session: SessionDep,
    caller: PolicyWriter,
    settings: SettingsDep,
) -> GroupChanged:
    """Replace the group's direct members (creating the group and any nested groups)."""
    result, changes = await member_changes.change_members(
        session,
        gid=directory_service.group_id(group),
        replace_with=body.members,
        actor=caller.name,
        growth_limit=settings.audience_growth_approval,
        accept=body.accept_exposure,
    )
    return GroupChanged(**result.model_dump(), **changes.model_dump())


@router.post(
    "/v1/groups/{group}/members",
    tags=["directory"],
    response_model=GroupChanged,
    responses=WRITE_ERRORS,
)
async def add_member(
    group: GroupPath,
    body: MemberAdd,
    session: SessionDep,
    caller: PolicyWriter,
    settings: SettingsDep,
) -> GroupChanged:
    """Add one member; refused (409) where it would widen a block-guarded dataset's exposure,
    or grow a block dataset's intended audience beyond ACLAUDIT_AUDIENCE_GROWTH_APPROVAL (both
    then go through `POST /v1/approvals`)."""
    result, changes = await member_changes.change_members(
        session,
        gid=directory_service.group_id(group),
        add=[body.member],
        actor=caller.name,
        growth_limit=settings.audience_growth_approval,
        accept=body.accept_exposure,
    )
    return GroupChanged(**result.model_dump(), **changes.model_dump())


@router.delete(
    "/v1/groups/{group}/members/{member}",
    tags=["directory"],
    response_model=GroupChanged,
    responses=WRITE_ERRORS,
)
async def remove_member(
    group: GroupPath,
    member: PrincipalId,
    session: SessionDep,
    caller: PolicyWriter,
    accept: AcceptQuery,
    settings: SettingsDep,
) -> GroupChanged:
    """Remove one direct member. Leaving a group that holds a deny widens access: refused (409)
    on block-guarded datasets unless `accept_reason` and `accept_until` are given."""
    result, changes = await member_changes.change_members(
        session,
        gid=directory_service.group_id(group),
        remove=member,
        actor=caller.name,
        growth_limit=settings.audience_growth_approval,
        accept=accept,
    )
    return GroupChanged(**result.model_dump(), **changes.model_dump())


# -- datasets ----------------------------------------------------------------------------------


@router.put(
    "/v1/datasets/{dataset}",
    tags=["datasets"],
    response_model=DatasetChanged,
    responses={
        201: {"model": DatasetChanged, "description": "Created"},
        **problem_responses(Unauthenticated, Forbidden, Conflict),
    },
)
async def put_dataset(
    dataset: DatasetPath,
    body: DatasetWrite,
    session: SessionDep,
    caller: PolicyWriter,
    response: Response,
    settings: SettingsDep,
) -> DatasetChanged:
    """Register or replace a dataset: 201 when created, 200 when replaced. Its exposure is
    analysed at once; the findings opened and resolved come back with it.

    An omitted `guard` keeps the stored one (a new dataset takes the default). On a block
    dataset, a change that lets anyone new in beyond the audience is refused (409); so is
    lowering the guard to `alert`, raising it to `block` while findings are open, and growing
    the intended audience by more than ACLAUDIT_AUDIENCE_GROWTH_APPROVAL principals. Accepting
    any of these takes two people (`POST /v1/approvals`; `accept_exposure` given here is 403
    there, and still accepted on `alert` datasets). Every guard change raises
    `dataset.guard_changed`, every audience growth of a block dataset `audience.grown`."""
    result, created, changes, moved = await dataset_changes.put_dataset(
        session,
        dataset_id=dataset,
        body=body,
        actor=caller.name,
        growth_limit=settings.audience_growth_approval,
    )
    if created:
        response.status_code = status.HTTP_201_CREATED
    return DatasetChanged(**result.model_dump(), **changes.model_dump(), guard_changed=moved)
