"""PostgreSQL: the access log as natively partitioned tables, by RANGE of entry id.

**Why by id, not by time.** Everything that reads or removes entries names them by id: the
chain is written in id order and verified in id pages, browsing pages through a cursor
(``id < before_id ORDER BY id DESC``), checkpoints and archive segments are id ranges. So the
planner prunes to the partitions a page, a verify page or a segment touches, an ordered scan of
the partitions (newest first) stops after the first page, and `aclaudit log archive` drops a
whole partition once a segment covers it. Time maps to ids through ``ix_access_log_at_id``
(`repository.first_id_at_or_after` for ``--before``; `repository.time_window` for ``?since=``
and ``?until=``, exact from the head's ``monotone_from`` on). Ids are gap-free and assigned
by the chain writer, so partitions of `ACLAUDIT_LOG_PARTITION_ENTRIES` ids are equally full:
partition *k* holds ids ``k*N+1 .. (k+1)*N``.

**Subjects follow the log.** ``access_log_subjects`` is partitioned the same way on its
``entry_id``, with the same bounds, and has no foreign key on PostgreSQL: a key that references
a partitioned table refuses ``DROP`` of a referenced partition, and ``DETACH`` runs a referential
check under an ACCESS EXCLUSIVE lock on the log (1.0 s for a partition of 1M entries with its
subjects partition already gone, measured on PostgreSQL 15), besides a trigger per subject row
on the hot path. Subject rows are written in the transaction that writes their entry, and the
archive drops (or deletes) both tables' rows for a segment in one transaction, so none is left
behind. SQLite keeps its plain tables and the key.

**No DEFAULT partition.** A default partition disables the ordered scan of partitions that
browsing relies on, and a partition made later would have to move rows out of it. Instead
partitions are kept ahead of the head: migration 0018 makes them for the existing ids and
`AHEAD` partitions beyond, each process at start and the sweeper on every tick top them up
(`keep_ahead`), and a check batch that still finds no partition makes one and retries (the
log store), so a missing partition delays a check but never fails it.

**Race-safe.** Creation takes a transaction-scoped advisory lock, then re-reads the catalogue:
two sweepers (replicas, workers) or a bulk loader make each partition once. A partition is
created as a plain table and attached (``ATTACH PARTITION`` takes SHARE UPDATE EXCLUSIVE on the
log, which checks and browsing do not wait for; ``CREATE TABLE ... PARTITION OF`` would take
ACCESS EXCLUSIVE). Gaps are filled with the grid's cells clipped to what exists, so partitions
of an older size, or a range a restore left without partitions, are handled.

`ensure_partitions` is also what a bulk loader calls before writing ids beyond the head.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

LOG = "access_log"
SUBJECTS = "access_log_subjects"
KEYS = {LOG: "id", SUBJECTS: "entry_id"}
# Partitions kept made beyond the head: the sweeper adds one when fewer remain.
AHEAD = 2
# How long an archive's DROP waits for its lock on the log before giving up (and retrying).
DROP_LOCK_TIMEOUT_MS = 1000
# pg_advisory_xact_lock key for partition changes: "aclp"
LOCK = 0x61636C70
# The model's constraints that the partitioned log does not have on PostgreSQL (Alembic's
# comparison skips them there): decision ids are unique only by construction (UUIDv7, 74 random
# bits), as a unique constraint on a partitioned table must include the partition key.
SQLITE_ONLY_CONSTRAINTS = frozenset(
    {"uq_access_log_decision_id", "fk_access_log_subjects_entry_id_access_log"}
)
NAME = re.compile(r"^access_log(?:_subjects)?_p\d{12,}$")
BOUND = re.compile(r"^FOR VALUES FROM \('?(-?\d+)'?\) TO \('?(-?\d+)'?\)$")

Db = AsyncSession | AsyncConnection

LIST = text(
    "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
    "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass(:parent)"
)
IS_PARTITIONED = text("SELECT c.relkind = 'p' FROM pg_class c WHERE c.oid = to_regclass(:parent)")


@dataclass(frozen=True, order=True)
class Partition:
    first_id: int
    end_id: int  # exclusive: the next partition's first id
    name: str

    @property
    def last_id(self) -> int:
        return self.end_id - 1


def partition_name(table: str, first_id: int) -> str:
    return f"{table}_p{first_id:012d}"


def is_partition_name(name: str) -> bool:
    """Whether `name` is one of our partitions (Alembic's comparison skips them)."""
    return NAME.match(name) is not None


def parse_bound(expression: str) -> tuple[int, int] | None:
    """``FOR VALUES FROM (a) TO (b)`` as (a, b); None for any other bound (DEFAULT, MINVALUE)."""
    found = BOUND.match(expression.strip())
    return None if found is None else (int(found.group(1)), int(found.group(2)))


def missing_ranges(
    existing: Sequence[tuple[int, int]], first_id: int, up_to_id: int, size: int
) -> list[tuple[int, int]]:
    """The id ranges [a, b) to partition so that every id in ``first_id..up_to_id`` has a
    partition: the grid's cells of `size` ids (``k*size+1 .. (k+1)*size``) that meet the
    range, less what `existing` partitions already cover."""
    if up_to_id < first_id:
        return []
    taken = sorted(existing)
    found: list[tuple[int, int]] = []
    for cell in range((max(first_id, 1) - 1) // size, (up_to_id - 1) // size + 1):
        start, end = cell * size + 1, (cell + 1) * size + 1
        for low, high in taken:
            if high <= start or low >= end:
                continue
            if low > start:
                found.append((start, low))
            start = max(start, high)
            if start >= end:
                break
        if start < end:
            found.append((start, end))
    return found


def create_statements(table: str, first_id: int, end_id: int) -> list[str]:
    """A partition of `table` for ids ``first_id..end_id - 1``: made as a plain table, then
    attached (a weaker lock on the parent than ``PARTITION OF``)."""
    name = partition_name(table, first_id)
    return [
        f"CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS)",
        f"ALTER TABLE {table} ATTACH PARTITION {name} FOR VALUES FROM ({first_id}) TO ({end_id})",
    ]


def _dialect(db: Db) -> str:
    bind = db.get_bind() if isinstance(db, AsyncSession) else db
    return bind.dialect.name


async def is_partitioned(db: Db) -> bool:
    """Whether the access log is a partitioned table (PostgreSQL at migration 0018 or later)."""
    if _dialect(db) != "postgresql":
        return False
    return bool(await db.scalar(IS_PARTITIONED, {"parent": LOG}))


async def list_partitions(db: Db, table: str = LOG) -> list[Partition]:
    """`table`'s range partitions, in id order."""
    rows = (await db.execute(LIST, {"parent": table})).all()
    found = []
    for name, expression in rows:
        bound = parse_bound(str(expression))
        if bound is not None:
            found.append(Partition(bound[0], bound[1], str(name)))
    return sorted(found)


async def _head_id(db: Db) -> int:
    found = await db.scalar(text("SELECT last_id FROM access_log_head WHERE id = 1"))
    return int(found or 0)


async def ensure_partitions(
    db: Db, up_to_id: int, *, partition_entries: int, from_id: int | None = None
) -> list[Partition]:
    """Make the partitions that ids ``from_id..up_to_id`` lack, in both tables, in the
    caller's transaction (commit it); `from_id` defaults to the id after the head. Returns
    the access log's new partitions. A no-op on SQLite and on a log that is not partitioned.

    For a bulk loader: call it (and commit) before inserting ids beyond the head, with the
    service's ``ACLAUDIT_LOG_PARTITION_ENTRIES``. Safe to run from several processes at once.
    """
    if not await is_partitioned(db):
        return []
    first = await _head_id(db) + 1 if from_id is None else from_id

    async def missing() -> dict[str, list[tuple[int, int]]]:
        gaps = {}
        for table in (LOG, SUBJECTS):
            existing = [(p.first_id, p.end_id) for p in await list_partitions(db, table)]
            gaps[table] = missing_ranges(existing, first, up_to_id, partition_entries)
        return gaps

    if not any((await missing()).values()):
        return []  # the common case: no lock taken
    await db.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK})
    gaps = await missing()  # again, under the lock: another process may have made them
    for table, ranges in gaps.items():
        for start, end in ranges:
            for statement in create_statements(table, start, end):
                await db.execute(text(statement))
    return [Partition(a, b, partition_name(LOG, a)) for a, b in gaps[LOG]]


async def keep_ahead(db: Db, *, partition_entries: int, beyond: int = 0) -> list[Partition]:
    """Partitions for at least `AHEAD` partitions' worth of ids (and `beyond` more) past the
    head: the sweeper's and the start's upkeep, in the caller's transaction."""
    head = await _head_id(db) if await is_partitioned(db) else 0
    return await ensure_partitions(
        db, head + AHEAD * partition_entries + beyond, partition_entries=partition_entries
    )


async def headroom(db: Db) -> int | None:
    """Entries that can still be written before the newest partition is full (None: the log
    is not partitioned)."""
    if not await is_partitioned(db):
        return None
    partitions = await list_partitions(db)
    last = partitions[-1].last_id if partitions else 0
    return max(0, last - await _head_id(db))


async def drop_archived(db: Db, first_id: int, last_id: int) -> int:
    """Remove archived entries ``first_id..last_id`` (every entry before them already gone)
    from the partitioned log, in the caller's transaction; returns how many went.

    The partitions that end within the range are dropped whole, in both tables (the log's rows
    are counted first: one below `first_id` would make the count differ from the segment's, and
    the caller refuses); the range's rows in the partition it ends in are deleted. The rows go
    first and the partitions last, so the ACCESS EXCLUSIVE lock that ``DROP`` takes on the log
    is held only from the drop to the commit; it is waited for at most `DROP_LOCK_TIMEOUT_MS`
    (checks queue behind a waiting drop), after which the transaction fails and the caller
    may try again.
    """
    whole: dict[str, list[Partition]] = {}
    removed = 0
    for table, key in KEYS.items():
        whole[table] = [p for p in await list_partitions(db, table) if p.last_id <= last_id]
        if table == LOG:
            for partition in whole[table]:
                removed += int(await db.scalar(text(f"SELECT count(*) FROM {partition.name}")) or 0)
        rest = {"first": max([first_id, *(p.end_id for p in whole[table])]), "last": last_id}
        deleted = await db.execute(
            text(f"DELETE FROM {table} WHERE {key} >= :first AND {key} <= :last"), rest
        )
        if table == LOG:
            removed += int(deleted.rowcount)  # type: ignore[attr-defined]
    await db.execute(text(f"SET LOCAL lock_timeout = {DROP_LOCK_TIMEOUT_MS}"))
    for table in (SUBJECTS, LOG):
        for partition in whole[table]:
            await db.execute(text(f"DROP TABLE {partition.name}"))
    return removed
