"""Real uvicorn processes: policy changes reach every worker; kill -9 loses no answered check."""

import asyncio
import contextlib

import httpx
import pytest

from tests.e2e.servers import Server

pytestmark = pytest.mark.slow
CHECK = {"principal": "user:alice", "dataset": "activity.keys", "action": "read"}


async def seed(client: httpx.AsyncClient, admin: dict[str, str]) -> int:
    r = await client.put(
        "/v1/datasets/activity.keys",
        json={"owner": "group:r", "sensitivity": "internal", "intended_audience": ["group:r"]},
        headers=admin,
    )
    assert r.status_code in (200, 201), r.text
    await client.put("/v1/groups/r/members", json={"members": ["user:alice"]}, headers=admin)
    r = await client.post(
        "/v1/grants",
        json={
            "principal": "group:r",
            "resource": "activity.*",
            "action": "read",
            "effect": "allow",
        },
        headers=admin,
    )
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


async def probe(url: str, headers: dict[str, str]) -> tuple[int, str]:
    """One fresh connection: which worker answered, and its decision."""
    async with httpx.AsyncClient(base_url=url, timeout=10) as c:
        worker = (await c.get("/healthz")).json()["worker"]
        r = await c.post("/v1/check", json=CHECK, headers=headers)
        assert r.status_code == 200, r.text
        return worker, r.json()["decision"]


async def test_revoke_through_one_worker_denies_next_check_in_every_worker(
    database_url, tokens, admin, tmp_path
):
    server = Server(database_url, workers=2, log=tmp_path / "server.log").start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            grant_id = await seed(client, admin)
            seen: dict[int, str] = {}
            for _ in range(200):  # warm both workers' policy caches with an allow
                worker, decision = await probe(server.url, tokens["check"])
                assert decision == "allow"
                seen[worker] = decision
                if len(seen) == 2:
                    break
            assert len(seen) == 2, "both workers must have answered"
            r = await client.delete(f"/v1/grants/{grant_id}", headers=admin)
            assert r.status_code == 200
            after: dict[int, list[str]] = {}
            for _ in range(200):
                worker, decision = await probe(server.url, tokens["check"])
                after.setdefault(worker, []).append(decision)
                if len(after) == 2 and sum(map(len, after.values())) >= 20:
                    break
            assert len(after) == 2
            assert all(d == "deny" for decisions in after.values() for d in decisions)
    finally:
        server.stop()


async def test_kill9_under_load_loses_no_answered_check(database_url, tokens, admin, tmp_path):
    log = tmp_path / "server.log"
    server = Server(database_url, workers=1, log=log).start()
    received: list[dict] = []
    enough = asyncio.Event()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            await seed(client, admin)

        async def hammer(worker: int) -> None:
            limits = httpx.Limits(max_connections=1)
            async with httpx.AsyncClient(base_url=server.url, timeout=5, limits=limits) as c:
                for i in range(100_000):
                    body = {**CHECK, "request_id": f"w{worker}-{i}"}
                    try:
                        r = await c.post("/v1/check", json=body, headers=tokens["check"])
                    except httpx.TransportError:
                        return  # the server died under us
                    if r.status_code == 200:
                        received.append(r.json())
                        if len(received) >= 300:
                            enough.set()

        tasks = [asyncio.create_task(hammer(w)) for w in range(16)]
        await asyncio.wait_for(enough.wait(), timeout=60)
        server.kill9()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.gather(*tasks), timeout=30)
    finally:
        server.stop()

    assert len(received) >= 300
    restarted = Server(database_url, workers=1, log=log).start()
    try:
        async with httpx.AsyncClient(base_url=restarted.url, timeout=30) as client:
            for answer in received:
                r = await client.get(f"/v1/access-log/{answer['access_log_id']}", headers=admin)
                assert r.status_code == 200, answer
                assert r.json()["decision_id"] == answer["decision_id"]
                assert r.json()["decision"] == answer["decision"]
            verify = (await client.get("/v1/access-log/verify", headers=admin)).json()
            assert verify["ok"] is True, verify
            assert verify["entries"] >= len(received)
    finally:
        restarted.stop()
