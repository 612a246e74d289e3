"""The access log's hot-path storage: one group commit per call, on the driver directly.

Each call is one transaction that takes the chain head's lock, reads the policy version (and,
when it moved, which of the batch's tokens are still live), decides and chains the batch
(:func:`app.checks.batch.build_batch`), appends it and commits. Only after the commit does
the writer answer the checks it holds.

The ORM and the async session cost a thread hop or a greenlet switch per statement; on the hot
path that overhead, not the database, bounded throughput. So:

* SQLite: a dedicated stdlib ``sqlite3`` connection (WAL, ``synchronous=FULL``, like every other
  connection of the service): the statements run on the event loop, the ``COMMIT`` (fsync) in a
  dedicated thread (see `SqliteLogStore`). ``BEGIN IMMEDIATE`` takes the write lock, which
  serialises writers across processes.
* PostgreSQL: a dedicated asyncpg connection; ``SELECT ... FOR UPDATE`` on the head row
  serialises writers, the entries go in with one pipelined ``executemany``.

The SQL writes exactly what the models in ``app.accesslog.models`` and ``app.alerts.models``
describe, in the formats SQLAlchemy uses for them (SQLite datetimes as
``YYYY-MM-DD HH:MM:SS.ffffff`` UTC text, JSON as text), so every reader keeps using the ORM.
If the policy version in the transaction is newer than the snapshot the writer passed, nothing
is written and `StalePolicy` tells the writer to rebuild its snapshot first.
"""

import asyncio
import contextlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy.engine import make_url

from app.alerts.service import AlertEvent, ChainedAlerts, chain_alerts
from app.chain import ALERT_FIELDS, CHAINED_FIELDS
from app.checks.batch import Batch, Submission, build_batch
from app.config import Settings
from app.db import sqlite_datetime
from app.policy.snapshot import PolicySnapshot

logger = logging.getLogger("aclaudit.accesslog")

ENTRY_COLUMNS = (*CHAINED_FIELDS, "prev_hash", "hash")


def _entry_rows(batch: Batch, at: Any) -> list[tuple[Any, ...]]:
    """The batch's entries as rows in ENTRY_COLUMNS order; `at` (one instant per batch) as the
    driver takes it."""
    dumps = json.dumps
    return [
        (
            e["id"],
            e["decision_id"],
            at,
            e["principal"],
            e["dataset"],
            e["action"],
            e["purpose"],
            e["decision"],
            dumps(e["reason"]),
            e["out_of_audience"],
            dumps(e["data_subjects"]),
            e["request_id"],
            e["caller"],
            e["policy_version"],
            e["prev_hash"],
            e["hash"],
        )
        for e in batch.entries
    ]


# The alerts written here are reads from outside the audience; each names the finding of the
# (dataset, grant) it went through: the pair's newest finding if it is open or accepted (one
# probe of the (dataset, grant_id) index per pair, in the alert's transaction), read before
# the alerts are chained (`app.alerts.service.chain_alerts`).
FIND_FINDING = (
    "SELECT CASE WHEN status IN ('open', 'accepted') THEN id END FROM findings "
    "WHERE dataset = ? AND grant_id = ? ORDER BY id DESC LIMIT 1"
)
# The alert feed's head (PostgreSQL adds FOR UPDATE; SQLite's write lock is already held).
READ_ALERT_HEAD = "SELECT last_id, last_hash FROM alert_head WHERE id = 1"
ALERT_COLUMNS = (*ALERT_FIELDS, "prev_hash", "hash")
MOVE_ALERT_HEAD = "UPDATE alert_head SET last_id = ?, last_hash = ?, signature = ? WHERE id = 1"
MOVE_LOG_HEAD = "UPDATE access_log_head SET last_id = ?, last_hash = ?, signature = ? WHERE id = 1"


def _numbered(statement: str) -> str:
    """`statement` with PostgreSQL's numbered placeholders for qmark ones."""
    parts = statement.split("?")
    return parts[0] + "".join(f"${n}{part}" for n, part in enumerate(parts[1:], start=1))


@dataclass(frozen=True)
class Written:
    batch: Batch
    version: int  # the policy version the batch was decided at
    live_tokens: set[str] | None  # the batch's tokens re-read at `version`, if they were
    # Resolves when the commit is durable (fails if it cannot be made so); None: it already is.
    durable: "asyncio.Future[None] | None" = None


class LogStoreFailed(Exception):
    """The store can no longer make entries durable (a failed fsync); it refuses every batch."""


SnapshotLoader = Callable[[], Awaitable[PolicySnapshot]]


@dataclass(frozen=True)
class StalePolicy:
    """The database's policy version is newer than the snapshot: nothing was written."""

    version: int


class LogStore(Protocol):
    on_broken: Callable[[], None] | None  # called once the store is `broken`

    async def write(
        self,
        submissions: Sequence[Submission],
        snapshot: PolicySnapshot,
        tokens_version: int,
        wait: float,
    ) -> Written | StalePolicy:
        """One transaction appending the batch; `wait`: the longest it may wait for a lock (at
        most the database timeout, less when its checks have already waited)."""
        ...

    async def write_held(
        self,
        submissions: Sequence[Submission],
        load: SnapshotLoader,
        tokens_version: int,
        wait: float,
    ) -> Written | StalePolicy:
        """`write`, with the snapshot loaded (`load`) while the store holds the policy still,
        so that no policy change can commit between the load and the batch: a batch that kept
        finding the policy changed under it gets through however often it changes."""
        ...

    async def close(self) -> None: ...

    @property
    def broken(self) -> Exception | None:
        """Why the store refuses every batch until the process restarts, if it does."""
        ...


@dataclass(frozen=True)
class _Chaining:
    checkpoint_every: int
    checkpoint_key: bytes | None

    def build(
        self,
        submissions: Sequence[Submission],
        snapshot: PolicySnapshot,
        live: set[str] | None,
        head: tuple[int, str],
    ) -> Batch:
        now = time.time()
        at = datetime.fromtimestamp(now, UTC)
        return build_batch(
            submissions,
            snapshot,
            live,
            head,
            now,
            at,
            self.checkpoint_every,
            self.checkpoint_key,
        )

    def alerts(
        self,
        alerts: list[AlertEvent],
        finding_ids: list[int | None],
        head: tuple[int, str],
        batch: Batch,
    ) -> ChainedAlerts:
        """The batch's alerts chained onto the feed's `head`, at the batch's instant."""
        at = batch.entries[0]["at"]
        return chain_alerts(alerts, finding_ids, head, at, self.checkpoint_key)


def _token_hashes(submissions: Sequence[Submission]) -> list[str]:
    return sorted({s.token_hash for s in submissions if s.token_hash is not None})


def _placeholders(columns: Sequence[str], style: str) -> str:
    if style == "qmark":
        marks = ", ".join("?" for _ in columns)
    else:
        marks = ", ".join(f"${n}" for n in range(1, len(columns) + 1))
    return f"({', '.join(columns)}) VALUES ({marks})"


def _finding_pairs(alerts: list[AlertEvent]) -> list[tuple[str | None, int | None]]:
    """The distinct (dataset, grant) pairs whose findings the batch's alerts name."""
    return list(dict.fromkeys((a.dataset, a.grant_id) for a in alerts))


def _alert_rows(chained: ChainedAlerts, at: Any) -> list[tuple[Any, ...]]:
    """The chained alerts in ALERT_COLUMNS order, `at` as the driver takes it."""
    return [tuple(at if c == "at" else row[c] for c in ALERT_COLUMNS) for row in chained.rows]


# -- SQLite ----------------------------------------------------------------------------------


# Page cache of the access log's own connection: every check inserts into six indexes (two of
# them at random places: principal, dataset), whose pages the default 2 MiB kept re-reading
# (SQLite checks per second, against the bare endpoint: about 0.42x with 2 MiB, 0.45-0.47x).
LOG_CACHE_KIB = 65_536


class SqliteLogStore:
    """A dedicated connection; statements and ``COMMIT`` on the event loop, fsync in a thread.

    Durability: in WAL mode, ``synchronous=FULL`` makes SQLite fsync the WAL inside every
    ``COMMIT``, while the write lock is held, so no other batch can commit during that fsync.
    This store instead commits with ``synchronous=NORMAL`` (the frames are written to the WAL,
    not yet synced) and answers a batch's checks only after an ``fsync`` of the WAL file that
    *started after* that commit returned (`durable`). An fsync covers every frame written before
    it, so one fsync makes all the batches committed meanwhile durable, and the next batch
    commits while the previous one's fsync runs: group commit across transactions. What is
    answered is exactly as durable as with ``FULL``; what is lost in a power cut is only a
    suffix of unanswered batches (the WAL is replayed up to its last complete, checksummed
    commit), and the chain head is in the same transactions, so the chain stays intact. If an
    fsync fails, the store fails closed: every batch not yet answered, and every later one, is
    answered 503 deny until the process restarts.
    Checkpoints sync the WAL before copying it, so a checkpoint (or a WAL restart after one)
    between a commit and its fsync cannot lose that commit. Automatic checkpoints are off on
    this connection (they would fsync on the loop): the service's WAL checkpointer
    (`app.operations.checkpoints`) runs them for every connection. A database not in WAL mode
    keeps ``synchronous=FULL``.

    Between batches the connection's busy timeout is 0, so ``BEGIN IMMEDIATE`` on the loop
    either gets the write lock at once or fails at once; when another connection (another
    worker, an admin request) holds it, the transaction runs in a thread instead, where waiting
    for the lock blocks nothing else. Keeping the statements on the loop thread avoids a GIL
    hand-over per statement.
    """

    INSERT_ENTRY = "INSERT INTO access_log " + _placeholders(ENTRY_COLUMNS, "qmark")
    INSERT_ALERT = "INSERT INTO alerts " + _placeholders(ALERT_COLUMNS, "qmark")
    # BEGIN IMMEDIATE already holds the write lock, so this read is the committed head.
    READ_HEAD = (
        "SELECT p.version, h.last_id, h.last_hash FROM policy_state p, access_log_head h "
        "WHERE p.id = 1 AND h.id = 1"
    )

    def __init__(self, path: str, timeout: float, chaining: _Chaining) -> None:
        self._path = path
        self._timeout = timeout
        self._chaining = chaining
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="access-log")
        self._sync_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="log-fsync")
        self._conn: sqlite3.Connection | None = None
        self._is_wal = False
        self._wal_fd: int | None = None
        self._failed: Exception | None = None
        self._committed = 0  # commits made so far (a sequence number)
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._sync_wake: asyncio.Event | None = None
        self._sync_task: asyncio.Task[None] | None = None
        self._file_id: tuple[int, int] | None = None  # the database file's, when connected
        # Called once the store refuses every batch for good (`broken`).
        self.on_broken: Callable[[], None] | None = None

    @property
    def broken(self) -> Exception | None:
        return self._failed

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self._path, timeout=self._timeout, isolation_level=None, check_same_thread=False
        )
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        self._is_wal = str(mode).lower() == "wal"
        if self._is_wal:
            # Durable before the answer all the same: see the class docstring.
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA wal_autocheckpoint=0")
        else:
            conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute(f"PRAGMA cache_size=-{LOG_CACHE_KIB}")
        self._file_id = _file_id(self._path)
        return conn

    async def write(
        self,
        submissions: Sequence[Submission],
        snapshot: PolicySnapshot,
        tokens_version: int,
        wait: float,
    ) -> Written | StalePolicy:
        loop = asyncio.get_running_loop()
        if self._failed is not None:
            raise LogStoreFailed("the access log could not be synced to disk") from self._failed
        conn = self._conn
        if conn is None:
            result = await loop.run_in_executor(
                self._executor, self._write, submissions, snapshot, tokens_version, wait
            )
        else:
            try:
                conn.execute("BEGIN IMMEDIATE")  # busy_timeout is 0 between batches
            except sqlite3.OperationalError:
                result = await loop.run_in_executor(
                    self._executor, self._write, submissions, snapshot, tokens_version, wait
                )
            else:
                result = self._finish(conn, submissions, snapshot, tokens_version)
        if isinstance(result, StalePolicy):
            return result
        return Written(result.batch, result.version, result.live_tokens, self._durable(loop))

    async def write_held(
        self,
        submissions: Sequence[Submission],
        load: SnapshotLoader,
        tokens_version: int,
        wait: float,
    ) -> Written | StalePolicy:
        """The write lock first, then the snapshot: policy changes need the same lock."""
        loop = asyncio.get_running_loop()
        if self._failed is not None:
            raise LogStoreFailed("the access log could not be synced to disk") from self._failed
        conn = await loop.run_in_executor(self._executor, self._begin, wait)
        try:
            snapshot = await load()
        except BaseException:
            self._abandon(conn)
            raise
        result = self._finish(conn, submissions, snapshot, tokens_version)
        if isinstance(result, StalePolicy):
            return result
        return Written(result.batch, result.version, result.live_tokens, self._durable(loop))

    def _begin(self, wait: float) -> sqlite3.Connection:
        """``BEGIN IMMEDIATE`` in the thread, waiting up to `wait` seconds for the write lock."""
        if self._conn is None:
            self._conn = self._connect()
        conn = self._conn
        conn.execute(f"PRAGMA busy_timeout = {max(1, int(wait * 1000))}")
        try:
            conn.execute("BEGIN IMMEDIATE")
        finally:
            conn.execute("PRAGMA busy_timeout = 0")
        return conn

    def _write(
        self,
        submissions: Sequence[Submission],
        snapshot: PolicySnapshot,
        tokens_version: int,
        wait: float,
    ) -> Written | StalePolicy:
        """The transaction in the thread, waiting up to `wait` seconds for the write lock."""
        return self._finish(self._begin(wait), submissions, snapshot, tokens_version)

    def _finish(
        self,
        conn: sqlite3.Connection,
        submissions: Sequence[Submission],
        snapshot: PolicySnapshot,
        tokens_version: int,
    ) -> Written | StalePolicy:
        try:
            result = self._append(conn, submissions, snapshot, tokens_version)
            conn.execute("ROLLBACK" if isinstance(result, StalePolicy) else "COMMIT")
            return result
        except BaseException:
            self._abandon(conn)
            raise

    def _abandon(self, conn: sqlite3.Connection) -> None:
        """Roll back the open transaction, or drop the connection if that fails."""
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        except sqlite3.Error:
            self._reset()

    def _reset(self) -> None:
        """Drop the connection (and the WAL handle); the next batch opens fresh ones."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _append(
        self,
        conn: sqlite3.Connection,
        submissions: Sequence[Submission],
        snapshot: PolicySnapshot,
        tokens_version: int,
    ) -> Written | StalePolicy:
        version, last_id, last_hash = conn.execute(self.READ_HEAD).fetchone()
        if version > snapshot.version:
            return StalePolicy(version)
        live: set[str] | None = None
        if version != tokens_version:
            hashes = _token_hashes(submissions)
            live = set()
            if hashes:
                marks = ", ".join("?" for _ in hashes)
                rows = conn.execute(
                    "SELECT token_hash FROM api_tokens WHERE revoked_at IS NULL "
                    f"AND token_hash IN ({marks})",
                    hashes,
                )
                live = {row[0] for row in rows}
        batch = self._chaining.build(submissions, snapshot, live, (last_id, last_hash))
        if batch.entries:
            at = sqlite_datetime(batch.entries[0]["at"])
            conn.executemany(self.INSERT_ENTRY, _entry_rows(batch, at))
            if batch.subjects:
                conn.executemany(
                    "INSERT INTO access_log_subjects (subject, entry_id) VALUES (?, ?)",
                    batch.subjects,
                )
            conn.execute(MOVE_LOG_HEAD, (*batch.head, batch.head_signature))
            if batch.checkpoint is not None:
                c = batch.checkpoint
                conn.execute(
                    "INSERT INTO access_log_checkpoints (entry_id, head_hash, at, signature) "
                    "VALUES (?, ?, ?, ?)",
                    (c["entry_id"], c["head_hash"], sqlite_datetime(c["at"]), c["signature"]),
                )
            if batch.alerts:
                found = {
                    p: conn.execute(FIND_FINDING, p).fetchone()
                    for p in _finding_pairs(batch.alerts)
                }
                findings = [(found[(a.dataset, a.grant_id)] or (None,))[0] for a in batch.alerts]
                head = conn.execute(READ_ALERT_HEAD).fetchone()
                chained = self._chaining.alerts(batch.alerts, findings, head, batch)
                conn.executemany(self.INSERT_ALERT, _alert_rows(chained, at))
                conn.execute(MOVE_ALERT_HEAD, (*chained.head, chained.signature))
        return Written(batch, version, live)

    # -- durability ---------------------------------------------------------------------------

    def _durable(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
        """Resolves once an fsync that began after the latest commit has finished."""
        done: asyncio.Future[None] = loop.create_future()
        if not self._is_wal:  # synchronous=FULL: COMMIT itself synced
            done.set_result(None)
            return done
        if self._failed is not None:
            done.set_exception(LogStoreFailed("the access log could not be synced to disk"))
            return done
        self._committed += 1
        self._waiters.append((self._committed, done))
        if self._sync_task is None or self._sync_task.done():
            self._sync_wake = asyncio.Event()
            self._sync_task = loop.create_task(self._sync_loop(), name="access-log-fsync")
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
                    await loop.run_in_executor(self._sync_executor, self._fsync)
                except Exception as exc:
                    # After a failed fsync the kernel may have dropped the unsynced pages, and
                    # a later fsync could succeed without them: nothing written since can be
                    # trusted to be durable. Fail closed, as PostgreSQL does: every waiting
                    # and every later batch is answered 503 deny until the process restarts.
                    logger.critical(
                        "fsync of the access log failed; refusing checks until this process "
                        "restarts on a healthy disk: %r",
                        exc,
                    )
                    self._failed = exc
                    self._settle(self._committed, exc)
                    if self.on_broken is not None:
                        self.on_broken()
                    return
                self._settle(covered, None)

    def _settle(self, covered: int, error: Exception | None) -> None:
        ready = [f for seq, f in self._waiters if seq <= covered]
        self._waiters = [(seq, f) for seq, f in self._waiters if seq > covered]
        for future in ready:
            if future.done():
                continue
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)

    def _fsync(self) -> None:
        """Sync the WAL file (from the fsync thread)."""
        if _file_id(self._path) != self._file_id:
            # Deleted or replaced under the running service: the commits went to a file no
            # one will read again, so nothing committed since can be answered as recorded.
            raise LogStoreFailed(f"the database file {self._path} was removed or replaced")
        wal = self._path + "-wal"
        try:
            inode = os.stat(wal).st_ino
        except FileNotFoundError:
            if self._conn is not None:
                # SQLite removes the WAL only when the last connection closes, and this one is
                # open: the file was deleted under it, with the commits it held.
                raise LogStoreFailed(f"the WAL file {wal} was removed") from None
            # No WAL: the last connection closed, and closing checkpoints the WAL into the
            # database (syncing it) before removing the file. Nothing is left to sync.
            if self._wal_fd is not None:
                os.close(self._wal_fd)
                self._wal_fd = None
            return
        if self._wal_fd is not None and os.fstat(self._wal_fd).st_ino != inode:
            # A new WAL file (every connection had closed, so the old one was checkpointed
            # into the database and removed): sync the file the commits went to.
            os.close(self._wal_fd)
            self._wal_fd = None
        if self._wal_fd is None:
            # Kept open: SQLite takes no POSIX locks on the -wal file, and closing a
            # descriptor would drop any this process held on it.
            self._wal_fd = os.open(wal, os.O_RDONLY)
        os.fdatasync(self._wal_fd)

    async def close(self) -> None:
        # The writer has drained: let the last fsyncs settle their batches.
        await asyncio.gather(*(f for _seq, f in self._waiters), return_exceptions=True)
        if self._sync_task is not None:
            self._sync_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sync_task

        def _close() -> None:
            self._reset()
            if self._wal_fd is not None:
                os.close(self._wal_fd)
                self._wal_fd = None

        await asyncio.get_running_loop().run_in_executor(self._sync_executor, _close)
        self._executor.shutdown(wait=True)
        self._sync_executor.shutdown(wait=True)


def _file_id(path: str) -> tuple[int, int] | None:
    """(device, inode) of the file at `path`; None when there is none."""
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return None
    return found.st_dev, found.st_ino


# -- PostgreSQL ------------------------------------------------------------------------------


class PostgresLogStore:
    """The transaction on a dedicated asyncpg connection, reconnected after any failure.

    Durability, as for SQLite (see `SqliteLogStore`), without holding the head's lock through
    the WAL flush: the connection commits with ``synchronous_commit = off``, which releases the
    lock as soon as the commit record is written, and a batch is answered only after a
    *barrier* has committed on a second connection with the server's own ``synchronous_commit``
    (``on`` by default): a transaction that takes a transaction id and commits, which returns
    only once the WAL is flushed up to its commit record, and so past the commit records of
    every batch committed before the barrier began. The next batch commits while the previous
    one's barrier waits for the flush, and PostgreSQL folds concurrent flushes into one. If the
    barrier fails, the batches it covered are answered 503 deny (PostgreSQL itself stops on a
    failed WAL fsync, so later barriers can be trusted).
    """

    INSERT_ENTRY = "INSERT INTO access_log " + _placeholders(ENTRY_COLUMNS, "numeric")
    INSERT_ALERT = "INSERT INTO alerts " + _placeholders(ALERT_COLUMNS, "numeric")
    LOCK_HEAD = (
        "SELECT h.last_id, h.last_hash, p.version FROM access_log_head h, policy_state p "
        "WHERE h.id = 1 AND p.id = 1 FOR UPDATE OF h"
    )

    def __init__(self, dsn: str, timeout: float, chaining: _Chaining) -> None:
        self._dsn = dsn
        self._timeout = timeout
        self._chaining = chaining
        self._conn: Any = None  # asyncpg.Connection (asyncpg ships no type hints)
        self._barrier_conn: Any = None
        self._committed = 0  # commits made so far (a sequence number)
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._sync_wake: asyncio.Event | None = None
        self._sync_task: asyncio.Task[None] | None = None
        self.on_broken: Callable[[], None] | None = None  # never called: see `broken`

    async def _connection(self) -> Any:
        import asyncpg

        if self._conn is None or self._conn.is_closed():
            conn = await asyncpg.connect(self._dsn, timeout=self._timeout)
            # Durable before the answer all the same: see the class docstring.
            await conn.execute("SET synchronous_commit = off")
            # A lock held elsewhere (the head row, say) fails the batch closed after the
            # database timeout instead of holding every check in this process.
            await conn.execute(f"SET lock_timeout = {int(self._timeout * 1000)}")
            self._conn = conn
        return self._conn

    def _durable(self) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._committed += 1
        self._waiters.append((self._committed, done))
        if self._sync_task is None or self._sync_task.done():
            self._sync_wake = asyncio.Event()
            self._sync_task = loop.create_task(self._sync_loop(), name="access-log-flush")
        assert self._sync_wake is not None
        self._sync_wake.set()
        return done

    async def _sync_loop(self) -> None:
        wake = self._sync_wake
        assert wake is not None
        while True:
            await wake.wait()
            wake.clear()
            while self._waiters:
                covered = self._committed  # every commit so far has returned
                try:
                    await self._barrier()
                except Exception as exc:
                    logger.error("access-log WAL flush barrier failed: %r", exc)
                    if self._barrier_conn is not None:
                        self._barrier_conn.terminate()
                        self._barrier_conn = None
                    self._settle(covered, exc)
                    continue
                self._settle(covered, None)

    async def _barrier(self) -> None:
        import asyncpg

        if self._barrier_conn is None or self._barrier_conn.is_closed():
            self._barrier_conn = await asyncpg.connect(self._dsn, timeout=self._timeout)
        # One round trip (simple protocol); the xid makes COMMIT write a record and wait for the
        # WAL flush through it.
        await self._barrier_conn.execute("BEGIN; SELECT txid_current(); COMMIT")

    def _settle(self, covered: int, error: Exception | None) -> None:
        ready = [f for seq, f in self._waiters if seq <= covered]
        self._waiters = [(seq, f) for seq, f in self._waiters if seq > covered]
        for future in ready:
            if future.done():
                continue
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)

    async def write(
        self,
        submissions: Sequence[Submission],
        snapshot: PolicySnapshot,
        tokens_version: int,
        wait: float,
    ) -> Written | StalePolicy:
        return await self._write(submissions, snapshot, tokens_version, wait)

    async def write_held(
        self,
        submissions: Sequence[Submission],
        load: SnapshotLoader,
        tokens_version: int,
        wait: float,
    ) -> Written | StalePolicy:
        """A share lock on the policy version's row first (policy changes update it, so they
        wait for this batch), then the snapshot."""
        return await self._write(submissions, load, tokens_version, wait)

    async def _write(
        self,
        submissions: Sequence[Submission],
        snapshot: PolicySnapshot | SnapshotLoader,
        tokens_version: int,
        wait: float,
    ) -> Written | StalePolicy:
        conn = await self._connection()
        try:
            await conn.execute("BEGIN")
            if wait < 0.8 * self._timeout:  # its checks waited behind a stuck batch: less
                await conn.execute(f"SET LOCAL lock_timeout = {max(1, int(wait * 1000))}")
            if not isinstance(snapshot, PolicySnapshot):
                await conn.execute("SELECT version FROM policy_state WHERE id = 1 FOR SHARE")
                snapshot = await snapshot()
            result = await self._append(conn, submissions, snapshot, tokens_version)
        except BaseException:
            self._conn = None  # whatever state it is in, the next batch gets a fresh one
            conn.terminate()
            raise
        if isinstance(result, StalePolicy):
            return result
        return Written(result.batch, result.version, result.live_tokens, self._durable())

    async def _append(
        self,
        conn: Any,
        submissions: Sequence[Submission],
        snapshot: PolicySnapshot,
        tokens_version: int,
    ) -> Written | StalePolicy:
        # The statement's snapshot is taken after the batch was queued, so the version it reads
        # includes every policy change whose response was sent before any of these checks.
        last_id, last_hash, version = await conn.fetchrow(self.LOCK_HEAD)
        if version > snapshot.version:
            await conn.execute("ROLLBACK")
            return StalePolicy(version)
        live: set[str] | None = None
        if version != tokens_version:
            hashes = _token_hashes(submissions)
            rows = await conn.fetch(
                "SELECT token_hash FROM api_tokens "
                "WHERE revoked_at IS NULL AND token_hash = ANY($1::text[])",
                hashes,
            )
            live = {row[0] for row in rows}
        batch = self._chaining.build(submissions, snapshot, live, (last_id, last_hash))
        if batch.entries:
            await conn.executemany(self.INSERT_ENTRY, _entry_rows(batch, batch.entries[0]["at"]))
            if batch.subjects:
                await conn.executemany(
                    "INSERT INTO access_log_subjects (subject, entry_id) VALUES ($1, $2)",
                    batch.subjects,
                )
            await conn.execute(_numbered(MOVE_LOG_HEAD), *batch.head, batch.head_signature)
            if batch.checkpoint is not None:
                c = batch.checkpoint
                await conn.execute(
                    "INSERT INTO access_log_checkpoints (entry_id, head_hash, at, signature) "
                    "VALUES ($1, $2, $3, $4)",
                    c["entry_id"],
                    c["head_hash"],
                    c["at"],
                    c["signature"],
                )
            if batch.alerts:
                found = {
                    p: await conn.fetchval(_numbered(FIND_FINDING), *p)
                    for p in _finding_pairs(batch.alerts)
                }
                findings = [found[(a.dataset, a.grant_id)] for a in batch.alerts]
                head = await conn.fetchrow(READ_ALERT_HEAD + " FOR UPDATE")
                chained = self._chaining.alerts(batch.alerts, findings, tuple(head), batch)
                await conn.executemany(self.INSERT_ALERT, _alert_rows(chained, chained.at))
                await conn.execute(_numbered(MOVE_ALERT_HEAD), *chained.head, chained.signature)
        await conn.execute("COMMIT")
        return Written(batch, version, live)

    @property
    def broken(self) -> Exception | None:
        return None  # a failed barrier fails its batches; the next one may hold again

    async def close(self) -> None:
        # The writer has drained: let the last barriers settle their batches.
        await asyncio.gather(*(f for _seq, f in self._waiters), return_exceptions=True)
        if self._sync_task is not None:
            self._sync_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sync_task
        for conn in (self._conn, self._barrier_conn):
            if conn is not None and not conn.is_closed():
                await conn.close(timeout=self._timeout)
        self._conn = self._barrier_conn = None


def open_store(settings: Settings) -> LogStore:
    chaining = _Chaining(
        settings.checkpoint_every,
        settings.checkpoint_key_bytes,
    )
    if settings.is_sqlite:
        if settings.sqlite_file is None:
            raise ValueError("the access log needs a SQLite database file, not :memory:")
        return SqliteLogStore(settings.sqlite_file, settings.database_timeout, chaining)
    url = make_url(settings.database_url)
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    return PostgresLogStore(dsn, settings.database_timeout, chaining)
