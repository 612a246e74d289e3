import asyncio
from typing import Any

import httpx

from app.errors import Busy
from app.exposure import service as exposure_service

GRANT = {"principal": "user:a", "resource": "eng.*", "action": "read", "effect": "allow"}


async def test_a_second_simulate_in_a_worker_is_refused_429_while_one_runs(
    client: httpx.AsyncClient, tokens: Any, monkeypatch: Any
):
    computing, finish = asyncio.Event(), asyncio.Event()
    simulate = exposure_service.simulate

    async def slow_simulate(*args: Any, **kwargs: Any) -> Any:
        computing.set()
        await finish.wait()
        return await simulate(*args, **kwargs)

    monkeypatch.setattr(exposure_service, "simulate", slow_simulate)
    reader = tokens["audit:read"]
    first = asyncio.create_task(
        client.post("/v1/grants/simulate", json={"add": [GRANT]}, headers=reader)
    )
    try:
        await asyncio.wait_for(computing.wait(), 10)
        second = client.post("/v1/grants/simulate", json={"add": [GRANT]}, headers=reader)
        r = await asyncio.wait_for(second, 5)
        assert r.status_code == 429, r.text
        assert r.headers["retry-after"] == str(Busy.RETRY_AFTER)
        assert r.headers["content-type"] == "application/problem+json"
    finally:
        finish.set()
    assert (await first).status_code == 200
    r = await client.post("/v1/grants/simulate", json={"add": [GRANT]}, headers=reader)
    assert r.status_code == 200, r.text
