"""Requests refused before their caller is authorised are counted, not written one by one,
and paced past a per-worker rate: no refused caller (junk token, low-privilege token, odd
path) turns a flood into one trail write each, or into free requests."""

import time
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.pacing import FREE_REFUSALS_PER_SECOND, REFUSAL_DELAY
from app.config import Settings
from tests.auth.test_trail import read_trail, summary
from tests.checks.test_check import check_body

JUNK = {"Authorization": "Bearer acl_junk"}


@pytest.fixture
def settings(database_url: str) -> Settings:
    """The tests flush counted refusals themselves, not on a sweeper tick; small bodies."""
    return Settings(database_url=database_url, sweep_interval_seconds=3600, max_body_bytes=65536)


async def trail_rows(maker: async_sessionmaker[AsyncSession]) -> int:
    async with maker() as session:
        return int((await session.execute(text("SELECT count(*) FROM admin_trail"))).scalar_one())


async def counted(app: FastAPI, client: httpx.AsyncClient, admin: dict[str, str]) -> set[Any]:
    await app.state.sweeper.flush_refusals()
    return {(*summary(e), e["count"]) for e in await read_trail(client, admin)}


async def test_a_trailing_slash_flood_with_a_junk_token_writes_no_row_each_and_keeps_its_count(
    app: FastAPI,
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    admin: dict[str, str],
):
    """`/v1/alerts/` used to be a 307 (before any authentication), written as a trail row
    each: a junk token bought one fsynced write per request."""
    statuses = [(await client.get("/v1/alerts/", headers=JUNK)).status_code for _ in range(30)]
    assert await trail_rows(sessionmaker) == 0
    assert set(statuses) == {404}  # a plain 404: no redirect telling which paths exist
    assert await counted(app, client, admin) == {(None, "GET", "/v1/alerts/", "", 404, 30)}


async def test_a_check_tokens_403_flood_leaves_one_counted_row_naming_the_token(
    app: FastAPI,
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    tokens: Any,
    admin: dict[str, str],
):
    """Every data-platform service holds a `check` token; its 403s on the alert feed were one
    write-lock transaction each."""
    for _ in range(20):
        assert (await client.get("/v1/alerts", headers=tokens["check"])).status_code == 403
    assert await trail_rows(sessionmaker) == 0
    assert await counted(app, client, admin) == {("check", "GET", "/v1/alerts", "", 403, 20)}
    metrics = (await client.get("/metrics", headers=admin)).text
    assert 'aclaudit_refusals_total{status="403"} 20.0' in metrics


async def test_junk_token_refusals_are_paced_past_the_free_rate_and_counted_on_checks_too(
    app: FastAPI, client: httpx.AsyncClient, tokens: Any, admin: dict[str, str]
):
    """A junk Bearer value buys nothing over no header: its 401s are slowed like those, and
    counted on untrailed paths too; the caller with a valid token is not slowed."""
    body = check_body("user:alice")
    took = []
    for _ in range(FREE_REFUSALS_PER_SECOND + 10):
        started = time.perf_counter()
        assert (await client.post("/v1/check", json=body, headers=JUNK)).status_code == 401
        took.append(time.perf_counter() - started)
    paced = [t for t in took if t >= REFUSAL_DELAY]
    assert paced, took
    assert max(took[: FREE_REFUSALS_PER_SECOND // 2]) < REFUSAL_DELAY  # the burst is free

    started = time.perf_counter()  # the allowance is used up: a valid caller still is not paced
    assert (await client.post("/v1/check", json=body, headers=tokens["check"])).status_code == 200
    assert time.perf_counter() - started < REFUSAL_DELAY

    rows = await counted(app, client, admin)
    assert rows == {(None, "POST", "/v1/check", "", 401, FREE_REFUSALS_PER_SECOND + 10)}


async def test_refusals_before_authentication_name_a_token_this_worker_has_seen(
    app: FastAPI, client: httpx.AsyncClient, tokens: Any, admin: dict[str, str]
):
    """A 404, 405, 413 or 414 is answered before the token is looked up; the trail used to
    record them as anonymous, losing who sent them."""
    reader, writer = tokens["audit:read"], tokens["policy:write"]
    assert (await client.get("/v1/findings", headers=reader)).status_code == 200
    assert (await client.get("/v1/groups", headers=writer)).status_code == 403  # yet known
    before = await counted(app, client, admin)

    assert (await client.get("/v1/findings/", headers=reader)).status_code == 404
    assert (await client.patch("/v1/alerts", headers=reader)).status_code == 405
    query = "pad=" + "x" * 4100
    assert (await client.get(f"/v1/access-log?{query}", headers=reader)).status_code == 414
    big = b"{" + b" " * 70_000 + b"}"
    r = await client.post("/v1/grants", content=big, headers=writer)
    assert r.status_code == 413
    assert (await client.get("/v1/findings/", headers=JUNK)).status_code == 404

    assert await counted(app, client, admin) - before == {
        ("audit-read", "GET", "/v1/findings/", "", 404, 1),
        ("audit-read", "PATCH", "/v1/alerts", "", 405, 1),
        ("audit-read", "GET", "/v1/access-log", "", 414, 1),
        ("policy-write", "POST", "/v1/grants", "", 413, 1),
        (None, "GET", "/v1/findings/", "", 404, 1),
    }
