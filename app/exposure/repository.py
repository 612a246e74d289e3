import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    Table,
    and_,
    bindparam,
    cast,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from app.accesslog import repository as accesslog_repository
from app.accesslog.models import OUT_OF_AUDIENCE, AccessLogEntry, GrantLastUse
from app.db import insert_columns, sqlite_datetime
from app.exposure.models import Finding
from app.policy.models import Grant

# Exposure findings only: the analyser's diff, the guard and the read alerts key them by
# (dataset, grant); an `unused` finding of a grant on one dataset has the same pair.
EXPOSURE = Finding.kind == "exposure"


async def active_for(session: AsyncSession, dataset_ids: Sequence[str]) -> Sequence[Finding]:
    """Open and accepted findings of these datasets."""
    query = select(Finding).where(
        Finding.dataset.in_(dataset_ids), Finding.status.in_(("open", "accepted")), EXPOSURE
    )
    return (await session.execute(query)).scalars().all()


async def open_on(session: AsyncSession, dataset_ids: Sequence[str]) -> Sequence[Finding]:
    """Open findings of these datasets as stored now (the bulk writes bypass the ORM)."""
    query = (
        select(Finding)
        .where(Finding.dataset.in_(dataset_ids), Finding.status == "open", EXPOSURE)
        .order_by(Finding.id)
        .execution_options(populate_existing=True)
    )
    return (await session.execute(query)).scalars().all()


async def active_ids(session: AsyncSession, dataset_ids: Sequence[str]) -> set[int]:
    query = select(Finding.id).where(
        Finding.dataset.in_(dataset_ids), Finding.status.in_(("open", "accepted")), EXPOSURE
    )
    return set((await session.execute(query)).scalars())


# Findings are written in bulk (a full scan opens hundreds of thousands): Core statements on plain
# dicts, not ORM objects. Statements are chunked to stay well inside SQLite's parameter limit.
CHUNK = 2_000
ACTIVE = ("open", "accepted")
TABLE: Table = Finding.__table__  # type: ignore[assignment]


def _chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# What a change needs of each finding it may touch: the rest is read (`by_id`) only for the
# few it resolves or reopens. Timestamps are the costly part to read (a parse per value).
BRIEF = ("id", "dataset", "grant_id", "excess_count", "severity", "status", "excess_sample")


async def active_rows(
    session: AsyncSession,
    dataset_ids: Sequence[str] | None,
    grant_ids: Sequence[int] | None = None,
    *,
    brief: bool = False,
) -> list[dict[str, Any]]:
    """Open and accepted findings as dicts: of these datasets (every dataset when None), and of
    these grants only when `grant_ids` is given. `brief`: only the `BRIEF` columns."""
    table = TABLE
    columns = [table.c[name] for name in BRIEF] if brief else list(table.c)
    if dataset_ids is None:
        query = select(*columns).where(table.c.status.in_(ACTIVE), EXPOSURE)
        return [dict(row) for row in (await session.execute(query)).mappings()]
    # The status is tested here, not in SQL: SQLite would otherwise pick the (status, severity)
    # index, which holds nearly every finding, over (dataset, grant_id).
    query = select(*columns).where(EXPOSURE)
    if grant_ids is not None:
        if not grant_ids:
            return []
        query = query.where(table.c.grant_id.in_(sorted(set(grant_ids))))
    found: list[dict[str, Any]] = []
    for chunk in _chunks(sorted(set(dataset_ids))):
        rows = await session.execute(query.where(table.c.dataset.in_(chunk)))
        found.extend(dict(row) for row in rows.mappings() if row["status"] in ACTIVE)
    return found


async def active_pairs(
    session: AsyncSession, pairs: Sequence[tuple[str, int]], *, brief: bool = False
) -> list[dict[str, Any]]:
    """Open and accepted findings of these (dataset, grant id) pairs, as `active_rows`.

    The pairs travel as one parameter (a JSON array on SQLite, two arrays on PostgreSQL) that
    the query joins, so each is one probe of the (dataset, grant_id) index and the statement's
    text never changes: ``dataset IN (...) AND grant_id IN (...)`` probes every combination
    instead, and a VALUES list with a parameter per pair cost more to compile than to run.
    """
    if not pairs:
        return []
    names = BRIEF if brief else tuple(c.name for c in TABLE.c)
    columns = ", ".join(f'f."{name}"' for name in names)
    wanted = sorted(set(pairs))
    params: dict[str, Any]
    if session.get_bind().dialect.name == "postgresql":
        source = (
            "unnest(CAST(:datasets AS VARCHAR[]), CAST(:grants AS INTEGER[])) AS w (d, g) "
            "JOIN findings AS f ON f.dataset = w.d AND f.grant_id = w.g "
            "AND f.kind = 'exposure'"
        )
        params = {"datasets": [d for d, _g in wanted], "grants": [g for _d, g in wanted]}
    else:
        source = (
            "json_each(:pairs) AS w JOIN findings AS f "
            "ON f.dataset = json_extract(w.value, '$[0]') "
            "AND f.grant_id = json_extract(w.value, '$[1]') AND f.kind = 'exposure'"
        )
        params = {"pairs": json.dumps(wanted)}
    if not brief:
        query = text(f"SELECT {columns} FROM {source}").columns(*(TABLE.c[n] for n in names))
        result = await session.execute(query, params)
        return [dict(row) for row in result.mappings() if row["status"] in ACTIVE]
    # A change's hundreds of rows: plain tuples, the sample decoded here (a typed result
    # processes every value and builds a mapping per row, several times the query's cost).
    status = names.index("status")
    sample = names.index("excess_sample")
    found: list[dict[str, Any]] = []
    for row in (await session.execute(text(f"SELECT {columns} FROM {source}"), params)).all():
        if row[status] in ACTIVE:
            values = list(row)
            if isinstance(values[sample], str):
                values[sample] = json.loads(values[sample])
            found.append(dict(zip(names, values, strict=True)))
    return found


async def by_id(session: AsyncSession, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Findings by id, every column."""
    found: dict[int, dict[str, Any]] = {}
    for chunk in _chunks(ids):
        query = select(TABLE).where(TABLE.c.id.in_(chunk))
        for row in (await session.execute(query)).mappings():
            found[row["id"]] = dict(row)
    return found


async def sampling(
    session: AsyncSession, grant_ids: Sequence[int], principals: Sequence[str] | None
) -> list[tuple[str, int, list[str]]]:
    """(dataset, grant id, sample) of the active findings of these grants; with `principals`,
    at least those whose sample names one of them (the text match may find a few more)."""
    found: list[tuple[str, int, list[str]]] = []
    sample_text = cast(TABLE.c.excess_sample, String)
    for chunk in _chunks(grant_ids):
        query = select(
            TABLE.c.dataset, TABLE.c.grant_id, TABLE.c.excess_sample, TABLE.c.status
        ).where(TABLE.c.grant_id.in_(chunk), EXPOSURE)  # status tested here: see active_rows
        if principals is not None:
            if not principals:
                return []
            query = query.where(or_(*(sample_text.contains(f'"{p}"') for p in principals)))
        rows = (await session.execute(query)).all()
        found.extend((d, g, sample) for d, g, sample, status in rows if status in ACTIVE)
    return found


async def insert_rows(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert findings; their ids, in the order of `rows`.

    The ids are reserved first and the rows inserted with them in bulk (`insert_columns`):
    asking for them back (INSERT ... RETURNING) made a full scan's 300k inserts four times
    slower.
    PostgreSQL reserves them from the column's sequence (safe under concurrency); SQLite has one
    writer at a time, so the next ids after the largest are free for this transaction.
    """
    if not rows:
        return []
    ids = await _reserve_ids(session, len(rows))
    values: dict[str, Sequence[Any]] = {"id": ids}
    for column in TABLE.c:
        if column.name != "id":
            values[column.name] = [row[column.name] for row in rows]
    await insert_columns(session, TABLE, values)
    return ids


async def _reserve_ids(session: AsyncSession, count: int) -> list[int]:
    if session.get_bind().dialect.name == "postgresql":
        query = text(
            "SELECT nextval(pg_get_serial_sequence('findings', 'id')) "
            "FROM generate_series(1, :count)"
        )
        return sorted((await session.execute(query, {"count": count})).scalars())
    last = (await session.execute(select(func.max(TABLE.c.id)))).scalar() or 0
    return list(range(last + 1, last + 1 + count))


RESAMPLED = ("excess_count", "excess_sample", "paths", "severity")


async def update_rows(session: AsyncSession, rows: Sequence[dict[str, Any]], at: datetime) -> None:
    """Update findings by id, stamping ``updated_at``; every dict has the same keys (``id`` and
    the columns to set)."""
    if not rows:
        return
    columns = [c for c in rows[0] if c != "id"]
    if columns == list(RESAMPLED):  # a membership change re-samples hundreds: one statement
        await _resample(session, rows, at)
        return
    statement = (
        update(TABLE)
        .where(TABLE.c.id == bindparam("finding_id"))
        .values({**{c: bindparam(c) for c in columns}, "updated_at": at})
    )
    for chunk in _chunks(rows):
        await session.execute(
            statement, [{"finding_id": r["id"], **{c: r[c] for c in columns}} for r in chunk]
        )


async def _resample(session: AsyncSession, rows: Sequence[dict[str, Any]], at: datetime) -> None:
    """`update_rows` of the `RESAMPLED` columns: PostgreSQL joins the rows as arrays; SQLite
    takes them straight to the driver's executemany (no bind processing per row)."""
    samples = [json.dumps(r["excess_sample"]) for r in rows]
    paths = [json.dumps(r["paths"]) for r in rows]
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(
            text(
                "UPDATE findings AS f SET excess_count = w.c, excess_sample = CAST(w.s AS JSON), "
                "paths = CAST(w.p AS JSON), severity = w.v, updated_at = :at "
                "FROM unnest(CAST(:ids AS INTEGER[]), CAST(:counts AS INTEGER[]), "
                "CAST(:samples AS TEXT[]), CAST(:paths AS TEXT[]), CAST(:severities AS VARCHAR[])) "
                "AS w (i, c, s, p, v) WHERE f.id = w.i"
            ).bindparams(bindparam("at", at, type_=TABLE.c.updated_at.type)),
            {
                "ids": [r["id"] for r in rows],
                "counts": [r["excess_count"] for r in rows],
                "samples": samples,
                "paths": paths,
                "severities": [r["severity"] for r in rows],
            },
        )
        return
    stamp = sqlite_datetime(at)
    connection = await session.connection()
    await connection.exec_driver_sql(
        "UPDATE findings SET excess_count = ?, excess_sample = ?, paths = ?, severity = ?, "
        "updated_at = ? WHERE id = ?",
        [
            (r["excess_count"], sample, path, r["severity"], stamp, r["id"])
            for r, sample, path in zip(rows, samples, paths, strict=True)
        ],
    )


async def update_counts(
    session: AsyncSession, rows: Sequence[dict[str, Any]], at: datetime
) -> None:
    """Set ``excess_count``, and ``severity`` where a row has one, of findings by id (a
    membership change moves hundreds by one), stamping ``updated_at``: one statement for each
    kind of row, the rows travelling as one parameter, as in `active_pairs`."""
    plain = [r for r in rows if "severity" not in r]
    graded = [r for r in rows if "severity" in r]
    stamp = bindparam("at", at, type_=TABLE.c.updated_at.type)
    postgres = session.get_bind().dialect.name == "postgresql"
    for chosen, columns in ((plain, ("excess_count",)), (graded, ("excess_count", "severity"))):
        if not chosen:
            continue
        params: dict[str, Any]
        if postgres:
            types = {"id": "INTEGER", "excess_count": "INTEGER", "severity": "VARCHAR"}
            arrays = ", ".join(
                f"CAST(:c{n} AS {types[c]}[])" for n, c in enumerate(("id", *columns))
            )
            sets = ", ".join(f"{c} = w.c{n + 1}" for n, c in enumerate(columns))
            names = ", ".join(f"c{n}" for n in range(len(columns) + 1))
            statement = text(
                f"UPDATE findings AS f SET {sets}, updated_at = :at "
                f"FROM unnest({arrays}) AS w ({names}) WHERE f.id = w.c0"
            )
            params = {f"c{n}": [r[c] for r in chosen] for n, c in enumerate(("id", *columns))}
        else:
            sets = ", ".join(
                f"{c} = json_extract(w.value, '$[{n + 1}]')" for n, c in enumerate(columns)
            )
            statement = text(
                f"UPDATE findings SET {sets}, updated_at = :at FROM json_each(:rows) AS w "
                "WHERE findings.id = json_extract(w.value, '$[0]')"
            )
            params = {"rows": json.dumps([[r[c] for c in ("id", *columns)] for r in chosen])}
        await session.execute(statement.bindparams(stamp), params)


async def resolve(session: AsyncSession, ids: Sequence[int], at: datetime) -> None:
    for chunk in _chunks(ids):
        await session.execute(
            update(Finding)
            .where(Finding.id.in_(chunk))
            .values(status="resolved", resolved_at=at, updated_at=at),
            execution_options={"synchronize_session": False},
        )


async def lapsed_acceptances(session: AsyncSession, now: datetime) -> Sequence[Finding]:
    """Accepted findings whose ``until`` has passed."""
    query = select(Finding).where(Finding.status == "accepted", Finding.until <= now)
    return (await session.execute(query)).scalars().all()


async def all_active(session: AsyncSession) -> Sequence[Finding]:
    query = select(Finding).where(Finding.status.in_(("open", "accepted")), EXPOSURE)
    return (await session.execute(query)).scalars().all()


async def get(session: AsyncSession, finding_id: int) -> Finding | None:
    return await session.get(Finding, finding_id)


async def list_page(
    session: AsyncSession,
    *,
    kind: str | None,
    status: str | None,
    severity: str | None,
    dataset: str | None,
    after_id: int | None,
    limit: int,
) -> Sequence[Finding]:
    query = select(Finding).order_by(Finding.id).limit(limit)
    if after_id is not None:
        query = query.where(Finding.id > after_id)
    if kind is not None:
        query = query.where(Finding.kind == kind)
    if status is not None:
        query = query.where(Finding.status == status)
    if severity is not None:
        query = query.where(Finding.severity == severity)
    if dataset is not None:
        query = query.where(Finding.dataset == dataset)
    return (await session.execute(query)).scalars().all()


async def count_open(session: AsyncSession) -> int:
    query = select(func.count()).select_from(Finding).where(Finding.status == "open", EXPOSURE)
    return int((await session.execute(query)).scalar_one())


async def out_of_audience_reads(
    session: AsyncSession, dataset: str, *, until: datetime | None = None
) -> int:
    """Allowed reads of `dataset` from outside its audience (recorded at or before `until`),
    those archived by `aclaudit log archive` included: archiving is not deletion."""
    query = (
        select(func.count())
        .select_from(AccessLogEntry)
        .where(
            AccessLogEntry.dataset == dataset,
            OUT_OF_AUDIENCE,
        )
    )
    if until is not None:
        query = query.where(AccessLogEntry.at <= until)
    archived = await accesslog_repository.archived_out_of_audience_reads(
        session, dataset=dataset, until=until
    )
    return int((await session.execute(query)).scalar_one()) + archived


async def pair_openings(
    session: AsyncSession, *, dataset: str, grant_id: int
) -> list[tuple[int, datetime]]:
    """The (id, opened_at) of every finding of the (dataset, grant) pair, oldest first (one
    is active at a time: a pair's next finding opens after its last one resolved)."""
    query = (
        select(Finding.id, Finding.opened_at)
        .where(Finding.dataset == dataset, Finding.grant_id == grant_id, EXPOSURE)
        .order_by(Finding.id)
    )
    return [(int(i), at) for i, at in (await session.execute(query)).all()]


async def reads_through(
    session: AsyncSession,
    *,
    dataset: str,
    grant_id: int,
    since: datetime | None,
    until: datetime | None,
    before_id: int | None,
    limit: int,
    principal: str | None = None,
) -> Sequence[AccessLogEntry]:
    """Allowed reads of the dataset from outside its audience that went through grant
    `grant_id` (the one their reason names), recorded in [since, until), newest first. Given a
    `principal`: that principal's reads through any grant instead."""
    through = (
        AccessLogEntry.reason["grant_id"].as_integer() == grant_id
        if principal is None
        else AccessLogEntry.principal == principal
    )
    query = (
        select(AccessLogEntry)
        .where(
            AccessLogEntry.dataset == dataset,
            OUT_OF_AUDIENCE,
            AccessLogEntry.decision == "allow",
            through,
        )
        .order_by(AccessLogEntry.id.desc())
        .limit(limit)
    )
    if since is not None:
        query = query.where(AccessLogEntry.at >= since)
    if until is not None:
        query = query.where(AccessLogEntry.at < until)
    if before_id is not None:
        query = query.where(AccessLogEntry.id < before_id)
    return (await session.execute(query)).scalars().all()


async def has_lapsed_acceptance(session: AsyncSession, now: datetime) -> bool:
    query = select(Finding.id).where(Finding.status == "accepted", Finding.until <= now).limit(1)
    return (await session.execute(query)).first() is not None


async def count_open_by_severity(session: AsyncSession) -> dict[str, int]:
    query = (
        select(Finding.severity, func.count())
        .where(Finding.status == "open")
        .group_by(Finding.severity)
    )
    return {str(sev): int(n) for sev, n in (await session.execute(query)).all()}


async def count_out_of_audience_reads(session: AsyncSession) -> int:
    """Every out-of-audience read recorded, the archived ones too (a counter never drops)."""
    query = select(func.count()).select_from(AccessLogEntry).where(OUT_OF_AUDIENCE)
    archived = await accesslog_repository.archived_out_of_audience_reads(session)
    return int((await session.execute(query)).scalar_one()) + archived


# Unused access (`app.exposure.unused`): the grants it is about, and their last use.
UNUSED = (Finding.kind == "unused", Finding.status.in_(ACTIVE))


def _unused_since(now: datetime, cutoff: datetime) -> ColumnElement[bool]:
    """A live allow grant for reads or exports, made and last used at or before `cutoff`."""
    return and_(
        Grant.effect == "allow",
        Grant.action.in_(("read", "export")),
        Grant.revoked_at.is_(None),
        Grant.expired_at.is_(None),
        or_(Grant.expires_at.is_(None), Grant.expires_at > now),
        Grant.created_at <= cutoff,
        or_(GrantLastUse.last_used_at.is_(None), GrantLastUse.last_used_at <= cutoff),
    )


Query = TypeVar("Query", bound=Select[*tuple[Any, ...]])


def _with_last_use(query: Query) -> Query:
    """From the grants, each with its last use (if any)."""
    return query.select_from(Grant).outerjoin(GrantLastUse, GrantLastUse.grant_id == Grant.id)


async def newly_unused(
    session: AsyncSession, now: datetime, cutoff: datetime, *, limit: int | None = None
) -> list[tuple[Grant, datetime | None]]:
    """Grants unused since `cutoff` without an active `unused` finding, with their last use."""
    has_finding = select(Finding.id).where(Finding.grant_id == Grant.id, *UNUSED).exists()
    query = (
        _with_last_use(select(Grant, GrantLastUse.last_used_at))
        .where(_unused_since(now, cutoff), ~has_finding)
        .order_by(Grant.id)
        .limit(limit)
    )
    return [(grant, used) for grant, used in (await session.execute(query)).all()]


async def no_longer_unused(
    session: AsyncSession, now: datetime, cutoff: datetime, *, limit: int | None = None
) -> Sequence[Finding]:
    """Active `unused` findings whose grant was used since, revoked, or expired."""
    query = (
        _with_last_use(select(Finding))
        .join(Finding, Finding.grant_id == Grant.id)
        .where(*UNUSED, ~_unused_since(now, cutoff))
        .order_by(Finding.id)
        .limit(limit)
    )
    found: Sequence[Finding] = (await session.execute(query)).scalars().all()
    return found


async def unused_of(session: AsyncSession, grant_ids: Sequence[int]) -> Sequence[Finding]:
    """The active `unused` findings of these grants."""
    query = select(Finding).where(Finding.grant_id.in_(grant_ids), *UNUSED).order_by(Finding.id)
    return (await session.execute(query)).scalars().all()
