"""The report's integrity statement verifies the period's entries, from the checkpoint before
them through the one covering them, linked to the head; not the whole log."""

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from app.config import Settings
from tests.accesslog.test_verify import make_entries, served, sql, verify
from tests.conftest import Tokens

REPORT = "/v1/reports/exposure"
KEY = "k" * 32


async def _instant() -> datetime:
    await asyncio.sleep(0.02)
    now = datetime.now(UTC)
    await asyncio.sleep(0.02)
    return now


async def _log_around_a_period(client: httpx.AsyncClient, tokens: Tokens) -> dict[str, str]:
    """Entries 1-12 before the period, 13-20 in it, 21-24 after it: one transaction of four
    at a time, a checkpoint every 5, so checkpoints at 8, 12, 16, 20 and 24."""
    admin = tokens["admin"]
    for _ in range(3):
        await make_entries(client, tokens, admin, 4)
    since = await _instant()
    for _ in range(2):
        await make_entries(client, tokens, admin, 4)
    until = await _instant()
    await make_entries(client, tokens, admin, 4)
    return {"dataset": "activity.keys", "since": since.isoformat(), "until": until.isoformat()}


async def _integrity(
    client: httpx.AsyncClient, tokens: Tokens, period: dict[str, str]
) -> dict[str, Any]:
    r = await client.get(REPORT, params=period, headers=tokens["admin"])
    assert r.status_code == 200, r.text
    integrity: dict[str, Any] = r.json()["integrity"]
    return integrity


async def test_the_report_verifies_the_periods_entries_between_its_checkpoints(
    database_url: str, tokens: Tokens
):
    settings = Settings(database_url=database_url, checkpoint_every=5, checkpoint_key=KEY)
    async with served(settings) as (client, _):
        period = await _log_around_a_period(client, tokens)
        integrity = await _integrity(client, tokens, period)
    assert integrity["ok"] is True, integrity["problem"]
    assert (integrity["period_first_entry"], integrity["period_last_entry"]) == (13, 20)
    assert (integrity["verified_after"], integrity["verified_through"]) == (12, 20)
    assert integrity["entries"] == 8
    assert integrity["checkpoint_before"]["entry_id"] == 12
    assert integrity["checkpoint_covering"]["entry_id"] == 20
    assert integrity["head_id"] == 24 and integrity["head_signed"] is True


async def test_a_tampered_entry_in_the_period_fails_the_reports_integrity(
    database_url: str, tokens: Tokens
):
    settings = Settings(database_url=database_url, checkpoint_every=5, checkpoint_key=KEY)
    async with served(settings) as (client, maker):
        period = await _log_around_a_period(client, tokens)
        assert (await _integrity(client, tokens, period))["ok"] is True
        await sql(maker, "UPDATE access_log SET principal = 'user:mallory' WHERE id = 14")
        integrity = await _integrity(client, tokens, period)
    assert (integrity["ok"], integrity["first_bad_id"]) == (False, 14)


async def test_a_tampered_entry_before_the_range_is_left_to_the_full_verify(
    database_url: str, tokens: Tokens
):
    """The report reads the chain from the checkpoint before its period; `GET
    /v1/access-log/verify` still reads (and fails on) every entry."""
    settings = Settings(database_url=database_url, checkpoint_every=5, checkpoint_key=KEY)
    async with served(settings) as (client, maker):
        period = await _log_around_a_period(client, tokens)
        await sql(maker, "UPDATE access_log SET principal = 'user:mallory' WHERE id = 3")
        integrity = await _integrity(client, tokens, period)
        full = await verify(client, tokens["admin"], "?full=true")
    assert integrity["ok"] is True and integrity["verified_after"] == 12
    assert (full["ok"], full["first_bad_id"]) == (False, 3)


async def test_a_removed_checkpoint_after_the_period_fails_the_link_to_the_head(
    database_url: str, tokens: Tokens
):
    """The range is linked to the head: a log truncated after the period (its checkpoints
    removed and the head moved back, unsigned) is not stated intact."""
    settings = Settings(database_url=database_url, checkpoint_every=5, checkpoint_key=KEY)
    async with served(settings) as (client, maker):
        period = await _log_around_a_period(client, tokens)
        await sql(
            maker,
            "DELETE FROM access_log WHERE id > 20",
            "DELETE FROM access_log_checkpoints WHERE entry_id > 20",
            "UPDATE access_log_head SET last_id = 22",
        )
        integrity = await _integrity(client, tokens, period)
    assert integrity["ok"] is False


async def test_a_period_reaching_the_head_is_verified_through_the_head(
    database_url: str, tokens: Tokens
):
    settings = Settings(database_url=database_url, checkpoint_every=5)
    async with served(settings) as (client, maker):
        admin = tokens["admin"]
        await make_entries(client, tokens, admin, 4)
        since = await _instant()
        await make_entries(client, tokens, admin, 3)  # 5-7: the tail after the checkpoint at 5
        period = {"dataset": "activity.keys", "since": since.isoformat()}
        integrity = await _integrity(client, tokens, period)
        assert integrity["ok"] is True, integrity["problem"]
        assert (integrity["verified_after"], integrity["verified_through"]) == (0, 7)
        await sql(maker, "UPDATE access_log SET purpose = 'other' WHERE id = 7")
        integrity = await _integrity(client, tokens, period)
    assert (integrity["ok"], integrity["first_bad_id"]) == (False, 7)


async def test_the_cli_report_states_the_verified_range_and_fails_on_a_tampered_entry(
    database_url: str, tokens: Tokens, tmp_path: Path
):
    from tests.test_cli import finish, start

    settings = Settings(database_url=database_url, checkpoint_every=5)
    async with served(settings) as (client, maker):
        await make_entries(client, tokens, tokens["admin"], 6)
    args = ["report", "--dataset", "activity.keys", "--format", "json"]
    intact = await asyncio.to_thread(
        finish, start(tmp_path / "a" / "x.db", *args, url=database_url)
    )
    assert intact.returncode == 0, intact.stderr
    integrity = json.loads(intact.stdout)["integrity"]
    assert integrity["ok"] is True
    assert (integrity["verified_after"], integrity["verified_through"]) == (0, 6)
    async with served(settings) as (client, maker):
        await sql(maker, "UPDATE access_log SET principal = 'user:mallory' WHERE id = 2")
    args = ["report", "--dataset", "activity.keys", "--format", "markdown"]
    bad = await asyncio.to_thread(finish, start(tmp_path / "b" / "x.db", *args, url=database_url))
    assert bad.returncode == 0, bad.stderr
    assert "FAILED verification at entry 2" in bad.stdout
