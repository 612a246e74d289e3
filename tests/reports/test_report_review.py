"""Review of the incident report (issue #20): defects found, each a failing test."""

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic import command

from app import migrate
from app.accesslog import archiver
from app.config import Settings
from tests.accesslog.archive_helpers import archive_settings
from tests.accesslog.test_verify import served, sql
from tests.conftest import Tokens
from tests.policy.test_history_backfill import in_app

REPORT = "/v1/reports/exposure"


@pytest.fixture
def settings(database_url: str) -> Settings:
    return archive_settings(database_url)  # a checkpoint every 10 entries: segments to archive


DATASET = {"owner": "group:eng", "sensitivity": "internal", "intended_audience": ["group:eng"]}
GRANT = {"principal": "user:amy", "resource": "a.*", "action": "read", "effect": "allow"}


def test_a_report_since_before_the_migration_shows_the_migrated_policys_exposure(
    tmp_path: Path,
):
    """A database upgraded to 0012 keeps its policy as history rows from version 0, and records
    its current version at the migration's instant. A report whose `since` is before that
    instant starts from the empty policy (version 0) and walks the versions after it, but the
    migrated rows (from_version 0) are never applied: the report says the dataset is not
    registered and never exposed, while exposure (now, or at= after the migration) has amy
    beyond the audience."""
    url = f"sqlite:///{tmp_path / 'x.db'}"
    migrate.upgrade(url)

    async def seed(app: Any, client: httpx.AsyncClient, admin: dict[str, str]) -> datetime:
        assert (await client.put("/v1/datasets/a.b", json=DATASET, headers=admin)).is_success
        assert (await client.post("/v1/grants", json=GRANT, headers=admin)).is_success
        return datetime.now(UTC)

    before = asyncio.run(in_app(url, seed))
    config = migrate.alembic_config(url)
    command.downgrade(config, "0011")  # a database from before the history
    command.upgrade(config, "head")

    async def ask(app: Any, client: httpx.AsyncClient, admin: dict[str, str]) -> None:
        await asyncio.sleep(0.01)
        now = await client.get("/v1/datasets/a.b/exposure", headers=admin)
        assert now.json()["excess_count"] == 1
        params = {"dataset": "a.*", "since": (before - timedelta(days=1)).isoformat()}
        r = await client.get(REPORT, params=params, headers=admin)
        assert r.status_code == 200, r.text
        [report] = r.json()["datasets"]
        assert report["registered_at_until"] is True
        assert report["who_could"]["excess_at_until"] == 1
        assert len(report["windows"]) == 1

    asyncio.run(in_app(url, ask))


async def _exposed_reads(client: httpx.AsyncClient, tokens: Tokens, n: int) -> None:
    admin = tokens["admin"]
    r = await client.put("/v1/datasets/a.b", json=DATASET, headers=admin)
    assert r.is_success, r.text
    r = await client.post("/v1/grants", json=GRANT, headers=admin)
    assert r.is_success, r.text
    read = {"principal": "user:amy", "dataset": "a.b", "action": "read"}
    r = await client.post("/v1/check/batch", json={"checks": [read] * n}, headers=tokens["check"])
    assert r.json()["results"][0]["out_of_audience"] is True


async def test_archived_reads_after_the_period_are_not_counted_in_its_report(
    client: httpx.AsyncClient,
    tokens: Tokens,
    sessionmaker: Any,
    settings: Settings,
    tmp_path: Path,
):
    """`archives_overlapping` takes every segment whose last entry is at or after `since`, with
    no bound at `until`: a period that ended before any read still counts the archived reads
    written after it (and lists their segments as overlapping it)."""
    admin = tokens["admin"]
    assert (await client.put("/v1/datasets/a.b", json=DATASET, headers=admin)).is_success
    await asyncio.sleep(0.02)
    period_end = datetime.now(UTC)
    await asyncio.sleep(0.02)
    await _exposed_reads(client, tokens, 20)
    await archiver.archive(
        sessionmaker,
        settings,
        before=datetime.now(UTC) + timedelta(seconds=1),
        directory=tmp_path / "archive",
        max_entries=10,
        progress=lambda _: None,
    )
    params = {"dataset": "a.b", "until": period_end.isoformat()}
    r = await client.get(REPORT, params=params, headers=admin)
    assert r.status_code == 200, r.text
    [report] = r.json()["datasets"]
    assert r.json()["integrity"]["archived_through"] == 20
    assert report["who_did"]["archived_out_of_audience_reads"] == 0
    assert r.json()["integrity"]["archived_segments"] == []


async def test_a_garbage_checkpoint_time_makes_the_report_say_tampered_not_500(
    database_url: str, tokens: Tokens
):
    """Verify reports a checkpoint whose time cannot be read as tampering (tested for
    `/v1/access-log/verify`), but the report loads the same checkpoint as its anchor through
    the ORM first-hand and answers 500: the incident report fails exactly when the log was
    tampered with."""
    settings = Settings(database_url=database_url, checkpoint_every=5)
    if not settings.is_sqlite:
        pytest.skip("PostgreSQL's timestamptz column cannot hold text")
    async with served(settings) as (client, maker):
        await _exposed_reads(client, tokens, 6)  # checkpoint at entry 6
        await sql(maker, "UPDATE access_log_checkpoints SET at = 'garbage' WHERE entry_id = 6")
        r = await client.get(REPORT, params={"dataset": "a.b"}, headers=tokens["admin"])
        assert r.status_code == 200, r.text
        assert r.json()["integrity"]["ok"] is False


FORGED = "<style>.failed,.bad{display:none}</style>"  # fits a checkpoint's String(64)


async def test_a_tampered_checkpoint_cannot_restyle_the_html_reports_integrity_verdict(
    database_url: str, tokens: Tokens, tmp_path: Path
):
    """The integrity statement prints the checkpoint anchors' `head_hash` (and the verified
    `head`) unescaped, in the HTML page as in the Markdown. Whoever edited the log can write
    the checkpoint row too: a `<style>` there (the page's CSP allows inline styles) hides the
    page's own "Tampered" verdict from the security lead reading it."""
    from tests.test_cli import finish, start

    settings = Settings(database_url=database_url, checkpoint_every=5)
    async with served(settings) as (client, maker):
        await _exposed_reads(client, tokens, 6)  # checkpoint at entry 6
        await sql(
            maker,
            "UPDATE access_log SET principal = 'user:mallory' WHERE id = 2",
            f"UPDATE access_log_checkpoints SET head_hash = '{FORGED}' WHERE entry_id = 6",
        )
    args = ["report", "--dataset", "a.b", "--format", "html"]
    process = start(tmp_path / "cli" / "x.db", *args, url=database_url)
    result = await asyncio.to_thread(finish, process)
    assert result.returncode == 0, result.stderr
    assert 'data-ok="false"' in result.stdout  # the log failed verification
    assert FORGED not in result.stdout


async def test_the_reports_integrity_covers_the_periods_entries_after_an_earlier_verify(
    database_url: str, tokens: Tokens
):
    """The API's report verifies the log resumed from the last checkpoint this worker verified
    (the CLI's is full): an entry of the period edited after an earlier verify (or report) is
    before the resume point, and the report states the log "verified intact" over a period
    holding it."""
    settings = Settings(database_url=database_url, checkpoint_every=5, sweeper_enabled=False)
    async with served(settings) as (client, maker):
        await _exposed_reads(client, tokens, 12)  # checkpoints at entries 5 and 10
        admin = tokens["admin"]
        first = await client.get(REPORT, params={"dataset": "a.b"}, headers=admin)
        assert first.json()["integrity"]["ok"] is True
        await sql(maker, "UPDATE access_log SET principal = 'user:mallory' WHERE id = 2")
        r = await client.get(REPORT, params={"dataset": "a.b"}, headers=admin)
        assert r.status_code == 200, r.text
        integrity = r.json()["integrity"]
        assert integrity["period_first_entry"] <= 2
        assert (integrity["ok"], integrity["first_bad_id"]) == (False, 2)


async def test_the_cli_takes_the_cursor_its_paged_report_tells_to_continue_with(
    client: httpx.AsyncClient, tokens: Tokens, database_url: str, tmp_path: Path
):
    """`aclaudit report --top N` ends with "continue with cursor C", but the command has no
    option to pass C: the rest of who could read it cannot be had from the CLI."""
    from tests.test_cli import finish, start

    await _exposed_reads(client, tokens, 1)
    r = await client.post(
        "/v1/groups/all/members", json={"member": "user:bo"}, headers=tokens["admin"]
    )
    assert r.is_success, r.text
    broad = {**GRANT, "principal": "group:all"}
    assert (await client.post("/v1/grants", json=broad, headers=tokens["admin"])).is_success
    args = ["report", "--dataset", "a.b", "--format", "json", "--top", "1"]
    first = await asyncio.to_thread(finish, start(tmp_path / "c" / "x.db", *args, url=database_url))
    assert first.returncode == 0, first.stderr
    cursor = json.loads(first.stdout)["next_cursor"]
    assert cursor is not None
    more = [*args, "--cursor", cursor]
    second = await asyncio.to_thread(
        finish, start(tmp_path / "d" / "x.db", *more, url=database_url)
    )
    assert second.returncode == 0, second.stderr
