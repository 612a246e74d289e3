from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, func, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.directory.models import Group, Membership, MembershipHistory


async def get_group(session: AsyncSession, group_id: str) -> Group | None:
    return await session.get(Group, group_id)


async def list_groups(session: AsyncSession, *, after: str | None, limit: int) -> Sequence[Group]:
    query = select(Group).order_by(Group.id).limit(limit)
    if after is not None:
        query = query.where(Group.id > after)
    return (await session.execute(query)).scalars().all()


async def direct_counts(session: AsyncSession, group_ids: Sequence[str]) -> dict[str, int]:
    query = (
        select(Membership.group_id, func.count())
        .where(Membership.group_id.in_(group_ids))
        .group_by(Membership.group_id)
    )
    return {g: int(n) for g, n in (await session.execute(query)).all()}


async def list_members(session: AsyncSession, group_id: str) -> list[str]:
    query = select(Membership.member).where(Membership.group_id == group_id)
    return sorted((await session.execute(query)).scalars().all())


async def groups_of(session: AsyncSession, member: str) -> list[str]:
    """The groups `member` is a direct member of."""
    query = select(Membership.group_id).where(Membership.member == member)
    return sorted((await session.execute(query)).scalars().all())


async def all_edges(session: AsyncSession) -> list[tuple[str, str]]:
    """Every (member, group) pair: Casbin's ``g`` rules."""
    rows = await session.execute(select(Membership.member, Membership.group_id))
    return [(m, g) for m, g in rows.all()]


async def group_children(session: AsyncSession) -> dict[str, list[str]]:
    children: dict[str, list[str]] = defaultdict(list)
    for member, group in await all_edges(session):
        children[group].append(member)
    return children


async def group_children_at(session: AsyncSession, version: int) -> dict[str, list[str]]:
    """Each group's direct members as they were at policy `version` (from the history)."""
    history = MembershipHistory
    query = select(history.member, history.group_id).where(
        history.from_version <= version,
        or_(history.until_version.is_(None), history.until_version > version),
    )
    children: dict[str, list[str]] = defaultdict(list)
    for member, group in (await session.execute(query)).all():
        children[group].append(member)
    return children


async def add_membership(session: AsyncSession, membership: Membership) -> None:
    session.add(membership)
    await session.flush()


async def remove_membership(session: AsyncSession, group_id: str, member: str) -> bool:
    result = await session.execute(
        delete(Membership).where(Membership.group_id == group_id, Membership.member == member)
    )
    return (result.rowcount or 0) > 0  # type: ignore[attr-defined]


async def add_memberships(
    session: AsyncSession, group_id: str, members: Sequence[str], *, at: datetime, by: str
) -> None:
    """Rows making `members` direct members of `group_id` (none of them one yet): one statement."""
    if members:
        rows = [
            {"group_id": group_id, "member": m, "created_at": at, "created_by": by} for m in members
        ]
        await session.execute(insert(Membership), rows)


async def remove_memberships(session: AsyncSession, group_id: str, members: Sequence[str]) -> None:
    """`members` are no longer direct members of `group_id`: one statement per 500."""
    for start in range(0, len(members), 500):
        await session.execute(
            delete(Membership).where(
                Membership.group_id == group_id,
                Membership.member.in_(members[start : start + 500]),
            )
        )


async def members_among(session: AsyncSession, group_id: str, members: Sequence[str]) -> set[str]:
    """Those of `members` that are direct members of `group_id`."""
    found: set[str] = set()
    for start in range(0, len(members), 500):
        query = select(Membership.member).where(
            Membership.group_id == group_id, Membership.member.in_(members[start : start + 500])
        )
        found.update((await session.execute(query)).scalars().all())
    return found


async def existing_groups(session: AsyncSession, ids: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(ids), 500):
        query = select(Group.id).where(Group.id.in_(ids[start : start + 500]))
        found.update((await session.execute(query)).scalars().all())
    return found


async def add_groups(session: AsyncSession, ids: Sequence[str], *, at: datetime) -> None:
    if ids:
        await session.execute(insert(Group), [{"id": gid, "created_at": at} for gid in ids])


async def add_group(session: AsyncSession, group: Group) -> None:
    session.add(group)
    await session.flush()


async def ensure_group(session: AsyncSession, group: Group) -> None:
    if await session.get(Group, group.id) is None:
        session.add(group)
        await session.flush()


async def is_member(session: AsyncSession, group_id: str, member: str) -> bool:
    query = select(Membership.member).where(
        Membership.group_id == group_id, Membership.member == member
    )
    return (await session.execute(query)).first() is not None
