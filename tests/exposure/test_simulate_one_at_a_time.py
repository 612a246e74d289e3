"""Simulate runs one at a time per worker, callers in turn (`app.fairness.OneAtATime`)."""

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.auth import service as auth_service
from app.errors import Busy
from app.exposure import simulate as exposure_simulate
from app.fairness import MAX_WAITING

GRANT = {"principal": "user:a", "resource": "eng.*", "action": "read", "effect": "allow"}


def hold_simulate(monkeypatch: Any) -> tuple[asyncio.Event, asyncio.Event]:
    """Make every simulate wait, once started (the first event is set), until the second is."""
    computing, finish = asyncio.Event(), asyncio.Event()
    simulate = exposure_simulate.simulate

    async def slow_simulate(*args: Any, **kwargs: Any) -> Any:
        computing.set()
        await finish.wait()
        return await simulate(*args, **kwargs)

    monkeypatch.setattr(exposure_simulate, "simulate", slow_simulate)
    return computing, finish


async def test_a_second_simulate_in_a_worker_is_refused_429_while_one_runs(
    client: httpx.AsyncClient, tokens: Any, monkeypatch: Any
):
    computing, finish = hold_simulate(monkeypatch)
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


class Runs:
    """Holds each run of the wrapped work until the test releases it, in the order they start."""

    def __init__(self) -> None:
        self.started: asyncio.Queue[tuple[str, asyncio.Event]] = asyncio.Queue()

    async def hold(self, who: str) -> None:
        release = asyncio.Event()
        await self.started.put((who, release))
        await release.wait()

    async def next(self) -> tuple[str, asyncio.Event]:
        """The next run to start (who, and its release)."""
        return await asyncio.wait_for(self.started.get(), 10)


def held_simulates(monkeypatch: Any) -> Runs:
    """Each simulate (the real one, on the real database) starts only once released."""
    runs, simulate = Runs(), exposure_simulate.simulate

    async def held(session: Any, *, body: Any) -> Any:
        await runs.hold(body.add[0].principal)
        return await simulate(session, body=body)

    monkeypatch.setattr(exposure_simulate, "simulate", held)
    return runs


async def until(condition: Any, what: str) -> None:
    """Let the app's tasks run until `condition()` holds (its state; no event to wait on)."""
    try:
        async with asyncio.timeout(10):
            while not condition():  # noqa: ASYNC110
                await asyncio.sleep(0)
    except TimeoutError:
        pytest.fail(f"not within 10 s: {what}")


async def readers(sessionmaker: Any, n: int) -> list[dict[str, str]]:
    """Bearer headers of `n` more `audit:read` tokens: as many callers."""
    async with sessionmaker() as session, session.begin():
        made = [
            await auth_service.create_token(session, name=f"ci-{i}", scopes=["audit:read"])
            for i in range(n)
        ]
    return [{"Authorization": f"Bearer {token}"} for token in made]


def proposal(principal: str) -> dict[str, Any]:
    return {"add": [{**GRANT, "principal": principal}]}


async def test_a_callers_simulate_is_served_next_while_another_loops_them_back_to_back(
    client: httpx.AsyncClient, app: FastAPI, sessionmaker: Any, monkeypatch: Any
):
    """One caller looping simulates used to get every other caller 429 (first come, first
    served, the rest refused); now each waits at most one run per caller ahead of it."""
    runs = held_simulates(monkeypatch)
    gate = app.state.simulations
    ci_a, ci_b = await readers(sessionmaker, 2)
    answers_a: list[int] = []
    stop = asyncio.Event()

    async def loop_a() -> None:
        while not stop.is_set():
            r = await client.post("/v1/grants/simulate", json=proposal("user:a"), headers=ci_a)
            answers_a.append(r.status_code)

    looping = asyncio.create_task(loop_a())
    who, release = await runs.next()
    assert who == "user:a"
    b = asyncio.create_task(
        client.post("/v1/grants/simulate", json=proposal("user:b"), headers=ci_b)
    )
    await until(lambda: gate.waiting == 1 or b.done(), "B waits its turn")
    assert not b.done(), b.result().text
    # A's second request while its first runs: refused at once, without waiting
    r = await client.post("/v1/grants/simulate", json=proposal("user:a"), headers=ci_a)
    assert r.status_code == 429, r.text
    assert r.headers["retry-after"] == str(Busy.RETRY_AFTER)
    release.set()
    who, release = await runs.next()
    assert who == "user:b"  # before A's next one, sent the moment its first was answered
    await until(lambda: gate.waiting == 1, "A's next request waits behind B")
    release.set()
    assert (await asyncio.wait_for(b, 10)).status_code == 200
    assert answers_a == [200]
    stop.set()
    who, release = await runs.next()
    release.set()
    await looping
    assert who == "user:a" and answers_a == [200, 200]


async def test_a_simulate_is_refused_when_too_many_callers_wait(
    client: httpx.AsyncClient, app: FastAPI, sessionmaker: Any, monkeypatch: Any
):
    runs = held_simulates(monkeypatch)
    gate = app.state.simulations
    callers = await readers(sessionmaker, MAX_WAITING + 2)
    sent = []
    for i, headers in enumerate(callers[:-1]):
        body = proposal(f"user:c{i}")
        sent.append(
            asyncio.create_task(client.post("/v1/grants/simulate", json=body, headers=headers))
        )
        if i == 0:
            first, release = await runs.next()
        else:
            await until(lambda: gate.waiting == i, "one more caller waits")  # noqa: B023
    r = await client.post("/v1/grants/simulate", json=proposal("user:late"), headers=callers[-1])
    assert r.status_code == 429, r.text
    assert "waiting" in r.json()["detail"]
    order = [first]
    release.set()
    for _ in range(MAX_WAITING):
        who, release = await runs.next()
        order.append(who)
        release.set()
    assert [r.status_code for r in await asyncio.gather(*sent)] == [200] * (MAX_WAITING + 1)
    assert order == [f"user:c{i}" for i in range(MAX_WAITING + 1)]  # in arrival order
