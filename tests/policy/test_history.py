"""The policy's history (`app.policy.history`): every change writes it in its own transaction,
and the policy rebuilt from it at any version equals the policy that was committed then."""

import asyncio
from datetime import UTC, datetime

import httpx
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import policy_version
from app.changes import grants as grant_changes
from app.directory.models import MembershipHistory
from app.identity import provisioning
from app.policy.history import repository as history_repository
from app.policy.history import service as history_service
from app.policy.history import timeline
from app.policy.history.models import GrantHistory, HoldHistory
from app.policy.schemas import GrantCreate
from app.policy.state import PolicyRows, load_rows
from tests.conftest import Tokens
from tests.identity.support import Scim
from tests.identity.test_group_commit import add, queued, writers_held
from tests.identity.test_holds_scenarios import audience_owned_by_idp
from tests.identity.test_provisioning import idp


def _canonical(rows: PolicyRows) -> tuple[object, ...]:
    return (
        sorted(rows.rules, key=lambda r: (int(r.id), r.act)),
        sorted(rows.links),
        dict(sorted(rows.datasets.items())),
    )


async def committed(maker: async_sessionmaker[AsyncSession]) -> tuple[int, datetime, PolicyRows]:
    """The committed policy now: its version, an instant after it, its rows."""
    async with maker() as session:
        version = await policy_version.current(session)
        rows = await load_rows(session)
    return version, datetime.now(UTC), rows


async def assert_rebuilt(
    maker: async_sessionmaker[AsyncSession], seen: list[tuple[int, datetime, PolicyRows]]
) -> None:
    """The policy rebuilt from the history at each version and instant seen is what was
    committed then."""
    async with maker() as session:
        for version, at, rows in seen:
            by_version = timeline.rows_as_of(
                await history_repository.load(session, version=version), version
            )
            assert _canonical(by_version) == _canonical(rows), version
            assert await history_service.version_at(session, at) == version, at


async def test_history_rebuilds_every_committed_policy_of_api_changes(
    client: httpx.AsyncClient, tokens: Tokens, sessionmaker: async_sessionmaker[AsyncSession]
):
    admin = tokens["admin"]
    seen = [await committed(sessionmaker)]
    steps = [
        ("PUT", "/v1/groups/eng/members", {"members": ["user:amy", "user:bob"]}),
        ("PUT", "/v1/groups/all/members", {"members": ["group:eng", "user:cat"]}),
        (
            "PUT",
            "/v1/datasets/ea.keys",
            {"owner": "group:eng", "sensitivity": "internal", "intended_audience": ["group:eng"]},
        ),
        (
            "POST",
            "/v1/grants",
            {"principal": "group:all", "resource": "ea.*", "action": "read", "effect": "allow"},
        ),
        ("DELETE", "/v1/groups/eng/members/user:bob", None),
        (
            "PUT",
            "/v1/datasets/ea.keys",
            {"owner": "group:eng", "sensitivity": "internal", "intended_audience": ["group:all"]},
        ),
        ("DELETE", "/v1/grants/1", None),
        ("POST", "/v1/groups/eng/members", {"member": "user:dan"}),
    ]
    for method, path, body in steps:
        r = await client.request(method, path, json=body, headers=admin)
        assert r.status_code < 300, (path, r.text)
        seen.append(await committed(sessionmaker))
    await assert_rebuilt(sessionmaker, seen)
    # the directory as it was: eng had amy and bob after the first step, amy and dan now
    r = await client.get("/v1/groups/eng", params={"at": seen[1][1].isoformat()}, headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["members"] == ["user:amy", "user:bob"]
    r = await client.get("/v1/groups/all", params={"at": seen[4][1].isoformat()}, headers=admin)
    assert (r.json()["direct_member_count"], r.json()["transitive_member_count"]) == (2, 3)
    r = await client.get("/v1/groups/all", params={"at": seen[5][1].isoformat()}, headers=admin)
    assert (r.json()["direct_member_count"], r.json()["transitive_member_count"]) == (2, 2)
    r = await client.get("/v1/groups/eng", headers=admin)
    assert r.json()["members"] == ["user:amy", "user:dan"]
    async with sessionmaker() as session:
        grant = (await session.execute(select(GrantHistory))).scalar_one()
        assert (grant.from_by, grant.until_by) == ("admin", "admin")
        assert grant.until_version is not None and grant.until_at is not None


async def test_history_of_a_change_rolled_back_in_its_savepoint_is_gone(
    sessionmaker: async_sessionmaker[AsyncSession],
):
    async with sessionmaker() as session:
        savepoint = await session.begin_nested()
        body = GrantCreate(principal="user:amy", resource="a.b", action="read", effect="allow")
        await grant_changes.create_grant(session, body=body, actor="tester")
        assert (await session.execute(select(GrantHistory))).scalars().all()
        await savepoint.rollback()
        await session.commit()
    async with sessionmaker() as session:
        assert not (await session.execute(select(GrantHistory))).scalars().all()


async def test_history_of_a_scim_batch_keeps_only_the_pushes_that_committed(
    app: FastAPI, client: httpx.AsyncClient, tokens: Tokens, sessionmaker
):
    scim = Scim(client, tokens["scim"])
    amy, bob = await scim.create_user("amy"), await scim.create_user("bob")
    outer = await scim.create_group("outer")
    inner = await scim.create_group("inner")
    assert (await scim.patch(f"Groups/{outer['id']}", add(inner["id"]))).status_code == 204
    async with writers_held(app):
        pushes = [
            asyncio.create_task(scim.patch(f"Groups/{inner['id']}", add(amy["id"]))),
            # a cycle (outer holds inner): refused, rolled back alone
            asyncio.create_task(scim.patch(f"Groups/{inner['id']}", add(outer["id"], bob["id"]))),
            asyncio.create_task(scim.patch(f"Groups/{outer['id']}", add(bob["id"]))),
        ]
        await queued(app, len(pushes))
    statuses = [r.status_code for r in await asyncio.gather(*pushes)]
    assert statuses == [204, 409, 204]
    await assert_rebuilt(sessionmaker, [await committed(sessionmaker)])
    async with sessionmaker() as session:
        links = (await session.execute(select(MembershipHistory))).scalars().all()
    assert sorted((m.member, m.group_id) for m in links) == [
        ("group:inner", "group:outer"),
        ("user:amy", "group:inner"),
        ("user:bob", "group:outer"),
    ]
    assert {m.from_by for m in links} == {"scim:scim"}  # the IdP, by its token


async def test_at_must_be_an_instant_with_its_offset_and_not_in_the_future(
    client: httpx.AsyncClient, tokens: Tokens
):
    reader = tokens["audit:read"]
    future = datetime.now(UTC).replace(year=datetime.now(UTC).year + 1).isoformat()
    paths = [
        ("/v1/explain", {"principal": "user:amy", "dataset": "a.b"}),
        ("/v1/datasets/a.b/exposure", {}),
        ("/v1/principals/user:amy/access", {}),
        ("/v1/groups/eng", {}),
    ]
    for path, params in paths:
        for at in ("2026-01-01T00:00:00", "yesterday", future):
            r = await client.get(path, params={**params, "at": at}, headers=reader)
            assert r.status_code == 422, (path, at, r.text)
            assert r.headers["content-type"] == "application/problem+json"
            assert any(e["loc"][-1] == "at" for e in r.json()["errors"]), r.json()


async def test_before_any_history_the_policy_was_empty(client: httpx.AsyncClient, tokens: Tokens):
    admin = tokens["admin"]
    before = datetime.now(UTC)
    body = {"owner": "group:eng", "sensitivity": "internal", "intended_audience": ["group:eng"]}
    assert (await client.put("/v1/datasets/a.b", json=body, headers=admin)).status_code == 201
    grant = {"principal": "user:amy", "resource": "a.*", "action": "read", "effect": "allow"}
    assert (await client.post("/v1/grants", json=grant, headers=admin)).status_code == 201
    then = {"at": before.isoformat()}
    r = await client.get("/v1/datasets/a.b/exposure", params=then, headers=admin)
    assert r.status_code == 404, r.text
    params = {"principal": "user:amy", "dataset": "a.b", **then}
    r = await client.get("/v1/explain", params=params, headers=admin)
    assert r.json()["decision"] == "deny"
    assert r.json()["reason"]["code"] == "unknown_dataset"
    assert r.json()["at"] is not None
    now = {"at": datetime.now(UTC).isoformat()}
    r = await client.get("/v1/principals/user:amy/access", params=now, headers=admin)
    assert [item["dataset"] for item in r.json()["items"]] == ["a.b"]
    r = await client.get("/v1/datasets/a.b/exposure", params=now, headers=admin)
    assert (r.json()["excess_count"], r.json()["items"][0]["principal"]) == (1, "user:amy")


async def test_holds_keep_their_history_and_explain_shows_them_as_they_were(
    app: FastAPI, client: httpx.AsyncClient, tokens: Tokens, sessionmaker
):
    """A guard hold (the IdP took u1 out of the audience) and an inactive one (deactivated,
    then reactivated): each held while it was active, and explain at an instant then names
    it."""
    admin = tokens["admin"]
    await audience_owned_by_idp(app, client, admin)
    seen = [await committed(sessionmaker)]
    await idp(app, provisioning.change_members, group="group:sec", remove=["user:u1"])
    seen.append(await committed(sessionmaker))
    await idp(app, provisioning.set_active, principal="user:u1", active=False)
    seen.append(await committed(sessionmaker))
    await idp(app, provisioning.set_active, principal="user:u1", active=True)
    seen.append(await committed(sessionmaker))
    await assert_rebuilt(sessionmaker, seen)
    codes = []
    for _, at, _ in seen:
        params = {"principal": "user:u1", "dataset": "act.keys", "at": at.isoformat()}
        params["purpose"] = "p"  # a restricted dataset: as a check naming a purpose
        r = await client.get("/v1/explain", params=params, headers=admin)
        codes.append(r.json()["reason"]["code"])
    assert codes == ["granted", "held_by_guard", "principal_inactive", "held_by_guard"]
    async with sessionmaker() as session:
        held = (await session.execute(select(HoldHistory).order_by(HoldHistory.id))).scalars()
        spans = [(h.dataset, h.until_version is None) for h in held]
    # (the inactive hold stood in for the guard hold while it lasted: the guard released it,
    # and held u1 again on reactivation)
    assert spans == [("act.keys", False), ("*", False), ("act.keys", True)]
