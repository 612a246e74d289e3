"""Groups and nested memberships. Every change advances the policy version first.

A change checks cycles and depth against the membership graph. Callers that hold the graph as it
stands in this transaction (`app.changes.members` has it in the analyser's view) pass it as
``children`` and ``parents``; otherwise it is loaded from the database, which at 100k members
costs far more than the change itself.
"""

from collections import ChainMap, defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app import policy_version
from app.db import utcnow
from app.directory import graph, repository
from app.directory.limits import MAX_LINKS
from app.directory.models import Group, Membership
from app.directory.schemas import GroupRead, GroupSummary
from app.errors import InvalidInput, MembershipCycle, NotFound, OwnedByIdp


def group_id(name: str) -> str:
    return f"group:{name}"


async def _require_group(session: AsyncSession, gid: str) -> Group:
    group = await repository.get_group(session, gid)
    if group is None:
        raise NotFound(f"{gid} does not exist")
    return group


IDP = "scim"  # `Group.managed_by` of the groups the IdP owns


async def refuse_idp_owned(session: AsyncSession, gid: str) -> None:
    """The IdP owns the group's members: only SCIM changes them (409 otherwise)."""
    group = await repository.get_group(session, gid)
    if group is not None and group.managed_by == IDP:
        raise OwnedByIdp(
            f"{gid} is provisioned by the company's identity provider over SCIM: change its "
            "members there (this service takes them from the IdP, which would undo the change)"
        )


async def describe_group(
    session: AsyncSession,
    gid: str,
    version: int | None = None,
    children: graph.Children | None = None,
) -> GroupRead:
    """The group with its direct and transitive member counts (`children`: the graph as it
    stands in this transaction, when the caller has it)."""
    await _require_group(session, gid)
    if children is None:
        children = await repository.group_children(session)
    members = sorted(children.get(gid, []))
    return GroupRead(
        id=gid,
        members=members,
        direct_member_count=len(members),
        transitive_member_count=len(graph.leaves(graph.descendants(children, gid))),
        policy_version=version,
    )


async def describe_group_at(session: AsyncSession, gid: str, at: datetime) -> GroupRead:
    """The group as it was at instant `at`: its members from the history of the policy version
    then in force. 404 if it did not exist then: created after `at`, or `at` is before any
    history (as a dataset not registered then). Groups are never deleted. Not in the future."""
    if at > utcnow():
        raise InvalidInput("query.at", "is in the future: the directory then is not known yet")
    version = await policy_version.version_at(session, at)
    group = await repository.get_group(session, gid)
    if version is None or group is None or group.created_at > at:
        raise NotFound(f"{gid} did not exist at {at.isoformat()}")
    children = await repository.group_children_at(session, version)
    return await describe_group(session, gid, version=version, children=children)


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


def _check_addition(
    children: graph.Children,
    gid: str,
    member: str,
    field: str,
    parents: graph.Parents | None = None,
) -> None:
    if graph.would_cycle(children, gid, member):
        raise MembershipCycle(
            f"adding {member} to {gid} would make a membership cycle; "
            f"{gid} is already (transitively) a member of {member}",
            errors=[{"loc": field.split("."), "field": field, "msg": "membership cycle"}],
        )
    if parents is None:
        inverted: dict[str, list[str]] = defaultdict(list)
        for group, members in children.items():
            for m in members:
                inverted[m].append(group)
        parents = inverted
    # Casbin follows at most MAX_LINKS links: deeper nesting would silently stop granting.
    chain = graph.depth_above(parents, gid) + 1 + graph.depth_below(children, member)
    if chain > MAX_LINKS:
        raise InvalidInput(
            field,
            f"nesting would put a member {chain} membership links below the top group; Casbin "
            f"follows at most {MAX_LINKS}, so flatten the groups",
        )


async def _ensure_groups(session: AsyncSession, ids: list[str]) -> None:
    """The rows of the groups among `ids` that have none yet (one query, one insert)."""
    wanted = list(dict.fromkeys(gid for gid in ids if gid.startswith("group:")))
    if len(wanted) == 1:  # (the identity map may hold it)
        await repository.ensure_group(session, Group(id=wanted[0], created_at=utcnow()))
        return
    found = await repository.existing_groups(session, wanted)
    await repository.add_groups(session, [g for g in wanted if g not in found], at=utcnow())


def _overlay(
    children: graph.Children, parents: graph.Parents, gid: str
) -> tuple[dict[str, list[str]], ChainMap[str, list[str]], ChainMap[str, list[str]]]:
    """Writable views of a graph that the caller owns: changes to `gid`'s members go to the
    returned dict and chain maps, never to the graph underneath."""
    own = {gid: list(children.get(gid, ()))}
    return own, ChainMap(own, children), ChainMap({}, parents)  # type: ignore[arg-type]


async def replace_members(
    session: AsyncSession,
    *,
    gid: str,
    members: list[str],
    actor: str,
    field: str = "body.members",
    children: graph.Children | None = None,
    parents: graph.Parents | None = None,
) -> GroupRead:
    version = await policy_version.advance(session)
    if children is None or parents is None:
        loaded = await repository.group_children(session)
        children, parents = loaded, _parents_of(loaded)
    local_children, _ = await set_members(
        session,
        gid=gid,
        members=members,
        actor=actor,
        field=field,
        children=children,
        parents=parents,
    )
    return await describe_group(session, gid, version, local_children)


async def set_members(
    session: AsyncSession,
    *,
    gid: str,
    members: list[str],
    actor: str,
    field: str,
    children: graph.Children,
    parents: graph.Parents,
) -> tuple[graph.Children, graph.Parents]:
    """Make `members` the direct members of `gid` (rows for the difference only; cycles and
    depth refused, `field` naming the member); the graph after it, children and parents
    (`children`, `parents`: before it, left unchanged)."""
    current = set(children.get(gid, ()))
    position = {member: n for n, member in reversed(list(enumerate(members)))}
    return await change_member_rows(
        session,
        gid=gid,
        add=[m for m in position if m not in current],
        remove=sorted(current - position.keys()),
        actor=actor,
        field=field,
        children=children,
        parents=parents,
        position=position,
    )


async def change_member_rows(
    session: AsyncSession,
    *,
    gid: str,
    add: Sequence[str],
    remove: Sequence[str],
    actor: str,
    field: str,
    children: graph.Children,
    parents: graph.Parents,
    position: Mapping[str, int] | None = None,
) -> tuple[graph.Children, graph.Parents]:
    """`set_members` given the difference: `add` (not members yet; `field`.n names the n-th,
    or the one `position` numbers n) become direct members of `gid`, `remove` (members) no
    longer are. One statement for each kind of row, whatever their number."""
    await policy_version.advance(session)
    own, local_children, local_parents = _overlay(children, parents, gid)
    if position is None:
        position = {member: n for n, member in reversed(list(enumerate(add)))}
    added = sorted(set(add))
    await _ensure_groups(session, [gid, *added])
    removed = sorted(set(remove))
    await repository.remove_memberships(session, gid, removed)
    gone = set(removed)
    for member in removed:
        local_parents[member] = [g for g in local_parents.get(member, ()) if g != gid]
    if gone:
        own[gid] = [m for m in own[gid] if m not in gone]
    for member in added:
        _check_addition(local_children, gid, member, f"{field}.{position[member]}", local_parents)
        own[gid].append(member)
        local_parents[member] = [*local_parents.get(member, ()), gid]
    await repository.add_memberships(session, gid, added, at=utcnow(), by=actor)
    return local_children, local_parents


def _parents_of(children: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    parents: dict[str, list[str]] = defaultdict(list)
    for group, members in children.items():
        for member in members:
            parents[member].append(group)
    return dict(parents)


async def add_member(
    session: AsyncSession,
    *,
    gid: str,
    member: str,
    actor: str,
    children: graph.Children | None = None,
    parents: graph.Parents | None = None,
) -> GroupRead:
    """Add one member (`children`/`parents`: the graph before the change, when the caller has
    it; it is not changed)."""
    version = await policy_version.advance(session)
    await _ensure_groups(session, [gid, member])
    if children is None:
        children = await repository.group_children(session)
    own = {gid: list(children.get(gid, ()))}
    if not await repository.is_member(session, gid, member):
        _check_addition(children, gid, member, "body.member", parents)
        await repository.add_membership(
            session, Membership(group_id=gid, member=member, created_at=utcnow(), created_by=actor)
        )
        own[gid].append(member)
    return await describe_group(session, gid, version, ChainMap(own, children))  # type: ignore[arg-type]


async def remove_member(
    session: AsyncSession, *, gid: str, member: str, children: graph.Children | None = None
) -> GroupRead:
    """Remove one direct member (`children`: the graph before the change, when the caller has
    it; it is not changed)."""
    version = await policy_version.advance(session)
    await _require_group(session, gid)
    if not await repository.remove_membership(session, gid, member):
        raise NotFound(f"{member} is not a direct member of {gid}")
    if children is None:
        return await describe_group(session, gid, version)
    own = {gid: [m for m in children.get(gid, ()) if m != member]}
    return await describe_group(session, gid, version, ChainMap(own, children))  # type: ignore[arg-type]
