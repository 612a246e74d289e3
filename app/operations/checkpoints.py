"""SQLite WAL checkpoints off the request path.

By default the commit that takes SQLite's WAL past 1,000 pages copies the WAL into the database
and syncs both inside that commit: 50-100 ms added to whichever request it falls on (after a
membership change rewrote hundreds of findings, every few changes). The service's own
connections turn that off (``create_engine(..., background_checkpoints=True)``, and the access
log's connection always) and this task checkpoints for all of them instead, every `INTERVAL`
seconds in a thread of its own. A PASSIVE checkpoint never
waits for a writer and never makes a commit less durable (it syncs the WAL before copying).
"""

import asyncio
import contextlib
import logging
import sqlite3
from concurrent.futures import ThreadPoolExecutor

logger = logging.getLogger("aclaudit.checkpoints")


class WalCheckpointer:
    INTERVAL = 0.5  # seconds; the WAL grows by about 1 MiB per large membership change

    def __init__(self, path: str, timeout: float) -> None:
        self._path = path
        self._timeout = timeout
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wal-ckpt")
        self._conn: sqlite3.Connection | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="wal-checkpoints")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await asyncio.get_running_loop().run_in_executor(self._executor, self._close)
        self._executor.shutdown()

    async def checkpoint(self) -> tuple[int, int, int]:
        """One checkpoint now: (busy, WAL frames, frames copied), as SQLite reports them."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._checkpoint)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.INTERVAL)
            try:
                await self.checkpoint()
            except Exception as exc:  # the next round retries; the WAL grows meanwhile
                logger.warning("WAL checkpoint failed: %r", exc)

    def _checkpoint(self) -> tuple[int, int, int]:
        if self._conn is None:
            self._conn = sqlite3.connect(self._path, timeout=self._timeout, isolation_level=None)
        busy, frames, copied = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return int(busy), int(frames), int(copied)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
