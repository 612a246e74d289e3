"""Group commit: decide and record concurrent checks in one transaction, then answer them.

Each process runs one writer task. A check waits in ``submit`` until the transaction holding
its entry has committed and is durable; if that transaction (or, on SQLite, the fsync that makes
it durable) fails, every check in it fails (the router turns that into 503 deny). Decisions are
taken inside the transaction, after the policy version is read, so a check queued after a
policy change's response sees that change. The transaction itself runs on the driver directly
(``app.checks.group_commit``). On SQLite the next batch may commit while the previous one's
fsync is still running; each batch is answered when its own fsync is done.
"""

import asyncio
import functools
import logging
import time
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.token_cache import TokenCache
from app.checks.batch import Recorded, Submission
from app.checks.group_commit import LogStore, StalePolicy
from app.checks.postgres_store import PostgresLogStore
from app.checks.sqlite_store import SqliteLogStore
from app.config import Settings
from app.policy.snapshot import PolicyCache, PolicySnapshot

logger = logging.getLogger("aclaudit.accesslog")

# A batch is retried this often when its transaction finds a newer policy; from the second
# attempt the store holds the policy still while the snapshot loads, so one retry suffices
# unless something is wrong, and then the batch is refused (503 deny), not retried forever.
STALE_RETRIES = 5


class LogUnavailable(Exception):
    """The access log could not be written; the checks it held must be denied."""


# A queued submission, its answer, and when it stops waiting (monotonic seconds).
_Queued = tuple[Submission, "asyncio.Future[list[Recorded]]", float]


class AccessLogWriter:
    def __init__(
        self,
        maker: async_sessionmaker[AsyncSession],
        policy: PolicyCache,
        tokens: TokenCache,
        settings: Settings,
    ) -> None:
        self._maker = maker
        self._policy = policy
        self._tokens = tokens
        self._max_batch = settings.max_group_commit
        self._timeout = settings.database_timeout
        self._store: LogStore = open_store(settings, maker)
        self._queue: list[_Queued] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._syncing: set[asyncio.Future[None]] = set()
        self.write_failures = 0

    @property
    def broken(self) -> Exception | None:
        """Why every check is refused until the process restarts (a failed fsync), if so."""
        return self._store.broken

    def on_broken(self, callback: Callable[[], None]) -> None:
        """Call `callback` once the log can no longer be written until a restart."""
        self._store.on_broken = callback

    def on_clock_step(self, callback: Callable[[float], None]) -> None:
        """Call `callback` with the gap (seconds) each time a batch finds the head's instant
        too far ahead of its clock to wait for, and restarts the log's monotone instants."""
        self._store.on_clock_step = callback

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="access-log-writer")

    async def stop(self) -> None:
        """Finish every queued check (committing its entry), then stop. Idempotent."""
        if self._closing:
            return
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        await asyncio.gather(*self._syncing, return_exceptions=True)
        await self._store.close()

    async def submit(self, submission: Submission) -> list[Recorded]:
        if self._closing or self._task is None or self._task.done():
            raise LogUnavailable("the access-log writer is not running")
        future: asyncio.Future[list[Recorded]] = asyncio.get_running_loop().create_future()
        self._queue.append((submission, future, time.monotonic() + self._timeout))
        self._wake.set()
        # No shield: a caller that goes away cancels only its own future, which the writer skips
        # (its entry is still committed with the rest of the batch).
        return await future

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                self._expire()
                if not self._queue:
                    break
                batch = self._take_batch()
                try:
                    # The lock may be waited for as long as the longest-waiting check (the
                    # first: the queue is in arrival order) has left.
                    wait = max(0.001, batch[0][2] - time.monotonic())
                    results, durable = await self._commit([s for s, _, _ in batch], wait)
                except Exception as exc:
                    self._fail(batch, exc)
                    continue
                if durable is None:
                    self._answer(batch, results)
                    continue
                # Committed, not yet synced: the next batch may commit meanwhile, and this one
                # is answered when the fsync that covers it is done (see app.checks.group_commit).
                self._syncing.add(durable)
                durable.add_done_callback(functools.partial(self._on_durable, batch, results))
            if self._closing and not self._queue:
                return

    def _on_durable(
        self,
        batch: list[_Queued],
        results: list[list[Recorded] | Exception],
        durable: asyncio.Future[None],
    ) -> None:
        self._syncing.discard(durable)
        error = None if durable.cancelled() else durable.exception()
        if durable.cancelled() or error is not None:
            self._fail(batch, error or LogUnavailable("the commit was not synced"))
        else:
            self._answer(batch, results)

    def _expire(self) -> None:
        """Deny now the checks that have waited the database timeout (behind a batch waiting
        for the log's lock, say), instead of after their own batch's full wait as well."""
        now = time.monotonic()
        if self._queue[0][2] > now:  # the oldest has time left, so all have
            return
        expired = [queued for queued in self._queue if queued[2] <= now]
        self._queue = [queued for queued in self._queue if queued[2] > now]
        self._fail(expired, LogUnavailable("the access log could not be written in time"))

    def _fail(self, batch: list[_Queued], exc: BaseException) -> None:
        self.write_failures += len(batch)
        logger.error("access log write failed for %d submissions: %r", len(batch), exc)
        for _, future, _ in batch:
            if not future.done():
                future.set_exception(LogUnavailable(str(exc)))

    @staticmethod
    def _answer(
        batch: list[_Queued],
        results: list[list[Recorded] | Exception],
    ) -> None:
        for (_, future, _), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

    def _take_batch(self) -> list[_Queued]:
        taken, count = 0, 0
        for submission, _, _ in self._queue:
            if taken and count + len(submission.checks) > self._max_batch:
                break
            taken += 1
            count += len(submission.checks)
        batch, self._queue = self._queue[:taken], self._queue[taken:]
        return batch

    async def _commit(
        self, submissions: list[Submission], wait: float
    ) -> tuple[list[list[Recorded] | Exception], asyncio.Future[None] | None]:
        snapshot = self._policy.loaded
        for attempt in range(STALE_RETRIES):
            tokens = self._tokens.validated_version
            if attempt == 0:
                if snapshot is None:
                    snapshot = await self._load_policy()
                written = await self._store.write(submissions, snapshot, tokens, wait)
            else:  # the policy moved: load it again while the store holds it still
                written = await self._store.write(submissions, self._load_policy, tokens, wait)
            if isinstance(written, StalePolicy):
                continue
            if written.live_tokens is not None:
                self._tokens.revalidated(written.version, written.live_tokens)
            return written.batch.results, written.durable
        raise LogUnavailable("the policy kept changing while the batch was being decided")

    async def _load_policy(self) -> PolicySnapshot:
        async with self._maker() as session:
            return await self._policy.current(session)


def open_store(settings: Settings, maker: async_sessionmaker[AsyncSession]) -> LogStore:
    return SqliteLogStore(settings) if settings.is_sqlite else PostgresLogStore(settings, maker)
