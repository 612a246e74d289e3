"""Refusals of requests whose caller was never authenticated, counted rather than trailed
one by one.

Writing (and on SQLite fsyncing, under the write lock) one admin-trail row per refused
anonymous request let anyone turn a flood of requests without a token into a flood of
writes that slowed every check. Such a refusal leaves nothing to withhold (no data was read,
nothing changed), so it is counted in memory and written periodically, by every process's
sweeper task, as one trail row per (method, path, status) with its `count`. The number of
keys is bounded: past `MAX_KEYS` distinct ones, the rest are counted under `OTHER_PATHS`.
"""

import logging
from collections import Counter

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.types import Scope

from app.auth import service as auth_service
from app.db import begin_write

logger = logging.getLogger("aclaudit.trail")

MAX_KEYS = 256
MAX_PATH = 512
OTHER_PATHS = "(other paths)"
Key = tuple[str, str, int]  # method, path, status


def refused_path(scope: Scope) -> str:
    """The route's template when one matched (`/v1/findings/{finding_id}`), else the path."""
    route = scope.get("route")
    path = getattr(route, "path", None) or scope["path"]
    return str(path).replace("\x00", "%00")[:MAX_PATH]


class AnonymousRefusals:
    def __init__(self) -> None:
        self._counts: Counter[Key] = Counter()

    def count(self, method: str, path: str, status: int, n: int = 1) -> None:
        key = (method[:16], path, status)
        if key not in self._counts and len(self._counts) >= MAX_KEYS:
            key = (method[:16], OTHER_PATHS, status)
        self._counts[key] += n

    @property
    def pending(self) -> int:
        return sum(self._counts.values())

    async def flush(self, maker: async_sessionmaker[AsyncSession]) -> int:
        """Write what was counted since the last flush, one row per key, in one transaction;
        on failure the counts are kept for the next flush. Returns the rows written."""
        taken, self._counts = self._counts, Counter()
        if not taken:
            return 0
        try:
            async with maker() as session, session.begin():
                await begin_write(session)
                for (method, path, status), n in sorted(taken.items()):
                    await auth_service.record_trail(
                        session,
                        token_name=None,
                        token_id=None,
                        method=method,
                        path=path,
                        query="",
                        status=status,
                        request_id=None,
                        count=n,
                    )
        except BaseException:
            for (method, path, status), n in taken.items():
                self.count(method, path, status, n)
            raise
        return len(taken)
