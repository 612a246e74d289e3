"""Two worker processes write alerts concurrently while a poller follows the feed."""

import asyncio

import httpx
import pytest

from tests.e2e.servers import Server
from tests.e2e.test_workers_and_crashes import seed

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("window", ["0", "3600"], ids=["alert-per-read", "windowed"])
async def test_poller_sees_every_alert_once_in_order_with_two_workers(
    database_url, tokens, admin, tmp_path, window
):
    """With windows, the two workers still raise one alert per window between them, whose
    count is every read (an hour boundary during the run may make it two)."""
    env = {"ACLAUDIT_READ_ALERT_WINDOW_SECONDS": window}
    server = Server(database_url, workers=2, log=tmp_path / "server.log", env=env).start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            await seed(client, admin)  # group:r may read; the audience is group:r
            # bob is outside the audience: every allowed read of his is an alert
            r = await client.post(
                "/v1/groups/r/members", json={"member": "user:bob"}, headers=admin
            )
            assert r.status_code == 200
            r = await client.put(
                "/v1/datasets/activity.keys",
                json={
                    "owner": "group:r",
                    "sensitivity": "internal",
                    "intended_audience": ["user:alice"],
                },
                headers=admin,
            )
            assert r.status_code == 200

        done = asyncio.Event()
        polled: list[int] = []

        async def writer() -> None:
            for _ in range(25):  # a fresh connection each time, so both workers write
                async with httpx.AsyncClient(base_url=server.url, timeout=10) as c:
                    r = await c.post(
                        "/v1/check",
                        json={
                            "principal": "user:bob",
                            "dataset": "activity.keys",
                            "action": "read",
                        },
                        headers=tokens["check"],
                    )
                    assert r.status_code == 200 and r.json()["out_of_audience"] is True

        async def poller() -> None:
            after = 0
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as c:
                while True:
                    finished = done.is_set()
                    page = (
                        await c.get(
                            f"/v1/alerts?after={after}&limit=7", headers=tokens["alerts:read"]
                        )
                    ).json()
                    polled.extend(a["id"] for a in page["items"])
                    after = page["last_id"]
                    if finished and not page["items"]:
                        return

        poll_task = asyncio.create_task(poller())
        await asyncio.gather(*(writer() for _ in range(6)))
        done.set()
        await asyncio.wait_for(poll_task, timeout=60)

        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            everything = (
                await client.get("/v1/alerts?limit=1000", headers=tokens["alerts:read"])
            ).json()["items"]
        committed = [a["id"] for a in everything]
        reads = [a for a in everything if a["type"] == "read.out_of_audience"]
        if window == "0":
            assert len(reads) == 150 and {a["count"] for a in reads} == {1}
        else:
            assert sum(a["count"] for a in reads) == 150
            assert len({a["window_end"] for a in reads}) == len(reads) <= 2
        assert committed == list(range(1, len(committed) + 1))
        assert polled == committed  # no gap, no duplicate, same order
    finally:
        server.stop()
