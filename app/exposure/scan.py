"""Findings re-analysed without a change: a full scan, and the passage of time (grants that
expired, acceptances that lapsed) that the sweeper records."""

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.alerts import service as alerts_service
from app.alerts.schemas import AlertType
from app.alerts.service import AlertEvent
from app.db import utcnow
from app.exposure import repository
from app.exposure.diff import Accepting
from app.exposure.findings import reopen_expired_acceptances
from app.exposure.reconcile import affected_by_resource, bring_in_line, reconcile
from app.exposure.schemas import FindingChanges, FindingRead, ScanResult
from app.exposure.view import publish_on_commit, view_before_change
from app.policy import repository as policy_repository


@dataclass(frozen=True)
class TimeEvents:
    """What the passage of time changed: recorded expiries, reopened acceptances, findings."""

    expired_grants: list[int]
    reopened: list[FindingRead]
    changes: FindingChanges


# Lapsed grants whose expiry one sweeper transaction records at most (the next takes the rest):
# at 100k principals 5 took 1.5 s of re-analysis under the write lock, 50 took 9-13 s
# (bench/history.py's database), and SQLite's other writers wait at most the busy timeout (5 s).
EXPIRE_PAGE = 5
# ... and datasets it re-analyses at most (past them, the grants left wait for the next one; a
# grant is always taken, whatever it covers): the cost is the datasets', not the grants'.
EXPIRE_DATASETS = 20


async def record_time_events(
    session: AsyncSession, *, actor: str, limit: int | None = None
) -> TimeEvents:
    """Record grants whose ``expires_at`` passed (the `limit` first: the sweeper's
    `EXPIRE_PAGE`; None: all) and reopen acceptances whose ``until`` passed.

    Runs under the policy write lock, so concurrent sweepers (and policy writers) take turns
    and each event is recorded once. An expired grant already never allows; here it becomes a
    ``grant.expired`` alert and the datasets it covered are re-analysed, which resolves the
    findings it caused.
    """
    view = await view_before_change(session)
    stamp = utcnow()
    reopened = await reopen_expired_acceptances(session)
    lapsed = await policy_repository.list_lapsed(session, stamp, limit=limit)
    touched: dict[str, None] = {}
    events = []
    taken: list[Any] = []
    for grant in lapsed:
        covered = affected_by_resource(view, grant.resource)
        if limit is not None and taken and len(touched.keys() | set(covered)) > EXPIRE_DATASETS:
            break
        taken.append(grant)
        grant.expired_at = stamp
        touched.update(dict.fromkeys(covered))
        events.append(
            AlertEvent(
                type=AlertType.grant_expired,
                severity="low",
                summary=f"grant {grant.id} ({grant.effect} {grant.principal} {grant.action} "
                f"{grant.resource}) expired at {grant.expires_at:%Y-%m-%dT%H:%M:%SZ}",
                dataset=covered[0] if len(covered) == 1 else None,
            )
        )
    await session.flush()
    await alerts_service.emit(session, events, stamp)
    changes = await reconcile(
        session,
        before=view,
        after=view,
        dataset_ids=touched,
        actor=actor,
        guarded=False,
        now=stamp.timestamp(),
    )
    await publish_on_commit(session, view, actor=actor)
    return TimeEvents([g.id for g in taken], reopened, changes)


async def scan(session: AsyncSession, *, actor: str) -> ScanResult:
    """Full re-analysis of every dataset (also expires lapsed acceptances).

    Recomputes every finding from the committed policy; writes only those that differ, so
    ``opened``, ``resolved`` and ``updated`` are all 0 when the incremental re-analyses of the
    mutations left the findings exactly as a full scan would.
    """
    started = time.perf_counter()
    # The policy lock first, as every writer of findings takes it: reopening rows before it
    # deadlocked with a policy change resolving the same findings.
    view = await view_before_change(session)
    await reopen_expired_acceptances(session)
    written = await bring_in_line(
        session,
        before=view,
        after=view,
        targets=dict.fromkeys(sorted(view.datasets)),
        accepting=Accepting(),
        guarded=False,
        at=time.time(),
        every_dataset=True,
    )
    await publish_on_commit(session, view, actor=actor)
    return ScanResult(
        datasets=len(view.datasets),
        opened=len(written.opened),
        resolved=len(written.resolved),
        updated=written.updated,
        open_findings=await repository.count_open(session),
        duration_ms=round((time.perf_counter() - started) * 1000, 1),
    )
