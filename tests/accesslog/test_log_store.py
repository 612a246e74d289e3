"""The access-log stores under contention: a held write lock delays a check, never loses it."""

import asyncio
import sqlite3

import pytest
from sqlalchemy.engine import make_url

from tests.policy.test_check import check_body, seed


async def test_check_waits_for_a_write_lock_held_elsewhere(client, tokens, admin, settings):
    if not settings.is_sqlite:
        pytest.skip("SQLite's write lock; PostgreSQL's head row lock is covered by the e2e tests")
    await seed(client, admin)
    first = await client.post("/v1/check", json=check_body("user:alice"), headers=tokens["check"])
    assert first.status_code == 200
    path = make_url(settings.database_url).database
    assert path
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another worker's transaction, say
    try:
        pending = asyncio.create_task(
            client.post("/v1/check", json=check_body("user:alice"), headers=tokens["check"])
        )
        await asyncio.sleep(0.3)
        assert not pending.done()  # waiting for the lock, not answered without its entry
    finally:
        other.execute("ROLLBACK")
        other.close()
    r = await pending
    assert r.status_code == 200 and r.json()["access_log_id"] == first.json()["access_log_id"] + 1
    verify = (await client.get("/v1/access-log/verify", headers=admin)).json()
    assert verify["ok"] is True and verify["entries"] == 2
