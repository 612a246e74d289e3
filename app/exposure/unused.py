"""Unused access: a finding of kind `unused` for each live allow grant (read or export) that no
allowed read has gone through for ``ACLAUDIT_UNUSED_AFTER_DAYS``, counting from the later of
its creation and its last use (`app.accesslog.usage`); resolved once the grant is used again,
revoked or expired. The sweeper records them (`sweep`), one worker at a time; a revoke
resolves its grant's at once (`resolve_revoked`), as simulating it shows.

Severity is `low` for all: an unused grant is standing access nobody needs, to be cleaned up,
not an exposure. What it would expose beyond a dataset's audience is already an exposure
finding of the same grant, graded by the dataset's sensitivity and the principals it reaches;
grading the unused finding too would count that risk twice.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app import policy_version
from app.accesslog import usage
from app.alerts import service as alerts_service
from app.alerts.schemas import AlertType
from app.exposure import repository
from app.exposure.findings import alert_for
from app.exposure.schemas import FindingKind, FindingRead, FindingStatus, Severity
from app.policy.models import Grant


@dataclass
class UnusedChanges:
    opened: list[FindingRead] = field(default_factory=list)
    resolved: list[FindingRead] = field(default_factory=list)


async def is_due(
    session: AsyncSession, *, now: datetime, after_days: int, looking: bool = True
) -> bool:
    """Whether a sweep has anything to do: reads to fold or, when `looking`, findings to open
    or resolve (reads only, so an idle sweep takes no lock)."""
    cutoff = now - timedelta(days=after_days)
    return await usage.is_behind(session) or (
        looking
        and (
            bool(await repository.newly_unused(session, now, cutoff, limit=1))
            or bool(await repository.no_longer_unused(session, now, cutoff, limit=1))
        )
    )


def _new_row(grant: Grant, last_used_at: datetime | None, now: datetime) -> dict[str, Any]:
    return {
        "kind": FindingKind.unused.value,
        "dataset": grant.resource,
        "grant_id": grant.id,
        "principal": grant.principal,
        "excess_count": 0,
        "excess_sample": [],
        "paths": [],
        "severity": Severity.low.value,
        "status": FindingStatus.open.value,
        "opened_at": now,
        "updated_at": now,
        "resolved_at": None,
        "accepted_by": None,
        "reason": None,
        "until": None,
        "last_used_at": last_used_at,
    }


async def sweep(
    session: AsyncSession, *, now: datetime, after_days: int, looking: bool = True
) -> UnusedChanges:
    """Fold the new log entries into the grants' last use, then (when `looking`) open and
    resolve `unused` findings, with their alerts, in the caller's write transaction.

    Exactly once: the fold locks its cursor row first, so two sweeps (a lease handed over
    mid-tick) take turns, and the second sees what the first wrote; the policy lock (held, not
    advanced) orders it with revokes and acceptances; a partial unique index allows one active
    `unused` finding per grant whatever happens."""
    await usage.fold(session)
    cutoff = now - timedelta(days=after_days)
    changes = UnusedChanges()
    if not looking or not (
        await repository.newly_unused(session, now, cutoff, limit=1)
        or await repository.no_longer_unused(session, now, cutoff, limit=1)
    ):
        return changes
    await policy_version.hold(session)
    resolving = await repository.no_longer_unused(session, now, cutoff)
    await repository.resolve(session, [f.id for f in resolving], now)
    resolved = [_resolved(f, now) for f in resolving]
    due = await repository.newly_unused(session, now, cutoff)
    rows = [_new_row(grant, used, now) for grant, used in due]
    for row, finding_id in zip(rows, await repository.insert_rows(session, rows), strict=True):
        row["id"] = finding_id
    await alerts_service.emit(
        session,
        [alert_for(row, AlertType.finding_opened) for row in rows]
        + [alert_for(row, AlertType.finding_resolved) for row in resolved],
        now,
    )
    changes.opened = [FindingRead.model_validate(row) for row in rows]
    changes.resolved = [FindingRead.model_validate(row) for row in resolved]
    return changes


async def resolve_revoked(
    session: AsyncSession, grant_ids: Sequence[int], now: datetime
) -> list[FindingRead]:
    """Resolve the `unused` findings of grants revoked in this transaction (under its policy
    lock), with their alerts: a revoke answers with them, as `simulate` of it shows them."""
    if not grant_ids:
        return []
    found = await repository.unused_of(session, grant_ids)
    await repository.resolve(session, [f.id for f in found], now)
    rows = [_resolved(f, now) for f in found]
    await alerts_service.emit(
        session, [alert_for(row, AlertType.finding_resolved) for row in rows], now
    )
    return [FindingRead.model_validate(row) for row in rows]


def _resolved(finding: Any, now: datetime) -> dict[str, Any]:
    """The finding's row as `repository.resolve` leaves it."""
    row = {c.name: getattr(finding, c.name) for c in repository.TABLE.c}
    return {**row, "status": FindingStatus.resolved.value, "resolved_at": now, "updated_at": now}
