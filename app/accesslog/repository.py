from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    RowMapping,
    and_,
    delete,
    false,
    func,
    null,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from app.accesslog import partitions
from app.accesslog.models import (
    IN_AUDIENCE,
    OUT_OF_AUDIENCE,
    AccessLogArchive,
    AccessLogCheckpoint,
    AccessLogEntry,
    AccessLogHead,
    AccessLogSubject,
    GrantLastUse,
    UseScan,
)
from app.alerts.models import Alert, ReadAlertWindow
from app.alerts.schemas import AlertType

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
    """Entries newest first, filtered. ``since``/``until`` become id bounds (`time_window`),
    so every filter is one backward walk of an id-ordered index that stops after `limit`."""
    e = AccessLogEntry
    query = select(e).order_by(e.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(e.id < before_id)
    if since is not None or until is not None:
        window = await time_window(session, since, until)
        if window is None:
            return []
        query = query.where(*window)
    if principal is not None:
        query = query.where(e.principal == principal)
    if dataset is not None:
        query = query.where(e.dataset == dataset)
    if decision is not None:
        query = query.where(e.decision == decision)
    if out_of_audience is not None:
        query = query.where(OUT_OF_AUDIENCE if out_of_audience else IN_AUDIENCE)
    if data_subject is not None:
        query = query.where(
            e.id.in_(
                select(AccessLogSubject.entry_id).where(AccessLogSubject.subject == data_subject)
            )
        )
    if session.get_bind().dialect.name == "postgresql":
        # Planned for these values, not generically: asyncpg prepares the statement, and after
        # five runs PostgreSQL would keep a generic plan that cannot prune partitions by the
        # cursor or see how selective this principal or dataset is.
        await session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
    return (await session.execute(query)).scalars().all()


async def time_window(
    session: AsyncSession, since: datetime | None, until: datetime | None
) -> list[ColumnElement[bool]] | None:
    """``at >= since AND at < until`` as conditions on ids where the log allows (None: no entry
    can match).

    From the head's ``monotone_from`` on, ``at`` does not decrease with the id (the group
    commit's clamp), so there the entries at or after an instant are exactly those from the
    first id written at or after it: `_first_at_or_after`, one descent of ``(at, id)``. Older
    entries (written before migration 0020, while each writer's clock stamped its own) keep the
    plain comparison of ``at``.

    The bounds and the page are separate statements (under PostgreSQL's READ COMMITTED, each
    its own snapshot), so the head's ``last_id`` is read in the same statement as the bounds
    and, without an upper bound found, bounds the page: an entry committed in between (after
    ``until``, or not yet written when ``since`` was looked up) is not listed."""
    e, h = AccessLogEntry, AccessLogHead

    def first_from(at: datetime | None) -> Any:
        if at is None:
            return null()
        return select(e.id).where(e.at >= at).order_by(e.at, e.id).limit(1).scalar_subquery()

    # One round trip for a log written in order from its first entry on (as every log made
    # since 0020, or generated): the head, whether older entries remain, the two bounds.
    older_remain = select(e.id).where(e.id < h.monotone_from).limit(1).exists()
    bounds = select(
        h.monotone_from, older_remain, first_from(since), first_from(until), h.last_id
    ).where(h.id == 1)
    row = (await session.execute(bounds)).first()
    if row is None:  # no head (verify reports that): nothing said about order, compare `at`
        plain = [] if since is None else [e.at >= since]
        return plain if until is None else [*plain, e.at < until]
    monotone_from, has_prefix, last_id = int(row[0]), bool(row[1]), int(row[4])
    low: int | None = monotone_from  # the monotone part matches ids low <= id < high
    high: int | None = None
    if not has_prefix:
        if since is not None:
            low = None if row[2] is None else int(row[2])
        if until is not None:
            high = None if row[3] is None else int(row[3])
    else:
        found = (
            await session.execute(
                select(e.id, e.at).where(e.id >= monotone_from).order_by(e.id).limit(1)
            )
        ).first()
        first = None if found is None else (int(found[0]), found[1])
        if since is not None:
            low = await _first_at_or_after(session, since, monotone_from, first)
        if until is not None:
            high = await _first_at_or_after(session, until, monotone_from, first)
    monotone: list[ColumnElement[bool]] = []
    if low is not None:
        monotone.append(e.id >= low)
    if high is not None:
        monotone.append(e.id < high)
    else:  # nothing written after the head of the bounds' snapshot
        monotone.append(e.id <= last_id)
    empty = low is None or (high is not None and low >= high)
    if not has_prefix:
        return None if empty else monotone
    older = [e.id < monotone_from]
    if since is not None:
        older.append(e.at >= since)
    if until is not None:
        older.append(e.at < until)
    if empty:
        return older
    # high >= monotone_from, so `id < high` holds for every older entry: an index bound
    bound = [e.id < high] if high is not None else [e.id <= last_id]
    return [*bound, or_(e.id >= low, and_(*older))]


async def _first_at_or_after(
    session: AsyncSession, at: datetime, monotone_from: int, first: tuple[int, datetime] | None
) -> int | None:
    """With older (unordered) entries before `monotone_from`: the first id from there on
    written at or after `at` (None: none was). `first`: the first entry from there; if it is
    at or after `at`, it is the answer, without walking ``(at, id)`` through older entries
    written after `at` (the older ones were all written before it)."""
    e = AccessLogEntry
    if first is None:
        return None
    if first[1] >= at:
        return first[0]
    query = select(e.id).where(e.at >= at, e.id >= monotone_from).order_by(e.at, e.id).limit(1)
    found = await session.scalar(query)
    return None if found is None else int(found)


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


async def checkpoint_marks(session: AsyncSession) -> list[tuple[int, str, str | None]]:
    """Every checkpoint's (entry id, head hash, signature): what verify needs of them."""
    c = AccessLogCheckpoint
    query = select(c.entry_id, c.head_hash, c.signature).order_by(c.entry_id)
    return [(int(i), str(h), s) for i, h, s in (await session.execute(query)).all()]


async def first_misstored_checkpoint(session: AsyncSession) -> int | None:
    """On SQLite, the first checkpoint not stored as the service stores it (its `at` would
    not read back, failing GET /v1/access-log/checkpoints); None on PostgreSQL."""
    if session.get_bind().dialect.name != "sqlite":
        return None
    found = await session.scalar(
        text(
            "SELECT min(entry_id) FROM access_log_checkpoints WHERE NOT ("
            "typeof(entry_id) = 'integer' AND typeof(head_hash) = 'text' "
            "AND typeof(signature) IN ('text', 'null') AND typeof(at) = 'text' AND at GLOB "
            "'[0-9][0-9][0-9][0-9]-[0-1][0-9]-[0-3][0-9] "
            "[0-2][0-9]:[0-5][0-9]:[0-6][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]')"
        )
    )
    return None if found is None else int(found)


async def entry_rows(session: AsyncSession, *, after: int, up_to: int) -> Sequence[RowMapping]:
    """Entries after..up_to in id order, as mappings (no ORM objects: verify reads millions)."""
    t = AccessLogEntry.__table__
    query = select(t).where(t.c.id > after, t.c.id <= up_to).order_by(t.c.id)
    return (await session.execute(query)).mappings().all()


async def count_entries(session: AsyncSession, first: int, last: int) -> int:
    """How many of entries ``first..last`` the database holds."""
    query = select(func.count()).where(AccessLogEntry.id >= first, AccessLogEntry.id <= last)
    return int((await session.execute(query)).scalar_one())


async def entry_prev_hash(session: AsyncSession, entry_id: int) -> str | None:
    query = select(AccessLogEntry.prev_hash).where(AccessLogEntry.id == entry_id)
    return (await session.execute(query)).scalar_one_or_none()


async def entry_hash(session: AsyncSession, entry_id: int) -> str | None:
    query = select(AccessLogEntry.hash).where(AccessLogEntry.id == entry_id)
    found = await session.scalar(query)
    return None if found is None else str(found)


async def first_unlogged_read_alert(
    session: AsyncSession, *, after: int = 0
) -> tuple[int, int] | None:
    """The first ``read.out_of_audience`` alert (id, entry id) whose entry, if after `after`
    (the archived prefix), does not show that read: missing, in audience, or of another
    dataset. (An alert commits with its entry, so one statement sees both or neither.)"""
    a, e = Alert.__table__, AccessLogEntry.__table__
    query = (
        select(a.c.id, a.c.access_log_id)
        .select_from(a.outerjoin(e, e.c.id == a.c.access_log_id))
        .where(
            a.c.type == AlertType.read_out_of_audience.value,
            or_(a.c.access_log_id.is_(None), a.c.access_log_id > after),
            or_(
                a.c.access_log_id.is_(None),
                e.c.id.is_(None),
                e.c.out_of_audience == false(),
                e.c.dataset != a.c.dataset,
            ),
        )
        .order_by(a.c.id)
        .limit(1)
    )
    found = (await session.execute(query)).first()
    return None if found is None else (int(found[0]), int(found[1] or 0))


async def first_unlogged_window_read(
    session: AsyncSession, *, after: int = 0
) -> tuple[int, int] | None:
    """The first read alert window (its alert id, its last read's entry id) whose last read,
    if after `after` (the archived prefix), the log does not show: missing, in audience, or of
    another principal or dataset. A window counts reads that have no alert of their own, so
    this is what catches a rollback past them."""
    w, e = ReadAlertWindow.__table__, AccessLogEntry.__table__
    query = (
        select(w.c.alert_id, w.c.last_read_id)
        .select_from(w.outerjoin(e, e.c.id == w.c.last_read_id))
        .where(
            w.c.last_read_id > after,
            or_(
                e.c.id.is_(None),
                e.c.out_of_audience == false(),
                e.c.principal != w.c.principal,
                e.c.dataset != w.c.dataset,
            ),
        )
        .order_by(w.c.last_read_id)
        .limit(1)
    )
    found = (await session.execute(query)).first()
    return None if found is None else (int(found[0]), int(found[1]))


# -- archives ---------------------------------------------------------------------------------


async def archive_records(session: AsyncSession) -> Sequence[AccessLogArchive]:
    """Every archived segment's record, oldest first."""
    query = select(AccessLogArchive).order_by(AccessLogArchive.first_id)
    return (await session.execute(query)).scalars().all()


async def newest_archive(session: AsyncSession) -> AccessLogArchive | None:
    query = select(AccessLogArchive).order_by(AccessLogArchive.first_id.desc()).limit(1)
    return (await session.execute(query)).scalar()


async def archived_out_of_audience_reads(
    session: AsyncSession, *, dataset: str | None = None, until: datetime | None = None
) -> int:
    """Out-of-audience reads (of `dataset`, else of all) that archived segments took out of
    the database, as their records count them; with `until`, of the segments whose last
    entry was written at or before it (a segment straddling `until` is left out)."""
    query = select(AccessLogArchive.out_of_audience_reads)
    if until is not None:
        query = query.where(AccessLogArchive.last_at <= until)
    counts = (await session.execute(query)).scalars().all()
    if dataset is not None:
        return sum(int(c.get(dataset, 0)) for c in counts)
    return sum(int(n) for c in counts for n in c.values())


async def oldest_entry_at(session: AsyncSession) -> datetime | None:
    """When the oldest entry still in the database was written (None: the log is empty)."""
    query = select(AccessLogEntry.at).order_by(AccessLogEntry.id).limit(1)
    found: datetime | None = await session.scalar(query)
    return found


async def archive_holding(session: AsyncSession, entry_id: int) -> AccessLogArchive | None:
    """The archived segment entry `entry_id` went to, if any."""
    query = select(AccessLogArchive).where(
        AccessLogArchive.first_id <= entry_id, AccessLogArchive.last_id >= entry_id
    )
    return (await session.execute(query)).scalar()


async def first_id_at_or_after(session: AsyncSession, at: datetime) -> int | None:
    """The first entry written at or after `at` (uses ``ix_access_log_at_id``)."""
    query = select(func.min(AccessLogEntry.id)).where(AccessLogEntry.at >= at)
    found = await session.scalar(query)
    return None if found is None else int(found)


async def checkpoints_between(
    session: AsyncSession, after: int, before: int
) -> list[tuple[int, str, str | None]]:
    """Checkpoints (entry id, head hash, signature) with ids in ``after+1..before-1``."""
    c = AccessLogCheckpoint
    query = (
        select(c.entry_id, c.head_hash, c.signature)
        .where(c.entry_id > after, c.entry_id < before)
        .order_by(c.entry_id)
    )
    return [(int(i), str(h), s) for i, h, s in (await session.execute(query)).all()]


async def log_partitions(session: AsyncSession) -> list[partitions.Partition]:
    """The access log's partitions in id order (none on SQLite: the log is one table)."""
    if not await partitions.is_partitioned(session):
        return []
    return await partitions.list_partitions(session)


async def drop_archived_entries(session: AsyncSession, first_id: int, last_id: int) -> int:
    """Remove entries ``first_id..last_id`` (archived and verified) and their subject rows.

    The one place archived entries leave the database: on PostgreSQL the partitions that end
    within the range are dropped whole (`partitions.drop_archived`), elsewhere rows are
    deleted.
    """
    if await partitions.is_partitioned(session):
        return await partitions.drop_archived(session, first_id, last_id)
    s, e = AccessLogSubject, AccessLogEntry
    await session.execute(delete(s).where(s.entry_id >= first_id, s.entry_id <= last_id))
    result = await session.execute(delete(e).where(e.id >= first_id, e.id <= last_id))
    return int(result.rowcount)  # type: ignore[attr-defined]


async def lock_use_scan(session: AsyncSession) -> int:
    """Lock the fold's cursor row (created on first use, after what was archived already: those
    entries cannot be folded any more) and return how far the fold has gone."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    archived = select(func.coalesce(func.max(AccessLogArchive.last_id), 0)).scalar_subquery()
    await session.execute(
        insert(UseScan)
        .values(id=1, through_id=archived)
        .on_conflict_do_nothing(index_elements=["id"])
    )
    query = select(UseScan.through_id).where(UseScan.id == 1).with_for_update()
    return int((await session.execute(query)).scalar_one())


async def use_scan_through(session: AsyncSession) -> int | None:
    """How far the fold has gone (None: it never ran)."""
    return (await session.execute(select(UseScan.through_id).where(UseScan.id == 1))).scalar()


async def move_use_scan(session: AsyncSession, through_id: int) -> None:
    await session.execute(update(UseScan).where(UseScan.id == 1).values(through_id=through_id))


async def uses_between(
    session: AsyncSession, *, after: int, up_to: int
) -> list[tuple[int, datetime, int]]:
    """(grant id, last instant, last entry id) of the allowed checks in entries
    ``after+1..up_to`` that went through a grant, by grant: one range scan of the primary key."""
    grant = AccessLogEntry.reason["grant_id"].as_integer()
    query = (
        select(grant, func.max(AccessLogEntry.at), func.max(AccessLogEntry.id))
        .where(
            AccessLogEntry.id > after,
            AccessLogEntry.id <= up_to,
            AccessLogEntry.decision == "allow",
        )
        .group_by(grant)
    )
    return [
        (int(g), at, int(i)) for g, at, i in (await session.execute(query)).all() if g is not None
    ]


async def record_uses(session: AsyncSession, uses: Sequence[tuple[int, datetime, int]]) -> None:
    """Upsert (grant id, instant, entry id) into ``grant_last_use``, keeping the later instant
    (entries of a later range have larger ids; a replica's clock may lag)."""
    postgres = session.get_bind().dialect.name == "postgresql"
    insert = postgresql.insert if postgres else sqlite.insert
    later = func.greatest if postgres else func.max  # SQLite's two-argument max is scalar
    for start in range(0, len(uses), 2000):
        statement = insert(GrantLastUse).values(
            [
                {"grant_id": g, "last_used_at": at, "last_entry_id": i}
                for g, at, i in uses[start : start + 2000]
            ]
        )
        await session.execute(
            statement.on_conflict_do_update(
                index_elements=["grant_id"],
                set_={
                    "last_used_at": later(
                        GrantLastUse.last_used_at, statement.excluded.last_used_at
                    ),
                    "last_entry_id": statement.excluded.last_entry_id,
                },
            )
        )
