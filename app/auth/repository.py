from collections.abc import Sequence

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import ApiToken, TrailEntry, TrailHead

# Built once: every request authenticates with it (building it cost a sixth of the lookup).
_BY_HASH = select(ApiToken).where(ApiToken.token_hash == bindparam("token_hash"))


async def get_token_by_hash(session: AsyncSession, token_hash: str) -> ApiToken | None:
    result = await session.execute(_BY_HASH, {"token_hash": token_hash})
    return result.scalar_one_or_none()


async def get_token_by_name(session: AsyncSession, name: str) -> ApiToken | None:
    result = await session.execute(select(ApiToken).where(ApiToken.name == name))
    return result.scalar_one_or_none()


async def list_tokens(session: AsyncSession) -> Sequence[ApiToken]:
    return (await session.execute(select(ApiToken).order_by(ApiToken.id))).scalars().all()


async def list_trail(
    session: AsyncSession, *, after_id: int | None, limit: int, token_name: str | None
) -> Sequence[TrailEntry]:
    query = select(TrailEntry).order_by(TrailEntry.id.desc()).limit(limit)
    if after_id is not None:
        query = query.where(TrailEntry.id < after_id)
    if token_name is not None:
        query = query.where(TrailEntry.token_name == token_name)
    return (await session.execute(query)).scalars().all()


async def lock_trail_head(session: AsyncSession) -> TrailHead:
    """The trail's head, locked for the caller's transaction (SQLite: its write lock)."""
    query = select(TrailHead).where(TrailHead.id == 1).with_for_update()
    return (await session.execute(query)).scalar_one()
