from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.accesslog.models import (
    IN_AUDIENCE,
    OUT_OF_AUDIENCE,
    AccessLogCheckpoint,
    AccessLogEntry,
    AccessLogHead,
    AccessLogSubject,
)


async def lock_head(session: AsyncSession) -> AccessLogHead:
    """The chain head, locked until commit (SQLite's BEGIN IMMEDIATE already holds the lock)."""
    query = select(AccessLogHead).where(AccessLogHead.id == 1).with_for_update()
    return (await session.execute(query)).scalar_one()


async def get_head(session: AsyncSession) -> AccessLogHead:
    return (await session.execute(select(AccessLogHead).where(AccessLogHead.id == 1))).scalar_one()


async def append(
    session: AsyncSession,
    entries: list[dict[str, Any]],
    subjects: list[dict[str, Any]],
    head: tuple[int, str],
    checkpoint: dict[str, Any] | None,
) -> None:
    await session.execute(insert(AccessLogEntry), entries)
    if subjects:
        await session.execute(insert(AccessLogSubject), subjects)
    await session.execute(
        update(AccessLogHead)
        .where(AccessLogHead.id == 1)
        .values(last_id=head[0], last_hash=head[1])
    )
    if checkpoint is not None:
        await session.execute(insert(AccessLogCheckpoint), [checkpoint])


async def get_entry(session: AsyncSession, entry_id: int) -> AccessLogEntry | None:
    return await session.get(AccessLogEntry, entry_id)


async def list_entries(
    session: AsyncSession,
    *,
    principal: str | None,
    dataset: str | None,
    decision: str | None,
    out_of_audience: bool | None,
    data_subject: str | None,
    since: datetime | None,
    until: datetime | None,
    before_id: int | None,
    limit: int,
) -> Sequence[AccessLogEntry]:
    query = select(AccessLogEntry).order_by(AccessLogEntry.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(AccessLogEntry.id < before_id)
    if principal is not None:
        query = query.where(AccessLogEntry.principal == principal)
    if dataset is not None:
        query = query.where(AccessLogEntry.dataset == dataset)
    if decision is not None:
        query = query.where(AccessLogEntry.decision == decision)
    if out_of_audience is not None:
        query = query.where(OUT_OF_AUDIENCE if out_of_audience else IN_AUDIENCE)
    if since is not None:
        query = query.where(AccessLogEntry.at >= since)
    if until is not None:
        query = query.where(AccessLogEntry.at < until)
    if data_subject is not None:
        query = query.where(
            AccessLogEntry.id.in_(
                select(AccessLogSubject.entry_id).where(AccessLogSubject.subject == data_subject)
            )
        )
    return (await session.execute(query)).scalars().all()


async def entries_after(
    session: AsyncSession, *, after: int, up_to: int, limit: int
) -> Sequence[AccessLogEntry]:
    query = (
        select(AccessLogEntry)
        .where(AccessLogEntry.id > after, AccessLogEntry.id <= up_to)
        .order_by(AccessLogEntry.id)
        .limit(limit)
    )
    return (await session.execute(query)).scalars().all()


async def subjects_between(session: AsyncSession, first: int, last: int) -> dict[int, set[str]]:
    """The ``?data_subject=`` index rows of entries ``first..last``, by entry id."""
    query = select(AccessLogSubject.entry_id, AccessLogSubject.subject).where(
        AccessLogSubject.entry_id >= first, AccessLogSubject.entry_id <= last
    )
    found: dict[int, set[str]] = {}
    for entry_id, subject in (await session.execute(query)).all():
        found.setdefault(entry_id, set()).add(subject)
    return found


async def list_checkpoints(
    session: AsyncSession, *, before_id: int | None = None, limit: int | None = None
) -> Sequence[AccessLogCheckpoint]:
    query = select(AccessLogCheckpoint).order_by(AccessLogCheckpoint.entry_id.desc())
    if before_id is not None:
        query = query.where(AccessLogCheckpoint.entry_id < before_id)
    if limit is not None:
        query = query.limit(limit)
    return (await session.execute(query)).scalars().all()
