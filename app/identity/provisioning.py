"""What the IdP's changes do to the policy: the calls the SCIM routes make.

Every call is one policy change through the same pipeline as the API (load, diff, write:
findings and alerts in the same transaction, published to every worker on commit). None is
refused by the guard: the IdP is the truth about who is in which group, so a membership that
would widen a `block`-guarded dataset beyond its audience becomes a hold instead
(`app.changes.holds`). Principals are full ids, already normalised (`user:alice`,
`group:eng`). Nothing here commits.
"""

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from app.changes import holds as holds_change
from app.changes.holds import HoldChanges
from app.changes.members import Moved, relink
from app.db import utcnow
from app.directory import repository as directory_repository
from app.directory import service as directory_service
from app.directory.graph import Children, Parents
from app.directory.models import Group
from app.exposure.schemas import FindingChanges
from app.exposure.view import PolicyView, publish_on_commit, view_before_change
from app.holds import repository as holds_repository
from app.holds.schemas import HoldKind, HoldRead
from app.policy.state import PolicyChange


@dataclass(frozen=True)
class Provisioned:
    """What a change did beyond the SCIM resource itself."""

    holds_opened: list[HoldRead] = field(default_factory=list)
    holds_released: list[HoldRead] = field(default_factory=list)
    findings: FindingChanges = field(default_factory=FindingChanges)


async def claim_group(session: AsyncSession, *, group: str, actor: str) -> bool:
    """Make `group` IdP-owned, creating it if need be; True if it already was a group of the
    API, now adopted (its members stay until the caller sets the IdP's: `change_members(
    replace=...)`). Changes no policy."""
    found = await directory_repository.get_group(session, group)
    if found is None:
        await directory_repository.add_group(
            session, Group(id=group, created_at=utcnow(), managed_by=directory_service.IDP)
        )
        return False
    found.managed_by = directory_service.IDP
    await session.flush()
    return True


async def release_group(session: AsyncSession, *, group: str, actor: str) -> Provisioned:
    """The IdP deleted `group`: its members and its own memberships are removed, it is no
    longer IdP-owned; grants naming it stay (and reach nobody)."""
    before = await view_before_change(session)
    moved = {group: (set(await directory_repository.list_members(session, group)), set[str]())}
    for parent in await directory_repository.groups_of(session, group):
        moved[parent] = ({group}, set())  # (only the difference counts: the others stay)
    found = await directory_repository.get_group(session, group)
    if found is not None:
        found.managed_by = None
    return await _relinked(session, before, moved, actor)


async def change_members(
    session: AsyncSession,
    *,
    group: str,
    add: Sequence[str] = (),
    remove: Sequence[str] = (),
    replace: Sequence[str] | None = None,
    actor: str,
) -> Provisioned:
    """One change of an IdP-owned group's direct members: `replace` sets them, else `add` and
    `remove` (members already in or already out are ignored; a no-op change costs no
    re-analysis). Raises `MembershipCycle` (409) for a cycle, `InvalidInput` past the limits."""

    async def wanted() -> tuple[set[str], set[str]]:
        if replace is not None:
            old = set(await directory_repository.list_members(session, group))
            return old, set(replace)
        # Only the members named matter (a change is its difference): the group's other
        # members are never loaded, however many they are.
        named = sorted({*add, *remove})
        old = await directory_repository.members_among(session, group, named)
        return old, (old | set(add)) - set(remove)

    deferred: Deferred | None = session.info.get(_DEFERRED)
    is_locked = deferred is not None and deferred.before is not None  # (an earlier push's)
    old, new = await wanted()
    if old == new:
        return Provisioned()  # decided without the policy lock: an IdP repeats itself often
    if deferred is not None:
        if not is_locked:
            await deferred.lock(session)
            old, new = await wanted()  # read again under the policy lock
        if old != new:
            await deferred.write(session, group, old, new, actor)
        return Provisioned()
    before = await view_before_change(session)
    return await _relinked(session, before, {group: await wanted()}, actor)


_DEFERRED = "provisioning_deferred"  # Session.info: the group commit this transaction runs


@dataclass
class Deferred:
    """The membership changes of a group commit (`app.identity.group_commit`): each push's rows
    are written as it runs (a cycle refused against those before it), and their merged
    difference goes through the change pipeline once, at `settle_deferred`."""

    before: PolicyView | None = None  # the state the transaction started from (policy locked)
    graph: tuple[Children, Parents] | None = None  # the directory as the pushes so far left it
    actor: str = ""
    # group -> member -> whether it was a direct member before the first push, and is now
    was: dict[str, dict[str, bool]] = field(default_factory=dict)
    now: dict[str, dict[str, bool]] = field(default_factory=dict)

    async def lock(self, session: AsyncSession) -> None:
        if self.before is None:
            self.before = await view_before_change(session)
            directory = self.before.analyser.directory
            self.graph = (directory.children_map, directory.parents_map)

    async def write(
        self, session: AsyncSession, group: str, old: set[str], new: set[str], actor: str
    ) -> None:
        await self.lock(session)
        assert self.graph is not None
        self.graph = await _write_rows(session, group, old, new, actor, self.graph)
        self.actor = actor
        was, now = self.was.setdefault(group, {}), self.now.setdefault(group, {})
        for member in old | new:
            was.setdefault(member, member in old)
            now[member] = member in new

    def mark(self) -> "Deferred":
        """A copy to `restore` when the next push is rolled back."""
        return Deferred(
            self.before,
            self.graph,
            self.actor,
            {group: dict(members) for group, members in self.was.items()},
            {group: dict(members) for group, members in self.now.items()},
        )

    def restore(self, mark: "Deferred") -> None:
        self.before, self.graph, self.actor = mark.before, mark.graph, mark.actor
        self.was, self.now = mark.was, mark.now


def defer(session: AsyncSession) -> Deferred:
    """From now on, this transaction's `change_members` write their rows and leave the change
    pipeline to `settle_deferred`."""
    deferred = session.info[_DEFERRED] = Deferred()
    return deferred


async def settle_deferred(session: AsyncSession, deferred: Deferred) -> Provisioned:
    """Run the merged membership changes through the pipeline, once (nothing without any)."""
    session.info.pop(_DEFERRED, None)
    if deferred.before is None:
        return Provisioned()
    moved = {
        group: (
            {m for m, is_in in deferred.was[group].items() if is_in},
            {m for m, is_in in members.items() if is_in},
        )
        for group, members in deferred.now.items()
    }
    return await _run_through(session, deferred.before, moved, deferred.actor)


_ACTIVATED = "provisioning_activated"  # Session.info: users a group commit created active


def defer_activations(session: AsyncSession) -> None:
    """From now on, this transaction's `created_active` are settled at `settle_activations`."""
    session.info[_ACTIVATED] = []


async def created_active(session: AsyncSession, *, principal: str, actor: str) -> None:
    """A user was created active: an `inactive` hold left on the name by an earlier user of it
    is lifted (a policy change); without one, nothing is changed and no lock taken. In a group
    commit of creates, the holds of all its users are looked up in one query, at the end."""
    waiting: list[tuple[str, str]] | None = session.info.get(_ACTIVATED)
    if waiting is None:
        await set_active(session, principal=principal, active=True, actor=actor)
    else:
        waiting.append((principal, actor))


async def settle_activations(session: AsyncSession) -> None:
    """Lift the `inactive` holds of the users the transaction created active (one query; a
    policy change for each held name only)."""
    waiting: list[tuple[str, str]] = session.info.pop(_ACTIVATED, None) or []
    if not waiting:
        return
    holds = await holds_repository.active_on(
        session, kind=HoldKind.inactive.value, principals={principal for principal, _ in waiting}
    )
    held = {hold.principal for hold in holds}
    for principal, actor in waiting:
        if principal in held:
            await set_active(session, principal=principal, active=True, actor=actor)


async def is_active_as(session: AsyncSession, *, principal: str, active: bool) -> bool:
    """Whether `principal` is already as `active` says (an `inactive` hold or none): then
    `set_active` changes nothing."""
    inactive = HoldKind.inactive.value
    return await holds_repository.is_held(session, kind=inactive, principal=principal) != active


async def set_active(
    session: AsyncSession, *, principal: str, active: bool, actor: str
) -> Provisioned:
    """A deactivated user loses every access at the next check, in every worker (an
    `inactive` hold: a deny on everything); reactivated, they get it back."""
    if await is_active_as(session, principal=principal, active=active):
        return Provisioned()  # decided without the policy lock: nothing to change
    before = await view_before_change(session)
    at = time.time()
    if active:
        holds = await holds_change.reactivate(session, principal=principal, actor=actor, at=at)
    else:
        holds = await holds_change.deactivate(session, principal=principal, actor=actor, at=at)
    return await _relinked(session, before, {}, actor, holds, principal)


async def forget_user(session: AsyncSession, *, principal: str, actor: str) -> Provisioned:
    """The IdP deleted the user: their memberships are removed and an `inactive` hold denies
    them everything (history keeps what they could read before)."""
    before = await view_before_change(session)
    moved = await _without(session, principal)
    holds = await holds_change.deactivate(session, principal=principal, actor=actor, at=time.time())
    return await _relinked(session, before, moved, actor, holds, principal)


async def rename_user(session: AsyncSession, *, old: str, new: str, actor: str) -> Provisioned:
    """The user's userName changed: their memberships move from `old` to `new` (guarded like
    any membership change), and `old`, a name nobody in the IdP holds now, gets an `inactive`
    hold: whoever is given it later inherits nothing until the IdP provisions them."""
    before = await view_before_change(session)
    moved = {}
    for group in await directory_repository.groups_of(session, old):
        named = await directory_repository.members_among(session, group, [old, new])
        moved[group] = (named, (named - {old}) | {new})
    holds = await holds_change.deactivate(session, principal=old, actor=actor, at=time.time())
    return await _relinked(session, before, moved, actor, holds, old)


async def _without(session: AsyncSession, principal: str) -> dict[str, tuple[set[str], set[str]]]:
    """Every group `principal` is a direct member of, as it leaves (only the difference
    counts: the other members, however many, are never loaded)."""
    return {
        group: ({principal}, set())
        for group in await directory_repository.groups_of(session, principal)
    }


async def _relinked(
    session: AsyncSession,
    before: PolicyView,
    moved: Moved,
    actor: str,
    holds: HoldChanges | None = None,
    principal: str | None = None,
) -> Provisioned:
    """Write the membership rows of `moved` (each group's direct members before and after, or
    only those that differ, with any others) and run the change through the pipeline, holding
    back what it would widen; nothing at all when it changes nothing."""
    directory = before.analyser.directory
    graph = (directory.children_map, directory.parents_map)
    for group, (old, new) in moved.items():
        if old != new:
            graph = await _write_rows(session, group, old, new, actor, graph)
    return await _run_through(session, before, moved, actor, holds, principal)


async def _write_rows(
    session: AsyncSession,
    group: str,
    old: set[str],
    new: set[str],
    actor: str,
    graph: tuple[Children, Parents],
) -> tuple[Children, Parents]:
    """`group`'s membership rows from `old` to `new` (a cycle refused against `graph`); the
    directory graph after."""
    return await directory_service.change_member_rows(
        session,
        gid=group,
        add=sorted(new - old),
        remove=sorted(old - new),
        actor=actor,
        field="members",
        children=graph[0],
        parents=graph[1],
    )


async def _run_through(
    session: AsyncSession,
    before: PolicyView,
    moved: Moved,
    actor: str,
    holds: HoldChanges | None = None,
    principal: str | None = None,
) -> Provisioned:
    """The findings and holds of membership rows written (`moved`) and of `holds`."""
    moved = {group: (old, new) for group, (old, new) in moved.items() if old != new}
    rules = holds.change if holds is not None else None
    if not moved and (rules is None or not (rules.added or rules.removed)):
        # the version moved (the lock): keep up with it
        await publish_on_commit(session, before, actor=actor)
        return Provisioned()
    touched = 0 if principal is None else before.analyser.directory.leaf_bits(principal)
    findings, settled = await relink(
        session,
        before=before,
        moved=moved,
        actor=actor,
        holding=True,
        rules=rules or PolicyChange(),
        touched=touched,
    )
    opened, released = settled.reads()
    if holds is not None:
        more_opened, more_released = holds.reads()
        opened, released = more_opened + opened, more_released + released
    return Provisioned(opened, released, findings)
