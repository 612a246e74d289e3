"""Callers are authenticated first, from the headers alone: before the body is read and before
any write lock is taken; failed authentication is counted, not written request by request."""

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.engine import make_url

from app.config import Settings
from app.main import create_app
from tests.auth.test_trail import read_trail, summary
from tests.checks.test_check import check_body, seed
from tests.exposure.test_simulate_one_at_a_time import hold_simulate

PROBLEM_JSON = "application/problem+json"
GRANT = {"principal": "user:a", "resource": "eng.*", "action": "read", "effect": "allow"}


@pytest.fixture
def settings(database_url: str) -> Settings:
    """The tests flush counted refusals themselves (and at shutdown), not on a sweeper tick."""
    return Settings(database_url=database_url, sweep_interval_seconds=3600)


async def test_check_is_answered_while_an_audit_reader_simulates(
    app: FastAPI, client: httpx.AsyncClient, tokens: Any, admin: dict[str, str], monkeypatch: Any
):
    """simulate only reads: while one is being computed, checks (which write the access log)
    go on. It used to hold SQLite's write lock from the token lookup to its answer."""
    await seed(client, admin)
    computing, finish = hold_simulate(monkeypatch)
    pending = asyncio.create_task(
        client.post("/v1/grants/simulate", json={"add": [GRANT]}, headers=tokens["audit:read"])
    )
    try:
        await asyncio.wait_for(computing.wait(), 10)
        r = await asyncio.wait_for(
            client.post("/v1/check", json=check_body("user:alice"), headers=tokens["check"]), 3
        )
        assert r.status_code == 200, r.text
        assert not pending.done()
    finally:
        finish.set()
    r = await pending
    assert r.status_code == 200, r.text
    assert r.json()["would_open"] == []


@pytest.fixture
def write_lock_elsewhere(settings: Settings) -> Any:
    """SQLite's write lock, held by another connection (another worker's transaction)."""
    if not settings.is_sqlite:
        pytest.skip("SQLite's database-wide write lock")
    path = make_url(settings.database_url).database
    assert path
    other = sqlite3.connect(path, isolation_level=None)
    try:
        yield other
    finally:
        other.close()


async def test_callers_without_a_valid_token_are_refused_while_the_write_lock_is_held(
    client: httpx.AsyncClient, write_lock_elsewhere: sqlite3.Connection
):
    """A refusal takes no lock: a write route used to open its write transaction before
    looking at the token, and the refusal's trail entry was a write too."""
    write_lock_elsewhere.execute("BEGIN IMMEDIATE")
    try:
        for headers in ({}, {"Authorization": "Bearer acl_stolen"}):
            for method, url in (("POST", "/v1/grants"), ("GET", "/v1/alerts")):
                r = await asyncio.wait_for(
                    client.request(method, url, json=GRANT, headers=headers), 2
                )
                assert r.status_code == 401, (method, url, r.text)
    finally:
        write_lock_elsewhere.execute("ROLLBACK")


async def test_a_flood_without_a_token_leaves_one_counted_trail_entry_per_path_and_status(
    app: FastAPI, client: httpx.AsyncClient, admin: dict[str, str]
):
    for _ in range(40):
        assert (await client.get("/v1/alerts")).status_code == 401
    for n in range(15):  # the route's template, not one entry per finding id
        r = await client.get(f"/v1/findings/{n + 1}", headers={"Authorization": "Bearer acl_x"})
        assert r.status_code == 401
    for _ in range(5):
        assert (await client.post("/v1/grants", json=GRANT)).status_code == 401
    assert await read_trail(client, admin) == []  # nothing written per request

    await app.state.sweeper.flush_refusals()
    entries = await read_trail(client, admin)
    counted = {(*summary(e), e["count"]) for e in entries}
    assert counted == {
        (None, "GET", "/v1/alerts", "", 401, 40),
        (None, "GET", "/v1/findings/{finding_id}", "", 401, 15),
        (None, "POST", "/v1/grants", "", 401, 5),
    }
    await app.state.sweeper.flush_refusals()  # nothing new: nothing written
    assert len(await read_trail(client, admin)) == 3

    metrics = (await client.get("/metrics", headers=admin)).text
    assert "aclaudit_auth_failures_total 60.0" in metrics


async def test_counted_refusals_are_written_when_the_server_stops(settings: Settings, tokens: Any):
    first = create_app(settings)
    async with first.router.lifespan_context(first):
        transport = httpx.ASGITransport(app=first)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            for _ in range(3):
                assert (await c.get("/v1/access-log")).status_code == 401
    second = create_app(settings)
    async with second.router.lifespan_context(second):
        transport = httpx.ASGITransport(app=second)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            [entry] = await read_trail(c, tokens["admin"])
    assert (summary(entry), entry["count"]) == ((None, "GET", "/v1/access-log", "", 401), 3)


async def _never_ending_body() -> AsyncIterator[bytes]:
    yield b'{"checks": ['
    await asyncio.Event().wait()  # the rest never comes
    yield b""


@pytest.mark.parametrize(
    "path", ["/v1/grants", "/v1/grants/simulate", "/v1/check", "/v1/check/batch"]
)
async def test_a_body_is_not_read_before_the_token_is_checked(
    client: httpx.AsyncClient, tokens: Any, path: str
):
    """Without a valid token (or the scope) the answer comes at once, however long the body:
    it used to be read (and parsed, up to 64 MiB) first."""
    for headers in ({}, {"Authorization": "Bearer acl_stolen"}, tokens["alerts:read"]):
        r = await asyncio.wait_for(
            client.post(
                path,
                content=_never_ending_body(),
                headers={"Content-Type": "application/json", **headers},
            ),
            3,
        )
        assert r.status_code in (401, 403), r.text
        assert r.headers["content-type"] == PROBLEM_JSON


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/findings"), ("POST", "/v1/check"), ("POST", "/v1/grants"), ("GET", "/docs")],
)
async def test_two_authorization_headers_are_refused_400(
    client: httpx.AsyncClient, admin: dict[str, str], method: str, path: str
):
    """Not "the first one wins": a proxy adding a header must not decide who calls."""
    headers = [("Authorization", admin["Authorization"]), ("Authorization", "Bearer acl_other")]
    body = check_body("user:alice") if path == "/v1/check" else GRANT
    r = await client.request(method, path, json=body, headers=headers)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == PROBLEM_JSON
    assert "one Authorization header" in r.json()["detail"]


@pytest.mark.parametrize("path", ["/openapi.json", "/docs", "/redoc"])
async def test_api_docs_need_a_token_of_any_scope(
    client: httpx.AsyncClient, tokens: Any, path: str
):
    r = await client.get(path)
    assert r.status_code == 401 and r.headers["content-type"] == PROBLEM_JSON
    assert (await client.get(path, headers={"Authorization": "Bearer acl_x"})).status_code == 401
    r = await client.get(path, headers=tokens["check"])
    assert r.status_code == 200, r.text
    if path == "/openapi.json":
        assert r.json()["info"]["title"] == "aclaudit"
        assert path not in r.json()["paths"]


@pytest.mark.parametrize("path", ["/openapi.json", "/docs", "/redoc"])
async def test_api_docs_are_served_without_a_token_when_opened(settings: Settings, path: str):
    application = create_app(settings.model_copy(update={"open_docs": True}))
    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        assert (await c.get(path)).status_code == 200
