"""Verify while checks are being written: never a false alarm (PostgreSQL reads each statement
at its own snapshot, so the head and checkpoints must be read in a safe order)."""

import asyncio

import httpx
import pytest

from app.config import Settings


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, checkpoint_every=1)  # a checkpoint per entry


async def test_verify_is_ok_while_entries_and_checkpoints_are_appended(
    client: httpx.AsyncClient, admin, tokens
):
    body = {"owner": "user:o", "sensitivity": "internal", "intended_audience": []}
    assert (await client.put("/v1/datasets/d.x", json=body, headers=admin)).status_code == 201
    grant = {"principal": "user:u", "resource": "d.x", "action": "read", "effect": "allow"}
    assert (await client.post("/v1/grants", json=grant, headers=admin)).status_code == 201
    check = {"principal": "user:u", "dataset": "d.x", "action": "read"}
    stop = asyncio.Event()

    async def load() -> None:
        while not stop.is_set():
            r = await client.post("/v1/check", json=check, headers=tokens["check"])
            assert r.status_code == 200, r.text

    writers = [asyncio.create_task(load()) for _ in range(6)]
    try:
        results = [
            (await client.get("/v1/access-log/verify", headers=admin)).json() for _ in range(40)
        ]
    finally:
        stop.set()
        await asyncio.gather(*writers)
    assert [r for r in results if not r["ok"]] == []
    assert results[-1]["entries"] > results[0]["entries"]  # the log did grow meanwhile
    alerts = (await client.get("/v1/alerts?limit=1000", headers=tokens["alerts:read"])).json()
    assert [a for a in alerts["items"] if a["type"] == "log.integrity_failed"] == []
