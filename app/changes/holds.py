"""Holds in a policy change: what the IdP's changes would widen is held back, and holds are
released once their principal joins the dataset's intended audience.

A change by the IdP is never refused (it is the truth about who is in which group). Where it
would let a principal into a grant's excess on a `block`-guarded dataset (now, or once the
denies that expire have; the guard's test), that principal gets a `guard` hold on that dataset:
a deny rule, so the change widens nothing there and the guard has nothing to refuse. Any change
(by the IdP or the API) that moves a held principal into the dataset's intended audience
releases the hold: the principal is meant to read it.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app.alerts import service as alerts_service
from app.alerts.schemas import AlertType
from app.alerts.service import AlertEvent
from app.exposure.measure import excess_of
from app.exposure.view import PolicyView
from app.holds import repository as holds_repository
from app.holds.models import Hold
from app.holds.schemas import HoldKind, HoldRead
from app.policy.casbin_model import ALLOW, Rule
from app.policy.holds import EVERYTHING, hold_rules, is_hold
from app.policy.state import PolicyChange

AUDIENCE_JOINED = "the principal joined the dataset's intended audience"
REACTIVATED = "the IdP re-activated the user"


@dataclass(frozen=True)
class HoldChanges:
    """The holds a change opened and released, and the rules that makes them."""

    change: PolicyChange = field(default_factory=PolicyChange)
    opened: list[Hold] = field(default_factory=list)
    released: list[Hold] = field(default_factory=list)

    @property
    def datasets(self) -> list[str]:
        """The datasets whose holds changed (their findings are re-analysed whole)."""
        return sorted({h.dataset for h in (*self.opened, *self.released) if h.dataset != "*"})

    def reads(self) -> tuple[list[HoldRead], list[HoldRead]]:
        return (
            [HoldRead.model_validate(h) for h in self.opened],
            [HoldRead.model_validate(h) for h in self.released],
        )


def held_datasets(view: PolicyView) -> set[str]:
    """The datasets that have guard holds in `view` (their deny rules): the only ones whose
    holds a change may release."""
    return view.analyser.held_datasets(is_hold) - {EVERYTHING}


def widened(
    before: PolicyView, after: PolicyView, plan: Mapping[str, Iterable[Rule]], at: float
) -> dict[str, list[str]]:
    """Block-guarded dataset -> the principals `after` lets into the excess of a grant of
    `plan` (the grants whose excess may have changed) that `before` did not, now or in the
    worst case over time. `after` must derive from `before`."""
    found: dict[str, list[str]] = {}
    for dataset, planned in plan.items():
        facts = after.datasets.get(dataset)
        rules = tuple(rule for rule in planned if rule.eft == ALLOW)
        if facts is None or facts.guard != "block" or not rules:
            continue
        new = 0
        for lasting in (False, True):
            now = excess_of(after, dataset, rules, at, lasting).bits
            was: dict[int, tuple[int, int]] = {}
            if dataset in before.datasets:
                was = excess_of(before, dataset, rules, at, lasting).bits
            for grant_id, (bits, _count) in now.items():
                new |= bits & ~was.get(grant_id, (0, 0))[0]
        if new:
            found[dataset] = after.analyser.directory.names(new)
    return found


async def settle(
    session: AsyncSession,
    *,
    before: PolicyView,
    after: PolicyView,
    datasets: Iterable[str],
    plan: Mapping[str, Iterable[Rule]],
    actor: str,
    holding: bool,
    group: str | None = None,
    at: float,
) -> tuple[PolicyView, HoldChanges]:
    """`after` with the holds the change needs: where `holding` (an IdP change), new ones for
    what it widens through the grants of `plan` on block-guarded datasets; and the holds on
    `datasets` whose principal is now in the intended audience, released (only those of
    `held_datasets(after)` can have any). Written and alerted;
    the view returned carries their rules."""
    datasets = sorted(set(datasets))
    stamp = datetime.fromtimestamp(at, UTC)
    released = await _releasable(session, after, datasets)
    await holds_repository.release(session, released, at=stamp, by=actor, reason=AUDIENCE_JOINED)
    opened: list[Hold] = []
    if holding:
        for dataset, principals in widened(before, after, plan, at).items():
            opened += [
                Hold(
                    kind=HoldKind.guard.value,
                    principal=principal,
                    dataset=dataset,
                    group_id=group,
                    created_at=stamp,
                    created_by=actor,
                )
                for principal in principals
            ]
        await holds_repository.add(session, opened)
    changes = HoldChanges(
        PolicyChange(
            added=tuple(r for h in opened for r in hold_rules(h.id, h.principal, h.dataset)),
            removed=tuple(r for h in released for r in hold_rules(h.id, h.principal, h.dataset)),
        ),
        opened,
        released,
    )
    await _alert(session, changes, stamp)
    if not opened and not released:
        return after, changes
    return after.changed(changes.change), changes


async def _releasable(session: AsyncSession, after: PolicyView, datasets: list[str]) -> list[Hold]:
    if not datasets:
        return []
    held = await holds_repository.active_on(session, kind=HoldKind.guard.value, datasets=datasets)
    directory = after.analyser.directory
    intended: dict[str, int] = {}
    found = []
    for hold in held:
        facts = after.datasets.get(hold.dataset)
        if facts is None:
            continue
        if hold.dataset not in intended:
            intended[hold.dataset] = after.analyser.intended_bits(facts.audience)
        if directory.leaf_bits(hold.principal) & intended[hold.dataset]:
            found.append(hold)
    return found


async def deactivate(
    session: AsyncSession, *, principal: str, actor: str, at: float
) -> HoldChanges:
    """An `inactive` hold on everything for `principal` (none if it has one)."""
    held = await holds_repository.active_on(
        session, kind=HoldKind.inactive.value, principals=[principal]
    )
    if held:
        return HoldChanges()
    hold = Hold(
        kind=HoldKind.inactive.value,
        principal=principal,
        dataset=EVERYTHING,
        group_id=None,
        created_at=datetime.fromtimestamp(at, UTC),
        created_by=actor,
    )
    await holds_repository.add(session, [hold])
    return HoldChanges(PolicyChange(added=hold_rules(hold.id, principal, EVERYTHING)), [hold])


async def reactivate(
    session: AsyncSession, *, principal: str, actor: str, at: float
) -> HoldChanges:
    """`principal`'s `inactive` hold released (none if it has none)."""
    held = await holds_repository.active_on(
        session, kind=HoldKind.inactive.value, principals=[principal]
    )
    stamp = datetime.fromtimestamp(at, UTC)
    await holds_repository.release(session, held, at=stamp, by=actor, reason=REACTIVATED)
    rules = tuple(r for h in held for r in hold_rules(h.id, h.principal, h.dataset))
    return HoldChanges(PolicyChange(removed=rules), released=list(held))


async def _alert(session: AsyncSession, changes: HoldChanges, stamp: datetime) -> None:
    events = [
        AlertEvent(
            type=AlertType.access_held,
            severity="high",
            summary=f"{h.principal} held off {h.dataset}: joining {h.group_id or 'a group'} "
            "(by the IdP) would have let them read it from outside its intended audience; "
            "the membership stands, the access does not",
            dataset=h.dataset,
        )
        for h in changes.opened
    ]
    events += [
        AlertEvent(
            type=AlertType.access_released,
            severity="low",
            summary=f"hold of {h.principal} on {h.dataset} released: {h.release_reason}",
            dataset=h.dataset,
        )
        for h in changes.released
    ]
    if events:
        await alerts_service.emit(session, events, stamp)
