"""Tokens seen by the check path, so a check costs no token query.

Entries are trusted only for the policy version they were validated at: revoking a token
advances the policy version, and the access-log writer revalidates the tokens of every batch
that sees a new version before it answers any of them.
"""

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.models import ApiToken
from app.auth.service import Caller


class TokenCache:
    def __init__(self) -> None:
        self._entries: dict[str, Caller] = {}
        self._generation = 0
        self.validated_version = -1

    async def lookup(
        self, maker: async_sessionmaker[AsyncSession], token_hash: str
    ) -> Caller | None:
        cached = self._entries.get(token_hash)
        if cached is not None:
            return cached
        generation = self._generation
        async with maker() as session:
            row = (
                await session.execute(select(ApiToken).where(ApiToken.token_hash == token_hash))
            ).scalar_one_or_none()
        if row is None or row.revoked_at is not None:
            return None
        caller = Caller(token_id=row.id, name=row.name, scopes=frozenset(row.scopes))
        if generation == self._generation:  # not invalidated while we were looking
            self._entries[token_hash] = caller
        return caller

    def peek(self, token_hash: str) -> Caller | None:
        """The cached caller, without touching the database (None when not cached)."""
        return self._entries.get(token_hash)

    def revalidated(self, version: int, live: set[str]) -> None:
        """Tokens were re-read at ``version``: keep only ``live`` ones, drop every other entry.

        Called by the access-log writer, in its transaction's wake and before it answers any
        check of that transaction.
        """
        self._generation += 1
        self._entries = {h: c for h, c in self._entries.items() if h in live}
        self.validated_version = version
