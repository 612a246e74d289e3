"""SCIM Groups: the IdP's groups as `group:<id from displayName>` principals, fixed at
creation (a later displayName only renames the resource). Their members are the directory's
memberships, changed only through `app.identity.provisioning`. Nothing here commits.
"""

import uuid
from collections.abc import Sequence
from typing import Any

from scim2_models import (
    Context,
    Group,
    GroupMember,
    InvalidValueException,
    ListResponse,
    Meta,
    NotFoundException,
    ResponseParameters,
    SearchRequest,
    UniquenessException,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import utcnow
from app.identity import provisioning
from app.identity.models import ScimGroup
from app.identity.scim import filters, repository
from app.identity.scim.group_patch import UNCHANGED, GroupDelta, delta, members
from app.identity.scim.mapping import MAX_GROUP_ID, group_principal
from app.identity.scim.protocol import MAX_RESULTS, GroupList, GroupPatch, validate
from app.identity.scim.repository import Member

RESOURCE_TYPE = "Group"
ENDPOINT = "Groups"


def wants_members(params: ResponseParameters[Any] | None) -> bool:
    """Whether the response shows `members` (Entra asks for groups without them): they are
    only loaded then."""
    if params is None:
        return True
    if params.attributes:
        return any("members" in str(a).lower() for a in params.attributes)
    if params.excluded_attributes:
        return not any(str(a).lower().endswith("members") for a in params.excluded_attributes)
    return True


def to_resource(row: ScimGroup, members: Sequence[Member] | None, base: str) -> Group:
    group = Group(id=row.id, display_name=row.display_name, external_id=row.external_id)
    if members:
        group.members = [
            GroupMember(
                value=m.id,
                ref=f"{base}/{m.type}s/{m.id}",
                type=m.type,
                display=m.display,
            )
            for m in members
        ]
    group.meta = Meta(
        resource_type=RESOURCE_TYPE,
        created=row.created_at,
        last_modified=row.updated_at,
        location=f"{base}/{ENDPOINT}/{row.id}",
    )
    return group


async def _require(session: AsyncSession, group_id: str) -> ScimGroup:
    row = await repository.get_group(session, group_id)
    if row is None:
        raise NotFoundException(detail=f"no Group with id {group_id!r}")
    return row


async def _resource(
    session: AsyncSession, row: ScimGroup, base: str, params: ResponseParameters[Any] | None
) -> Group:
    found = await repository.members_of(session, row) if wants_members(params) else None
    return to_resource(row, found, base)


async def _principals(session: AsyncSession, ids: Sequence[str]) -> dict[str, str]:
    """The principals of the SCIM ids `ids`; an id that is no User or Group is a 400."""
    found = await repository.resolve(session, ids)
    unknown = sorted(set(ids) - found.keys())
    if unknown:
        shown = ", ".join(repr(i) for i in unknown[:5])
        raise InvalidValueException(
            detail=f"members must be the ids of Users or Groups; unknown: {shown}"
            + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        )
    return {i: m.principal for i, m in found.items()}


async def _require_free_name(session: AsyncSession, name: str, row: ScimGroup | None) -> None:
    """Two groups never share a displayName (in any case): the IdPs find groups by it."""
    taken = await repository.group_by_display_name(session, name)
    if taken is not None and taken is not row:
        raise UniquenessException(
            detail=f"displayName {name!r} is taken by Group {taken.id} ({taken.group_id})"
        )


async def get_group(
    session: AsyncSession, group_id: str, base: str, params: ResponseParameters[Any]
) -> Group:
    return await _resource(session, await _require(session, group_id), base, params)


async def list_groups(
    session: AsyncSession, search: SearchRequest[Group], base: str
) -> ListResponse[Group]:
    where = filters.where(search.filter, groups=True)
    count = MAX_RESULTS if search.count is None else min(search.count, MAX_RESULTS)
    offset = search.start_index_0 or 0
    total, rows = await repository.page_groups(session, where, offset=offset, limit=count)
    return GroupList(
        total_results=total,
        start_index=offset + 1,
        items_per_page=len(rows),
        resources=[await _resource(session, row, base, search) for row in rows],
    )


def creation(body: dict[str, Any]) -> Group:
    """The group a create request's `body` asks for, validated (a 400 before anything is
    written or queued)."""
    group = validate(Group, body, Context.RESOURCE_CREATION_REQUEST)
    if not group.display_name:  # (required by the schema)
        raise InvalidValueException(detail="displayName is required")
    group_principal(group.display_name)  # (a displayName that cannot name a group: 400)
    return group


async def create_group(session: AsyncSession, group: Group, base: str, *, actor: str) -> Group:
    """Create `group` (from `creation`): with its members, or adopting a group of the API that
    has some, a policy change; without, none (no policy lock is taken)."""
    assert group.display_name is not None  # (checked by `creation`)
    now = utcnow()
    row = ScimGroup(  # (a value longer than its column is refused here)
        id=str(uuid.uuid4()),
        group_id=group_principal(group.display_name),
        display_name=group.display_name,
        external_id=group.external_id,
        created_at=now,
        updated_at=now,
    )
    sent = members(group.members or [])
    principals = await _principals(session, list(sent))
    await _require_free_name(session, group.display_name, None)
    row.group_id = await _free_principal(session, row.group_id)
    adopted = await provisioning.claim_group(session, group=row.group_id, actor=actor)
    try:
        await repository.add(session, row)
    except IntegrityError:  # created meanwhile by a concurrent request
        raise UniquenessException(
            detail=f"displayName {group.display_name!r} or {row.group_id} was just taken"
        ) from None
    if principals or adopted:  # an adopted group's members are the IdP's from now on
        await provisioning.change_members(
            session, group=row.group_id, replace=[principals[i] for i in sent], actor=actor
        )
        await repository.set_displays(
            session, row.id, {i: d for i, d in sent.items() if d is not None}
        )
    if not sent:  # no members: none to load (an adopted group's API members were removed)
        return to_resource(row, None, base)
    return await _resource(session, row, base, None)


async def _free_principal(session: AsyncSession, principal: str) -> str:
    """`principal` unless another IdP group holds it (one renamed since: the IdP finds no
    group of this displayName and creates it); then the first of `<principal>-2`, `-3`, ...
    that is no group of the directory at all. An API group of `principal` itself is adopted."""
    if await repository.group_by_principal(session, principal) is None:
        return principal
    name = principal.removeprefix("group:")
    start = 2
    while True:
        candidates = [_suffixed(name, n) for n in range(start, start + 50)]
        taken = await repository.existing_groups(session, candidates)
        free = [c for c in candidates if c not in taken]
        if free:
            return free[0]
        start += 50


def _suffixed(name: str, n: int) -> str:
    suffix = f"-{n}"
    return f"group:{name[: MAX_GROUP_ID - len(suffix)]}{suffix}"


async def replace_group(
    session: AsyncSession, group_id: str, body: dict[str, Any], base: str, *, actor: str
) -> Group:
    row = await _require(session, group_id)
    group = validate(Group, body, Context.RESOURCE_REPLACEMENT_REQUEST)
    if not group.display_name:
        raise InvalidValueException(detail="displayName is required")
    change = GroupDelta(display_name=group.display_name, external_id=group.external_id)
    change.replaced(members(group.members or []))
    await _apply(session, row, change, actor=actor)
    return await _resource(session, row, base, None)


async def patch_group(
    session: AsyncSession,
    group_id: str,
    body: dict[str, Any],
    base: str,
    params: ResponseParameters[Any] | None,
    *,
    actor: str,
) -> Group | None:
    """The group after the PATCH when `params` asks for attributes, else None (204)."""
    row = await _require(session, group_id)
    change = delta(validate(GroupPatch, body, Context.RESOURCE_PATCH_REQUEST))
    await _apply(session, row, change, actor=actor)
    return None if params is None else await _resource(session, row, base, params)


async def _apply(session: AsyncSession, row: ScimGroup, change: GroupDelta, *, actor: str) -> None:
    principals = await _principals(session, [*change.add, *(change.replace or {})])
    # an unknown id in a removal is no member: nothing to remove (Okta removes users it deleted)
    removed = await repository.resolve(session, list(change.remove))
    renamed = change.display_name is not None and change.display_name != row.display_name
    if renamed and change.display_name is not None:
        await _require_free_name(session, change.display_name, row)
        row.display_name = change.display_name  # (a value longer than its column is refused)
        try:
            await session.flush()
        except IntegrityError:  # taken meanwhile by a concurrent request
            raise UniquenessException(
                detail=f"displayName {change.display_name!r} was just taken"
            ) from None
    if change.external_id is not UNCHANGED and change.external_id != row.external_id:
        row.external_id = change.external_id
        renamed = True
    if change.changes_members:
        await provisioning.change_members(
            session,
            group=row.group_id,
            add=[principals[i] for i in change.add],
            remove=[removed[i].principal for i in change.remove if i in removed],
            replace=None if change.replace is None else [principals[i] for i in change.replace],
            actor=actor,
        )
        await repository.set_displays(
            session,
            row.id,
            change.displays,
            forget=list(change.remove),
            forget_all=change.replace is not None,
        )
    if renamed or change.changes_members:
        row.updated_at = utcnow()
    await session.flush()


async def delete_group(session: AsyncSession, group_id: str, *, actor: str) -> None:
    row = await _require(session, group_id)
    principal = row.group_id
    await repository.delete_group(session, row.id)
    await provisioning.release_group(session, group=principal, actor=actor)
