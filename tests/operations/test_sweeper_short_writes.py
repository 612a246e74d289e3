"""No sweep holds the write lock long: lapsed grants are expired, and reads folded into the
grants' last use, a bounded page a transaction (SQLite's other writers wait for the lock at
most the busy timeout, then fail: bench/history.py's first sweep held it for 64 s)."""

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI

from app.accesslog import repository as log_repository
from app.accesslog import usage
from app.exposure import scan
from app.operations import sweeper as sweeper_module
from app.operations.sweeper import Sweeper
from tests.alerts.test_feed import poll


async def test_a_sweep_expires_and_folds_in_short_transactions(
    app: FastAPI, client, tokens, admin, settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    await app.state.sweeper.stop()  # only this one sweeps
    monkeypatch.setattr(scan, "EXPIRE_PAGE", 2)
    monkeypatch.setattr(usage, "FOLD_PAGE", 3)
    expiring: list[int] = []
    folded: list[tuple[int, int]] = []
    record, fold = scan.record_time_events, usage.fold

    async def recording(session: Any, **kwargs: Any) -> scan.TimeEvents:
        events = await record(session, **kwargs)
        expiring.append(len(events.expired_grants))
        return events

    async def folding(session: Any, **kwargs: Any) -> int:
        start = await log_repository.use_scan_through(session) or 0
        end = await fold(session, **kwargs)
        folded.append((start, end))
        return end

    monkeypatch.setattr(scan, "record_time_events", recording)
    monkeypatch.setattr(usage, "fold", folding)
    expires = datetime.now(UTC) + timedelta(seconds=4)  # a slow database creates them in time
    until = expires.isoformat()
    granted = []
    for i in range(5):
        r = await client.post(
            "/v1/grants",
            json={"principal": f"user:u{i}", "resource": "sales.orders", "action": "read",
                  "effect": "allow", "expires_at": until},
            headers=admin,
        )  # fmt: skip
        assert r.status_code == 201, r.text
        granted.append(r.json()["id"])
    for i in range(7):
        r = await client.post(
            "/v1/check",
            json={"principal": "user:x", "dataset": "no.such", "action": "read",
                  "request_id": str(i)},
            headers=tokens["check"],
        )  # fmt: skip
        assert r.status_code == 200
    await asyncio.sleep((expires - datetime.now(UTC)).total_seconds() + 0.5)
    report = await Sweeper(app.state.sessionmaker, settings).sweep_once()
    assert report.is_holder
    assert sorted(report.expired_grants) == sorted(granted)  # all of them, in one tick
    assert expiring == [2, 2, 1]  # ... a page a transaction
    assert folded[:3] == [(0, 3), (3, 6), (6, 7)]  # the fold too, each committed
    assert all(end - start <= 3 for start, end in folded)
    items = (await poll(client, tokens))["items"]
    assert sum(a["type"] == "grant.expired" for a in items) == 5
    for grant_id in granted:
        grant = (await client.get(f"/v1/grants/{grant_id}", headers=admin)).json()
        assert grant["status"] == "expired"
    assert sweeper_module.TIME_EVENT_TRANSACTIONS >= 1
