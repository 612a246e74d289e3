"""The access log's group commit, shared by the SQLite and PostgreSQL stores.

Each `LogStore.write` is one transaction that takes the chain head's lock, reads the policy
version (and, when it moved, which of the batch's tokens are still live), decides and chains the
batch (:func:`app.checks.batch.build_batch`), appends it and commits. If the policy version in
the transaction is newer than the snapshot the writer passed, nothing is written and
`StalePolicy` tells the writer to rebuild its snapshot first. Only once the commit is durable
does the writer answer the checks it holds.

The ORM and the async session cost a thread hop or a greenlet switch per statement; on the hot
path that overhead, not the database, bounded throughput. So each store runs the transaction on
its driver directly, and this module holds what the two share:

* the transaction itself, `LogStore._transaction`: a generator that yields each read (a
  statement compiled once, `app.checks.statements`) and is sent its result, then returns the
  writes and the ``COMMIT``, so the SQLite store drives it with blocking calls (on the event
  loop, or in a thread while it waits for the write lock) and the PostgreSQL store with
  awaited ones;
* durability: a commit is answered only after a *sync* that began after it returned (SQLite: an
  fsync of the WAL; PostgreSQL: a barrier transaction), and one sync covers every commit made
  before it began, so the next batch commits while the previous one's sync runs.

Instants: a batch is decided at the instant it records, read from this process's clock and
never later than it (a later instant would end an expiring deny early). It is also never before
the head's ``last_at``, so that instants stay non-decreasing with ids: a head up to
`MAX_CLOCK_SKEW` ahead is waited out under its lock; a head further ahead is a clock step, and
the batch restarts the monotone part of the log (the head's ``monotone_from``), logs a warning
and counts it (``aclaudit_access_log_clock_steps_total``).

Each store adds what differs: its connection, how a transaction begins and waits for the lock,
how it syncs, and what a failed sync means.
"""

import asyncio
import contextlib
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from app.alerts import windows
from app.alerts.service import chain_alerts
from app.checks.batch import Batch, Submission, build_batch
from app.checks.statements import Statements, alert_rows, entry_rows
from app.config import Settings
from app.policy.snapshot import PolicySnapshot

logger = logging.getLogger("aclaudit.checks")

# The longest a batch waits for its clock to reach the head's instant: replicas' clocks under
# NTP differ by a few milliseconds, so a head this little ahead was written by a replica whose
# clock runs slightly fast, and the batch waits the gap out (holding the head's lock) rather
# than decide at a later instant than its clock's. A larger gap is a clock stepped back, a
# replica far off NTP or a tampered head: the batch decides at its own clock and restarts the
# monotone part of the log (`_transaction`).
MAX_CLOCK_SKEW = 0.1  # seconds
# Waits (each for the gap still left) before a head still ahead counts as a step.
SKEW_WAITS = 3


@dataclass(frozen=True)
class Written:
    batch: Batch
    version: int  # the policy version the batch was decided at
    live_tokens: set[str] | None  # the batch's tokens re-read at `version`, if they were
    # Resolves when the commit is durable (fails if it cannot be made so); None: it already is.
    durable: "asyncio.Future[None] | None" = None


@dataclass(frozen=True)
class StalePolicy:
    """The database's policy version is newer than the snapshot: nothing was written."""

    version: int


class LogStoreFailed(Exception):
    """The store can no longer make entries durable (a failed fsync); it refuses every batch."""


SnapshotLoader = Callable[[], Awaitable[PolicySnapshot]]
Snapshot = PolicySnapshot | SnapshotLoader
Submissions = Sequence[Submission]

# What `_transaction` yields, in order, (kind, statement, parameters). ONE and ALL are reads, sent
# back their first row (None without one) or the list of their rows; EXEC and MANY are writes
# (MANY: `executemany` over a list of rows), sent back None; WAIT (statement "") asks the store
# to sleep `parameters` seconds, still in the transaction, and is sent back None.
ONE, ALL, EXEC, MANY, WAIT = range(5)
Step = tuple[int, str, Any]
# The batch, the policy version it was decided at, and its tokens re-read (if they were).
Appended = tuple[Batch, int, set[str] | None]
Outcome = Appended | StalePolicy
# It returns the outcome once it has yielded its COMMIT or ROLLBACK.
Transaction = Generator[Step, Any, Outcome]
COMMIT: Step = (EXEC, "COMMIT", ())
ROLLBACK: Step = (EXEC, "ROLLBACK", ())


class LogStore(ABC):
    """The group-commit core of a store; `write` is the store's own."""

    def __init__(self, statements: Statements, settings: Settings) -> None:
        self._sql = statements
        self._checkpoint_every = settings.checkpoint_every
        self._checkpoint_key = settings.checkpoint_key_bytes
        self._read_window = settings.read_alert_window_seconds
        self._commit_is_durable = False  # COMMIT itself syncs: no sync to wait for
        self._failed: Exception | None = None  # set when a failed sync broke the store for good
        self._committed = 0  # commits made so far (a sequence number)
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._sync_wake: asyncio.Event | None = None
        self._sync_task: asyncio.Task[None] | None = None
        # Called once the store refuses every batch for good (`broken`).
        self.on_broken: Callable[[], None] | None = None
        # Called with the gap (seconds) when a batch restarts the log's monotone instants.
        self.on_clock_step: Callable[[float], None] | None = None

    @abstractmethod
    async def write(
        self, submissions: Submissions, snapshot: Snapshot, tokens_version: int, wait: float
    ) -> Written | StalePolicy:
        """One transaction appending the batch; `wait`: the longest it may wait for a lock (at
        most the database timeout, less when its checks have already waited).

        Given a loader instead of a snapshot, the store loads the snapshot while it holds the
        policy still, so that no policy change can commit between the load and the batch: a
        batch that kept finding the policy changed under it gets through however often it
        changes."""

    @property
    def broken(self) -> Exception | None:
        """Why the store refuses every batch until the process restarts, if it does."""
        return self._failed

    async def close(self) -> None:
        # The writer has drained: let the last syncs settle their batches.
        await asyncio.gather(*(f for _seq, f in self._waiters), return_exceptions=True)
        if self._sync_task is not None:
            self._sync_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sync_task
        await self._disconnect()

    @abstractmethod
    async def _disconnect(self) -> None:
        """Close the store's connections (its syncs are settled)."""

    # -- the transaction ----------------------------------------------------------------------

    def _transaction(
        self, submissions: Submissions, snapshot: PolicySnapshot, tokens_version: int
    ) -> Transaction:
        """The group commit between the store's ``BEGIN`` and its end, one statement a step (the
        first takes the head's lock; the alert feed's is taken after the entries are written)."""
        sql = self._sql
        # Read after the batch was queued, so the version includes every policy change whose
        # response was sent before any of these checks.
        version, last_id, last_hash, last_at = yield ONE, sql.read_head, ()
        if version > snapshot.version:
            yield ROLLBACK
            return StalePolicy(version)
        live: set[str] | None = None
        if version != tokens_version:
            hashes = sorted({s.token_hash for s in submissions if s.token_hash is not None})
            live = set()
            if hashes:
                rows = yield ALL, sql.live_tokens, (sql.text_list(hashes),)
                live = {row[0] for row in rows}
        # Decided at the instant recorded (to the microsecond), so a replay of the entry
        # (`app.accesslog.replay`) decides expiries exactly as the check did, and never at an
        # instant later than this clock's: deciding later would end an expiring deny early
        # (fail open). Never recorded before the head's instant either (read under its lock),
        # so that `at` does not decrease with the id and instants bound ids when browsing. A
        # head a little ahead (another replica's clock, <= MAX_CLOCK_SKEW) is waited out; a
        # head further ahead (a clock stepped back, a replica far off, a tampered head) is not:
        # the batch decides at its clock and becomes the start of the monotone part
        # (`monotone_from`), older entries being browsed by comparing `at`.
        at = datetime.fromtimestamp(time.time(), UTC)
        head_at = sql.read_instant(last_at)
        for _ in range(SKEW_WAITS):
            if head_at is None or head_at <= at or (head_at - at).total_seconds() > MAX_CLOCK_SKEW:
                break
            yield WAIT, "", (head_at - at).total_seconds()
            at = datetime.fromtimestamp(time.time(), UTC)
        stepped = head_at is not None and head_at > at
        now = at.timestamp()
        batch = build_batch(
            submissions,
            snapshot,
            live,
            (last_id, last_hash),
            now,
            at,
            self._checkpoint_every,
            self._checkpoint_key,
        )
        if not batch.entries:
            yield COMMIT
            return batch, version, live
        stored_at = at if sql.instant is None else sql.instant(at)
        yield MANY, sql.insert_entries, entry_rows(batch.entries, stored_at)
        if batch.subjects:
            yield MANY, sql.insert_subjects, batch.subjects
        yield EXEC, sql.move_head, (*batch.head, batch.head_signature, stored_at)
        if stepped:  # the batch's first entry starts the monotone part again
            yield EXEC, sql.restart_monotone, (batch.entries[0]["id"],)
        if batch.checkpoint is not None:  # taken at the batch's instant
            c = batch.checkpoint
            yield (
                EXEC,
                sql.insert_checkpoint,
                (c["entry_id"], c["head_hash"], stored_at, c["signature"]),
            )
        alerts = batch.alerts
        windowed: windows.WindowedReads | None = None
        if alerts and self._read_window:
            window = windows.window_at(now, self._read_window)
            start = window.start if sql.instant is None else sql.instant(window.start)
            end = window.end if sql.instant is None else sql.instant(window.end)
            readers = sql.text_list(windows.principals_of(alerts))
            rows = yield ALL, sql.read_windows, (start, readers)
            windowed = windows.split_reads(alerts, {tuple(row) for row in rows})
            alerts = windowed.raised
        raised_ids: list[int] = []
        if alerts:
            # Each read from outside the audience names the finding of the (dataset, grant) it
            # went through (one probe per pair), read before the alerts are chained.
            found: dict[tuple[str | None, int | None], int | None] = {}
            for grant in dict.fromkeys((a.dataset, a.grant_id) for a in alerts):
                finding = yield ONE, sql.find_finding, grant
                found[grant] = None if finding is None else finding[0]
            findings = [found[(a.dataset, a.grant_id)] for a in alerts]
            alert_head = yield ONE, sql.read_alert_head, ()
            chained = chain_alerts(alerts, findings, tuple(alert_head), at, self._checkpoint_key)
            yield MANY, sql.insert_alerts, alert_rows(chained.rows, stored_at)
            yield EXEC, sql.move_alert_head, (*chained.head, chained.signature)
            raised_ids = [row["id"] for row in chained.rows]
        if windowed is not None:
            raised = dict(zip(windowed.opened, raised_ids, strict=True))
            new, more = [], []
            for key, (reads, last_read) in windowed.reads.items():
                if key in raised:
                    new.append((*key, start, end, raised[key], reads, last_read))
                else:
                    more.append((reads, last_read, *key, start))
            if new:
                yield MANY, sql.insert_windows, new
            if more:
                yield MANY, sql.add_to_windows, more
        yield COMMIT
        if stepped:
            assert head_at is not None
            self._clock_stepped((head_at - at).total_seconds(), batch.entries[0]["id"])
        return batch, version, live

    def _clock_stepped(self, gap: float, first_id: int) -> None:
        logger.warning(
            "the access log's head instant is %.3f s ahead of this clock (a clock stepped "
            "back, a replica off NTP, or an edited head): entry %d on is stamped and decided "
            "by this clock and starts the log's monotone instants again (monotone_from)",
            gap,
            first_id,
        )
        if self.on_clock_step is not None:
            self.on_clock_step(gap)

    def _written(self, outcome: Outcome, loop: asyncio.AbstractEventLoop) -> Written | StalePolicy:
        """A committed transaction's outcome, with the future of its sync."""
        if isinstance(outcome, StalePolicy):
            return outcome
        return Written(*outcome, self._durable(loop))

    # -- durability ---------------------------------------------------------------------------

    def _durable(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
        """Resolves once a sync that began after the latest commit has finished."""
        done: asyncio.Future[None] = loop.create_future()
        if self._commit_is_durable:
            done.set_result(None)
            return done
        if self._failed is not None:
            done.set_exception(LogStoreFailed("the access log could not be synced to disk"))
            return done
        self._committed += 1
        self._waiters.append((self._committed, done))
        if self._sync_task is None or self._sync_task.done():
            self._sync_wake = asyncio.Event()
            self._sync_task = loop.create_task(self._sync_loop(), name="access-log-sync")
        assert self._sync_wake is not None
        self._sync_wake.set()
        return done

    async def _sync_loop(self) -> None:
        loop = asyncio.get_running_loop()
        wake = self._sync_wake
        assert wake is not None
        while True:
            await wake.wait()
            wake.clear()
            while self._waiters:
                covered = self._committed  # every commit so far has returned
                try:
                    await self._sync(loop)
                except Exception as exc:
                    self._sync_failed(exc)
                    if self._failed is None:  # only the commits it covered are lost
                        self._settle(covered, exc)
                        continue
                    self._settle(self._committed, exc)
                    if self.on_broken is not None:
                        self.on_broken()
                    return
                self._settle(covered, None)

    def _settle(self, covered: int, error: Exception | None) -> None:
        """Answer the commits up to number `covered` (the waiters are in commit order)."""
        waiters = self._waiters
        count = 0
        for seq, _future in waiters:
            if seq > covered:
                break
            count += 1
        self._waiters = waiters[count:]
        for _seq, future in waiters[:count]:
            if future.done():
                continue
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)

    @abstractmethod
    def _sync(self, loop: asyncio.AbstractEventLoop) -> Awaitable[None]:
        """Make every commit that has returned durable."""

    @abstractmethod
    def _sync_failed(self, error: Exception) -> None:
        """After a failed `_sync`: set `_failed` if the store must refuse every batch from now
        on (the commits waiting are then failed with it), or else make the next sync work."""
