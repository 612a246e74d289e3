"""Requests refused before their caller was authorised, counted rather than trailed one by one.

Writing (and on SQLite fsyncing, under the write lock) one admin-trail row per refused
request let anyone turn a flood of refusals (no token, a junk token, a low-privilege token's
403s, a trailing slash's 404) into a flood of writes that slowed every check. Such a refusal
leaves nothing to withhold (no data was read, nothing changed), so it is counted in memory and
written periodically, by every process's sweeper task, as one trail row per (token name, method,
path, status) with its `count`. The number of keys is bounded: past `MAX_KEYS` distinct ones,
the rest are counted under `OTHER_PATHS` (and unusual methods under `OTHER_METHODS`).

A request refused before its token was looked at (404, 405, 413, 414) is put under the token's
name when this process has authenticated that token before (`remember`); otherwise under None.
"""

import hashlib
import logging
from collections import Counter

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.types import Scope

from app.auth import service as auth_service
from app.auth.service import Caller
from app.db import begin_write

logger = logging.getLogger("aclaudit.trail")

MAX_KEYS = 256
MAX_NAMES = 4096
MAX_REFUSED_TOKENS = 10_000
MAX_PATH = 512
OTHER_PATHS = "(other paths)"
OTHER_METHODS = "(other)"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
Key = tuple[str | None, str, str, int]  # token name, method, path, status


def refused_path(scope: Scope) -> str:
    """The route's template when one matched (`/v1/findings/{finding_id}`), else the path."""
    route = scope.get("route")
    path = getattr(route, "path", None) or scope["path"]
    return str(path).replace("\x00", "%00")[:MAX_PATH]


def bearer_hash(scope: Scope) -> str | None:
    """The hash of the request's one Bearer token (None without exactly one)."""
    values = [v for n, v in scope["headers"] if n == b"authorization"]
    if len(values) != 1:
        return None
    scheme, _, token = values[0].partition(b" ")
    token = token.strip()
    if scheme.lower() != b"bearer" or not token:
        return None
    return hashlib.sha256(token).hexdigest()


class Refusals:
    def __init__(self) -> None:
        self._counts: Counter[Key] = Counter()
        # Tokens this process has looked up, by hash. A token's name and scopes never change
        # and a revoked token stays revoked, so these may answer refusals (never an allow):
        # who sent a request refused before authentication, a scope the token lacks, and a
        # token already found unknown or revoked (a new token is random: no junk value
        # refused earlier can become one).
        self._known: dict[str, Caller] = {}
        self._refused: set[str] = set()

    def remember(self, token_hash: str, caller: Caller) -> None:
        if token_hash in self._known or len(self._known) < MAX_NAMES:
            self._known[token_hash] = caller

    def known(self, token_hash: str | None) -> Caller | None:
        return None if token_hash is None else self._known.get(token_hash)

    def remember_refused(self, token_hash: str) -> None:
        if len(self._refused) >= MAX_REFUSED_TOKENS:
            self._refused.clear()
        self._refused.add(token_hash)

    def is_refused(self, token_hash: str | None) -> bool:
        return token_hash in self._refused

    def name_of(self, scope: Scope) -> str | None:
        """Who sent this request, from its headers alone: the authenticated caller, or the
        name of a token this process has seen (no database read)."""
        caller = scope.get("state", {}).get("caller") or self.known(bearer_hash(scope))
        return None if caller is None else str(caller.name)

    def count(self, name: str | None, method: str, path: str, status: int, n: int = 1) -> None:
        key = (name, method[:16], path, status)
        if key not in self._counts and len(self._counts) >= MAX_KEYS:
            # names are bounded by the tokens that exist; methods are the caller's choice
            other_method = method if method in METHODS else OTHER_METHODS
            key = (name, other_method, OTHER_PATHS, status)
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
                for (name, method, path, status), n in sorted(taken.items(), key=_order):
                    await auth_service.record_trail(
                        session,
                        token_name=name,
                        token_id=None,
                        method=method,
                        path=path,
                        query="",
                        status=status,
                        request_id=None,
                        count=n,
                    )
        except BaseException:
            for key, n in taken.items():
                self._counts[key] += n
            raise
        return len(taken)


def _order(item: tuple[Key, int]) -> tuple[str, str, str, int]:
    (name, method, path, status), _ = item
    return (name or "", method, path, status)
