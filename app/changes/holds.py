"""Holds in a policy change: what the IdP's changes would widen is held back, and holds are
released once their principal joins the dataset's intended audience.

A change by the IdP is never refused (it is the truth about who is in which group). Where it
would let a principal read (or export) a `block`-guarded dataset from outside its audience who
could not before (now, or once the denies that expire have), that principal gets a `guard` hold
on that dataset: deny rules for the reading actions, so nobody new reads it. A hold lasts while
it is needed: any change (by the IdP or the API) after which its principal would no longer be
let in without it (they joined the audience, or left the group) releases it.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app import policy_version
from app.acceptance import AcceptExposure
from app.alerts import service as alerts_service
from app.alerts.schemas import AlertType
from app.alerts.service import AlertEvent
from app.db import utcnow
from app.errors import Conflict, NotFound
from app.exposure.measure import excess_of
from app.exposure.reconcile import reconcile
from app.exposure.schemas import FindingChanges
from app.exposure.view import PolicyView, publish_on_commit, view_before_change
from app.holds import repository as holds_repository
from app.holds.models import Hold
from app.holds.schemas import HoldKind, HoldRead
from app.policy.holds import EVERYTHING, hold_rules, is_hold, rules_of
from app.policy.state import PolicyChange

AUDIENCE_JOINED = "the principal joined the dataset's intended audience"
UNREACHED = "no grant reaches the principal there any more"
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


def guarded_datasets(view: PolicyView) -> set[str]:
    """The only datasets whose holds a change may open or release: the `block`-guarded ones,
    and those with guard holds in `view` (their deny rules)."""
    held = view.analyser.held_datasets(is_hold) - {EVERYTHING}
    return held | {id for id, facts in view.datasets.items() if facts.guard == "block"}


def newly_readable(
    before: PolicyView, after: PolicyView, datasets: Iterable[str], at: float
) -> dict[str, int]:
    """Block-guarded dataset -> the leaves (bits of `after`) outside its audience that `after`
    lets read (or export) it and `before` did not, now or in the worst case over time (the
    denies that expire not counted). Leaves that could already read it are not new: a second
    way in widens no one's access. `after` must derive from `before`."""
    found: dict[str, int] = {}
    for dataset in datasets:
        facts = after.datasets.get(dataset)
        if facts is None or facts.guard != "block":
            continue
        new = 0
        for lasting in (False, True):
            now = _excess(after, dataset, at, lasting)
            if now and dataset in before.datasets:
                now &= ~_excess(before, dataset, at, lasting)
            new |= now
        if new:
            found[dataset] = new
    return found


def _excess(view: PolicyView, dataset: str, at: float, lasting: bool) -> int:
    bits = 0
    for excess, _count in excess_of(view, dataset, None, at, lasting).bits.values():
        bits |= excess
    return bits


async def settle(
    session: AsyncSession,
    *,
    before: PolicyView,
    after: PolicyView,
    datasets: Iterable[str],
    actor: str,
    holding: bool,
    group: str | None = None,
    at: float,
) -> tuple[PolicyView, HoldChanges]:
    """`after` with the guard holds on `datasets` (those the change may alter) brought in line:
    a hold stays while its principal, without it, would be newly let into the dataset from
    outside its audience; the others are released (joined the audience, or no longer reached).
    Where `holding` (an IdP change), everyone else the change newly lets in is held too.
    Written and alerted; the view returned carries the rules of the holds changed."""
    datasets = sorted(set(datasets))
    held: list[Hold] = []
    if datasets:
        kind = HoldKind.guard.value
        held = list(await holds_repository.active_on(session, kind=kind, datasets=datasets))
    unheld = after
    if held:
        rules = tuple(rules_of((h.id, h.principal, h.dataset) for h in held))
        unheld = after.changed(PolicyChange(removed=rules))
    blocked = [d for d in datasets if d in after.datasets and after.datasets[d].guard == "block"]
    new = newly_readable(before, unheld, blocked, at) if (held or holding) else {}
    directory = unheld.analyser.directory
    released: dict[str, list[Hold]] = {}
    kept: set[tuple[str, str]] = set()
    for hold in held:
        if directory.leaf_bits(hold.principal) & new.get(hold.dataset, 0):
            kept.add((hold.principal, hold.dataset))
        else:
            facts = after.datasets.get(hold.dataset)
            joined = facts is not None and _in_audience(unheld, hold.principal, facts.audience)
            released.setdefault(AUDIENCE_JOINED if joined else UNREACHED, []).append(hold)
    stamp = datetime.fromtimestamp(at, UTC)
    for reason, holds in released.items():
        await holds_repository.release(session, holds, at=stamp, by=actor, reason=reason)
    opened: list[Hold] = []
    if holding:
        for dataset, bits in new.items():
            opened += [
                Hold(
                    kind=HoldKind.guard.value,
                    principal=principal,
                    dataset=dataset,
                    group_id=group,
                    created_at=stamp,
                    created_by=actor,
                )
                for principal in directory.names(bits)
                if (principal, dataset) not in kept
            ]
        await holds_repository.add(session, opened)
    gone = [h for holds in released.values() for h in holds]
    changes = HoldChanges(
        PolicyChange(
            added=tuple(rules_of((h.id, h.principal, h.dataset) for h in opened)),
            removed=tuple(rules_of((h.id, h.principal, h.dataset) for h in gone)),
        ),
        opened,
        gone,
    )
    await _alert(session, changes, stamp)
    if not opened and not gone:
        return after, changes
    return after.changed(changes.change), changes


def _in_audience(view: PolicyView, principal: str, audience: Iterable[str]) -> bool:
    return bool(
        view.analyser.directory.leaf_bits(principal) & view.analyser.intended_bits(audience)
    )


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
    rules = tuple(rules_of((h.id, h.principal, h.dataset) for h in held))
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


async def release_hold(
    session: AsyncSession, *, hold_id: int, actor: str, accept: AcceptExposure
) -> tuple[HoldRead, FindingChanges]:
    """Release a guard hold with an approved acceptance (`app.approvals`): its principal may
    read the dataset through the grant the hold kept them from, and the finding that opens is
    accepted with it. An `inactive` hold is the IdP's to lift (409)."""
    before = await view_before_change(session)
    await policy_version.advance(session)
    hold = await holds_repository.get(session, hold_id)
    if hold is None:
        raise NotFound(f"hold {hold_id} does not exist")
    if hold.released_at is not None:
        raise Conflict(f"hold {hold_id} was released already ({hold.release_reason})")
    if hold.kind != HoldKind.guard.value:
        raise Conflict(
            f"hold {hold_id} holds an inactive user off everything: the IdP re-activates users"
        )
    reason = f"exposure accepted (approval {accept.approval_id}): {accept.reason}"
    stamp = utcnow()
    await holds_repository.release(
        session, [hold], at=stamp, by=accept.accepted_by(actor), reason=reason
    )
    released = HoldChanges(
        PolicyChange(removed=tuple(hold_rules(hold.id, hold.principal, hold.dataset))),
        released=[hold],
    )
    after = before.changed(released.change)
    changes = await reconcile(
        session, before=before, after=after, dataset_ids=[hold.dataset], actor=actor, accept=accept
    )
    await _alert(session, released, stamp)
    await publish_on_commit(session, after, actor=actor)
    return HoldRead.model_validate(hold), changes
