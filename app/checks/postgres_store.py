"""The access log's PostgreSQL store: a dedicated asyncpg connection runs the group commit
(`app.checks.group_commit`); ``SELECT ... FOR UPDATE`` on the head row serialises writers, and
asyncpg pipelines each ``executemany``."""

import asyncio
import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.accesslog import partitions
from app.checks import group_commit, statements
from app.checks.group_commit import LogStore, Snapshot, StalePolicy, Submissions, Written
from app.config import Settings
from app.policy.snapshot import PolicySnapshot
from app.policy_version import PolicyVersion

logger = logging.getLogger("aclaudit.accesslog")

# Taken before a snapshot is loaded (see `write`): a share lock on the policy version's row,
# which policy changes update, so they wait for the batch.
HOLD_POLICY = (
    select(PolicyVersion.version)
    .where(PolicyVersion.id == statements.SINGLETON)
    .with_for_update(read=True)
)


class PostgresLogStore(LogStore):
    """The transaction on a dedicated asyncpg connection, reconnected after any failure.

    Durability, as for SQLite (see `app.checks.sqlite_store.SqliteLogStore`), without holding
    the head's lock through the WAL flush: the connection commits with
    ``synchronous_commit = off``, which releases the lock as soon as the commit record is
    written, and a batch is answered only after a *barrier* has committed on a second
    connection with the server's own ``synchronous_commit`` (``on`` by default): a transaction
    that takes a transaction id and commits, which returns only once the WAL is flushed up to
    its commit record, and so past the commit records of every batch committed before the
    barrier began. The next batch commits while the previous one's barrier waits for the
    flush, and PostgreSQL folds concurrent flushes into one. If the barrier fails, the batches
    it covered are answered 503 deny (PostgreSQL itself stops on a failed WAL fsync, so later
    barriers can be trusted): `broken` stays None.
    """

    def __init__(self, settings: Settings, maker: async_sessionmaker[AsyncSession]) -> None:
        super().__init__(statements.for_postgres(), settings)
        self._maker = maker  # for partitions a batch finds missing
        self._partition_entries = settings.log_partition_entries
        self._max_batch = settings.max_group_commit
        url = make_url(settings.database_url).set(drivername="postgresql")
        self._dsn = url.render_as_string(hide_password=False)
        self._timeout = settings.database_timeout
        self._hold_policy = statements.prepare(HOLD_POLICY, statements.POSTGRES)
        self._conn: Any = None  # asyncpg.Connection (asyncpg ships no type hints)
        self._barrier_conn: Any = None

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

    async def write(
        self, submissions: Submissions, snapshot: Snapshot, tokens_version: int, wait: float
    ) -> Written | StalePolicy:
        """Given a loader: a share lock on the policy version's row first (policy changes
        update it, so they wait for this batch), then the snapshot.

        A batch whose ids have no partition yet (the sweeper fell behind, or is off) makes
        the partitions and is written again: a missing partition delays checks, never fails
        them."""
        import asyncpg

        try:
            return await self._write(submissions, snapshot, tokens_version, wait)
        except asyncpg.CheckViolationError as exc:
            if "no partition" not in str(exc):
                raise
        logger.warning("the access log had no partition for a batch: making partitions now")
        async with self._maker() as session, session.begin():
            await partitions.keep_ahead(
                session, partition_entries=self._partition_entries, beyond=self._max_batch
            )
        return await self._write(submissions, snapshot, tokens_version, wait)

    async def _write(
        self, submissions: Submissions, snapshot: Snapshot, tokens_version: int, wait: float
    ) -> Written | StalePolicy:
        conn = await self._connection()
        try:
            await conn.execute("BEGIN")
            if wait < 0.8 * self._timeout:  # its checks waited behind a stuck batch: less
                await conn.execute(f"SET LOCAL lock_timeout = {max(1, int(wait * 1000))}")
            if not isinstance(snapshot, PolicySnapshot):
                await conn.execute(self._hold_policy)
                snapshot = await snapshot()
            steps = self._transaction(submissions, snapshot, tokens_version)
            outcome = await self._run(conn, steps)
        except BaseException:
            self._conn = None  # whatever state it is in, the next batch gets a fresh one
            conn.terminate()
            raise
        return self._written(outcome, asyncio.get_running_loop())

    async def _run(self, conn: Any, steps: group_commit.Transaction) -> group_commit.Outcome:
        """The transaction's statements on `conn`, through its ``COMMIT``."""
        try:
            kind, sql, params = next(steps)
            while True:
                if kind == group_commit.ONE:
                    result = await conn.fetchrow(sql, *params)
                elif kind == group_commit.ALL:
                    result = await conn.fetch(sql, *params)
                elif kind == group_commit.MANY:
                    result = await conn.executemany(sql, params)
                elif kind == group_commit.WAIT:  # at most MAX_CLOCK_SKEW, holding the lock
                    await asyncio.sleep(params)
                    result = None
                else:
                    result = await conn.execute(sql, *params)
                kind, sql, params = steps.send(result)
        except StopIteration as done:
            outcome: group_commit.Outcome = done.value
            return outcome

    # -- durability ---------------------------------------------------------------------------

    async def _sync(self, loop: asyncio.AbstractEventLoop) -> None:
        """The barrier, on its own connection."""
        import asyncpg

        if self._barrier_conn is None or self._barrier_conn.is_closed():
            self._barrier_conn = await asyncpg.connect(self._dsn, timeout=self._timeout)
        # One round trip (simple protocol); the xid makes COMMIT write a record and wait for the
        # WAL flush through it.
        await self._barrier_conn.execute("BEGIN; SELECT txid_current(); COMMIT")

    def _sync_failed(self, error: Exception) -> None:
        logger.error("access-log WAL flush barrier failed: %r", error)
        if self._barrier_conn is not None:
            self._barrier_conn.terminate()
            self._barrier_conn = None

    async def _disconnect(self) -> None:
        for conn in (self._conn, self._barrier_conn):
            if conn is not None and not conn.is_closed():
                await conn.close(timeout=self._timeout)
        self._conn = self._barrier_conn = None
