"""The check index: a policy state's view for checks (a `PolicySnapshot`), and this process's
cache of the newest one.

A new snapshot is derived (never mutated) whenever the policy version moves, so a request
reading the old one is never disturbed: from the previous one and the change when this process
made the change (`app.policy.state`), rebuilt from the database otherwise.
"""

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from sqlalchemy.ext.asyncio import AsyncSession

from app.directory import graph
from app.policy import holds, repository
from app.policy.casbin_model import READ_ACTIONS
from app.policy.decision_index import DecisionIndex, Rule
from app.policy.models import Grant
from app.policy.published import PolicyStates
from app.policy.schemas import GrantRead
from app.policy.state import DatasetFacts, PolicyChange, PolicyRows, PolicyState


def to_rules(grant: Grant | GrantRead) -> tuple[Rule, ...]:
    """The Casbin ``p`` rules of a grant: one per purpose."""
    return repository.rules_of(
        grant.principal,
        grant.resource,
        grant.action,
        grant.effect,
        grant.expires_at,
        grant.id,
        grant.purposes,
    )


class Outcome(NamedTuple):
    allowed: bool
    code: str
    grant_id: int | None
    via: tuple[str, ...]
    out_of_audience: bool

    @property
    def decision(self) -> str:
        return "allow" if self.allowed else "deny"

    def reason(self) -> dict[str, Any]:
        """The decision's reason, as `/v1/check` answers it and the access log records it."""
        return {"code": self.code, "grant_id": self.grant_id, "via": list(self.via)}


@dataclass
class PolicySnapshot:
    version: int
    index: DecisionIndex
    audiences: dict[str, frozenset[str]]  # dataset -> intended_audience as declared
    sensitivities: dict[str, str]
    purpose_required: frozenset[str] = frozenset()  # datasets whose checks must name a purpose
    inactive: frozenset[str] = frozenset()  # users with an inactive hold (deactivated by the IdP)
    _ancestors: dict[str, frozenset[str]] = field(default_factory=dict)

    def ancestors(self, principal: str) -> frozenset[str]:
        found = self._ancestors.get(principal)
        if found is None:
            found = frozenset(graph.ancestors(self.index.parents, principal))
            self._ancestors[principal] = found
        return found

    def carried(self, change: PolicyChange, state: PolicyState) -> "PolicySnapshot":
        """The snapshot of `state`, reached from this one by `change` (and, for a state
        several changes on, by the changes after it)."""
        index, ancestors = self.index, self._ancestors
        if change.added or change.removed:
            index = index.with_rules(change.added, change.removed)
        if change.links_added or change.links_removed:
            index = index.with_links(change.links_added, change.links_removed)
            ancestors = {}
        inactive = self.inactive
        if change.added or change.removed:
            inactive = (inactive - holds.inactive(change.removed)) | holds.inactive(change.added)
        audiences, sensitivities = self.audiences, self.sensitivities
        purpose_required = self.purpose_required
        if change.datasets or state.datasets.keys() != audiences.keys():  # (or unregistered)
            audiences, sensitivities, purpose_required = _dataset_maps(state.datasets)
        return replace(
            self,
            version=state.version,
            index=index,
            inactive=inactive,
            audiences=audiences,
            sensitivities=sensitivities,
            purpose_required=purpose_required,
            _ancestors=ancestors,
        )

    def in_audience(self, principal: str, dataset: str) -> bool:
        audience = self.audiences.get(dataset, frozenset())
        return principal in audience or not audience.isdisjoint(self.ancestors(principal))

    def decide(
        self, principal: str, dataset: str, action: str, purpose: str | None, now: float
    ) -> Outcome:
        """The check's outcome: Casbin's decision for (principal, dataset, action, purpose,
        now), a check without a purpose asking for the purpose "" (which only grants for any
        purpose match), and the reason."""
        if dataset not in self.audiences:
            return Outcome(False, "unknown_dataset", None, (), False)
        if not purpose:
            if dataset in self.purpose_required:
                return Outcome(False, "purpose_required", None, (), False)
            purpose = ""
        decision = self.index.decide(principal, dataset, action, purpose, now)
        rule = decision.matched
        if decision.allowed and rule is not None:
            outside = action in READ_ACTIONS and not self.in_audience(principal, dataset)
            return Outcome(True, "granted", int(rule.id), decision.via, outside)
        if rule is not None:
            if principal in self.inactive:  # the most useful reason, whatever else denies
                return Outcome(False, "principal_inactive", None, decision.via, False)
            if holds.is_hold(rule):
                return Outcome(False, holds.reason_code(rule), None, decision.via, False)
            return Outcome(False, "denied_by_grant", int(rule.id), decision.via, False)
        expired = self.index.expired_allow(principal, dataset, action, purpose, now)
        if expired is not None:
            return Outcome(False, "grant_expired", int(expired.id), (), False)
        if self.index.allow_for_other_purpose(principal, dataset, action, now) is not None:
            return Outcome(False, "purpose_not_granted", None, (), False)
        return Outcome(False, "no_grant", None, (), False)

    def decide_purposes(
        self, principal: str, dataset: str, action: str, now: float
    ) -> tuple[Outcome, list[str]]:
        """For which purposes `principal` may do `action` on `dataset`: the purposes that some
        rule names, and "*" for every other one (a check naming no purpose where the dataset
        does not require one among them), with the first allowed outcome (else a denied one).
        Linear in the purposes named for `action`: not for the check path."""
        first: Outcome | None = None
        allowed: list[str] = []
        for purpose in ("*", *self.index.purposes(action)):
            outcome = self.decide(principal, dataset, action, purpose, now)
            if outcome.allowed:
                allowed.append(purpose)
                first = first or outcome
        if first is None:
            required = dataset in self.purpose_required
            first = self.decide(principal, dataset, action, None if required else "", now)
        return first, allowed


def _dataset_maps(
    datasets: Mapping[str, DatasetFacts],
) -> tuple[dict[str, frozenset[str]], dict[str, str], frozenset[str]]:
    audiences = {d.id: frozenset(d.audience) for d in datasets.values()}
    sensitivities = {d.id: d.sensitivity for d in datasets.values()}
    return (
        audiences,
        sensitivities,
        frozenset(d.id for d in datasets.values() if d.purpose_required),
    )


class CheckIndex:
    """The check index as a kind of view of the policy state."""

    async def build(self, rows: PolicyRows, state: PolicyState) -> PolicySnapshot:
        """Built in a thread: seconds of CPU at 100k grants, during which the event loop keeps
        serving (checks wait for the snapshot)."""
        index = await asyncio.to_thread(DecisionIndex, rows.rules, rows.links)
        audiences, sensitivities, purpose_required = _dataset_maps(state.datasets)
        return PolicySnapshot(
            state.version,
            index,
            audiences,
            sensitivities,
            purpose_required,
            holds.inactive(rows.rules),
        )

    def carry(
        self, view: PolicySnapshot, change: PolicyChange, state: PolicyState
    ) -> PolicySnapshot:
        return view.carried(change, state)


CHECKS = CheckIndex()


class PolicyCache:
    """The check index of this process's newest policy state (`app.policy.published`)."""

    def __init__(self, states: PolicyStates) -> None:
        self._states = states

    @property
    def loaded(self) -> PolicySnapshot | None:
        """The newest snapshot this process has, without the database (it may be stale)."""
        return self._states.loaded(CHECKS)

    async def current(self, session: AsyncSession) -> PolicySnapshot:
        """The snapshot for the newest committed version (one cheap query when unchanged)."""
        return await self._states.current(session, CHECKS)


def now() -> float:
    return time.time()
