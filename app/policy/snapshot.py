"""An immutable picture of the policy at one version, and the per-process cache of it.

A new snapshot is built (never mutated) whenever the database's policy version moves, so a
request reading the old one is never disturbed.
"""

import asyncio
import time
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

from app.datasets import repository as datasets_repository
from app.directory import graph
from app.directory import repository as directory_repository
from app.policy import repository
from app.policy import version as policy_version
from app.policy.decision_index import DecisionIndex, Rule
from app.policy.models import Grant
from app.policy.schemas import GrantRead

# Reading these actions from outside a dataset's audience is an exposure.
READ_ACTIONS = frozenset({"read", "export"})


def to_rule(grant: Grant | GrantRead) -> Rule:
    """The Casbin ``p`` rule of a grant."""
    return repository.rule_of(
        grant.principal, grant.resource, grant.action, grant.effect, grant.expires_at, grant.id
    )


@dataclass(frozen=True)
class PolicyChange:
    """Rules (grants) and links (memberships) that a transaction added and removed."""

    added: tuple[Rule, ...] = ()
    removed: tuple[Rule, ...] = ()
    links_added: tuple[tuple[str, str], ...] = ()
    links_removed: tuple[tuple[str, str], ...] = ()


class Outcome(NamedTuple):
    allowed: bool
    code: str
    grant_id: int | None
    via: tuple[str, ...]
    out_of_audience: bool


@dataclass
class PolicySnapshot:
    version: int
    index: DecisionIndex
    audiences: dict[str, frozenset[str]]  # dataset -> intended_audience as declared
    sensitivities: dict[str, str]
    _ancestors: dict[str, frozenset[str]] = field(default_factory=dict)

    def ancestors(self, principal: str) -> frozenset[str]:
        found = self._ancestors.get(principal)
        if found is None:
            found = frozenset(graph.ancestors(self.index.parents, principal))
            self._ancestors[principal] = found
        return found

    def changed(self, version: int, change: "PolicyChange") -> "PolicySnapshot":
        """The snapshot of `version`, which differs from this one by `change` only."""
        index, ancestors = self.index, self._ancestors
        if change.added or change.removed:
            index = index.with_rules(change.added, change.removed)
        if change.links_added or change.links_removed:
            index = index.with_links(change.links_added, change.links_removed)
            ancestors = {}
        return replace(self, version=version, index=index, _ancestors=ancestors)

    def in_audience(self, principal: str, dataset: str) -> bool:
        audience = self.audiences.get(dataset, frozenset())
        return principal in audience or not audience.isdisjoint(self.ancestors(principal))

    def decide(self, principal: str, dataset: str, action: str, now: float) -> Outcome:
        if dataset not in self.audiences:
            return Outcome(False, "unknown_dataset", None, (), False)
        decision = self.index.decide(principal, dataset, action, now)
        rule = decision.matched
        if decision.allowed and rule is not None:
            outside = action in READ_ACTIONS and not self.in_audience(principal, dataset)
            return Outcome(True, "granted", int(rule.id), decision.via, outside)
        if rule is not None:
            return Outcome(False, "denied_by_grant", int(rule.id), decision.via, False)
        expired = self.index.expired_allow(principal, dataset, action, now)
        if expired is not None:
            return Outcome(False, "grant_expired", int(expired.id), (), False)
        return Outcome(False, "no_grant", None, (), False)


async def build(session: AsyncSession, version: int) -> PolicySnapshot:
    """The snapshot of the committed policy. The index is built in a thread: seconds of CPU at
    100k grants, during which the event loop keeps serving (checks wait for the snapshot)."""
    rules = await repository.unrevoked_rules(session)
    edges = await directory_repository.all_edges(session)
    datasets = await datasets_repository.list_all(session)
    index = await asyncio.to_thread(DecisionIndex, rules, edges)
    return PolicySnapshot(
        version=version,
        index=index,
        audiences={d.id: frozenset(d.intended_audience) for d in datasets},
        sensitivities={d.id: d.sensitivity for d in datasets},
    )


# Most changes kept for the next reader to derive (beyond, it rebuilds: just as fast by then).
FOLLOW_LIMIT = 64


class PolicyCache:
    """This process's current snapshot, refreshed when the database's version moves: derived
    from the previous one for the changes made through this process (`follow_on_commit`),
    rebuilt from the database otherwise."""

    def __init__(self) -> None:
        self._snapshot: PolicySnapshot | None = None
        self._lock = asyncio.Lock()
        # version -> the change that made it, for changes committed through this process
        self._followed: dict[int, PolicyChange] = {}

    @property
    def loaded(self) -> PolicySnapshot | None:
        self._catch_up()
        return self._snapshot

    def follow_on_commit(self, session: AsyncSession, change: "PolicyChange") -> None:
        """For a transaction whose only policy change is `change`: once it commits, the next
        reader derives its version's snapshot from the one before (a few milliseconds) instead
        of rebuilding it (seconds at 100k grants), provided it has that one."""
        version = int(session.info[policy_version.TAKEN][1])

        def record(_: Any) -> None:
            if len(self._followed) < FOLLOW_LIMIT:
                self._followed[version] = change

        event.listen(session.sync_session, "after_commit", record, once=True)

    def _catch_up(self) -> None:
        """Derive, in order, the followed versions that continue the current snapshot."""
        snapshot = self._snapshot
        if snapshot is None or not self._followed:
            return
        while (change := self._followed.pop(snapshot.version + 1, None)) is not None:
            snapshot = snapshot.changed(snapshot.version + 1, change)
        self._snapshot = snapshot
        self._forget_followed(snapshot.version)

    def _forget_followed(self, version: int) -> None:
        self._followed = {v: c for v, c in self._followed.items() if v > version}

    async def current(self, session: AsyncSession) -> PolicySnapshot:
        """The snapshot for the newest committed version (one cheap query when unchanged)."""
        version = await policy_version.current(session)
        self._catch_up()
        snapshot = self._snapshot
        if snapshot is not None and snapshot.version >= version:
            return snapshot
        async with self._lock:
            self._catch_up()
            snapshot = self._snapshot
            if snapshot is None or snapshot.version < version:
                snapshot = await build(session, version)
                self._snapshot = snapshot
                self._forget_followed(version)
        return snapshot


def now() -> float:
    return time.time()
