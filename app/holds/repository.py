from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.holds.models import Hold

CHUNK = 5000  # ids or names per IN (...): asyncpg takes at most 32,767 parameters


def _chunks(values: Collection[str] | Sequence[int]) -> list[list[Any]]:
    ordered = sorted(values)
    return [ordered[i : i + CHUNK] for i in range(0, len(ordered), CHUNK)] or [[]]


async def active_triples(session: AsyncSession) -> list[tuple[int, str, str]]:
    """(id, principal, dataset) of every active hold: what the policy loads as deny rules."""
    query = select(Hold.id, Hold.principal, Hold.dataset).where(Hold.released_at.is_(None))
    return [(row.id, row.principal, row.dataset) for row in await session.execute(query)]


_HELD = (
    select(Hold.id)
    .where(
        Hold.released_at.is_(None),
        Hold.kind == bindparam("kind"),
        Hold.principal == bindparam("principal"),
    )
    .limit(1)
)


async def is_held(session: AsyncSession, *, kind: str, principal: str) -> bool:
    """Whether `principal` has an active hold of `kind` (one statement, built once: a SCIM user
    create asks it every time)."""
    found = await session.execute(_HELD, {"kind": kind, "principal": principal})
    return found.first() is not None


async def active_on(
    session: AsyncSession,
    *,
    kind: str,
    datasets: Collection[str] | None = None,
    principals: Collection[str] | None = None,
) -> Sequence[Hold]:
    """The active holds of `kind` on `datasets` (or any) of `principals` (or any), by id."""
    query = select(Hold).where(Hold.released_at.is_(None), Hold.kind == kind)
    if (datasets is not None and not datasets) or (principals is not None and not principals):
        return []
    found: list[Hold] = []
    for some in _chunks(datasets) if datasets is not None else [None]:
        for others in _chunks(principals) if principals is not None else [None]:
            chunk = query
            if some is not None:
                chunk = chunk.where(Hold.dataset.in_(some))
            if others is not None:
                chunk = chunk.where(Hold.principal.in_(others))
            found += (await session.execute(chunk)).scalars().all()
    return sorted(found, key=lambda hold: hold.id)


async def get(session: AsyncSession, hold_id: int) -> Hold | None:
    return await session.get(Hold, hold_id)


async def add(session: AsyncSession, holds: list[Hold]) -> list[Hold]:
    session.add_all(holds)
    await session.flush()
    return holds


async def release(
    session: AsyncSession, holds: Sequence[Hold], *, at: datetime, by: str, reason: str
) -> None:
    if not holds:
        return
    for ids in _chunks([h.id for h in holds]):
        await session.execute(
            update(Hold)
            .where(Hold.id.in_(ids))
            .values(released_at=at, released_by=by, release_reason=reason)
        )
    for hold in holds:
        hold.released_at, hold.released_by, hold.release_reason = at, by, reason


async def list_page(
    session: AsyncSession,
    *,
    dataset: str | None,
    principal: str | None,
    kind: str | None,
    active: bool | None,
    after_id: int | None,
    limit: int,
) -> Sequence[Hold]:
    query = select(Hold).order_by(Hold.id).limit(limit)
    if after_id is not None:
        query = query.where(Hold.id > after_id)
    if dataset is not None:
        query = query.where(Hold.dataset == dataset)
    if principal is not None:
        query = query.where(Hold.principal == principal)
    if kind is not None:
        query = query.where(Hold.kind == kind)
    if active is True:
        query = query.where(Hold.released_at.is_(None))
    elif active is False:
        query = query.where(Hold.released_at.is_not(None))
    return (await session.execute(query)).scalars().all()
