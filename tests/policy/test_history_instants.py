"""The policy history's instants and versions, and `at=` on the read endpoints."""

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import policy_version
from app.changes import grants as grant_changes
from app.db import begin_write
from app.identifiers import Action
from app.policy.explain import explain_with
from app.policy.history import repository as history_repository
from app.policy.history import service as history_service
from app.policy.history import timeline
from app.policy.history.models import GrantHistory
from app.policy.models import Grant
from app.policy.schemas import GrantCreate
from app.policy_version import PolicyVersionRecord
from tests.conftest import Tokens

DATASET = {"owner": "group:eng", "sensitivity": "internal", "intended_audience": ["group:eng"]}
PATHS = [
    ("/v1/explain", {"principal": "user:amy", "dataset": "a.b"}),
    ("/v1/datasets/a.b/exposure", {}),
    ("/v1/principals/user:amy/access", {}),
    ("/v1/groups/eng", {}),
]


@pytest.mark.parametrize("at", ["0001-01-01T00:00:00+01:00", "0001-01-01T00:30:00+14:00"])
async def test_at_out_of_range_once_in_utc_is_422_naming_at_not_500(
    client: httpx.AsyncClient, tokens: Tokens, at: str
):
    """`At` is a bare AwareDatetime: an instant before year 1 in UTC overflows when bound
    (UTCDateTime.process_bind_param -> astimezone: OverflowError), answered 503 "the database
    is unavailable" and logged as a database error. The code base's own `UTCInstant` refuses
    it (422)."""
    reader = tokens["audit:read"]
    for path, params in PATHS:
        try:
            r = await client.get(path, params={**params, "at": at}, headers=reader)
        except OverflowError as exc:  # (the ASGI transport re-raises what became a 500)
            pytest.fail(f"{path} at={at}: 500 ({exc!r})")
        assert r.status_code == 422, (path, r.status_code, r.text)
        assert any(e["loc"][-1] == "at" for e in r.json()["errors"]), r.json()


async def test_at_as_a_bare_number_is_refused_not_read_as_unix_time(
    client: httpx.AsyncClient, tokens: Tokens
):
    """pydantic reads `at=1700000000` as 2023-11-14T22:13:20Z; every other instant of the API
    (`UTCInstant`) refuses a bare number (?since=2020 would mean 1970-01-01T00:33:40Z)."""
    reader = tokens["audit:read"]
    for path, params in PATHS:
        for at in ("1700000000", "2020"):
            r = await client.get(path, params={**params, "at": at}, headers=reader)
            assert r.status_code == 422, (path, at, r.status_code, r.text)


async def test_grant_with_a_far_future_expiry_is_created_and_its_history_keeps_the_expiry(
    client: httpx.AsyncClient, tokens: Tokens, sessionmaker: async_sessionmaker[AsyncSession]
):
    """The history's expires_at is rebuilt from the rule's float seconds
    (`repository._expiry`): 9999-12-31T23:59:59.999999Z rounds to year 10000 (ValueError ->
    500 on POST /v1/grants, a grant main accepts), and any expiry past ~2255 loses its
    microseconds (the history's rule is not the grant's)."""
    admin = tokens["admin"]
    for expires in ("3000-01-01T00:00:00.000001Z", "9999-12-31T23:59:59.999999Z"):
        body = {
            "principal": "user:amy",
            "resource": "a.*",
            "action": "read",
            "effect": "allow",
            "expires_at": expires,
        }
        try:
            r = await client.post("/v1/grants", json=body, headers=admin)
        except ValueError as exc:
            pytest.fail(f"expires_at={expires}: 500 ({exc!r})")
        assert r.status_code == 201, (expires, r.text)
    async with sessionmaker() as session:
        grants = {g.id: g.expires_at for g in (await session.execute(select(Grant))).scalars()}
        history = {
            h.grant_id: h.expires_at
            for h in (await session.execute(select(GrantHistory))).scalars()
        }
    assert history == grants


async def test_at_an_instant_before_a_change_committed_answers_what_the_service_answered(
    app: FastAPI,
    client: httpx.AsyncClient,
    tokens: Tokens,
    sessionmaker: async_sessionmaker[AsyncSession],
):
    """The history instant is taken at the first publish, inside the transaction, before its
    commit (`published._instant`). Between the two the service still decides with the old
    policy, yet `at=` then answers with the new one: a read denied (or allowed) at T is
    reported otherwise for T. The window is as long as the rest of the transaction (findings,
    a plan's later steps, a SCIM batch's later pushes, the trail)."""
    admin = tokens["admin"]
    assert (await client.put("/v1/datasets/a.b", json=DATASET, headers=admin)).status_code == 201
    ask = {"principal": "user:amy", "dataset": "a.b"}
    async with sessionmaker() as session:
        await begin_write(session)
        body = GrantCreate(principal="user:amy", resource="a.*", action="read", effect="allow")
        await grant_changes.create_grant(session, body=body, actor="tester")
        await asyncio.sleep(0.05)
        between = datetime.now(UTC)
        async with sessionmaker() as reader:  # what a check at `between` was told
            snapshot = await app.state.policy.current(reader)
            told = explain_with(snapshot, "user:amy", "a.b", Action.read)
        assert told.decision == "deny"
        await asyncio.sleep(0.05)
        await session.commit()
    r = await client.get("/v1/explain", params={**ask, "at": between.isoformat()}, headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["decision"] == "deny", r.json()


async def test_policy_version_at_an_instant_is_the_version_then_in_force(
    client: httpx.AsyncClient, tokens: Tokens
):
    """A change with an empty history diff (a scan, the sweeper's expiries, a no-op IdP
    change) advances the version but writes no row, so `at=` reports an older version than
    the one every check of that instant logged."""
    admin = tokens["admin"]
    assert (await client.put("/v1/datasets/a.b", json=DATASET, headers=admin)).status_code == 201
    assert (await client.post("/v1/scan", headers=admin)).status_code == 200
    ask = {"principal": "user:amy", "dataset": "a.b"}
    now = (await client.get("/v1/explain", params=ask, headers=admin)).json()
    then = datetime.now(UTC).isoformat()
    r = await client.get("/v1/explain", params={**ask, "at": then}, headers=admin)
    assert r.json()["policy_version"] == now["policy_version"], (r.json(), now)


async def test_at_rebuilds_are_taken_in_turn_like_simulate(
    app: FastAPI, client: httpx.AsyncClient, tokens: Tokens, monkeypatch: pytest.MonkeyPatch
):
    """Every `at=` request loads the whole history and builds a whole check index (explain,
    access) or analyser (exposure) for itself, uncached and ungated, each holding a pooled
    connection meanwhile: one audit:read caller's parallel requests run that many full
    rebuilds at once (the simulate endpoint, cheaper, is one at a time per worker, 429 past
    that). Counted here: the rebuilds in flight at once."""
    state_at = history_service.state_at
    flight = {"now": 0, "max": 0}

    async def counted(session: AsyncSession, at: datetime, kind: Any = None):
        flight["now"] += 1
        flight["max"] = max(flight["max"], flight["now"])
        try:
            await asyncio.sleep(0.05)  # (a rebuild at scale takes seconds)
            return await state_at(session, at, kind)
        finally:
            flight["now"] -= 1

    monkeypatch.setattr(history_service, "state_at", counted)
    reader = tokens["audit:read"]
    at = datetime.now(UTC).isoformat()
    requests = [
        client.get(
            "/v1/explain",
            params={"principal": f"user:u{i}", "dataset": "a.b", "at": at},
            headers=reader,
        )
        for i in range(8)
    ]
    statuses = [r.status_code for r in await asyncio.gather(*requests)]
    assert flight["max"] <= 1, (flight, statuses)
    assert 200 in statuses and set(statuses) <= {200, 429}, statuses


async def test_a_group_made_after_the_instant_is_not_found_then(
    client: httpx.AsyncClient, tokens: Tokens
):
    """`describe_group_at` assumes a group that exists now existed at any past instant
    ("never deleted"), so one created later is answered 200 and empty for a time before it
    existed, where a dataset not yet registered is 404 ("not registered at ...")."""
    admin = tokens["admin"]
    before = datetime.now(UTC)
    await asyncio.sleep(0.01)
    r = await client.put("/v1/groups/eng/members", json={"members": ["user:amy"]}, headers=admin)
    assert r.is_success, r.text
    r = await client.get("/v1/groups/eng", params={"at": before.isoformat()}, headers=admin)
    assert r.status_code == 404, r.text


async def test_every_version_is_recorded_with_the_instant_its_history_rows_carry(
    client: httpx.AsyncClient, tokens: Tokens, sessionmaker: async_sessionmaker[AsyncSession]
):
    admin = tokens["admin"]
    assert (await client.put("/v1/datasets/a.b", json=DATASET, headers=admin)).status_code == 201
    grant = {"principal": "user:amy", "resource": "a.*", "action": "read", "effect": "allow"}
    r = await client.post("/v1/grants", json=grant, headers=admin)
    assert r.status_code == 201
    assert (await client.delete(f"/v1/grants/{r.json()['id']}", headers=admin)).is_success
    assert (await client.post("/v1/scan", headers=admin)).status_code == 200
    async with sessionmaker() as session:
        recorded = {
            v.version: v for v in (await session.execute(select(PolicyVersionRecord))).scalars()
        }
        current = await policy_version.current(session)
        (row,) = (await session.execute(select(GrantHistory))).scalars()
    assert set(recorded) >= set(range(1, current + 1))  # the scan's version too
    assert [recorded[v].at for v in sorted(recorded)] == sorted(r.at for r in recorded.values())
    assert row.until_version is not None
    assert (row.from_at, row.until_at) == (
        recorded[row.from_version].at,
        recorded[row.until_version].at,
    )
    assert recorded[row.from_version].by is not None


async def test_at_for_a_version_already_rebuilt_costs_no_rebuild(
    client: httpx.AsyncClient, tokens: Tokens, monkeypatch: pytest.MonkeyPatch
):
    admin = tokens["admin"]
    assert (await client.put("/v1/datasets/a.b", json=DATASET, headers=admin)).status_code == 201
    loads = []
    load = history_repository.load

    async def counted(session: AsyncSession, *, version: int) -> timeline.History:
        loads.append(version)
        return await load(session, version=version)

    monkeypatch.setattr(history_repository, "load", counted)
    ask = {"principal": "user:amy", "dataset": "a.b"}
    for _ in range(3):
        at = datetime.now(UTC).isoformat()
        r = await client.get("/v1/explain", params={**ask, "at": at}, headers=admin)
        assert r.status_code == 200, r.text
        r = await client.get("/v1/datasets/a.b/exposure", params={"at": at}, headers=admin)
        assert r.status_code == 200, r.text
    assert len(loads) == 1, loads
