"""The access log's SQLite store: a dedicated stdlib ``sqlite3`` connection (WAL, like every
other connection of the service); the group commit (`app.checks.group_commit`) runs on the
event loop, the WAL's fsync in a dedicated thread. ``BEGIN IMMEDIATE`` takes the write lock,
which serialises writers across processes."""

import asyncio
import logging
import os
import sqlite3
import time
from collections.abc import Awaitable
from concurrent.futures import ThreadPoolExecutor

from app.checks import group_commit, statements
from app.checks.group_commit import (
    LogStore,
    LogStoreFailed,
    Snapshot,
    StalePolicy,
    Submissions,
    Written,
)
from app.config import Settings
from app.policy.snapshot import PolicySnapshot

logger = logging.getLogger("aclaudit.accesslog")

# Page cache of the access log's own connection: every check inserts into six indexes (two of
# them at random places: principal, dataset), whose pages the default 2 MiB kept re-reading
# (SQLite checks per second, against the bare endpoint: about 0.42x with 2 MiB, 0.45-0.47x).
LOG_CACHE_KIB = 65_536


class SqliteLogStore(LogStore):
    """A dedicated connection; statements and ``COMMIT`` on the event loop, fsync in a thread.

    Durability: in WAL mode, ``synchronous=FULL`` makes SQLite fsync the WAL inside every
    ``COMMIT``, while the write lock is held, so no other batch can commit during that fsync.
    This store instead commits with ``synchronous=NORMAL`` (the frames are written to the WAL,
    not yet synced) and answers a batch's checks only after an ``fsync`` of the WAL file that
    *started after* that commit returned (`_durable`). An fsync covers every frame written
    before it, so one fsync makes all the batches committed meanwhile durable, and the next
    batch commits while the previous one's fsync runs: group commit across transactions. What
    is answered is exactly as durable as with ``FULL``; what is lost in a power cut is only a
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

    def __init__(self, settings: Settings) -> None:
        super().__init__(statements.for_sqlite(), settings)
        if settings.sqlite_file is None:
            raise ValueError("the access log needs a SQLite database file, not :memory:")
        self._path = settings.sqlite_file
        self._timeout = settings.database_timeout
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="access-log")
        self._sync_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="log-fsync")
        self._conn: sqlite3.Connection | None = None
        self._wal_fd: int | None = None
        self._file_id: tuple[int, int] | None = None  # the database file's, when connected

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self._path, timeout=self._timeout, isolation_level=None, check_same_thread=False
        )
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        is_wal = str(mode).lower() == "wal"
        self._commit_is_durable = not is_wal
        if is_wal:
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
        self, submissions: Submissions, snapshot: Snapshot, tokens_version: int, wait: float
    ) -> Written | StalePolicy:
        """Given a loader: the write lock first, then the snapshot (policy changes need the
        same lock)."""
        loop = asyncio.get_running_loop()
        if self._failed is not None:
            raise LogStoreFailed("the access log could not be synced to disk") from self._failed
        conn = self._conn
        if isinstance(snapshot, PolicySnapshot):
            try:
                if conn is not None:
                    conn.execute("BEGIN IMMEDIATE")  # busy_timeout is 0 between batches
            except sqlite3.OperationalError:
                conn = None  # the lock is held elsewhere: wait for it in the thread
            if conn is None:
                outcome = await loop.run_in_executor(
                    self._executor, self._write, submissions, snapshot, tokens_version, wait
                )
                return self._written(outcome, loop)
        else:
            conn = await loop.run_in_executor(self._executor, self._begin, wait)
            try:
                snapshot = await snapshot()
            except BaseException:
                self._abandon(conn)
                raise
        steps = self._transaction(submissions, snapshot, tokens_version)
        return self._written(self._run(conn, steps), loop)

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
        self, submissions: Submissions, snapshot: PolicySnapshot, tokens_version: int, wait: float
    ) -> group_commit.Outcome:
        """The transaction in the thread, waiting up to `wait` seconds for the write lock."""
        steps = self._transaction(submissions, snapshot, tokens_version)
        return self._run(self._begin(wait), steps)

    def _run(
        self, conn: sqlite3.Connection, steps: group_commit.Transaction
    ) -> group_commit.Outcome:
        """The transaction's statements on `conn`, through its ``COMMIT``."""
        try:
            kind, sql, params = next(steps)
            while True:
                result = None
                if kind == group_commit.MANY:
                    conn.executemany(sql, params)
                elif kind == group_commit.WAIT:  # at most MAX_CLOCK_SKEW, holding the lock
                    time.sleep(params)
                else:
                    cursor = conn.execute(sql, params)
                    if kind == group_commit.ONE:
                        result = cursor.fetchone()
                    elif kind == group_commit.ALL:
                        result = cursor.fetchall()
                kind, sql, params = steps.send(result)
        except StopIteration as done:
            outcome: group_commit.Outcome = done.value
            return outcome
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

    # -- durability ---------------------------------------------------------------------------

    def _sync(self, loop: asyncio.AbstractEventLoop) -> Awaitable[None]:
        return loop.run_in_executor(self._sync_executor, self._fsync)

    def _sync_failed(self, error: Exception) -> None:
        # After a failed fsync the kernel may have dropped the unsynced pages, and a later
        # fsync could succeed without them: nothing written since can be trusted to be
        # durable. Fail closed, as PostgreSQL does: every waiting and every later batch is
        # answered 503 deny until the process restarts.
        logger.critical(
            "fsync of the access log failed; refusing checks until this process "
            "restarts on a healthy disk: %r",
            error,
        )
        self._failed = error

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

    async def _disconnect(self) -> None:
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
