"""Every query of the SCIM layer: its users and groups, and the directory's memberships seen
by SCIM id. A string that is no id this service gives (a lower-case uuid) is looked up
nowhere: nothing has it."""

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, delete, func, literal, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from app.directory.models import Group, Membership
from app.identity.models import ScimGroup, ScimMemberDisplay, ScimUser, comparison_key

_SCIM_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")


def is_scim_id(value: str) -> bool:
    """Whether `value` can be the id of a User or Group (`str(uuid.uuid4())`)."""
    return _SCIM_ID.match(value) is not None


@dataclass(frozen=True)
class Member:
    """A group member by its SCIM id: a `User` or a `Group`."""

    id: str
    type: str
    principal: str
    display: str | None


# A new user, unless its principal (or id) is taken: one statement, compiled once per dialect.
_USERS = cast(Table, ScimUser.__table__)
_INSERT_USER = {
    "postgresql": postgresql.insert(_USERS).on_conflict_do_nothing(),
    "sqlite": sqlite.insert(_USERS).on_conflict_do_nothing(),
}
_USER_COLUMNS = tuple(column.key for column in _USERS.columns)


# The displays a push sends, one statement for all: one sent again replaces the one kept.
def _upsert_display(insert: Any) -> Any:
    statement = insert(cast(Table, ScimMemberDisplay.__table__))
    return statement.on_conflict_do_update(
        index_elements=["group_id", "member_id"], set_={"display": statement.excluded.display}
    )


_UPSERT_DISPLAY = {
    "postgresql": _upsert_display(postgresql.insert),
    "sqlite": _upsert_display(sqlite.insert),
}


async def get_user(session: AsyncSession, user_id: str) -> ScimUser | None:
    return await session.get(ScimUser, user_id) if is_scim_id(user_id) else None


async def user_by_principal(session: AsyncSession, principal: str) -> ScimUser | None:
    query = select(ScimUser).where(ScimUser.principal == principal)
    return (await session.execute(query)).scalar_one_or_none()


async def get_group(session: AsyncSession, group_id: str) -> ScimGroup | None:
    return await session.get(ScimGroup, group_id) if is_scim_id(group_id) else None


async def group_by_principal(session: AsyncSession, principal: str) -> ScimGroup | None:
    query = select(ScimGroup).where(ScimGroup.group_id == principal)
    return (await session.execute(query)).scalar_one_or_none()


async def existing_groups(session: AsyncSession, principals: Sequence[str]) -> set[str]:
    """Those of `principals` that are groups of the directory (the IdP's or the API's)."""
    query = select(Group.id).where(Group.id.in_(principals))
    return set((await session.execute(query)).scalars().all())


async def group_by_display_name(session: AsyncSession, display_name: str) -> ScimGroup | None:
    """The group of that displayName, whatever its case (Entra ID finds groups by it)."""
    query = select(ScimGroup).where(ScimGroup.display_name_key == comparison_key(display_name))
    return (await session.execute(query)).scalar_one_or_none()


async def page_users(
    session: AsyncSession, where: ColumnElement[bool], *, offset: int, limit: int
) -> tuple[int, Sequence[ScimUser]]:
    total = (
        await session.execute(select(func.count()).select_from(ScimUser).where(where))
    ).scalar_one()
    if limit == 0 or offset >= total:  # (an offset past any integer: never sent to SQL)
        return total, []
    query = (
        select(ScimUser)
        .where(where)
        .order_by(ScimUser.created_at, ScimUser.id)
        .offset(offset)
        .limit(limit)
    )
    return total, (await session.execute(query)).scalars().all()


async def page_groups(
    session: AsyncSession, where: ColumnElement[bool], *, offset: int, limit: int
) -> tuple[int, Sequence[ScimGroup]]:
    total = (
        await session.execute(select(func.count()).select_from(ScimGroup).where(where))
    ).scalar_one()
    if limit == 0 or offset >= total:  # (an offset past any integer: never sent to SQL)
        return total, []
    query = (
        select(ScimGroup)
        .where(where)
        .order_by(ScimGroup.created_at, ScimGroup.id)
        .offset(offset)
        .limit(limit)
    )
    return total, (await session.execute(query)).scalars().all()


async def members_of(session: AsyncSession, group: ScimGroup) -> list[Member]:
    """The direct members of `group` that the IdP knows (by SCIM id), with the display it sent
    for each (else their current name); members added through the API before the IdP claimed
    the group have no SCIM id and are left out."""
    principal = group.group_id
    users = (
        select(
            ScimUser.id,
            literal("User"),
            ScimUser.principal,
            func.coalesce(ScimUser.display_name, ScimUser.user_name),
        )
        .join(Membership, Membership.member == ScimUser.principal)
        .where(Membership.group_id == principal)
    )
    groups = (
        select(ScimGroup.id, literal("Group"), ScimGroup.group_id, ScimGroup.display_name)
        .join(Membership, Membership.member == ScimGroup.group_id)
        .where(Membership.group_id == principal)
    )
    rows = (await session.execute(users.union_all(groups))).all()
    sent = select(ScimMemberDisplay.member_id, ScimMemberDisplay.display).where(
        ScimMemberDisplay.group_id == group.id
    )
    displays = {member: display for member, display in (await session.execute(sent)).all()}
    members = (Member(i, t, p, displays.get(i, d)) for i, t, p, d in rows)
    return sorted(members, key=lambda m: (m.type, m.principal))


async def set_displays(
    session: AsyncSession,
    group_id: str,
    displays: Mapping[str, str],
    *,
    forget: Sequence[str] = (),
    forget_all: bool = False,
) -> None:
    """Keep the displays sent for members of `group_id`, after forgetting those of `forget`
    (or all of them)."""
    query = delete(ScimMemberDisplay).where(ScimMemberDisplay.group_id == group_id)
    if forget_all:
        await session.execute(query)
    else:
        gone = sorted(set(forget) - displays.keys())
        for start in range(0, len(gone), 5000):
            chunk = gone[start : start + 5000]
            await session.execute(query.where(ScimMemberDisplay.member_id.in_(chunk)))
    if displays:  # one statement for all (a display sent again replaces the one kept)
        rows = [
            {"group_id": group_id, "member_id": member, "display": display}
            for member, display in displays.items()
        ]
        await session.execute(_UPSERT_DISPLAY[session.get_bind().dialect.name], rows)


async def groups_of(session: AsyncSession, principal: str) -> list[Member]:
    """The IdP's groups `principal` is a direct member of."""
    query = (
        select(ScimGroup.id, ScimGroup.group_id, ScimGroup.display_name)
        .join(Membership, Membership.group_id == ScimGroup.group_id)
        .where(Membership.member == principal)
        .order_by(ScimGroup.group_id)
    )
    return [Member(i, "Group", g, d) for i, g, d in (await session.execute(query)).all()]


async def resolve(session: AsyncSession, scim_ids: Sequence[str]) -> dict[str, Member]:
    """The users and groups among `scim_ids`, by id (unknown ids are missing)."""
    found: dict[str, Member] = {}
    ids = sorted({i for i in scim_ids if is_scim_id(i)})
    for start in range(0, len(ids), 5000):
        chunk = ids[start : start + 5000]
        users = select(ScimUser.id, literal("User"), ScimUser.principal).where(
            ScimUser.id.in_(chunk)
        )
        groups = select(ScimGroup.id, literal("Group"), ScimGroup.group_id).where(
            ScimGroup.id.in_(chunk)
        )
        for i, t, p in (await session.execute(users.union_all(groups))).all():
            found[i] = Member(i, t, p, None)
    return found


async def insert_user(session: AsyncSession, row: ScimUser) -> bool:
    """Insert `row` (never added to the session) unless its principal is taken; whether it
    was."""
    statement = _INSERT_USER[session.get_bind().dialect.name]
    values = {key: getattr(row, key) for key in _USER_COLUMNS}
    result = await session.execute(statement, values)
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def add(session: AsyncSession, row: ScimUser | ScimGroup) -> None:
    session.add(row)
    await session.flush()


async def delete_user(session: AsyncSession, user_id: str) -> None:
    await session.execute(delete(ScimUser).where(ScimUser.id == user_id))


async def delete_group(session: AsyncSession, group_id: str) -> None:
    await session.execute(delete(ScimGroup).where(ScimGroup.id == group_id))
