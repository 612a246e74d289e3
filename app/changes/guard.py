"""Changing a dataset's guard is itself a guarded change.

Lowering `block` to `alert` switches the guard off for every change after it (a grant to the
whole company lands, and raising the guard again would leave it standing); raising `alert` to
`block` over open findings makes a block dataset with exposure nobody accepted. Both are
refused (409) unless the change carries `accept_exposure`; with it, the dataset's open findings
become accepted with its reason and expiry. Every guard change raises `dataset.guard_changed`.

A change is judged in two steps around its re-analysis: `prepare` before (under the policy
lock, what the datasets' guards and findings were), `settle` after (what is open now).
"""

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from app.acceptance import AcceptExposure, ApprovalRequired
from app.alerts import service as alerts_service
from app.alerts.schemas import AlertType
from app.alerts.service import AlertEvent
from app.changes.schemas import GuardChangeRead
from app.datasets.schemas import Guard
from app.db import utcnow
from app.exposure import repository as exposure_repository
from app.exposure.findings import finding_alert, to_read
from app.exposure.reconcile import ExposureRefused
from app.exposure.schemas import FindingRead, FindingStatus


class GuardChangeRefused(ExposureRefused):
    slug = "guard-change-refused"
    title = "Guard change needs an accepted exposure"


@dataclass(frozen=True)
class Shift:
    dataset: str
    old: Guard
    new: Guard

    @property
    def is_lowering(self) -> bool:
        return self.old is Guard.block


@dataclass(frozen=True)
class Pending:
    """The guard changes a change makes, and the findings active before it (their ids)."""

    shifts: tuple[Shift, ...] = ()
    known: frozenset[int] = frozenset()


async def prepare(session: AsyncSession, moves: Mapping[str, tuple[str, Guard]]) -> Pending:
    """`moves`: dataset id -> (stored guard, guard asked for), for existing datasets. Call it
    under the policy write lock, before the change's re-analysis."""
    shifts = tuple(
        Shift(dataset, Guard(old), new)
        for dataset, (old, new) in sorted(moves.items())
        if Guard(old) is not new
    )
    if not shifts:
        return Pending()
    known = await exposure_repository.active_ids(session, [s.dataset for s in shifts])
    return Pending(shifts, frozenset(known))


async def settle(
    session: AsyncSession,
    pending: Pending,
    *,
    accept: AcceptExposure | None,
    actor: str,
    refuse: bool = True,
) -> list[GuardChangeRead]:
    """Judge the guard changes once the change's findings are written.

    Refused (`GuardChangeRefused`, listing the findings; a finding the refused change itself
    opened has no id) where acceptance is needed and missing, unless `refuse` is False (a plan
    reports it, the demo loader records it). Accepted: the open findings become accepted and
    raise `finding.accepted`. Each change raises one `dataset.guard_changed`.
    """
    if not pending.shifts:
        return []
    found = await exposure_repository.open_on(session, [s.dataset for s in pending.shifts])
    by_dataset: dict[str, list[FindingRead]] = {}
    rows = {}
    for finding in found:
        by_dataset.setdefault(finding.dataset, []).append(to_read(finding))
        rows[finding.id] = finding
    changes = []
    needing = []
    for shift in pending.shifts:
        findings = by_dataset.get(shift.dataset, [])
        needed = shift.is_lowering or bool(findings)
        change = GuardChangeRead(
            dataset=shift.dataset,
            old_guard=shift.old,
            new_guard=shift.new,
            refused=needed and accept is None,
            findings=findings,
        )
        changes.append(change)
        if needed:
            needing.append(change)
    refused = [c for c in changes if c.refused]
    if refused and refuse:
        raise _refusal(refused, pending.known)
    if needing and refuse and accept is not None and not accept.is_approved:
        # Lowering a block guard, or raising one over open findings: both accept exposure on
        # a block-guarded dataset, which takes a second person.
        moves = ", ".join(f"{c.dataset} {c.old_guard} -> {c.new_guard}" for c in needing[:5])
        raise ApprovalRequired(
            f"accepting the exposure of a guard change ({moves}) needs a second person's "
            "approval; it was given directly"
        )
    events = [_alert(shift, actor, accept) for shift in pending.shifts]
    if accept is not None:
        stamp = utcnow()
        for change in changes:
            accepted = []
            for read in change.findings:
                assert read.id is not None
                row = rows[read.id]
                row.status = FindingStatus.accepted.value
                row.accepted_by = accept.accepted_by(actor)
                row.reason, row.until = accept.reason, accept.until
                row.updated_at = stamp
                accepted.append(to_read(row))
            change.findings = accepted
            events += [finding_alert(f, AlertType.finding_accepted) for f in accepted]
        await session.flush()
    await alerts_service.emit(session, events)
    return changes


def _refusal(refused: list[GuardChangeRead], known: frozenset[int]) -> GuardChangeRefused:
    moves = ", ".join(f"{c.dataset} {c.old_guard} -> {c.new_guard}" for c in refused[:5])
    findings = [
        f.model_dump(mode="json") if f.id in known else {**f.model_dump(mode="json"), "id": None}
        for c in refused
        for f in c.findings
    ]
    return GuardChangeRefused(
        f"changing the guard ({moves}) needs accept_exposure {{reason, until}}: lowering a "
        "block guard lets later changes widen the dataset unrefused, and raising one over open "
        f"findings ({len(findings)} here) leaves exposure nobody accepted. Send "
        "accept_exposure to make the change knowingly (the open findings become accepted)",
        findings=findings,
        guard_changes=[c.model_dump(mode="json", exclude={"findings"}) for c in refused],
    )


def _alert(shift: Shift, actor: str, accept: AcceptExposure | None) -> AlertEvent:
    verb = "lowered" if shift.is_lowering else "raised"
    accepted = (
        f"; exposure accepted: {accept.reason} (until {accept.until:%Y-%m-%dT%H:%M:%SZ})"
        if accept is not None
        else ""
    )
    return AlertEvent(
        type=AlertType.dataset_guard_changed,
        severity="high" if shift.is_lowering else "low",
        summary=f"guard of {shift.dataset} {verb} from {shift.old} to {shift.new} by "
        f"{actor}{accepted}",
        dataset=shift.dataset,
    )
