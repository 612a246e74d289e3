from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.directory.models import Group, Membership


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


async def add_membership(session: AsyncSession, membership: Membership) -> None:
    session.add(membership)
    await session.flush()


async def remove_membership(session: AsyncSession, group_id: str, member: str) -> bool:
    result = await session.execute(
        delete(Membership).where(Membership.group_id == group_id, Membership.member == member)
    )
    return (result.rowcount or 0) > 0  # type: ignore[attr-defined]


async def ensure_group(session: AsyncSession, group: Group) -> None:
    if await session.get(Group, group.id) is None:
        session.add(group)
        await session.flush()


async def is_member(session: AsyncSession, group_id: str, member: str) -> bool:
    query = select(Membership.member).where(
        Membership.group_id == group_id, Membership.member == member
    )
    return (await session.execute(query)).first() is not None
