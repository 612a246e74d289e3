"""A hash-chained access log of any size, written straight into PostgreSQL's tables.

Entries are made as the log stores make them (`app.checks.batch`: UUIDv7 decision ids from
`decision_ids`, groups of entries sharing one instant) and chained with `app.chain.entry_hash`,
the stores' own hashing, so ``aclaudit log verify`` and ``GET /v1/access-log/verify`` accept the
result. A child process makes and hashes the entries and hands them over as ``COPY`` text in
chunks; the parent streams each chunk into ``access_log`` and ``access_log_subjects`` (asyncpg
``COPY``) while the child hashes the next. The tables' indexes and keys are dropped for the load
and built again afterwards (from their own definitions in the catalog), then both are vacuumed
and analysed, as a long-lived log would be. A checkpoint is written at every multiple of
ACLAUDIT_CHECKPOINT_EVERY (signed with the checkpoint key when one is given), and the head.

The variety: principals and datasets from the benchmark's workload, ~70 % allow, ~1 % of entries
read from outside the dataset's audience, a fifth of them naming one to three data subjects out
of `SUBJECTS`, a few purposes, callers and actions, and ``at`` spread evenly over `days` days
ending now (non-decreasing with the id, as written).
"""

from __future__ import annotations

import io
import json
import multiprocessing
import random
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, update

from app import chain
from app.accesslog.models import (
    AccessLogCheckpoint,
    AccessLogEntry,
    AccessLogHead,
    AccessLogSubject,
)
from app.checks.batch import decision_ids
from app.config import Settings
from app.db import create_engine

CHUNK = 50_000  # entries per COPY, by default
SUBJECTS = 100_000  # data subjects user:c0 .. user:c99999
PURPOSES = ("training", "analytics", "support", "fraud-review", None)
CALLERS = ("checker", "etl-nightly", "notebooks", "feature-store")
TABLES = ("access_log", "access_log_subjects")


@dataclass(frozen=True)
class LogShape:
    entries: int
    principals: Sequence[str]
    datasets: Sequence[str]
    end: datetime  # the newest entry's instant
    days: float = 30.0
    checkpoint_every: int = 1000
    checkpoint_key: bytes | None = None
    policy_version: int = 1
    seed: int = 1
    chunk: int = CHUNK  # entries per COPY


def subject(n: int) -> str:
    """Data subject `n` of `SUBJECTS`."""
    return f"user:c{n}"


@dataclass(frozen=True)
class Chunk:
    log: bytes  # COPY text rows for access_log
    subjects: bytes  # COPY text rows for access_log_subjects
    checkpoints: list[tuple[int, str, datetime, str | None]]
    head: tuple[int, str]
    at: datetime  # the chunk's newest instant


def _text(value: str | None) -> str:
    return "\\N" if value is None else value


def _array(names: list[str]) -> str:
    """`names` as JSON (json.dumps's spacing); they hold no character JSON escapes."""
    return '["' + '", "'.join(names) + '"]' if names else "[]"


def chunks(shape: LogShape) -> Iterator[Chunk]:
    """The log, `CHUNK` entries at a time, chained from the genesis hash."""
    rng = random.Random(shape.seed)
    start = shape.end - timedelta(days=shape.days)
    span = (shape.end - start).total_seconds()
    every, key = shape.checkpoint_every, shape.checkpoint_key
    principals, datasets = list(shape.principals), list(shape.datasets)
    last_id, last_hash = 0, chain.GENESIS
    total = shape.entries
    while last_id < total:
        end_id = min(total, last_id + shape.chunk)
        log: list[str] = []
        subjects: list[str] = []
        checkpoints: list[tuple[int, str, datetime, str | None]] = []
        at = start
        while last_id < end_id:
            # one group commit: up to 32 entries sharing an instant (never across a checkpoint,
            # so each checkpoint marks a batch's last entry, as the stores write them)
            size = min(rng.randint(1, 32), end_id - last_id, every - last_id % every)
            at = start + timedelta(seconds=span * (last_id + size) / total)
            at_text = chain.utc_text(at)
            stored_at = at.isoformat()
            version = str(shape.policy_version)
            for decision_id in decision_ids(size, at.timestamp()):
                last_id += 1
                roll = rng.random()
                principal = rng.choice(principals)
                dataset = rng.choice(datasets)
                via: list[str] = []
                if roll < 0.7:
                    grant: int | None = rng.randrange(1, 10_000)
                    code, decision = "granted", "allow"
                    if roll < 0.4:
                        via = [f"group:team-{rng.randrange(100)}"]
                elif roll < 0.85:
                    grant, code, decision = None, "no_grant", "deny"
                else:
                    grant, code, decision = rng.randrange(1, 10_000), "denied_by_grant", "deny"
                outside = decision == "allow" and rng.random() < 0.0143  # ~1 % of entries
                names: list[str] = []
                if rng.random() < 0.2:
                    picks = {rng.randrange(SUBJECTS) for _ in range(rng.randint(1, 3))}
                    names = [subject(n) for n in sorted(picks)]
                entry: dict[str, Any] = {
                    "id": last_id,
                    "decision_id": decision_id,
                    "at": at,
                    "principal": principal,
                    "dataset": dataset,
                    "action": "read" if roll % 0.1 < 0.09 else "export",
                    "purpose": rng.choice(PURPOSES),
                    "decision": decision,
                    "reason": {"code": code, "grant_id": grant, "via": via},
                    "out_of_audience": outside,
                    "data_subjects": names,
                    "request_id": f"req-{last_id:x}" if roll > 0.1 else None,
                    "caller": CALLERS[last_id % len(CALLERS)],
                    "policy_version": shape.policy_version,
                }
                prev_hash = last_hash
                last_hash = chain.entry_hash(prev_hash, entry, at_text)
                log.append(
                    "\t".join(
                        (
                            str(last_id),
                            decision_id,
                            stored_at,
                            principal,
                            dataset,
                            entry["action"],
                            _text(entry["purpose"]),
                            decision,
                            # as json.dumps writes them (the values need no escaping)
                            f'{{"code": "{code}", "grant_id": {"null" if grant is None else grant}'
                            f', "via": {_array(via)}}}',
                            "t" if outside else "f",
                            _array(names),
                            _text(entry["request_id"]),
                            entry["caller"],
                            version,
                            prev_hash,
                            last_hash,
                        )
                    )
                )
                for name in names:
                    subjects.append(f"{name}\t{last_id}")
            if last_id % every == 0:
                signature = chain.sign_checkpoint(key, last_id, last_hash) if key else None
                checkpoints.append((last_id, last_hash, at, signature))
        yield Chunk(
            "\n".join(log).encode() + b"\n",
            ("\n".join(subjects) + "\n").encode() if subjects else b"",
            checkpoints,
            (last_id, last_hash),
            at,
        )


ENTRY_COLUMNS = (
    "id", "decision_id", "at", "principal", "dataset", "action", "purpose", "decision", "reason",
    "out_of_audience", "data_subjects", "request_id", "caller", "policy_version", "prev_hash",
    "hash",
)  # fmt: skip


def _produce(shape: LogShape, queue: Any) -> None:
    """In the child process: every chunk onto `queue`, then None."""
    for chunk in chunks(shape):
        queue.put(chunk)
    queue.put(None)


# -- the tables' keys and indexes, dropped for the load ---------------------------------------

_CONSTRAINTS = """
SELECT c.conname, c.conrelid::regclass::text, pg_get_constraintdef(c.oid), c.contype::text
FROM pg_constraint c
WHERE c.contype IN ('p', 'u', 'f')
  AND (c.conrelid = ANY($1::regclass[]) OR c.confrelid = ANY($1::regclass[]))
  AND c.conparentid = 0
ORDER BY c.contype = 'f' DESC
"""
_INDEXES = """
SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
FROM pg_index i
WHERE i.indrelid = ANY($1::regclass[])
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
"""


async def _drop_keys(conn: Any) -> tuple[list[tuple[str, str, str, str]], list[tuple[str, str]]]:
    """Drop the log tables' keys (and foreign keys into them) and indexes; return them."""
    constraints = [tuple(r) for r in await conn.fetch(_CONSTRAINTS, list(TABLES))]
    indexes = [tuple(r) for r in await conn.fetch(_INDEXES, list(TABLES))]
    for name, table, _definition, _kind in constraints:  # foreign keys first
        await conn.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    for name, _definition in indexes:
        await conn.execute(f"DROP INDEX {name}")
    return constraints, indexes


async def _restore_keys(
    conn: Any, constraints: list[tuple[str, str, str, str]], indexes: list[tuple[str, str]]
) -> None:
    await conn.execute("SET maintenance_work_mem = '512MB'")
    for _name, definition in indexes:
        # A partitioned table's index reads back as ``ON ONLY``, which would make the parent's
        # index alone, invalid, with no index in any partition: every partition gets its own.
        await conn.execute(definition.replace(" ON ONLY ", " ON ", 1))
    for name, table, definition, _kind in sorted(constraints, key=lambda c: c[3] == "f"):
        await conn.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')


async def _ensure_partitions(database_url: str, last_id: int) -> None:
    """The partitions of ids 1..`last_id` (PostgreSQL partitions the log by id), before the
    load; the service's own ``ACLAUDIT_LOG_PARTITION_ENTRIES`` sizes them."""
    from app.accesslog import partitions

    settings = Settings(database_url=database_url)
    engine = create_engine(settings)
    try:
        async with engine.begin() as conn:
            await partitions.ensure_partitions(
                conn, last_id, partition_entries=settings.log_partition_entries, from_id=1
            )
    finally:
        await engine.dispose()


def _progress(done: int, total: int, started: float) -> None:
    elapsed = time.monotonic() - started
    rate = done / elapsed if elapsed else 0.0
    end = "\n" if done == total else ""
    sys.stderr.write(
        f"\r    generated {done:>11,}/{total:,} entries ({done * 100 // total:>3}%, "
        f"{rate:,.0f}/s){end}"
    )
    sys.stderr.flush()


@dataclass(frozen=True)
class Generated:
    entries: int
    subjects: int
    load_s: float  # making, hashing and copying the rows
    index_s: float  # building keys and indexes again
    vacuum_s: float
    newest_at: datetime

    @property
    def entries_per_s(self) -> float:
        return self.entries / (self.load_s + self.index_s + self.vacuum_s)


async def generate(database_url: str, shape: LogShape) -> Generated:
    """Replace the (migrated, empty) database's access log with `shape`'s."""
    import asyncpg

    dsn = database_url.replace("postgresql+asyncpg://", "postgresql://")
    await _ensure_partitions(database_url, shape.entries)
    conn = await asyncpg.connect(dsn)
    context = multiprocessing.get_context("fork")
    queue = context.Queue(maxsize=4)
    producer = context.Process(target=_produce, args=(shape, queue), daemon=True)
    started = time.monotonic()
    subjects = 0
    try:
        existing = await conn.fetchval("SELECT count(*) FROM (SELECT 1 FROM access_log LIMIT 1) e")
        if existing:
            raise RuntimeError("the access log is not empty: generate into a fresh database")
        constraints, indexes = await _drop_keys(conn)
        producer.start()
        head, newest = (0, chain.GENESIS), shape.end
        checkpoints: list[tuple[int, str, datetime, str | None]] = []
        while True:
            chunk: Chunk | None = await _get(queue)
            if chunk is None:
                break
            async with conn.transaction():
                await conn.copy_to_table(
                    "access_log", source=io.BytesIO(chunk.log), columns=ENTRY_COLUMNS, format="text"
                )
                if chunk.subjects:
                    await conn.copy_to_table(
                        "access_log_subjects",
                        source=io.BytesIO(chunk.subjects),
                        columns=("subject", "entry_id"),
                        format="text",
                    )
            subjects += chunk.subjects.count(b"\n")
            checkpoints.extend(chunk.checkpoints)
            head, newest = chunk.head, chunk.at
            _progress(head[0], shape.entries, started)
        producer.join()
        loaded = time.monotonic()
        sys.stderr.write("    building keys and indexes ...\n")
        await _restore_keys(conn, constraints, indexes)
        indexed = time.monotonic()
        await _finish(conn, shape, checkpoints, head, newest)
        sys.stderr.write("    vacuum analyse ...\n")
        for table in TABLES:
            await conn.execute(f"VACUUM (ANALYZE) {table}")
        # Flush the load's dirty pages now: otherwise the checkpointer writes gigabytes of them
        # out while the first measurements run against the generated log.
        await conn.execute("CHECKPOINT")
        vacuumed = time.monotonic()
    finally:
        if producer.is_alive():
            producer.kill()
        await conn.close()
    return Generated(
        shape.entries, subjects, loaded - started, indexed - loaded, vacuumed - indexed, newest
    )


async def _get(queue: Any) -> Any:
    import asyncio

    return await asyncio.to_thread(queue.get)


async def _finish(
    conn: Any,
    shape: LogShape,
    checkpoints: list[tuple[int, str, datetime, str | None]],
    head: tuple[int, str],
    newest: datetime,
) -> None:
    """The checkpoints and the head (signed with the checkpoint key when there is one). The
    instants were written non-decreasing from entry 1: the head says so (``monotone_from``),
    and holds the newest, which the service's next group commit will not go below."""
    await conn.copy_records_to_table(
        "access_log_checkpoints",
        records=checkpoints,
        columns=("entry_id", "head_hash", "at", "signature"),
    )
    key = shape.checkpoint_key
    signature = chain.sign_head(key, chain.ACCESS_LOG, *head) if key else None
    await conn.execute(
        "UPDATE access_log_head SET last_id = $1, last_hash = $2, signature = $3, "
        "last_at = $4, monotone_from = 1 WHERE id = 1",
        *head,
        signature,
        newest,
    )


def newest_instant() -> datetime:
    """A log generated now ends a minute ago (checks timed afterwards come after it)."""
    return datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)


async def generate_sqlite(database_url: str, shape: LogShape) -> int:
    """`shape`'s log into a (migrated, empty) SQLite database: the same entries as `generate`
    writes into PostgreSQL, read back from their ``COPY`` text and inserted through the
    tables' own column types (so stored as the log stores store them). Returns the head id."""
    engine = create_engine(Settings(database_url=database_url))
    head, started = (0, chain.GENESIS), time.monotonic()
    try:
        async with engine.begin() as conn:
            for chunk in chunks(shape):
                entries = [_entry_of(line) for line in chunk.log.decode().splitlines()]
                await conn.execute(insert(AccessLogEntry), entries)
                subjects = [
                    {"subject": s, "entry_id": int(i)}
                    for s, i in (line.split("\t") for line in chunk.subjects.decode().splitlines())
                ]
                if subjects:
                    await conn.execute(insert(AccessLogSubject), subjects)
                if chunk.checkpoints:
                    await conn.execute(
                        insert(AccessLogCheckpoint),
                        [
                            {"entry_id": i, "head_hash": h, "at": at, "signature": s}
                            for i, h, at, s in chunk.checkpoints
                        ],
                    )
                head = chunk.head
                _progress(head[0], shape.entries, started)
            key = shape.checkpoint_key
            await conn.execute(
                update(AccessLogHead)
                .where(AccessLogHead.id == 1)
                .values(
                    last_id=head[0],
                    last_hash=head[1],
                    signature=chain.sign_head(key, chain.ACCESS_LOG, *head) if key else None,
                )
            )
    finally:
        await engine.dispose()
    return head[0]


def _entry_of(line: str) -> dict[str, Any]:
    """An access_log row from its COPY text (`chunks`)."""
    values: dict[str, Any] = dict(zip(ENTRY_COLUMNS, line.split("\t"), strict=True))
    for column in ("purpose", "request_id"):
        values[column] = None if values[column] == "\\N" else values[column]
    values["at"] = datetime.fromisoformat(values["at"])
    values["reason"] = json.loads(values["reason"])
    values["data_subjects"] = json.loads(values["data_subjects"])
    values["out_of_audience"] = values["out_of_audience"] == "t"
    for column in ("id", "policy_version"):
        values[column] = int(values[column])
    return values
