"""`aclaudit log archive` hardened: signed records, a clean-up that never removes the only copy
of an entry, durable new directories, an unusable `--to` refused, and no pause in production."""

import asyncio
import os
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from app.accesslog import archiver, repository
from app.config import Settings
from tests.accesslog.archive_helpers import archive_settings, at_of, make_batches
from tests.accesslog.test_archive_crash import ACLAUDIT, archive_env
from tests.accesslog.test_verify import sql

FAR = datetime.fromisoformat("2100-01-01T00:00:00+00:00")
LONG_AGO = datetime.fromisoformat("2000-01-01T00:00:00+00:00")


@pytest.fixture
def settings(database_url: str) -> Settings:
    return archive_settings(database_url)  # ACLAUDIT_CHECKPOINT_KEY set


async def run_archive(
    sessionmaker, settings: Settings, directory: Path, before: datetime, size: int = 10
) -> archiver.Archived:
    return await archiver.archive(
        sessionmaker,
        settings,
        before=before,
        directory=directory,
        max_entries=size,
        progress=lambda _: None,
    )


async def verify(client: httpx.AsyncClient, admin) -> dict[str, Any]:
    r = await client.get("/v1/access-log/verify?full=true", headers=admin)
    assert r.status_code == 200, r.text
    found: dict[str, Any] = r.json()
    return found


async def checkpoint_hash(sessionmaker, entry_id: int) -> str:
    async with sessionmaker() as session:
        found = await session.scalar(
            text(f"SELECT head_hash FROM access_log_checkpoints WHERE entry_id = {entry_id}")
        )
    return str(found)


def segment_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("access-log-*"))


# -- 1. signed records ----------------------------------------------------------------------


async def test_a_forged_archive_record_hiding_a_deleted_prefix_fails_verify(
    client, tokens, admin, sessionmaker, settings
):
    """Every column of a record is public knowledge (GENESIS, a checkpoint's id and hash):
    with the key set, only the signature tells a real record from one inserted to hide a
    deleted prefix."""
    await make_batches(client, tokens, admin, 5)  # entries 1..50, signed checkpoints every 10
    last_hash = await checkpoint_hash(sessionmaker, 30)
    await sql(
        sessionmaker,
        "DELETE FROM access_log_subjects WHERE entry_id <= 30",
        "DELETE FROM access_log WHERE id <= 30",
        "INSERT INTO access_log_archives (first_id, last_id, segment, prev_hash, last_hash, "
        "checkpoint_signature, entries, sha256, last_at, out_of_audience_reads, archived_at) "
        "VALUES (1, 30, 'access-log-000000000001-000000000030.jsonl.gz', '" + "0" * 64 + "', "
        f"'{last_hash}', NULL, 30, '{'0' * 64}', '2026-01-01 00:00:00', '{{}}', "
        "'2026-01-01 00:00:00')",
    )
    result = await verify(client, admin)
    assert result["ok"] is False, result
    assert result["first_bad_id"] == 1
    assert "no valid signature" in result["problem"]


async def test_an_extended_newest_archive_record_fails_verify(
    client, tokens, admin, sessionmaker, settings, tmp_path
):
    """After a real run, stretching the newest record to the next checkpoint and deleting the
    entries it now claims breaks its signature."""
    await make_batches(client, tokens, admin, 5)
    await run_archive(sessionmaker, settings, tmp_path, await at_of(client, admin, 25))  # 1..20
    assert (await verify(client, admin))["ok"] is True
    last_hash = await checkpoint_hash(sessionmaker, 40)
    await sql(
        sessionmaker,
        "DELETE FROM access_log_subjects WHERE entry_id <= 40",
        "DELETE FROM access_log WHERE id <= 40",
        f"UPDATE access_log_archives SET last_id = 40, last_hash = '{last_hash}', entries = 30 "
        "WHERE first_id = 11",
    )
    result = await verify(client, admin)
    assert result["ok"] is False, result
    assert result["first_bad_id"] == 11
    assert "access-log-000000000011-000000000020" in result["problem"]


# -- 2. a clean-up that never removes the only copy --------------------------------------------


@pytest.mark.parametrize("before", [FAR, LONG_AGO], ids=["more-to-archive", "nothing-to-archive"])
async def test_a_run_refuses_to_remove_segments_whose_entries_left_the_database(
    before, client, tokens, admin, sessionmaker, settings, tmp_path
):
    """Segments the database has no record of (a lost table, a restore, another database
    archiving into the same directory) whose entries it does not hold are the only copy of
    them: the run stops, naming them, and removes nothing."""
    await make_batches(client, tokens, admin, 3)
    await run_archive(sessionmaker, settings, tmp_path, FAR)  # 1..30 archived, dropped
    kept = segment_files(tmp_path)
    assert len(kept) == 6
    await sql(sessionmaker, "DELETE FROM access_log_archives")
    with pytest.raises(archiver.ArchiveFailed, match="access-log-000000000001-000000000010"):
        await run_archive(sessionmaker, settings, tmp_path, before)
    assert segment_files(tmp_path) == kept


async def test_a_run_refuses_an_unrecorded_segment_that_differs_from_the_database(
    client, tokens, admin, sessionmaker, settings, tmp_path
):
    """A leftover is removed only when the database holds its entries with the hashes it
    names (the crash tests show those go); one that does not match is kept and named."""
    await make_batches(client, tokens, admin, 2)
    stray = tmp_path / "access-log-000000000001-000000000010.jsonl.gz"
    stray.write_bytes(b"not what the database holds")
    (tmp_path / "access-log-000000000011-000000000020.jsonl.gz.tmp").write_bytes(b"partial")
    with pytest.raises(archiver.ArchiveFailed, match=stray.name):
        await run_archive(sessionmaker, settings, tmp_path, FAR)
    assert len(segment_files(tmp_path)) == 2  # refused before anything is removed


async def test_downgrading_below_0013_is_refused_while_segments_are_recorded(
    client, tokens, admin, sessionmaker, settings, tmp_path, database_url
):
    from alembic import command

    from app.migrate import alembic_config

    await make_batches(client, tokens, admin, 1)
    await run_archive(sessionmaker, settings, tmp_path, FAR)
    with pytest.raises(RuntimeError, match="DELETE FROM access_log_archives"):
        await asyncio.to_thread(command.downgrade, alembic_config(database_url), "0012")
    async with sessionmaker() as session:
        assert await session.scalar(text("SELECT count(*) FROM access_log_archives")) == 1


# -- 3. a new --to directory is durable --------------------------------------------------------


async def test_every_directory_a_run_creates_is_synced_in_its_parent_before_entries_drop(
    client, tokens, admin, sessionmaker, settings, tmp_path, monkeypatch
):
    """`--to` and its missing parents are each fsynced in their parent (a kill -9 cannot show
    it, the page cache survives: shown by what os.fsync is called on, and when)."""
    synced: list[str] = []
    real_fsync = os.fsync
    real_drop = repository.drop_archived_entries

    def recording_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    async def recording_drop(*args: Any, **kwargs: Any) -> int:
        synced.append("drop")
        dropped: int = await real_drop(*args, **kwargs)
        return dropped

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(repository, "drop_archived_entries", recording_drop)
    await make_batches(client, tokens, admin, 1)
    directory = tmp_path / "new" / "archive"
    done = await run_archive(sessionmaker, settings, directory, FAR)
    assert done.entries == 10
    before_drop = synced[: synced.index("drop")]
    assert {str(tmp_path), str(tmp_path / "new"), str(directory)} <= set(before_drop)


# -- 5. an unusable --to -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["a-file", "under-a-file"])
def test_an_unusable_to_directory_is_refused_with_a_message(kind, database_url, tmp_path):
    """(A read-only directory is refused the same way; not testable here: tests run as root.)"""
    (tmp_path / "plain").write_text("not a directory")
    target = tmp_path / "plain" if kind == "a-file" else tmp_path / "plain" / "archive"
    done = subprocess.run(
        [str(ACLAUDIT), "log", "archive", "--before", "2100-01-01T00:00:00Z", "--to", str(target)],
        env=archive_env(database_url),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr[-600:]
    assert f"--to {target} cannot hold an archive: Not a directory" in done.stderr


# -- 4. no pause in production -----------------------------------------------------------------


async def test_the_old_test_pause_variable_does_not_pause_a_real_run(
    client, tokens, admin, database_url, tmp_path
):
    """The pause the crash tests use is injected by their wrapper script
    (tests/accesslog/paused_archive.py); the command itself honours no such setting, so
    nothing in an environment can hold the drop transaction (and SQLite's write lock) open."""
    await make_batches(client, tokens, admin, 2)
    env = archive_env(database_url) | {"ACLAUDIT_TEST_ARCHIVE_PAUSE_AT": "dropped"}
    done = await asyncio.to_thread(
        subprocess.run,
        [
            *(str(ACLAUDIT), "log", "archive", "--before", "2100-01-01T00:00:00Z"),
            *("--to", str(tmp_path / "archive")),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "paused" not in done.stderr
    assert "archived 20 entries" in done.stdout


# -- 6. SQLite: a drop never holds the write lock for long -------------------------------------


async def test_sqlite_segments_are_capped_so_a_drop_holds_the_write_lock_briefly(
    client, tokens, admin, sessionmaker, settings, tmp_path, monkeypatch
):
    """(The cap is 100 000 entries, ~0.74 s to drop; lowered here to show where it applies.)"""
    await make_batches(client, tokens, admin, 4)
    monkeypatch.setattr(archiver, "SQLITE_MAX_SEGMENT_ENTRIES", 10)
    done = await run_archive(sessionmaker, settings, tmp_path / "a", FAR, size=20)
    expected = [10] * 4 if settings.is_sqlite else [20] * 2
    assert [m.entries for m in done.segments] == expected


async def test_sqlite_refuses_checkpoints_further_apart_than_the_segment_cap(
    client, tokens, admin, sessionmaker, settings, tmp_path, monkeypatch
):
    await make_batches(client, tokens, admin, 2)  # checkpoints every 10
    monkeypatch.setattr(archiver, "SQLITE_MAX_SEGMENT_ENTRIES", 5)
    if not settings.is_sqlite:
        assert (await run_archive(sessionmaker, settings, tmp_path, FAR, size=5)).entries == 20
        return
    with pytest.raises(archiver.ArchiveFailed, match="lower ACLAUDIT_CHECKPOINT_EVERY"):
        await run_archive(sessionmaker, settings, tmp_path, FAR, size=5)
    async with sessionmaker() as session:
        assert await session.scalar(text("SELECT count(*) FROM access_log")) == 20


# -- 7. archiving is not silent deletion in reports --------------------------------------------


async def test_archived_out_of_audience_reads_still_count_in_reports(
    client, tokens, admin, sessionmaker, settings, tmp_path
):
    """The dataset's exposure keeps counting the archived out-of-audience reads (the archive
    record keeps them by dataset), the Prometheus counter does not go backwards, and the
    finding's "who did" page says up to which entry the log was archived."""
    from tests.operations.test_metrics import scrape, value

    await client.put(
        "/v1/datasets/activity.keys",
        json={"owner": "group:r", "sensitivity": "internal", "intended_audience": ["group:r"]},
        headers=admin,
    )
    g = await client.post(
        "/v1/grants",
        json={
            "principal": "user:mallory",
            "resource": "activity.*",
            "action": "read",
            "effect": "allow",
            "justification": "test",
        },
        headers=admin,
    )
    finding_id = g.json()["findings_opened"][0]["id"]
    read = {"principal": "user:mallory", "dataset": "activity.keys", "action": "read"}
    r = await client.post("/v1/check/batch", json={"checks": [read] * 20}, headers=tokens["check"])
    assert r.json()["results"][0]["out_of_audience"] is True
    exposure = "/v1/datasets/activity.keys/exposure"
    assert (await client.get(exposure, headers=admin)).json()["out_of_audience_reads"] == 20
    counted = value(
        await scrape(client, tokens["metrics:read"]), "aclaudit_out_of_audience_reads_total"
    )

    await run_archive(sessionmaker, settings, tmp_path, FAR)  # entries 1..20 archived

    m = await scrape(client, tokens["metrics:read"])
    reads = (await client.get(f"/v1/findings/{finding_id}/reads", headers=admin)).json()
    after = (await client.get(exposure, headers=admin)).json()["out_of_audience_reads"]
    found = {
        "counter": value(m, "aclaudit_out_of_audience_reads_total"),
        "who did": (len(reads["items"]), reads.get("archived_through")),
        "exposure": after,
    }
    assert found == {"counter": counted, "who did": (0, 20), "exposure": 20}
    assert (await verify(client, admin))["ok"] is True


async def test_two_archive_runs_into_different_directories_at_once_lose_nothing(
    client, tokens, admin, sessionmaker, settings, tmp_path
):
    from tests.accesslog.archive_helpers import check_archive

    await make_batches(client, tokens, admin, 6)
    a, b = tmp_path / "a", tmp_path / "b"
    done = await asyncio.gather(
        run_archive(sessionmaker, settings, a, FAR, size=10),
        run_archive(sessionmaker, settings, b, FAR, size=20),
        return_exceptions=True,
    )
    assert sum(isinstance(d, archiver.ArchiveFailed) for d in done) == 1, done
    winner = a if not isinstance(done[0], Exception) else b
    assert (await check_archive(sessionmaker, settings, winner)).ok
    assert (await verify(client, admin))["ok"] is True
