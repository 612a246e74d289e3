"""The access log's PostgreSQL store: a dedicated asyncpg connection runs the group commit
(`app.checks.group_commit`); ``SELECT ... FOR UPDATE`` on the head row serialises writers, and
asyncpg pipelines each ``executemany``."""

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select

from app.checks import statements
from app.checks.batch import Submission
from app.checks.group_commit import (
    COLUMN,
    ROW,
    Appended,
    Chaining,
    LogStore,
    SnapshotLoader,
    StalePolicy,
    Written,
)
from app.policy.snapshot import PolicySnapshot
from app.policy_version import PolicyVersion

logger = logging.getLogger("aclaudit.accesslog")

# `write_held`'s share lock on the policy version's row: policy changes update it, so they
# wait for the batch.
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

    def __init__(self, dsn: str, timeout: float, chaining: Chaining) -> None:
        super().__init__(statements.for_postgres(), chaining)
        self._dsn = dsn
        self._timeout = timeout
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
                await conn.execute(self._hold_policy)
                snapshot = await snapshot()
            outcome = await self._finish(conn, submissions, snapshot, tokens_version)
        except BaseException:
            self._conn = None  # whatever state it is in, the next batch gets a fresh one
            conn.terminate()
            raise
        return self._written(outcome, asyncio.get_running_loop())

    async def _finish(
        self,
        conn: Any,
        submissions: Sequence[Submission],
        snapshot: PolicySnapshot,
        tokens_version: int,
    ) -> Appended | StalePolicy:
        """The group commit's statements on `conn`, then ``COMMIT``."""
        steps = self._transaction(submissions, snapshot, tokens_version)
        result: Any = None
        while True:
            try:
                kind, sql, params = steps.send(result)
            except StopIteration as done:
                outcome: Appended | StalePolicy = done.value
                break
            if kind == ROW:
                result = await conn.fetchrow(sql, *params)
            elif kind == COLUMN:
                result = [row[0] for row in await conn.fetch(sql, *params)]
            else:  # FIRSTS
                result = [await conn.fetchval(sql, *p) for p in params]
        if isinstance(outcome, StalePolicy):
            await conn.execute("ROLLBACK")
            return outcome
        for statement, values, is_many in outcome[3]:
            if is_many:
                await conn.executemany(statement, values)
            else:
                await conn.execute(statement, *values)
        await conn.execute("COMMIT")
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
