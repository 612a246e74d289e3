"""Time-driven events: expiry, reopened acceptances and integrity, without any request."""

import asyncio
import logging
import sqlite3
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from app.config import Settings
from app.db import create_engine, create_sessionmaker
from app.main import create_app
from app.operations.sweeper import Sweeper
from tests.alerts.test_feed import poll, setup_exposed


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url, sweep_interval_seconds=0.2, integrity_interval_seconds=0
    )


def soon(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


async def wait_for_alert(client, tokens, kind: str):
    """Sleep (no request to the service but the final reads) until ``kind`` shows up."""
    deadline = asyncio.get_running_loop().time() + 15
    while True:
        await asyncio.sleep(0.5)
        items = (await poll(client, tokens))["items"]
        if any(a["type"] == kind for a in items) or asyncio.get_running_loop().time() > deadline:
            return items


async def test_accepted_finding_reopens_when_until_passes_without_any_request(
    client, tokens, admin
):
    grant = await setup_exposed(client, admin)
    finding_id = grant["findings_opened"][0]["id"]
    r = await client.post(
        f"/v1/findings/{finding_id}/accept",
        json={"reason": "pilot until the audit", "until": soon(1.5)},
        headers=admin,
    )
    assert r.status_code == 200, r.text
    await asyncio.sleep(4)  # nothing touches the service meanwhile
    items = (await poll(client, tokens))["items"]
    kinds = [(a["type"], a["finding_id"]) for a in items]
    assert kinds == [
        ("finding.opened", finding_id),
        ("finding.accepted", finding_id),
        ("finding.reopened", finding_id),
    ]
    finding = (await client.get(f"/v1/findings/{finding_id}", headers=admin)).json()
    assert finding["status"] == "open"


async def test_expired_grant_is_recorded_once_and_its_finding_resolves(client, tokens, admin):
    await client.put("/v1/groups/research/members", json={"members": ["user:alice"]}, headers=admin)
    await client.put(
        "/v1/datasets/activity.keys",
        json={"owner": "group:research", "sensitivity": "internal",
              "intended_audience": ["group:research"]},
        headers=admin,
    )  # fmt: skip
    r = await client.post(
        "/v1/grants",
        json={"principal": "user:bob", "resource": "activity.keys", "action": "read",
              "effect": "allow", "expires_at": soon(1.5)},
        headers=admin,
    )  # fmt: skip
    assert r.status_code == 201, r.text
    grant_id = r.json()["id"]
    finding_id = r.json()["findings_opened"][0]["id"]
    await wait_for_alert(client, tokens, "finding.resolved")
    await asyncio.sleep(1)  # more sweeps: nothing is recorded twice
    items = (await poll(client, tokens))["items"]
    kinds = [(a["type"], a["finding_id"]) for a in items]
    assert kinds == [
        ("finding.opened", finding_id),
        ("grant.expired", None),
        ("finding.resolved", finding_id),
    ]
    assert str(grant_id) in items[1]["summary"]
    assert items[1]["dataset"] == "activity.keys"
    finding = (await client.get(f"/v1/findings/{finding_id}", headers=admin)).json()
    assert finding["status"] == "resolved"
    grant = (await client.get(f"/v1/grants/{grant_id}", headers=admin)).json()
    assert grant["status"] == "expired" and grant["expired_at"] >= grant["expires_at"]
    check = await client.post(
        "/v1/check",
        json={"principal": "user:bob", "dataset": "activity.keys", "action": "read"},
        headers=tokens["check"],
    )
    assert check.json()["reason"]["code"] == "grant_expired"


async def test_only_one_sweeper_holds_the_lease_until_it_stops(app: FastAPI, settings: Settings):
    await app.state.sweeper.stop()  # only these two compete
    maker = app.state.sessionmaker
    first, second = Sweeper(maker, settings), Sweeper(maker, settings)
    assert (await first.sweep_once()).is_holder or (await second.sweep_once()).is_holder
    held = [(await s.sweep_once()).is_holder for s in (first, second)]
    assert sorted(held) == [False, True]
    holder, other = (first, second) if held[0] else (second, first)
    await holder.stop()  # releases the lease
    assert (await other.sweep_once()).is_holder
    assert not (await holder.sweep_once()).is_holder


async def record_three_checks(client: httpx.AsyncClient, tokens) -> None:
    """Access-log entries 1, 2 and 3 (denies of an unknown dataset)."""
    for i in range(3):
        r = await client.post(
            "/v1/check",
            json={"principal": "user:x", "dataset": "no.such", "action": "read",
                  "request_id": str(i)},
            headers=tokens["check"],
        )  # fmt: skip
        assert r.status_code == 200


async def test_integrity_failure_is_alerted_once_per_first_bad_entry(
    client, tokens, admin, settings: Settings, sessionmaker
):
    await record_three_checks(client, tokens)
    async with sessionmaker() as session, session.begin():
        await session.execute(text("UPDATE access_log SET principal = 'user:y' WHERE id = 2"))
    sweeper = Sweeper(sessionmaker, settings.model_copy(update={"sweeper_enabled": False}))
    assert await sweeper.check_integrity() is False
    assert await sweeper.check_integrity() is False
    alerts = [a for a in (await poll(client, tokens))["items"]
              if a["type"] == "log.integrity_failed"]  # fmt: skip
    assert [a["access_log_id"] for a in alerts] == [2]
    async with sessionmaker() as session, session.begin():
        await session.execute(text("UPDATE access_log SET principal = 'user:x' WHERE id = 2"))
        await session.execute(text("UPDATE access_log SET principal = 'user:y' WHERE id = 1"))
    assert await sweeper.check_integrity() is False
    alerts = [a for a in (await poll(client, tokens))["items"]
              if a["type"] == "log.integrity_failed"]  # fmt: skip
    assert [a["access_log_id"] for a in alerts] == [2, 1]
    metrics = (await client.get("/metrics", headers=tokens["metrics:read"])).text
    assert "aclaudit_log_integrity_failures_total 2.0" in metrics


async def test_a_wrong_anchor_is_the_callers_answer_not_an_alert(
    client, tokens, settings: Settings, sessionmaker
):
    """Anyone who may verify chooses the anchor: a mismatch against it alone must not raise a
    critical alert, nor hold back the real alert for that entry later."""
    await record_three_checks(client, tokens)
    forged = await client.get(
        f"/v1/access-log/verify?anchor_id=2&anchor_hash={'0' * 64}", headers=tokens["audit:read"]
    )
    assert (forged.json()["ok"], forged.json()["first_bad_id"]) == (False, 2)
    alerts = (await poll(client, tokens))["items"]
    assert [a for a in alerts if a["type"] == "log.integrity_failed"] == []
    async with sessionmaker() as session, session.begin():
        await session.execute(text("UPDATE access_log SET principal = 'user:y' WHERE id = 2"))
    sweeper = Sweeper(sessionmaker, settings.model_copy(update={"sweeper_enabled": False}))
    assert await sweeper.check_integrity() is False
    alerts = [a for a in (await poll(client, tokens))["items"]
              if a["type"] == "log.integrity_failed"]  # fmt: skip
    assert [a["access_log_id"] for a in alerts] == [2]


async def test_idle_sweeps_leave_the_policy_version_alone(client: httpx.AsyncClient):
    before = (await client.get("/readyz")).json()["policy_version"]
    await asyncio.sleep(1)
    assert (await client.get("/readyz")).json()["policy_version"] == before


def test_sweeper_can_be_switched_off(database_url: str):
    app = create_app(Settings(database_url=database_url, sweeper_enabled=False))
    assert app.state.settings.sweeper_enabled is False


async def test_a_busy_database_costs_a_sweep_one_warning_line(settings: Settings, caplog):
    """A write lock held past the busy timeout (a long scan on SQLite) skips the tick with one
    warning, no traceback and no error; the sweep after it goes through."""
    if settings.sqlite_file is None:
        pytest.skip("SQLite's write lock; PostgreSQL writers wait on row locks instead")
    busy = settings.model_copy(update={"database_timeout": 0.05, "sweep_interval_seconds": 0.05})
    engine = create_engine(busy)
    sweeper = Sweeper(create_sessionmaker(engine, chain_key=None), busy)
    logger = logging.getLogger("aclaudit.sweeper")
    logger.addHandler(caplog.handler)
    blocker = sqlite3.connect(settings.sqlite_file, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        sweeper.start()
        await asyncio.sleep(0.5)
        blocker.execute("ROLLBACK")
        await sweeper.stop()
        assert (await sweeper.sweep_once()).is_holder
    finally:
        logger.removeHandler(caplog.handler)
        blocker.close()
        await engine.dispose()
    skipped = [r for r in caplog.records if "busy or unreachable" in r.getMessage()]
    assert skipped and "database is locked" in skipped[0].getMessage()
    assert all(r.levelno == logging.WARNING and r.exc_info is None for r in caplog.records)
