"""PostgreSQL: the access log partitioned by entry id. Partitions are made ahead of the head (at
migration, at start, by every sweeper, by a batch that finds none), at once by several
processes without clashing; checks write across partition ends; the archive drops whole
partitions and the chain still verifies with the archive; /metrics reports the headroom."""

import asyncio
import subprocess
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.engine import make_url

from app import migrate
from app.accesslog import archiver, partitions, repository
from app.accesslog.partitions import missing_ranges
from app.auth import service as auth_service
from app.config import Settings
from app.db import create_engine
from app.main import create_app
from app.operations.sweeper import Sweeper
from tests.accesslog.archive_helpers import EVERY, KEY, at_of, check_archive, make_batches
from tests.accesslog.test_archive import FAR, verify
from tests.accesslog.test_archive_crash import (
    ACLAUDIT,
    archive_env,
    assert_nothing_lost,
    kill,
    start_archive,
    wait_for_line,
)
from tests.conftest import BACKENDS, POSTGRES_URL, Tokens, postgres_admin_execute

SIZE = 20  # entries per partition: two checkpoints (EVERY = 10)


# -- the grid (no database) --------------------------------------------------------------------


def test_missing_ranges_are_the_grid_cells_less_what_exists():
    assert missing_ranges([], 1, 45, 20) == [(1, 21), (21, 41), (41, 61)]
    assert missing_ranges([(1, 21)], 15, 30, 20) == [(21, 41)]
    # partitions of an older size, and a hole a restore left: filled, clipped to the grid
    assert missing_ranges([(1, 6), (11, 16)], 1, 20, 20) == [(6, 11), (16, 21)]
    assert missing_ranges([(1, 1_000_001)], 1, 40, 20) == []
    assert missing_ranges([], 50, 10, 20) == []


# -- PostgreSQL --------------------------------------------------------------------------------

needs_postgres = pytest.mark.skipif(
    POSTGRES_URL is None, reason="the log is partitioned on PostgreSQL only"
)


@pytest.fixture
def fresh_postgres(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A new PostgreSQL database, not migrated; partitions of SIZE entries."""
    assert POSTGRES_URL
    monkeypatch.setenv("ACLAUDIT_LOG_PARTITION_ENTRIES", str(SIZE))
    name = f"aclaudit_partitions_{uuid.uuid4().hex[:12]}"
    asyncio.run(postgres_admin_execute(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(postgres_admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def database_url(fresh_postgres: str) -> str:
    migrate.upgrade(fresh_postgres)
    return fresh_postgres


@pytest.fixture
def settings(database_url: str) -> Settings:
    # no sweeper task: the tests run its ticks themselves
    return Settings(
        database_url=database_url,
        checkpoint_every=EVERY,
        checkpoint_key=KEY,
        log_partition_entries=SIZE,
        sweeper_enabled=False,
    )


async def layout(sessionmaker) -> dict[str, list[tuple[int, int]]]:
    async with sessionmaker() as session:
        return {
            table: [
                (p.first_id, p.last_id) for p in await partitions.list_partitions(session, table)
            ]
            for table in (partitions.LOG, partitions.SUBJECTS)
        }


async def rows_in(sessionmaker, name: str) -> int | None:
    async with sessionmaker() as session:
        if await session.scalar(text("SELECT to_regclass(:n)"), {"n": name}) is None:
            return None
        return int(await session.scalar(text(f"SELECT count(*) FROM {name}")) or 0)


@needs_postgres
async def test_the_sweeper_keeps_two_partitions_ahead_and_checks_cross_partition_ends(
    client, tokens, admin, sessionmaker, settings
):
    # the migration made two partitions ahead of the (empty) log's head
    assert await layout(sessionmaker) == {
        partitions.LOG: [(1, 20), (21, 40)],
        partitions.SUBJECTS: [(1, 20), (21, 40)],
    }
    await make_batches(client, tokens, admin, 3)  # entries 1..30: across the end of 1..20
    assert await rows_in(sessionmaker, "access_log_p000000000001") == 20
    assert await rows_in(sessionmaker, "access_log_p000000000021") == 10
    assert await rows_in(sessionmaker, "access_log_subjects_p000000000021") == 10
    report = await Sweeper(sessionmaker, settings).sweep_once()
    assert report.partitions_made == ["access_log_p000000000041", "access_log_p000000000061"]
    assert (await layout(sessionmaker))[partitions.SUBJECTS][-1] == (61, 80)
    assert (await Sweeper(sessionmaker, settings).sweep_once()).partitions_made == []
    result = await verify(client, admin)
    assert result["ok"] and result["entries"] == 30, result


@needs_postgres
async def test_a_batch_that_finds_no_partition_makes_them_and_is_written(
    client, tokens, admin, sessionmaker
):
    """No sweeper ran: entries 41.. have no partition when their batch comes."""
    await make_batches(client, tokens, admin, 6)  # 60 entries, every check answered
    assert [p[0] for p in (await layout(sessionmaker))[partitions.LOG]][:4] == [1, 21, 41, 61]
    assert await rows_in(sessionmaker, "access_log_p000000000041") == 20
    result = await verify(client, admin)
    assert result["ok"] and result["entries"] == 60, result


@needs_postgres
async def test_two_sweepers_and_a_loader_at_once_make_each_partition_once(
    client, tokens, admin, sessionmaker, settings
):
    await make_batches(client, tokens, admin, 3)  # head 30: 41..80 to make
    sweepers = [Sweeper(sessionmaker, settings) for _ in range(2)]

    async def load() -> list[partitions.Partition]:
        async with sessionmaker() as session, session.begin():
            return await partitions.ensure_partitions(session, 100, partition_entries=SIZE)

    made = await asyncio.gather(*(s.keep_partitions() for s in sweepers), load(), load())
    names = [p.name for batch in made for p in batch]
    assert sorted(names) == [partitions.partition_name("access_log", i) for i in (41, 61, 81)]
    assert (await layout(sessionmaker))[partitions.LOG][-1] == (81, 100)


@needs_postgres
async def test_archive_drops_whole_partitions_and_verifies_with_the_archive(
    client, tokens, admin, sessionmaker, settings, tmp_path: Path
):
    await make_batches(client, tokens, admin, 5)  # 1..50, a checkpoint every 10

    async def archive() -> archiver.Archived:
        return await archiver.archive(
            sessionmaker, settings, before=FAR, directory=tmp_path, max_entries=None,
            progress=lambda _: None,
        )  # fmt: skip

    done = await archive()
    # one segment per partition, and what is left before the instant (41..50, as rows)
    assert [(m.first_id, m.last_id) for m in done.segments] == [(1, 20), (21, 40), (41, 50)]
    for name in ("access_log_p000000000001", "access_log_subjects_p000000000021"):
        assert await rows_in(sessionmaker, name) is None  # the table is gone
    assert await rows_in(sessionmaker, "access_log_p000000000041") == 0
    assert (await check_archive(sessionmaker, settings, tmp_path)).ok
    result = await verify(client, admin)
    assert result["ok"] and result["archived"]["last_id"] == 50, result

    await Sweeper(sessionmaker, settings).sweep_once()
    await make_batches(client, tokens, admin, 2)  # 51..70
    done = await archive()
    assert [(m.first_id, m.last_id) for m in done.segments] == [(51, 60), (61, 70)]
    assert await rows_in(sessionmaker, "access_log_p000000000041") is None  # dropped whole
    assert await rows_in(sessionmaker, "access_log_p000000000061") == 0
    archived = await check_archive(sessionmaker, settings, tmp_path)
    assert archived.ok and archived.entries == 70, archived
    result = await verify(client, admin)
    assert result["ok"] and result["entries"] == 70, result
    cli = await asyncio.to_thread(
        subprocess.run,
        [str(ACLAUDIT), "log", "verify", "--archive", str(tmp_path)],
        env=archive_env(settings.database_url),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert "ok: 70 entries (70 of them in 5 archived segments, verified)" in cli.stdout


@needs_postgres
async def test_kill_while_a_whole_partition_is_dropped_loses_nothing(
    client, tokens, admin, sessionmaker, settings, tmp_path: Path
):
    await make_batches(client, tokens, admin, 5)  # 1..50
    directory = tmp_path / "archive"
    sized = {"ACLAUDIT_LOG_PARTITION_ENTRIES": str(SIZE)}
    # a segment of one whole partition (1..20): its drop is DROP TABLE of both tables' parts,
    # killed after it ran and before the commit
    process = start_archive(
        settings.database_url, directory, "dropped", segment_entries=SIZE, env=sized
    )
    assert wait_for_line(process, "paused at dropped")
    async with sessionmaker() as session:  # its DROP TABLE holds the partition, uncommitted
        held = await session.scalar(
            text(
                "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                "WHERE c.relname = 'access_log_p000000000001' AND l.granted "
                "AND l.mode = 'AccessExclusiveLock'"
            )
        )
    assert held == 1
    kill(process)
    head = 50
    assert await assert_nothing_lost(client, admin, sessionmaker, settings, directory, head) == 0
    assert await rows_in(sessionmaker, "access_log_p000000000001") == SIZE
    assert await rows_in(sessionmaker, "access_log_subjects_p000000000001") == SIZE

    process = start_archive(settings.database_url, directory, env=sized)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert await assert_nothing_lost(client, admin, sessionmaker, settings, directory, head) == 50
    for name in ("access_log_p000000000001", "access_log_subjects_p000000000001"):
        assert await rows_in(sessionmaker, name) is None


@needs_postgres
async def test_a_drop_waits_out_a_long_reader_of_the_log_and_then_drops(
    client, tokens, admin, sessionmaker, settings, tmp_path: Path
):
    """The drop's ACCESS EXCLUSIVE lock is waited for 1 s at most (checks queue behind it),
    then the transaction is rolled back and tried again."""
    await make_batches(client, tokens, admin, 2)  # 1..20: the first partition full
    dsn = make_url(settings.database_url).set(drivername="postgresql")
    reader = await asyncpg.connect(dsn.render_as_string(hide_password=False))
    await reader.execute("BEGIN; SELECT count(*) FROM access_log")  # holds a share lock
    lines: list[str] = []
    archiving = archiver.archive(
        sessionmaker, settings, before=FAR, directory=tmp_path, max_entries=None,
        progress=lines.append,
    )  # fmt: skip
    run = asyncio.create_task(archiving)
    for _ in range(300):
        if any("the log is busy" in line for line in lines) or run.done():
            break
        await asyncio.sleep(0.1)
    assert await rows_in(sessionmaker, "access_log_p000000000001") == 20  # nothing dropped
    await reader.execute("COMMIT")
    await reader.close()
    done = await run
    assert any("the log is busy" in line for line in lines), lines
    assert [(m.first_id, m.last_id) for m in done.segments] == [(1, 20)]
    assert await rows_in(sessionmaker, "access_log_p000000000001") is None
    assert (await verify(client, admin))["ok"]


@needs_postgres
async def test_metrics_report_the_partition_headroom(client, tokens, admin, sessionmaker):
    await make_batches(client, tokens, admin, 1)  # head 10, partitions up to 40
    body = (await client.get("/metrics", headers=tokens["metrics:read"])).text
    assert "aclaudit_access_log_partition_headroom_entries 30.0" in body
    assert "aclaudit_access_log_partition_entries 20.0" in body
    assert "aclaudit_access_log_oldest_entry_age_seconds " in body


# -- migration 0018, both backends -------------------------------------------------------------


async def _in_app(url: str, work: Callable[..., Awaitable[Any]]) -> Any:
    settings = Settings(
        database_url=url, checkpoint_every=EVERY, checkpoint_key=KEY, sweeper_enabled=False
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        maker = app.state.sessionmaker
        async with maker() as session, session.begin():
            made = {
                scope: await auth_service.create_token(
                    session, name=f"{scope}-{uuid.uuid4().hex[:6]}", scopes=[scope]
                )
                for scope in ("admin", "check")
            }
        tokens = Tokens(made)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await work(client, tokens, tokens["admin"], maker, settings)


async def _log(maker) -> tuple[list[tuple[int, str, str]], list[tuple[str, int]], bool]:
    async with maker() as session:
        entries = await repository.entry_rows(session, after=0, up_to=10**9)
        query = text("SELECT subject, entry_id FROM access_log_subjects ORDER BY 2, 1")
        subjects = (await session.execute(query)).all()
        partitioned = await partitions.is_partitioned(session)
    return (
        [(e["id"], e["prev_hash"], e["hash"]) for e in entries],
        [(str(s), int(i)) for s, i in subjects],
        partitioned,
    )


# The columns of later migrations that today's code reads and writes, as those migrations make
# them (0020: the head's instant; 0022: purposes), lent to an older schema while it runs there.
LATER_COLUMNS = (
    ("access_log_head", "last_at", "TIMESTAMP WITH TIME ZONE"),
    ("access_log_head", "monotone_from", "BIGINT NOT NULL DEFAULT 1"),
    ("grants", "purposes", "JSON NOT NULL DEFAULT '[\"*\"]'"),
    ("grant_history", "purposes", "JSON NOT NULL DEFAULT '[\"*\"]'"),
    ("datasets", "purpose_required", "BOOLEAN NOT NULL DEFAULT false"),
    ("dataset_history", "purpose_required", "BOOLEAN NOT NULL DEFAULT false"),
)


async def _lend_later_columns(url: str, change: str) -> None:
    """ADD or DROP the LATER_COLUMNS on an older schema."""
    engine = create_engine(Settings(database_url=url))
    async with engine.begin() as conn:
        for table, name, kind in LATER_COLUMNS:
            column = f"{name} {kind}" if change == "ADD" else name
            await conn.execute(text(f"ALTER TABLE {table} {change} COLUMN {column}"))
    await engine.dispose()


@pytest.mark.parametrize("backend", BACKENDS)
# The log before 0018 is written by today's code at 0017: a table that today's writers or
# archiver need must come from a migration before 0018 (as 0016 and 0017 do).
def test_entries_written_before_0018_verify_after_it_and_after_its_downgrade(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
):
    is_pg = backend == "postgresql"
    url = request.getfixturevalue("fresh_postgres") if is_pg else f"sqlite:///{tmp_path / 'm.db'}"
    config = migrate.alembic_config(url)
    command.upgrade(config, "0017")
    archive = tmp_path / "archive"

    async def before(client, tokens, admin, maker, settings):
        await make_batches(client, tokens, admin, 3)  # 1..30
        until = await at_of(client, admin, 11)
        await archiver.archive(
            maker,
            settings,
            before=until,
            directory=archive,
            max_entries=10,
            progress=lambda _: None,
        )  # fmt: skip: 1..10 archived (deleted as rows before 0018)
        assert (await verify(client, admin))["ok"]
        return await _log(maker)

    def after(written: int):
        async def work(client, tokens, admin, maker, settings):
            result = await verify(client, admin)
            assert result["ok"] and result["entries"] == written, result
            assert result["archived"]["last_id"] == 10, result
            assert (await check_archive(maker, settings, archive)).ok
            return await _log(maker)

        return work

    # today's code reads columns of 0020 and 0022: lent while it runs at 0017
    asyncio.run(_lend_later_columns(url, "ADD"))
    entries, subjects, partitioned = asyncio.run(_in_app(url, before))
    assert len(entries) == 20 and len(subjects) == 20 and not partitioned
    asyncio.run(_lend_later_columns(url, "DROP"))

    command.upgrade(config, "head")
    assert asyncio.run(_in_app(url, after(30))) == (entries, subjects, is_pg)

    async def more(client, tokens, admin, maker, settings):
        await make_batches(client, tokens, admin, 2)  # 31..50: across the end of 21..40

    asyncio.run(_in_app(url, more))
    entries, subjects, _ = asyncio.run(_in_app(url, after(50)))
    assert len(entries) == 40 and len(subjects) == 40

    command.downgrade(config, "0017")
    asyncio.run(_lend_later_columns(url, "ADD"))
    assert asyncio.run(_in_app(url, after(50))) == (entries, subjects, False)
