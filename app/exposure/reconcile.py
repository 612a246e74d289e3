"""Findings brought in line with a policy: load the stored ones, diff (`app.exposure.diff`),
write the diff and its alerts. Every change runs this before its response is sent; on
``guard: block`` datasets a change that lets anyone new in beyond the audience is refused (409,
rolled back) unless the caller accepts the exposure."""

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.acceptance import AcceptExposure, ApprovalRequired
from app.alerts import service as alerts_service
from app.alerts.schemas import AlertType
from app.db import epoch
from app.errors import Conflict
from app.exposure import repository
from app.exposure.analyser import datasets_covered
from app.exposure.diff import Accepting, FindingDiff, diff, run_through
from app.exposure.findings import alert_for
from app.exposure.measure import (
    Acceptance,
    Key,
    Measured,
    Opened,
    Rewritten,
    StoredFinding,
    would_be,
)
from app.exposure.schemas import FindingChanges, FindingKind, FindingRead, FindingStatus
from app.exposure.view import PolicyView
from app.exposure.within import Targets
from app.policy.decision_index import Rule


class ExposureRefused(Conflict):
    slug = "exposure-refused"
    title = "Change would expose a guarded dataset"

    def without_grants(self, grant_ids: Collection[int]) -> "ExposureRefused":
        """The refusal with ``grant_id: null`` on the would-be findings of these grants: grants
        the refused change itself created, whose ids are rolled back with it (and given to
        the next grant made), as `simulate` shows its proposals."""
        findings = [
            {**f, "grant_id": None} if f["grant_id"] in grant_ids else f
            for f in self.extra["findings"]
        ]
        return type(self)(self.detail, **{**self.extra, "findings": findings})


def affected_by_resource(view: PolicyView, resource: str) -> list[str]:
    return datasets_covered(resource, view.datasets)


def affected_by_membership(
    views: Iterable[PolicyView], group: str, among: Collection[str] | None = None
) -> list[str]:
    """Datasets whose exposure may change with `group`'s members: those its grants reach, and
    those whose intended audience it is part of (joining or leaving it moves people in or out);
    only those of `among` when given."""
    found: dict[str, None] = {}
    for view in views:
        ids = view.datasets if among is None else [d for d in among if d in view.datasets]
        audiences = {id: view.datasets[id].audience for id in ids}
        found.update(
            dict.fromkeys(view.analyser.datasets_affected_by_membership(group, ids, audiences))
        )
    return sorted(found)


Plan = Mapping[str, Iterable[Rule]]  # dataset id -> the allow rules whose excess may change


def accepting(accept: AcceptExposure | None, actor: str) -> Accepting:
    """A change's `accept_exposure`, made by `actor` (approved: through `app.approvals`)."""
    if accept is None:
        return Accepting()
    return Accepting(
        Acceptance(accept.accepted_by(actor), accept.reason, accept.until, accept.is_approved)
    )


async def reconcile(
    session: AsyncSession,
    *,
    before: PolicyView,
    after: PolicyView,
    dataset_ids: Iterable[str] = (),
    actor: str,
    accept: AcceptExposure | None = None,
    guarded: bool = True,
    now: float | None = None,
    plan: Plan | None = None,
    touched: int = 0,
    within: int = 0,
    repaths: Iterable[tuple[str, int]] = (),
) -> FindingChanges:
    """Bring the findings of ``dataset_ids`` (every grant on them) and of ``plan`` (only the
    listed grants: a `Reanalysis`' ``grants``) in line with ``after``.

    ``before`` must be the committed state ``after`` was derived from (same leaf numbering), so
    a finding that gains principals is recognised as widened.
    """
    at = epoch() if now is None else now
    merged: dict[str, dict[Rule, None]] = {}
    for dataset, rules in (plan or {}).items():
        merged.setdefault(dataset, {}).update(dict.fromkeys(rules))
    targets: dict[str, tuple[Rule, ...] | None] = {d: tuple(r) for d, r in merged.items()}
    targets.update(dict.fromkeys(dataset_ids))
    targets = {d: rules for d, rules in sorted(targets.items()) if d in after.datasets}
    written = await bring_in_line(
        session,
        before=before,
        after=after,
        targets=targets,
        accepting=accepting(accept, actor),
        guarded=guarded,
        at=at,
        touched=touched,
        within=within,
        repaths=frozenset(repaths),
    )
    return written.changes()


async def load_active(
    session: AsyncSession, targets: Targets, *, brief: bool, every_dataset: bool = False
) -> dict[Key, StoredFinding]:
    """The stored active findings a diff of `targets` needs (`brief`: `repository.BRIEF`)."""
    partial = {d: [int(r.id) for r in rules] for d, rules in targets.items() if rules is not None}
    if every_dataset:
        rows = await repository.active_rows(session, None)
    elif len(partial) < len(targets):  # some datasets whole
        rows = await repository.active_rows(session, list(targets), None, brief=brief)
    else:
        pairs = [(d, g) for d, ids in partial.items() for g in ids]
        rows = await repository.active_pairs(session, pairs, brief=brief)
    return {(row["dataset"], row["grant_id"]): StoredFinding.of(row) for row in rows}


async def bring_in_line(
    session: AsyncSession,
    *,
    before: PolicyView,
    after: PolicyView,
    targets: Targets,
    accepting: Accepting,
    guarded: bool,
    at: float,
    every_dataset: bool = False,
    touched: int = 0,
    within: int = 0,
    repaths: frozenset[Key] = frozenset(),
) -> "Written":
    """Load, diff and write: refused (`ExposureRefused`) where the diff refuses anything."""
    is_change = before is not after
    stored = await load_active(session, targets, brief=is_change, every_dataset=every_dataset)
    found = run_through(
        diff(
            before,
            after,
            targets,
            stored,
            accepting=accepting,
            guarded=guarded,
            at=at,
            touched=touched,
            within=within,
            repaths=repaths,
        )
    )
    if found.refused:
        refused = [would_be(f.id, f.measured) for f in found.refused]
        if accepting.is_unapproved:
            raise ApprovalRequired(
                "accept_exposure on block-guarded datasets "
                f"({', '.join(sorted({f.dataset for f in refused})[:5])}) needs a second "
                "person's approval; it was given directly",
                findings=[f.model_dump(mode="json") for f in refused],
            )
        raise ExposureRefused(
            f"this change would open or widen {len(refused)} finding(s) on block-guarded datasets "
            f"({', '.join(sorted({f.dataset for f in refused})[:5])}): principals outside the "
            "intended audience could read them. Narrow the change, or send accept_exposure "
            "{reason, until} to accept the exposure knowingly",
            findings=[f.model_dump(mode="json") for f in refused],
        )
    return await _write(session, found, datetime.fromtimestamp(at, UTC))


def _resampled(measured: Measured) -> dict[str, Any]:
    """The columns a stored finding's new measure rewrites (`repository.RESAMPLED`)."""
    return {
        "excess_count": measured.excess_count,
        "excess_sample": measured.excess_sample,
        "paths": measured.paths,
        "severity": measured.severity,
    }


def _new_row(opened: Opened, stamp: datetime) -> dict[str, Any]:
    accepted = opened.acceptance
    return {
        **opened.measured.fields(),
        "kind": FindingKind.exposure.value,
        "status": (FindingStatus.open if accepted is None else FindingStatus.accepted).value,
        "opened_at": stamp,
        "updated_at": stamp,
        "resolved_at": None,
        "accepted_by": None if accepted is None else accepted.accepted_by,
        "reason": None if accepted is None else accepted.reason,
        "until": None if accepted is None else accepted.until,
        "last_used_at": None,
    }


def _restatused(change: Rewritten, stored: Mapping[str, Any]) -> dict[str, Any]:
    """A reopened finding keeps its last acceptance's fields; an accepted one takes the
    change's."""
    accepted = change.acceptance
    return {
        **stored,
        **_resampled(change.measured),
        "status": (change.status or FindingStatus.open).value,
        "accepted_by": stored["accepted_by"] if accepted is None else accepted.accepted_by,
        "reason": stored["reason"] if accepted is None else accepted.reason,
        "until": stored["until"] if accepted is None else accepted.until,
    }


@dataclass(frozen=True)
class Written:
    """A diff as written: the rows it opened (with their ids), restated (reopened, accepted
    anew) and resolved, as stored now; and how many stored findings it updated."""

    opened: list[dict[str, Any]]
    reopened: list[dict[str, Any]]
    accepted: list[dict[str, Any]]
    resolved: list[dict[str, Any]]
    updated: int

    def changes(self) -> FindingChanges:
        """Opened: new findings, and stored ones the change widened (open again, or accepted
        anew by the change's own acceptance)."""
        return FindingChanges(
            findings_opened=[
                FindingRead.model_validate(row)
                for row in (*self.opened, *self.reopened, *self.accepted)
            ],
            findings_resolved=[FindingRead.model_validate(row) for row in self.resolved],
        )


async def _write(session: AsyncSession, found: FindingDiff, stamp: datetime) -> Written:
    restated = [row.id for row in found.resolved] + [
        change.id for change in (*found.reopened, *found.accepted)
    ]
    stored = await repository.by_id(session, restated) if restated else {}
    new_rows = [_new_row(opened, stamp) for opened in found.opened]
    # Stored grant by grant (ids follow the insertion order): a membership change rewrites
    # the findings of a few grants on many datasets, which then share pages instead of
    # touching a page each all over the table.
    ordered = sorted(new_rows, key=lambda row: (row["grant_id"], row["dataset"]))
    ids = await repository.insert_rows(session, ordered)
    for row, finding_id in zip(ordered, ids, strict=True):
        row["id"] = finding_id
    await repository.update_rows(
        session, [{"id": c.id, **_resampled(c.measured)} for c in found.rewritten], stamp
    )
    reopened = [_restatused(change, stored[change.id]) for change in found.reopened]
    accepted = [_restatused(change, stored[change.id]) for change in found.accepted]
    columns = ("id", *repository.RESAMPLED, "status", "accepted_by", "reason", "until")
    await repository.update_rows(
        session, [{c: row[c] for c in columns} for row in (*reopened, *accepted)], stamp
    )
    await repository.update_counts(
        session,
        [
            {"id": r.id, "excess_count": r.excess_count}
            if r.severity is None
            else {"id": r.id, "excess_count": r.excess_count, "severity": r.severity}
            for r in found.recounted
        ],
        stamp,
    )
    await repository.resolve(session, [row.id for row in found.resolved], stamp)
    resolved = [
        {
            **stored[row.id],
            "status": FindingStatus.resolved.value,
            "resolved_at": stamp,
            "updated_at": stamp,
        }
        for row in found.resolved
    ]
    events = [
        alert_for(
            row,
            AlertType.finding_accepted
            if row["status"] == FindingStatus.accepted
            else AlertType.finding_opened,
        )
        for row in new_rows
    ]
    events += [alert_for(row, AlertType.finding_reopened) for row in reopened]
    events += [alert_for(row, AlertType.finding_accepted) for row in accepted]
    events += [alert_for(row, AlertType.finding_resolved) for row in resolved]
    await alerts_service.emit(session, events, stamp)
    return Written(new_rows, reopened, accepted, resolved, found.updated)
