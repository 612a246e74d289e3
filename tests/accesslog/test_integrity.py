"""Tampering by someone with write access to the database: signed heads, the admin trail's and
the alert feed's chains, unreadable rows, and alerts that no planted row can hold back."""

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from app import chain
from app.accesslog import integrity, verifier
from app.config import Settings
from app.db import begin_write
from app.operations.sweeper import Sweeper
from tests.accesslog.test_verify import make_entries, served, sql, verify
from tests.alerts.test_feed import poll, setup_exposed
from tests.exposure.test_simulate_one_at_a_time import Runs, readers, until
from tests.operations.test_metrics import scrape, value

KEY = "k" * 32


async def integrity_alerts(client, tokens) -> list[dict]:
    items = (await poll(client, tokens, limit=1000))["items"]
    return [a for a in items if a["type"] == "log.integrity_failed"]


def failed_chains(result: dict) -> list[str]:
    return [c["chain"] for c in result["chains"] if not c["ok"]]


async def test_a_planted_integrity_alert_does_not_silence_the_real_one(
    client, tokens, admin, sessionmaker
):
    await setup_exposed(client, admin)  # alert 1: finding.opened
    await make_entries(client, tokens, admin, 5)
    # one UPDATE makes alert 1 look like the integrity alert for entry 2, then entry 2 is edited
    await sql(
        sessionmaker,
        "UPDATE alerts SET type = 'log.integrity_failed', access_log_id = 2 WHERE id = 1",
        "UPDATE access_log SET principal = 'user:mallory' WHERE id = 2",
    )
    result = await verify(client, admin)
    assert (result["ok"], result["first_bad_id"]) == (False, 2)
    raised = [a for a in await integrity_alerts(client, tokens) if a["id"] > 1]
    assert [a["access_log_id"] for a in raised if a["access_log_id"] is not None] == [2]
    assert "alerts" in failed_chains(result)  # and the planted row itself is caught


async def test_a_garbage_checkpoint_time_is_reported_alerted_and_explained_by_the_cli(
    database_url, tokens, admin, sessionmaker, tmp_path
):
    """It used to make verify answer 500, the sweeper fail every tick without an alert, and
    the CLI print a traceback."""
    settings = Settings(database_url=database_url, checkpoint_every=5)
    if not settings.is_sqlite:
        pytest.skip("PostgreSQL's timestamptz column cannot hold text")
    async with served(settings) as (client, maker):
        await make_entries(client, tokens, admin, 6)  # checkpoint at 6
        await sql(maker, "UPDATE access_log_checkpoints SET at = 'garbage' WHERE entry_id = 6")
        result = await verify(client, admin)
        assert (result["ok"], result["first_bad_id"]) == (False, 6)
        assert "checkpoint at entry 6" in result["problem"]
        sweeper = Sweeper(maker, settings.model_copy(update={"sweeper_enabled": False}))
        assert await sweeper.check_integrity() is False
        # the endpoint's alert, and the sweeper's (its own Integrity here: another process)
        assert {a["access_log_id"] for a in await integrity_alerts(client, tokens)} == {6}
    env = {**os.environ, "ACLAUDIT_DATABASE_URL": database_url}
    cli = await asyncio.to_thread(
        subprocess.run,
        [str(Path(sys.executable).with_name("aclaudit")), "log", "verify"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert cli.returncode == 1, cli.stderr
    assert "TAMPERED: access_log: first bad entry 6" in cli.stdout
    assert "Traceback" not in cli.stderr


async def test_an_unreadable_alert_is_reported_as_tampering_with_the_feed(
    client, tokens, admin, sessionmaker, settings
):
    if not settings.is_sqlite:
        pytest.skip("PostgreSQL's column types allow one stored form only")
    await setup_exposed(client, admin)
    await sql(sessionmaker, "UPDATE alerts SET at = 'yesterday' WHERE id = 1")
    result = await verify(client, admin)
    assert result["ok"] is False and failed_chains(result) == ["alerts"]
    assert "could not be read" in result["problem"]


async def test_a_second_verify_at_once_is_refused_while_checks_are_served(
    client, tokens, admin, app
):
    for _ in range(8):
        await make_entries(client, tokens, admin, 1000)
    first = asyncio.create_task(client.get("/v1/access-log/verify", headers=admin))
    while not app.state.integrity.busy:  # noqa: ASYNC110 (the app's state, no event to wait on)
        await asyncio.sleep(0)
    second = await client.get("/v1/access-log/verify", headers=admin)
    assert second.status_code == 429, second.text
    assert second.headers["retry-after"] == "5"
    assert second.headers["content-type"] == "application/problem+json"
    check = {
        "principal": "user:u1",
        "dataset": "activity.keys",
        "action": "read",
        "purpose": "model-training",
    }
    served_meanwhile = await client.post("/v1/check", json=check, headers=tokens["check"])
    assert served_meanwhile.status_code == 200
    assert not first.done()  # the check did not wait for the verify
    done = await first
    assert done.status_code == 200 and done.json()["ok"] is True


async def test_a_verify_resumes_after_the_last_checkpoint_it_verified_and_full_reads_all(
    database_url, tokens, admin
):
    """The resumed verify trusts the prefix this process verified (documented); a full one,
    as the sweeper and the CLI run, reads it again and finds an edit there."""
    settings = Settings(database_url=database_url, checkpoint_every=5)
    async with served(settings) as (client, maker):
        await make_entries(client, tokens, admin, 12)  # checkpoint at 12
        assert (await verify(client, admin))["resumed_from"] is None
        await make_entries(client, tokens, admin, 3)
        resumed = await verify(client, admin)
        assert (resumed["ok"], resumed["entries"], resumed["resumed_from"]) == (True, 15, 12)
        await sql(maker, "UPDATE access_log SET principal = 'user:mallory' WHERE id = 4")
        assert (await verify(client, admin))["ok"] is True  # trusted, not read again
        full = await verify(client, admin, "?full=true")
        assert (full["ok"], full["first_bad_id"], full["resumed_from"]) == (False, 4, None)
        sweeper = Sweeper(maker, settings.model_copy(update={"sweeper_enabled": False}))
        assert await sweeper.check_integrity() is False


async def rechain_tail(client, admin, maker, first: int, last: int) -> None:
    """Edit entry `first` and re-hash it and every entry after it up to `last`, and the head:
    what anyone with write access and the code can do."""
    prev = (await client.get(f"/v1/access-log/{first - 1}", headers=admin)).json()["hash"]
    statements = []
    for entry_id in range(first, last + 1):
        entry = (await client.get(f"/v1/access-log/{entry_id}", headers=admin)).json()
        if entry_id == first:
            entry["principal"] = "user:someone.else"
        entry["at"] = datetime.fromisoformat(entry["at"])
        entry["prev_hash"], entry["hash"] = prev, chain.entry_hash(prev, entry)
        statements.append(
            f"UPDATE access_log SET principal = '{entry['principal']}', "
            f"prev_hash = '{prev}', hash = '{entry['hash']}' WHERE id = {entry_id}"
        )
        prev = entry["hash"]
    await sql(maker, *statements, f"UPDATE access_log_head SET last_hash = '{prev}'")


async def test_rewritten_newest_entries_are_caught_by_the_signed_head(database_url, tokens, admin):
    """After the last checkpoint (none yet with the default interval of 1000) nothing but the
    head's signature covers the entries."""
    settings = Settings(database_url=database_url, checkpoint_key=KEY)
    async with served(settings) as (client, maker):
        await make_entries(client, tokens, admin, 10)
        assert (await verify(client, admin))["ok"] is True
        await rechain_tail(client, admin, maker, 9, 10)
        result = await verify(client, admin, "?full=true")
        assert (result["ok"], result["first_bad_id"]) == (False, 1)
        assert "head (entry 10) has no valid signature" in result["problem"]


async def test_a_rollback_to_an_older_signed_head_is_caught_by_the_alerts_naming_later_reads(
    database_url, tokens, admin
):
    settings = Settings(database_url=database_url, checkpoint_every=5, checkpoint_key=KEY)
    async with served(settings) as (client, maker):
        await make_entries(client, tokens, admin, 6)  # entries 1-6, checkpoint at 6
        async with maker() as session:
            old_head = (await session.execute(text("SELECT * FROM access_log_head"))).one()
        await setup_exposed(client, admin)
        check = {
            "principal": "user:bob",
            "dataset": "activity.keys",
            "action": "read",
            "purpose": "model-training",
        }
        read = (await client.post("/v1/check", json=check, headers=tokens["check"])).json()
        assert (read["access_log_id"], read["out_of_audience"]) == (7, True)
        await make_entries(client, tokens, admin, 6)  # 8-13, checkpoint at 13
        assert (await verify(client, admin))["ok"] is True
        await sql(
            maker,
            "DELETE FROM access_log_subjects WHERE entry_id > 6",
            "DELETE FROM access_log WHERE id > 6",
            "DELETE FROM access_log_checkpoints WHERE entry_id > 6",
            f"UPDATE access_log_head SET last_id = {old_head.last_id}, "
            f"last_hash = '{old_head.last_hash}', signature = '{old_head.signature}'",
        )
        result = await verify(client, admin, "?full=true")
        assert (result["ok"], result["first_bad_id"]) == (False, 7)
        assert "alert" in result["problem"] and "rolled back" in result["problem"]


@pytest.mark.parametrize(
    ("tamper", "first_bad_id"),
    [
        ("DELETE FROM admin_trail", 1),
        ("DELETE FROM admin_trail WHERE id = 2", 3),
        ("UPDATE admin_trail SET status = 200 WHERE id = 4", 4),  # the 403 hidden
    ],
)
async def test_a_removed_or_edited_trail_entry_fails_verify_and_is_alerted(
    app, client, tokens, admin, sessionmaker, settings, tamper, first_bad_id
):
    for n in range(4):  # trail entries 1-4 (the 4th refused: 403)
        headers = admin if n < 3 else tokens["check"]
        await client.put(f"/v1/groups/g{n}/members", json={"members": []}, headers=headers)
    await app.state.sweeper.flush_refusals()  # the 403 is counted, written now
    assert (await verify(client, admin))["ok"] is True  # trail entry 5 records it
    await sql(sessionmaker, tamper)
    result = await verify(client, admin, "?full=true")  # a resumed one trusts rows 1-4
    assert result["ok"] is False and failed_chains(result) == ["admin_trail"]
    trail = next(c for c in result["chains"] if c["chain"] == "admin_trail")
    assert trail["first_bad_id"] == first_bad_id
    assert result["problem"].startswith("admin_trail: ")
    summaries = [a["summary"] for a in await integrity_alerts(client, tokens)]
    assert len(summaries) == 1 and summaries[0].startswith("admin_trail integrity check failed")


async def test_removed_out_of_audience_alerts_fail_verify(client, tokens, admin, sessionmaker):
    await setup_exposed(client, admin)
    check = {
        "principal": "user:bob",
        "dataset": "activity.keys",
        "action": "read",
        "purpose": "model-training",
    }
    for _ in range(3):
        assert (await client.post("/v1/check", json=check, headers=tokens["check"])).is_success
    assert (await verify(client, admin))["ok"] is True
    await sql(sessionmaker, "DELETE FROM alerts WHERE type = 'read.out_of_audience'")
    result = await verify(client, admin, "?full=true")
    assert result["ok"] is False and failed_chains(result) == ["alerts"]
    assert result["first_bad_id"] is None  # the access log itself is intact


async def test_a_rechained_trail_is_caught_by_its_signed_head(database_url, tokens, admin):
    """Without the key anyone can re-hash the rest of the trail after removing an entry; with
    it, the head they write carries no valid signature."""
    settings = Settings(database_url=database_url, checkpoint_key=KEY)
    async with served(settings) as (client, maker):
        for n in range(3):
            await client.put(f"/v1/groups/g{n}/members", json={"members": []}, headers=admin)
        assert (await verify(client, admin))["ok"] is True
        async with maker() as session:
            rows = (await session.execute(text("SELECT * FROM admin_trail ORDER BY id"))).all()
        prev, statements = chain.GENESIS, ["DELETE FROM admin_trail WHERE id = 2"]
        for row in rows:
            if row.id == 2:
                continue
            fields = dict(row._mapping)
            at = fields["at"]
            at = at if isinstance(at, datetime) else datetime.fromisoformat(at)
            fields["at"] = at if at.tzinfo else at.replace(tzinfo=UTC)
            digest = chain.record_hash(prev, chain.TRAIL_FIELDS, fields)
            statements.append(
                f"UPDATE admin_trail SET prev_hash = '{prev}', hash = '{digest}' "
                f"WHERE id = {row.id}"
            )
            prev = digest
        statements.append(
            f"UPDATE admin_trail_head SET last_id = {rows[-1].id}, last_hash = '{prev}'"
        )
        await sql(maker, *statements)
        result = await verify(client, admin, "?full=true")
        assert result["ok"] is False and failed_chains(result) == ["admin_trail"]
        assert "no valid signature" in result["problem"]


async def test_a_default_verify_after_a_full_one_found_tampering_is_not_ok(
    database_url, tokens, admin
):
    """A failure drops the resume points: the next (default, resumed) verify used to trust the
    prefix an earlier verify had checked and answer ok."""
    settings = Settings(database_url=database_url, checkpoint_every=5)
    async with served(settings) as (client, maker):
        await make_entries(client, tokens, admin, 12)
        assert (await verify(client, admin))["ok"] is True  # resume point at 10
        await sql(maker, "UPDATE access_log SET principal = 'user:mallory' WHERE id = 4")
        full = await verify(client, admin, "?full=true")
        assert (full["ok"], full["first_bad_id"]) == (False, 4)
        again = await verify(client, admin)  # what a security engineer runs by default
        assert (again["ok"], again["first_bad_id"], again["resumed_from"]) == (False, 4, None)
        # a failure in another chain drops the access log's resume point too
        await sql(maker, "UPDATE access_log SET principal = 'user:u3' WHERE id = 4")
        assert (await verify(client, admin))["ok"] is True  # read in full: intact again
        await sql(maker, "DELETE FROM admin_trail WHERE id = 1")
        assert failed_chains(await verify(client, admin, "?full=true")) == ["admin_trail"]
        await sql(maker, "UPDATE access_log SET principal = 'user:mallory' WHERE id = 4")
        assert (await verify(client, admin))["first_bad_id"] == 4


async def hold_alert_head(maker):
    """A transaction holding the alert feed's head (SQLite: the write lock), as anyone with
    write access, or a stuck writer, can."""
    session = maker()
    await begin_write(session)
    await session.execute(text("UPDATE alert_head SET last_id = last_id"))
    return session


async def test_an_integrity_alert_whose_write_failed_is_raised_by_the_next_verify(
    database_url, tokens, admin
):
    """The failure used to count as alerted before its alert was written: one failed write
    held it back for an hour (`integrity_realert_seconds`)."""
    settings = Settings(database_url=database_url, checkpoint_every=5, database_timeout=0.5)
    async with served(settings) as (client, maker):
        await make_entries(client, tokens, admin, 6)
        await sql(maker, "UPDATE access_log SET principal = 'user:mallory' WHERE id = 3")
        holder = await hold_alert_head(maker)
        try:
            first = await client.get("/v1/access-log/verify?full=true", headers=admin)
        finally:
            await holder.rollback()
            await holder.close()
        assert first.status_code == 503, first.text
        assert await integrity_alerts(client, tokens) == []
        scraped = await scrape(client, tokens["metrics:read"])
        # no alert row, so the alert counter cannot say it; the gauge does
        assert value(scraped, "aclaudit_log_integrity_failures_total") == 0
        assert value(scraped, "aclaudit_log_integrity_failing", chain="access_log") == 1
        assert value(scraped, "aclaudit_log_integrity_failing", chain="admin_trail") == 0
        second = await verify(client, admin, "?full=true")
        assert (second["ok"], second["first_bad_id"]) == (False, 3)
        raised = await integrity_alerts(client, tokens)
        assert [a["access_log_id"] for a in raised] == [3]


async def test_a_callers_verify_is_served_next_while_another_loops_full_verifies(
    client, app, tokens, admin, sessionmaker, monkeypatch
):
    """Looped `?full=true` verifies used to get every other caller 429; now another caller
    waits for the run in progress only, and the looping caller's second concurrent one is 429."""
    runs, real = Runs(), verifier.verify_log

    async def held(*args, **kwargs):
        await runs.hold("verify")
        return await real(*args, **kwargs)

    monkeypatch.setattr(integrity, "verify_log", held)
    await app.state.sweeper.stop()  # its verify would be held too
    turns = app.state.integrity.turns
    security_a, security_b = await readers(sessionmaker, 2)
    answers_a: list[int] = []
    stop = asyncio.Event()

    async def loop_a() -> None:
        while not stop.is_set():
            r = await client.get("/v1/access-log/verify?full=true", headers=security_a)
            answers_a.append(r.status_code)

    looping = asyncio.create_task(loop_a())
    _, release = await runs.next()
    b = asyncio.create_task(client.get("/v1/access-log/verify", headers=security_b))
    await until(lambda: turns.waiting == 1 or b.done(), "B waits its turn")
    assert not b.done(), b.result().text
    r = await client.get("/v1/access-log/verify?full=true", headers=security_a)
    assert r.status_code == 429, r.text
    release.set()
    _, release = await runs.next()  # B's, before A's next one
    await until(lambda: turns.waiting == 1, "A's next verify waits behind B")
    release.set()
    assert (await asyncio.wait_for(b, 10)).status_code == 200 and answers_a == [200]
    stop.set()
    (await runs.next())[1].set()
    await looping
    assert answers_a == [200, 200]
