"""Time-driven events: one worker at a time, across every process and replica: grant expiry,
lapsed acceptances, guard holds back after break-glass (`app.approvals.breakglass`), unused
grants (`app.exposure.unused`) and the integrity check.

Each worker runs a :class:`Sweeper` task. On every tick it tries to take (or renew) the
``sweeper`` lease row; only the holder works. The work itself is also safe to run twice: it
happens under the policy write lock and records what it did (``grants.expired_at``, finding
status), so a lease handed over mid-tick repeats nothing. Before the lease, every worker keeps
the access log's partitions ahead of its head (PostgreSQL; see `app.accesslog.partitions`).
The integrity check verifies every hash chain in full (see `app.accesslog.integrity` for how
its failures are alerted).
"""

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.accesslog import partitions, usage
from app.accesslog.integrity import SWEEPER, Integrity
from app.approvals import breakglass
from app.approvals import repository as approvals_repository
from app.approvals.breakglass import RESTORE_LEAD_TICKS
from app.auth.refusals import Refusals
from app.config import Settings
from app.db import begin_write, utcnow
from app.exposure import repository as exposure_repository
from app.exposure import scan as exposure_scan
from app.exposure import unused
from app.exposure import view as exposure_view
from app.operations import repository
from app.policy import repository as policy_repository

logger = logging.getLogger("aclaudit.sweeper")

LEASE = "sweeper"
ACTOR = "sweeper"
STOP_GRACE_SECONDS = 2.0
# Unused access is counted in days: looking for it (~30-80 ms of queries with 50k grants,
# measured on SQLite and PostgreSQL) once a minute, not every tick, is soon enough.
UNUSED_EVERY_SECONDS = 60.0
# No tick holds the write lock long (SQLite's writers wait at most the busy timeout, 5 s, then
# fail): lapsed grants are expired `scan.EXPIRE_PAGE` a transaction and reads folded
# `usage.FOLD_PAGE` a transaction, the write lock free between them; a tick does at most
# this many of each (the rest on the next tick).
TIME_EVENT_TRANSACTIONS = 100
FOLD_TRANSACTIONS = 100


@dataclass
class SweepReport:
    is_holder: bool = False
    expired_grants: list[int] = field(default_factory=list)
    reopened: list[int] = field(default_factory=list)
    opened: list[int] = field(default_factory=list)
    resolved: list[int] = field(default_factory=list)
    # `unused` findings opened and resolved (`app.exposure.unused`)
    unused_opened: list[int] = field(default_factory=list)
    unused_resolved: list[int] = field(default_factory=list)
    integrity_ok: bool | None = None  # None: not checked this tick
    partitions_made: list[str] = field(default_factory=list)  # the access log's, PostgreSQL
    # break-glass windows whose set-aside guard holds were restored
    break_glass_closed: list[int] = field(default_factory=list)


class Sweeper:
    def __init__(
        self,
        maker: async_sessionmaker[AsyncSession],
        settings: Settings,
        integrity: Integrity | None = None,
        refusals: Refusals | None = None,
        unused_every: float = UNUSED_EVERY_SECONDS,
    ) -> None:
        self._maker = maker
        self._refusals = refusals
        # The worker's own (shared with its verify endpoint: callers and the sweeper in turn).
        self._integrity = integrity or Integrity(maker, settings)
        self._interval = settings.sweep_interval_seconds
        self._integrity_interval = settings.integrity_interval_seconds
        # A holder that stops renewing (killed) is replaced after this long.
        self._lease_ttl = timedelta(seconds=max(10.0, 5 * self._interval))
        self._settings = settings
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._integrity_due = time.monotonic() + self._interval
        self._unused_every = unused_every
        self._unused_due = time.monotonic()  # the first tick looks
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._has_held = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="sweeper")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            # A long integrity check must not hold up shutdown: its work is transactional.
            await asyncio.wait({self._task}, timeout=STOP_GRACE_SECONDS)
            if not self._task.done():
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        await self.flush_refusals()
        if not self._has_held:
            return
        try:
            async with self._maker() as session, session.begin():
                await begin_write(session)
                await repository.release_lease(
                    session, name=LEASE, holder=self.holder, now=utcnow()
                )
        except Exception as exc:  # the lease lapses by itself
            logger.warning("could not release the sweeper lease: %r", exc)

    async def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=self._interval)
            if self._stop.is_set():
                return
            await self.flush_refusals()
            try:
                await self.sweep_once()
            except OperationalError as exc:
                # Busy (on SQLite a full scan holds the write lock for seconds) or unreachable:
                # nothing was changed, and the next tick tries again.
                logger.warning(
                    "sweep skipped: the database is busy or unreachable (%s); retrying in %g s",
                    exc.orig,
                    self._interval,
                )
            except Exception:
                logger.exception("sweep failed; retrying next interval")

    async def flush_refusals(self) -> None:
        """This process's counted refusals, into the admin trail
        (every process flushes its own: this is not the lease holder's work)."""
        if self._refusals is None:
            return
        try:
            await self._refusals.flush(self._maker)
        except Exception as exc:  # kept, and written by a later tick
            logger.warning("could not write the counted refusals to the admin trail: %r", exc)

    async def sweep_once(self) -> SweepReport:
        """Keep the access log's partitions ahead; take the lease; if held, record due
        expiries and reopenings, fold reads into the grants' last use and open or resolve
        unused findings, and check integrity."""
        report = SweepReport()
        try:
            report.partitions_made = [p.name for p in await self.keep_partitions()]
        except OperationalError:
            raise  # busy or unreachable: the whole tick is retried
        except Exception:
            logger.exception("could not make the access log's next partitions; retrying")
        now = utcnow()
        async with self._maker() as session, session.begin():
            await begin_write(session)
            report.is_holder = await repository.try_acquire_lease(
                session, name=LEASE, holder=self.holder, now=now, until=now + self._lease_ttl
            )
        if not report.is_holder:
            return report
        self._has_held = True
        for _ in range(TIME_EVENT_TRANSACTIONS):
            if not await self._anything_due():
                break
            async with self._maker() as session:  # built outside the write lock (seconds)
                await exposure_view.current_view(session)
            async with self._maker() as session, session.begin():
                await begin_write(session)
                events = await exposure_scan.record_time_events(
                    session, actor=ACTOR, limit=exposure_scan.EXPIRE_PAGE
                )
            report.expired_grants += events.expired_grants
            report.reopened += [f.id for f in events.reopened if f.id is not None]
            report.opened += [f.id for f in events.changes.findings_opened if f.id is not None]
            report.resolved += [f.id for f in events.changes.findings_resolved if f.id is not None]
            logger.info(
                "sweep: %d grants expired, %d acceptances reopened, %d findings opened, "
                "%d resolved",
                len(report.expired_grants),
                len(report.reopened),
                len(report.opened),
                len(report.resolved),
            )
        await self._restore_holds(report)
        await self._sweep_unused(report)
        if self._integrity_interval > 0 and time.monotonic() >= self._integrity_due:
            self._integrity_due = time.monotonic() + self._integrity_interval
            report.integrity_ok = await self.check_integrity()
        return report

    async def keep_partitions(self) -> list[partitions.Partition]:
        """PostgreSQL: at least `partitions.AHEAD` partitions beyond the log's head. Every
        worker's sweeper does it on every tick, lease or not (a held lease must not be what
        keeps checks from failing; a tick with nothing to make is two catalogue reads), and
        `partitions.ensure_partitions` makes each partition once however many run it."""
        async with self._maker() as session, session.begin():
            made = await partitions.keep_ahead(
                session, partition_entries=self._settings.log_partition_entries
            )
        if made:
            logger.info(
                "access log: made partitions %s",
                ", ".join(f"{p.first_id}..{p.last_id}" for p in made),
            )
        return made

    async def _restore_holds(self, report: SweepReport) -> None:
        """Guard holds set aside by break-glass windows that close within two ticks, back
        (`app.approvals.breakglass`): early rather than late."""
        lead = timedelta(seconds=self._settings.sweep_interval_seconds * RESTORE_LEAD_TICKS)
        by = utcnow() + lead
        async with self._maker() as session:
            if not await approvals_repository.closing_holds(session, by=by):
                return
        async with self._maker() as session, session.begin():
            await begin_write(session)
            report.break_glass_closed = await breakglass.restore_holds(session, by=by, actor=ACTOR)
        logger.info(
            "sweep: guard holds of %d break-glass windows restored", len(report.break_glass_closed)
        )

    async def _sweep_unused(self, report: SweepReport) -> None:
        """Fold new reads into the grants' last use (every tick, so the fold keeps up with the
        log); open and resolve `unused` findings (every `unused_every` seconds)."""
        looking = time.monotonic() >= self._unused_due
        if looking:
            self._unused_due = time.monotonic() + self._unused_every
        days = self._settings.unused_after_days
        for _ in range(FOLD_TRANSACTIONS):  # the fold alone, a short transaction each
            async with self._maker() as session:
                if not await usage.is_behind(session):
                    break
            async with self._maker() as session, session.begin():
                await begin_write(session)
                await usage.fold(session)
        async with self._maker() as session:
            if not await unused.is_due(session, now=utcnow(), after_days=days, looking=looking):
                return
        async with self._maker() as session, session.begin():
            await begin_write(session)
            changes = await unused.sweep(session, now=utcnow(), after_days=days, looking=looking)
        report.unused_opened = [f.id for f in changes.opened if f.id is not None]
        report.unused_resolved = [f.id for f in changes.resolved if f.id is not None]
        if changes.opened or changes.resolved:
            logger.info(
                "sweep: %d unused findings opened, %d resolved",
                len(report.unused_opened),
                len(report.unused_resolved),
            )

    async def _anything_due(self) -> bool:
        """Cheap reads first, so an idle sweep never takes the policy write lock."""
        now = utcnow()
        async with self._maker() as session:
            if await policy_repository.list_lapsed(session, now):
                return True
            return await exposure_repository.has_lapsed_acceptance(session, now)

    async def check_integrity(self) -> bool:
        result = await self._integrity.verify(caller=SWEEPER, full=True, is_patient=True)
        if result.ok:
            logger.info("hash chains verified: %d access-log entries", result.entries)
        else:
            logger.error("integrity check failed: %s", result.problem)
        return result.ok
