"""Groups and nested memberships. Every change advances the policy version first."""

from collections import defaultdict

from sqlalchemy.ext.asyncio import AsyncSession

from app.db import utcnow
from app.directory import graph, repository
from app.directory.models import Group, Membership
from app.directory.schemas import GroupRead, GroupSummary
from app.errors import InvalidInput, MembershipCycle, NotFound
from app.policy import version as policy_version

# pycasbin's role manager follows at most 10 levels of g links (the principal itself is one);
# deeper nesting would silently stop granting, so it is refused instead.
MAX_MEMBERSHIP_CHAIN = 9


def group_id(name: str) -> str:
    return f"group:{name}"


async def _require_group(session: AsyncSession, gid: str) -> Group:
    group = await repository.get_group(session, gid)
    if group is None:
        raise NotFound(f"{gid} does not exist")
    return group


async def describe_group(session: AsyncSession, gid: str, version: int | None = None) -> GroupRead:
    await _require_group(session, gid)
    children = await repository.group_children(session)
    members = sorted(children.get(gid, []))
    return GroupRead(
        id=gid,
        members=members,
        direct_member_count=len(members),
        transitive_member_count=len(graph.leaves(graph.descendants(children, gid))),
        policy_version=version,
    )


async def list_groups(
    session: AsyncSession, *, after: str | None, limit: int
) -> tuple[list[GroupSummary], str | None]:
    groups = await repository.list_groups(session, after=after, limit=limit + 1)
    page = groups[:limit]
    children = await repository.group_children(session)
    items = [
        GroupSummary(
            id=g.id,
            direct_member_count=len(children.get(g.id, [])),
            transitive_member_count=len(graph.leaves(graph.descendants(children, g.id))),
        )
        for g in page
    ]
    return items, (page[-1].id if len(groups) > limit else None)


def _check_addition(children: dict[str, list[str]], gid: str, member: str, field: str) -> None:
    if graph.would_cycle(children, gid, member):
        raise MembershipCycle(
            f"adding {member} to {gid} would make a membership cycle; "
            f"{gid} is already (transitively) a member of {member}",
            errors=[{"loc": field.split("."), "field": field, "msg": "membership cycle"}],
        )
    parents: dict[str, list[str]] = defaultdict(list)
    for group, members in children.items():
        for m in members:
            parents[m].append(group)
    chain = graph.depth_above(parents, gid) + 1 + graph.depth_below(children, member)
    if chain > MAX_MEMBERSHIP_CHAIN:
        raise InvalidInput(
            field,
            f"nesting would put a member {chain} membership links below the top group; Casbin "
            f"follows at most {MAX_MEMBERSHIP_CHAIN}, so flatten the groups",
        )


async def _ensure_groups(session: AsyncSession, ids: list[str]) -> None:
    for gid in ids:
        if gid.startswith("group:"):
            await repository.ensure_group(session, Group(id=gid, created_at=utcnow()))


async def replace_members(
    session: AsyncSession, *, gid: str, members: list[str], actor: str, field: str = "body.members"
) -> GroupRead:
    version = await policy_version.advance(session)
    await _ensure_groups(session, [gid, *members])
    children = await repository.group_children(session)
    current = set(children.get(gid, []))
    wanted = set(members)
    for member in current - wanted:
        await repository.remove_membership(session, gid, member)
    children[gid] = [m for m in children.get(gid, []) if m in wanted]
    for member in sorted(wanted - current):
        _check_addition(children, gid, member, f"{field}.{members.index(member)}")
        await repository.add_membership(
            session, Membership(group_id=gid, member=member, created_at=utcnow(), created_by=actor)
        )
        children.setdefault(gid, []).append(member)
    return await describe_group(session, gid, version)


async def add_member(session: AsyncSession, *, gid: str, member: str, actor: str) -> GroupRead:
    version = await policy_version.advance(session)
    await _ensure_groups(session, [gid, member])
    if not await repository.is_member(session, gid, member):
        children = await repository.group_children(session)
        _check_addition(children, gid, member, "body.member")
        await repository.add_membership(
            session, Membership(group_id=gid, member=member, created_at=utcnow(), created_by=actor)
        )
    return await describe_group(session, gid, version)


async def remove_member(session: AsyncSession, *, gid: str, member: str) -> GroupRead:
    version = await policy_version.advance(session)
    await _require_group(session, gid)
    if not await repository.remove_membership(session, gid, member):
        raise NotFound(f"{member} is not a direct member of {gid}")
    return await describe_group(session, gid, version)
