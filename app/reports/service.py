"""The incident report: for every dataset a pattern names, the windows of the period in which it
was readable beyond its audience (and the changes, and people, that opened and closed them),
who could read it, who did, and the access log's integrity over the period.

The windows come from `app.reports.walk` (one rebuild at `since`, then the history replayed
forward: see its docstring for the cost). Who did comes from the access log in the database;
archived entries are counted from their segments' records, not listed per principal.
"""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app import policy_version
from app.accesslog import service as accesslog_service
from app.accesslog.integrity import is_outage
from app.accesslog.models import AccessLogCheckpoint
from app.accesslog.range_verifier import RangeVerified
from app.db import utcnow
from app.errors import InvalidInput
from app.exposure.analyser import ExposureAnalyser
from app.exposure.view import ANALYSER
from app.identifiers import is_dataset_id
from app.policy.history import service as history_service
from app.reports import repository
from app.reports.schemas import (
    CheckpointAnchor,
    CouldRead,
    DatasetReport,
    DidRead,
    ExposureReport,
    IntegrityRead,
    PolicyChangeRead,
    PurposeCount,
    WhoCould,
    WhoDid,
    WindowRead,
)
from app.reports.walk import Change, Step, Timeline, Window, walk

Progress = Callable[[str, int, int], None]  # (stage, done, total)
# Verifies the access log's entries first..last (first None: none) and their link to the head:
# `Integrity.verify_range`.
VerifyRange = Callable[[int | None, int], Awaitable[RangeVerified]]
CURSOR_SEPARATOR = ","  # in neither dataset ids nor principal ids


@dataclass(frozen=True)
class Period:
    since: datetime
    until: datetime


async def period_of(
    session: AsyncSession, since: datetime | None, until: datetime | None
) -> Period:
    """`until` defaults to now and may not be in the future; `since` to where the history
    starts (or `until`, before any); `since` after `until` is refused."""
    now = utcnow()
    if until is None:
        until = now
    elif until > now:
        raise InvalidInput("query.until", "is in the future: the policy then is not known yet")
    if since is None:
        since = min(await repository.first_history_at(session) or until, until)
    elif since > until:
        raise InvalidInput("query.since", f"is after until ({until.isoformat()})")
    return Period(since, until)


def parse_cursor(cursor: str | None) -> tuple[str, str] | None:
    if cursor is None:
        return None
    dataset, separator, principal = cursor.partition(CURSOR_SEPARATOR)
    if not separator or not is_dataset_id(dataset) or not principal:
        raise InvalidInput("query.cursor", "is not a next_cursor this report returned")
    return dataset, principal


def _change(change: Change, step: Step) -> PolicyChangeRead:
    by = change.by or step.by
    base = {"version": step.version, "at": step.at, "by": by}
    if change.kind == "grant":
        rule = change.item[0]  # the grant's rules differ only in their purposes
        kind = "grant_added" if change.opened else "grant_revoked"
        return PolicyChangeRead(
            kind=kind,
            grant_id=int(rule.id),
            principal=rule.sub,
            resource=rule.obj,
            effect=rule.eft,
            **base,
        )
    if change.kind == "hold":
        hold_id, principal, dataset = change.item
        kind = "hold_placed" if change.opened else "hold_released"
        return PolicyChangeRead(
            kind=kind, hold_id=hold_id, principal=principal, resource=dataset, **base
        )
    if change.kind == "membership":
        member, group = change.item
        kind = "member_added" if change.opened else "member_removed"
        return PolicyChangeRead(kind=kind, member=member, group=group, **base)
    dataset, audience = change.item
    if change.opened:
        return PolicyChangeRead(kind="audience_set", resource=dataset, audience=[*audience], **base)
    return PolicyChangeRead(kind="dataset_unregistered", resource=dataset, **base)


def _changes(step: Step | None) -> list[PolicyChangeRead]:
    if step is None:
        return []
    if step.expired is not None:
        return [
            PolicyChangeRead(
                kind="grant_expired", version=None, at=step.at, by=None, grant_id=step.expired
            )
        ]
    reopened = {c.item[0] for c in step.changes if c.kind == "dataset" and c.opened}
    return [
        _change(c, step)
        for c in step.changes
        if not (c.kind == "dataset" and not c.opened and c.item[0] in reopened)
    ]


def _window(window: Window) -> WindowRead:
    return WindowRead(
        start=window.start,
        end=window.end,
        open_at_since=window.from_start,
        peak_excess=window.peak,
        peak_at=window.peak_at,
        opened_by=_changes(window.opened),
        closed_by=_changes(window.closed),
    )


async def _who_did(session: AsyncSession, dataset: str, period: Period) -> WhoDid:
    since, until = period.since, period.until
    purposes: dict[str, list[PurposeCount]] = {}
    for principal, purpose, reads in await repository.purposes_by_principal(
        session, dataset, since, until
    ):
        purposes.setdefault(principal, []).append(PurposeCount(purpose=purpose, reads=reads))
    rows = await repository.reads_by_principal(session, dataset, since, until)
    archived = await repository.archives_overlapping(session, since, until)
    return WhoDid(
        principals=[
            DidRead(
                principal=principal,
                reads=total,
                allowed=allowed,
                out_of_audience=outside,
                first_at=first,
                last_at=last,
                purposes=sorted(
                    purposes.get(principal, []), key=lambda p: (-p.reads, p.purpose or "")
                ),
            )
            for principal, total, allowed, outside, first, last in rows
        ],
        archived_out_of_audience_reads=sum(
            int(a.out_of_audience_reads.get(dataset, 0)) for a in archived
        ),
    )


def _anchor(checkpoint: AccessLogCheckpoint | None) -> CheckpointAnchor | None:
    if checkpoint is None:
        return None
    return CheckpointAnchor(
        entry_id=checkpoint.entry_id,
        head_hash=checkpoint.head_hash,
        at=checkpoint.at,
        signature=checkpoint.signature,
    )


async def _anchors(
    session: AsyncSession, first: int | None, last: int | None
) -> tuple[CheckpointAnchor | None, CheckpointAnchor | None, str | None]:
    """The checkpoints before and covering the period, read as the verifier reads rows: one
    stored in a form the service never writes is tampering (no anchors, and why), not a 500."""
    try:
        before = None if first is None else await repository.checkpoint_before(session, first)
        covering = None if last is None else await repository.checkpoint_covering(session, last)
        return _anchor(before), _anchor(covering), None
    except Exception as exc:
        if is_outage(exc):
            raise
        return (
            None,
            None,
            (
                f"a checkpoint around the period could not be read ({type(exc).__name__}): it is "
                "stored in a form the service never writes"
            ),
        )


async def _integrity(session: AsyncSession, verify: VerifyRange, period: Period) -> IntegrityRead:
    """The log verified over the period's entries (see `VerifyRange`), with its anchors."""
    first, last = await repository.entry_range(session, period.since, period.until)
    verified = await verify(first, last or 0)
    log = verified.result
    before, covering, unreadable = await _anchors(session, first, last)
    archived = await repository.archives_overlapping(session, period.since, period.until)
    return IntegrityRead(
        ok=log.ok and unreadable is None,
        entries=log.entries,
        head=log.head,
        head_id=log.head_id,
        head_signed=log.head_signed,
        first_bad_id=log.first_bad_id,
        problem=log.problem or unreadable,
        verified_after=verified.after if verified.through else None,
        verified_through=verified.through or None,
        period_first_entry=first,
        period_last_entry=last,
        checkpoint_before=before,
        checkpoint_covering=covering,
        signed_checkpoints=verified.signed_checkpoints,
        archived_through=await accesslog_service.archived_through(session),
        archived_segments=[a.segment for a in archived],
    )


async def _timelines(
    session: AsyncSession, datasets: list[str], period: Period, progress: Progress | None
) -> tuple[list[Timeline], int]:
    """The datasets' timelines over the period, and how many versions were walked."""
    first = await policy_version.version_at(session, period.since)
    last = await policy_version.version_at(session, period.until) or 0
    if first is not None:
        view = await history_service.view_at(session, period.since, ANALYSER)
        analyser, facts = await asyncio.to_thread(view.analyser.copy), view.datasets
    else:
        analyser, facts = ExposureAnalyser([], []), {}
    timelines = [Timeline(d, facts[d].audience if d in facts else None) for d in datasets]
    versions = await repository.versions_between(session, first or 0, last)
    changes = dict(await repository.changes_between(session, -1 if first is None else first, last))
    if first is None and versions:
        # `since` is before the history: the policy is empty until the first recorded version,
        # where the rows from version 0 (a migrated database's policy) open, before its own
        opened = changes.pop(0, [])
        changes[versions[0][0]] = [*opened, *changes.get(versions[0][0], [])]
    expiries = await repository.expiries_between(session, period.since, period.until, last)
    report = None if progress is None else (lambda done, total: progress("walked", done, total))
    await asyncio.to_thread(
        walk,
        analyser,
        timelines,
        since=period.since,
        until=period.until,
        versions=versions,
        changes=changes,
        expiries=expiries,
        progress=report,
    )
    return timelines, len(versions)


def _could(
    timelines: list[Timeline], after: tuple[str, str] | None, limit: int | None
) -> tuple[dict[str, list[CouldRead]], str | None]:
    """A page of (dataset, principal) pairs in that order, after `after`, at most `limit`."""
    page: dict[str, list[CouldRead]] = {t.dataset: [] for t in timelines}
    taken = 0
    for timeline in timelines:
        for principal in sorted(timeline.first_exposed):
            if after is not None and (timeline.dataset, principal) <= after:
                continue
            if limit is not None and taken == limit:
                return page, _last(page)
            page[timeline.dataset].append(
                CouldRead(
                    principal=principal,
                    first_exposed_at=timeline.first_exposed[principal],
                    at_until=principal in timeline.excess_names,
                )
            )
            taken += 1
    return page, None


def _last(page: dict[str, list[CouldRead]]) -> str:
    dataset = next(d for d in reversed(page) if page[d])
    return f"{dataset}{CURSOR_SEPARATOR}{page[dataset][-1].principal}"


async def exposure_report(
    session: AsyncSession,
    *,
    pattern: str,
    since: datetime | None,
    until: datetime | None,
    verify: VerifyRange,
    cursor: str | None = None,
    limit: int | None = None,
    progress: Progress | None = None,
) -> ExposureReport:
    """The report for the datasets matching `pattern` over [since, until]; `limit` who-could
    principals after `cursor` (None: all of them). No dataset matching: no dataset reports
    (the integrity statement still stands)."""
    after = parse_cursor(cursor)
    period = await period_of(session, since, until)
    datasets = await repository.datasets_in(session, pattern, period.since, period.until)
    timelines, walked = await _timelines(session, datasets, period, progress)
    page, next_cursor = _could(timelines, after, limit)
    reports = []
    for done, timeline in enumerate(timelines, 1):
        reports.append(
            DatasetReport(
                dataset=timeline.dataset,
                registered_at_until=timeline.audience is not None,
                windows=[_window(w) for w in timeline.windows],
                who_could=WhoCould(
                    effective_at_until=timeline.effective_count,
                    intended_at_until=timeline.intended_count,
                    excess_at_until=timeline.excess_count,
                    peak_excess=timeline.peak,
                    peak_at=timeline.peak_at,
                    ever_excess=len(timeline.first_exposed),
                    principals=page[timeline.dataset],
                ),
                who_did=await _who_did(session, timeline.dataset, period),
                policy_versions_walked=walked,
                measurements=timeline.measurements,
            )
        )
        if progress is not None:
            progress("reads", done, len(timelines))
    return ExposureReport(
        pattern=pattern,
        since=period.since,
        until=period.until,
        generated_at=utcnow(),
        datasets=reports,
        integrity=await _integrity(session, verify, period),
        next_cursor=next_cursor,
    )
