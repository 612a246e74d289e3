"""`aclaudit log archive`: sealed segments verified before their entries leave the database;
archive and database verify as one chain; tampering with either is named."""

import json
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.accesslog import archiver
from app.accesslog.models import AccessLogEntry, AccessLogSubject
from app.config import Settings
from tests.accesslog.archive_helpers import (
    archive_settings,
    at_of,
    check_archive,
    make_batches,
    rewrite_segment,
)

FAR = datetime.fromisoformat("2100-01-01T00:00:00+00:00")


@pytest.fixture
def settings(database_url: str) -> Settings:
    return archive_settings(database_url)


async def run_archive(sessionmaker, settings, directory: Path, before: datetime, size: int = 20):
    lines: list[str] = []
    done = await archiver.archive(
        sessionmaker,
        settings,
        before=before,
        directory=directory,
        max_entries=size,
        progress=lines.append,
    )
    return done, lines


async def entry_ids(sessionmaker) -> tuple[int | None, int | None, int]:
    async with sessionmaker() as session:
        low, high = (
            await session.execute(select(func.min(AccessLogEntry.id), func.max(AccessLogEntry.id)))
        ).one()
        subjects = await session.scalar(select(func.count()).select_from(AccessLogSubject))
    return low, high, int(subjects or 0)


async def verify(client, admin):
    r = await client.get("/v1/access-log/verify?full=true", headers=admin)
    assert r.status_code == 200, r.text
    return r.json()


async def test_archived_prefix_and_database_verify_as_one_chain(
    client, tokens, admin, sessionmaker, settings, tmp_path
):
    await make_batches(client, tokens, admin, 5)  # entries 1..50, checkpoints at 10, 20 .. 50
    before = await at_of(client, admin, 35)  # whole checkpoint ranges only: 1..30
    done, progress = await run_archive(sessionmaker, settings, tmp_path, before)

    assert [(m.first_id, m.last_id) for m in done.segments] == [(1, 20), (21, 30)]
    assert any("verified" in line for line in progress)
    assert await entry_ids(sessionmaker) == (31, 50, 20)
    manifest_path = tmp_path / "access-log-000000000021-000000000030.manifest.json"
    manifest = json.loads(manifest_path.read_text())
    assert manifest["first_id"] == 21 and manifest["last_id"] == 30 and manifest["entries"] == 10
    assert manifest["checkpoint"]["entry_id"] == 30 and manifest["checkpoint"]["signature"]
    assert manifest["prev_hash"] == done.segments[0].last_hash

    first_left = (await client.get("/v1/access-log/31", headers=admin)).json()
    assert first_left["prev_hash"] == done.segments[-1].last_hash
    await make_batches(client, tokens, admin, 1)  # the writer appends after an archived prefix
    result = await verify(client, admin)
    assert result["ok"] is True, result
    assert result["entries"] == 60
    assert result["archived"] == {
        "segments": 2,
        "first_id": 1,
        "last_id": 30,
        "entries": 30,
        "last_hash": done.segments[-1].last_hash,
        "newest_segment": "access-log-000000000021-000000000030.jsonl.gz",
    }
    assert (await check_archive(sessionmaker, settings, tmp_path)).ok


async def test_a_rerun_continues_after_the_newest_segment_and_leaves_the_tail(
    client, tokens, admin, sessionmaker, settings, tmp_path
):
    await make_batches(client, tokens, admin, 3)
    await run_archive(sessionmaker, settings, tmp_path, await at_of(client, admin, 15))
    await make_batches(client, tokens, admin, 2)
    done, _ = await run_archive(sessionmaker, settings, tmp_path, FAR)
    # the newest entries after the last checkpoint would stay; here a checkpoint ends each batch
    assert [(m.first_id, m.last_id) for m in done.segments] == [(11, 30), (31, 50)]
    assert await entry_ids(sessionmaker) == (None, None, 0)
    again, _ = await run_archive(sessionmaker, settings, tmp_path, FAR)
    assert again.segments == []
    assert (await verify(client, admin))["ok"] is True
    assert (await check_archive(sessionmaker, settings, tmp_path)).entries == 50


async def test_an_archived_entry_and_page_answer_gone_naming_the_segment(
    client, tokens, admin, sessionmaker, settings, tmp_path
):
    await make_batches(client, tokens, admin, 3)
    await run_archive(sessionmaker, settings, tmp_path, await at_of(client, admin, 25))

    r = await client.get("/v1/access-log/7", headers=admin)
    assert r.status_code == 410
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["segment"] == "access-log-000000000001-000000000020.jsonl.gz"
    assert (problem["first_id"], problem["last_id"]) == (1, 20)
    assert "archived" in problem["detail"]
    assert (await client.get("/v1/access-log/99", headers=admin)).status_code == 404

    page = (await client.get("/v1/access-log?limit=100", headers=admin)).json()
    assert [e["id"] for e in page["items"]] == list(range(30, 20, -1))
    assert page["next_cursor"] is None and page["archived_through"] == 20
    r = await client.get("/v1/access-log?cursor=21", headers=admin)
    assert r.status_code == 410 and r.json()["segment"].startswith("access-log-000000000001-")


async def test_nothing_is_archived_before_the_first_checkpoint(
    client, tokens, admin, sessionmaker, settings, tmp_path
):
    await make_batches(client, tokens, admin, 1)
    done, _ = await run_archive(sessionmaker, settings, tmp_path, await at_of(client, admin, 10))
    assert done.segments == [] and await entry_ids(sessionmaker) == (1, 10, 10)


async def test_tampering_with_a_segment_its_manifest_or_removing_it_is_named(
    client, tokens, admin, sessionmaker, settings, tmp_path
):
    await make_batches(client, tokens, admin, 4)
    await run_archive(sessionmaker, settings, tmp_path, FAR, size=10)
    names = sorted(p.name for p in tmp_path.glob("*.jsonl.gz"))
    assert len(names) == 4
    assert (await check_archive(sessionmaker, settings, tmp_path)).ok

    second = tmp_path / names[1]
    original = second.read_bytes()
    rewrite_segment(second, lambda e: {**e, "principal": "user:mallory"} if e["id"] == 14 else e)
    found = await check_archive(sessionmaker, settings, tmp_path)
    assert not found.ok and found.segment == names[1].removesuffix(".jsonl.gz")
    assert "altered" in (found.problem or "") and found.segments == 1
    second.write_bytes(original)

    manifest = tmp_path / names[2].replace(".jsonl.gz", ".manifest.json")
    doc = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**doc, "entries": 9}))
    found = await check_archive(sessionmaker, settings, tmp_path)
    assert not found.ok and found.segment == names[2].removesuffix(".jsonl.gz")
    assert "manifest" in (found.problem or "")
    manifest.write_text(json.dumps(doc))

    (tmp_path / names[3]).unlink()
    found = await check_archive(sessionmaker, settings, tmp_path)
    assert not found.ok and found.segment == names[3].removesuffix(".jsonl.gz")
    assert "missing" in (found.problem or "")


async def test_a_segment_rehashed_to_match_its_manifest_fails_at_the_signed_checkpoint(
    client, tokens, admin, sessionmaker, settings, tmp_path
):
    """Editing an entry and fixing the manifest's checksum still breaks the chain."""
    from app import chain
    from app.accesslog import segments

    await make_batches(client, tokens, admin, 2)
    await run_archive(sessionmaker, settings, tmp_path, FAR, size=10)
    path = tmp_path / "access-log-000000000001-000000000010.jsonl.gz"
    head = [chain.GENESIS]

    def forge(doc: dict) -> dict:
        doc = {**doc, "dataset": "activity.other", "prev_hash": head[0]}
        entry = {**doc, "at": datetime.fromisoformat(doc["at"])}
        doc["hash"] = head[0] = chain.entry_hash(doc["prev_hash"], entry)
        return doc

    rewrite_segment(path, forge)
    manifest = path.with_name("access-log-000000000001-000000000010.manifest.json")
    doc = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**doc, "sha256": segments.file_sha256(path)}))
    found = await check_archive(sessionmaker, settings, tmp_path)
    assert not found.ok and "manifest" in (found.problem or "")  # differs from the record
    # and were the record forged too, the chain no longer ends at the signed checkpoint:
    forged = segments.read_manifest(tmp_path, "access-log-000000000001-000000000010")
    with pytest.raises(segments.SegmentProblem, match="differs from its checkpoint"):
        segments.check_segment(tmp_path, forged, settings.checkpoint_key_bytes, 1)


async def test_a_removed_archive_record_fails_database_verify(
    client, tokens, admin, sessionmaker, settings, tmp_path
):
    from tests.accesslog.test_verify import sql

    await make_batches(client, tokens, admin, 3)
    await run_archive(sessionmaker, settings, tmp_path, FAR, size=10)
    await sql(sessionmaker, "DELETE FROM access_log_archives WHERE first_id = 11")
    result = await verify(client, admin)
    assert result["ok"] is False and result["first_bad_id"] == 11
    assert "record" in result["problem"]


async def test_an_entry_put_back_into_the_archived_prefix_fails_verify(
    client, tokens, admin, sessionmaker, settings, tmp_path
):
    from tests.accesslog.test_verify import sql

    await make_batches(client, tokens, admin, 3)
    await run_archive(sessionmaker, settings, tmp_path, await at_of(client, admin, 25))
    await sql(
        sessionmaker,
        "INSERT INTO access_log SELECT 5, 'x-' || substr(decision_id, 3), at, principal, "
        "dataset, action, purpose, decision, reason, out_of_audience, data_subjects, "
        "request_id, caller, policy_version, prev_hash, hash FROM access_log WHERE id = 21",
    )
    result = await verify(client, admin)
    assert result["ok"] is False and result["first_bad_id"] == 5


async def test_archive_refuses_a_log_with_a_gap_and_keeps_its_entries(
    client, tokens, admin, sessionmaker, settings, tmp_path
):
    from tests.accesslog.test_verify import sql

    await make_batches(client, tokens, admin, 2)
    await sql(
        sessionmaker,
        "DELETE FROM access_log_subjects WHERE entry_id = 4",
        "DELETE FROM access_log WHERE id = 4",
    )
    with pytest.raises(archiver.ArchiveFailed, match="not all in the database"):
        await run_archive(sessionmaker, settings, tmp_path, FAR)
    assert await entry_ids(sessionmaker) == (1, 20, 19)


async def test_the_cut_is_before_the_instant(
    client, tokens, admin, sessionmaker, settings, tmp_path
):
    await make_batches(client, tokens, admin, 3)
    before = await at_of(client, admin, 21)
    done, _ = await run_archive(sessionmaker, settings, tmp_path, before)
    assert done.segments[-1].last_id == 20


async def test_verifies_during_an_archive_run_never_report_its_drops_as_tampering(
    client, tokens, admin, sessionmaker, settings, tmp_path
):
    import asyncio

    from app.accesslog.integrity import Integrity

    await make_batches(client, tokens, admin, 20)
    integrity = Integrity(sessionmaker, settings)
    archiving = asyncio.create_task(run_archive(sessionmaker, settings, tmp_path, FAR, size=10))
    results = []
    while not archiving.done():
        results.append(await integrity.verify(caller="test", full=True, alert=False))
    await archiving
    assert results and all(r.ok for r in results), [r.problem for r in results if not r.ok]
    assert (await check_archive(sessionmaker, settings, tmp_path)).entries == 200


async def test_a_second_archive_run_into_the_same_directory_is_refused(
    client, tokens, admin, sessionmaker, settings, tmp_path
):
    await make_batches(client, tokens, admin, 2)
    refused = pytest.raises(archiver.ArchiveFailed, match="another archive run")
    with archiver._locked(tmp_path), refused:
        await run_archive(sessionmaker, settings, tmp_path, FAR)
    assert await entry_ids(sessionmaker) == (1, 20, 20)
    done, _ = await run_archive(sessionmaker, settings, tmp_path, FAR)
    assert done.entries == 20


async def test_an_archived_entry_replay_answers_gone_naming_the_segment(
    client, tokens, admin, sessionmaker, settings, tmp_path
):
    await make_batches(client, tokens, admin, 3)
    await run_archive(sessionmaker, settings, tmp_path, await at_of(client, admin, 25))
    r = await client.get("/v1/access-log/7/replay", headers=admin)
    assert r.status_code == 410
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["segment"] == "access-log-000000000001-000000000020.jsonl.gz"
    assert (await client.get("/v1/access-log/25/replay", headers=admin)).json()["matches"] is True
    assert (await client.get("/v1/access-log/99/replay", headers=admin)).status_code == 404
