from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.accesslog.models import (
    IN_AUDIENCE,
    OUT_OF_AUDIENCE,
    AccessLogCheckpoint,
    AccessLogEntry,
    AccessLogHead,
    AccessLogSubject,
)

HEAD = select(AccessLogHead).where(AccessLogHead.id == 1)


async def get_head(session: AsyncSession) -> AccessLogHead:
    return (await session.execute(HEAD)).scalar_one()


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


async def find_head(session: AsyncSession) -> AccessLogHead | None:
    return (await session.execute(HEAD)).scalar()


async def first_outside(
    session: AsyncSession, *, below: int, above: int | None = None
) -> int | None:
    """The smallest entry id below `below` or above `above` (None: no upper bound)."""
    outside = AccessLogEntry.id < below
    if above is not None:
        outside = or_(outside, AccessLogEntry.id > above)
    found = await session.scalar(select(func.min(AccessLogEntry.id)).where(outside))
    return None if found is None else int(found)


# How the service stores an entry on SQLite, whose columns take whatever is put in them: a value
# stored in another form reads back the same through the ORM (and so hashes the same) while
# SQL filters compare the stored form: `at` with an offset falls out of ?since= windows, an
# out_of_audience of 2 out of the partial index. Each column's form, as the log stores write it.
SQLITE_STORED_FORM = " AND ".join(
    (
        "typeof(id) = 'integer'",
        *(
            f"typeof({column}) = 'text'"
            for column in (
                "decision_id", "at", "principal", "dataset", "action", "decision", "reason",
                "data_subjects", "caller", "prev_hash", "hash",
            )
        ),
        *(f"typeof({column}) IN ('text', 'null')" for column in ("purpose", "request_id")),
        "at GLOB '[0-9][0-9][0-9][0-9]-[0-1][0-9]-[0-3][0-9] "
        "[0-2][0-9]:[0-5][0-9]:[0-6][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]'",
        "out_of_audience IN (0, 1) AND typeof(out_of_audience) = 'integer'",
        "typeof(policy_version) = 'integer'",
        "json_valid(reason) AND json_valid(data_subjects)",
    )
)  # fmt: skip


async def first_misstored(session: AsyncSession, first: int, last: int) -> int | None:
    """On SQLite, the first entry in ``first..last`` not stored in the service's own form (see
    SQLITE_STORED_FORM); None on PostgreSQL, whose column types allow one form only."""
    if session.get_bind().dialect.name != "sqlite":
        return None
    found = await session.scalar(
        text(
            f"SELECT min(id) FROM access_log WHERE id >= :first AND id <= :last "
            f"AND NOT ({SQLITE_STORED_FORM})"
        ),
        {"first": first, "last": last},
    )
    return None if found is None else int(found)


async def newest_checkpoint_id(session: AsyncSession, *, up_to: int) -> int:
    """The newest checkpoint's entry id at or below `up_to` (0: none)."""
    query = select(func.max(AccessLogCheckpoint.entry_id)).where(
        AccessLogCheckpoint.entry_id <= up_to
    )
    return int(await session.scalar(query) or 0)


async def list_checkpoints(
    session: AsyncSession, *, before_id: int | None = None, limit: int | None = None
) -> Sequence[AccessLogCheckpoint]:
    query = select(AccessLogCheckpoint).order_by(AccessLogCheckpoint.entry_id.desc())
    if before_id is not None:
        query = query.where(AccessLogCheckpoint.entry_id < before_id)
    if limit is not None:
        query = query.limit(limit)
    return (await session.execute(query)).scalars().all()
