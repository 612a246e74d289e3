"""Published policy states must equal
what the database holds, for every way a transaction can end."""

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from app import policy_version
from app.changes import grants as grant_changes
from app.changes import members as member_changes
from app.db import begin_write
from app.exposure import scan as exposure_scan
from app.exposure.view import ANALYSER
from app.identifiers import Action, Effect
from app.main import create_app
from app.policy.published import states_of
from app.policy.schemas import GrantCreate
from app.policy.snapshot import CHECKS
from app.policy.state import PolicyState, load_rows
from tests.exposure.test_policy_state import decisions, exposure

USERS = [f"user:u{i}" for i in range(6)]
GROUPS = ["group:a", "group:b", "group:c"]
DATASETS = ["ds.one", "ds.two", "ds.three"]


async def _seed(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    for dataset in DATASETS:
        body = {"owner": "group:a", "sensitivity": "internal", "intended_audience": ["group:a"]}
        r = await client.put(f"/v1/datasets/{dataset}", json=body, headers=admin)
        assert r.status_code == 201, r.text
    r = await client.put("/v1/groups/a/members", json={"members": USERS[:2]}, headers=admin)
    assert r.status_code == 200, r.text


async def _check(client, tokens, principal: str, dataset: str = "ds.one") -> dict[str, Any]:
    body = {"principal": principal, "dataset": dataset, "action": "read", "purpose": "t"}
    r = await client.post("/v1/check", json=body, headers=tokens["check"])
    assert r.status_code == 200, r.text
    answer: dict[str, Any] = r.json()
    return answer


async def _assert_published_is_fresh(sessionmaker) -> None:
    """The newest published state is labelled with the database's version and decides and
    analyses exactly as a fresh load of the database."""
    async with sessionmaker() as session:
        states = states_of(session)
        db_version = await policy_version.current(session)
        rows = await load_rows(session)
    latest = states.latest
    assert latest is not None
    assert latest.version == db_version, (latest.version, db_version)
    fresh = PolicyState.of_rows(db_version, rows)
    names = [*DATASETS, "ds.four", "no.such"]
    principals = USERS + GROUPS
    snapshot = latest.view(CHECKS)
    if snapshot is not None:
        want = await CHECKS.build(rows, fresh)
        assert decisions(snapshot, principals, names) == decisions(want, principals, names)
    view = latest.view(ANALYSER)
    if view is not None:
        assert exposure(view) == exposure(await ANALYSER.build(rows, fresh))


# -- a savepoint ---------------------------------------------------------------------------------


async def test_a_change_rolled_back_to_its_savepoint_is_not_published(
    app, client, admin, tokens, sessionmaker
):
    """A change made inside a SAVEPOINT that is rolled back, in a transaction that then
    commits, must not be published: the database never held it."""
    await _seed(client, admin)
    assert (await _check(client, tokens, "user:u5"))["decision"] == "deny"
    async with sessionmaker() as session, session.begin():
        await begin_write(session)
        savepoint = await session.begin_nested()
        body = GrantCreate(
            principal="user:u5", resource="ds.one", action=Action.read, effect=Effect.allow
        )
        await grant_changes.create_grant(session, body=body, actor="review")
        await savepoint.rollback()
    # the database holds no grant for u5 ...
    async with sessionmaker() as session:
        assert all(rule.sub != "user:u5" for rule in (await load_rows(session)).rules)
    # ... so no check may allow it
    decided = await _check(client, tokens, "user:u5")
    assert decided["decision"] == "deny", decided
    await _assert_published_is_fresh(sessionmaker)


# -- two changes in one transaction, and a rolled-back one -------------------------------------


async def test_two_changes_in_one_transaction_publish_what_the_database_holds(
    app, client, admin, tokens, sessionmaker
):
    await _seed(client, admin)
    await _check(client, tokens, "user:u3")  # the check index exists, to be carried
    async with sessionmaker() as session, session.begin():
        await begin_write(session)
        body = GrantCreate(
            principal="group:b", resource="ds.*", action=Action.read, effect=Effect.allow
        )
        await grant_changes.create_grant(session, body=body, actor="review")
        await member_changes.change_members(
            session, gid="group:b", replace_with=["user:u3", "user:u4"], actor="review"
        )
        body = GrantCreate(
            principal="user:u4", resource="ds.two", action=Action.read, effect=Effect.deny
        )
        await grant_changes.create_grant(session, body=body, actor="review")
    await _assert_published_is_fresh(sessionmaker)
    assert (await _check(client, tokens, "user:u3"))["decision"] == "allow"
    assert (await _check(client, tokens, "user:u4", "ds.two"))["decision"] == "deny"
    # a transaction that changes and rolls back publishes nothing
    async with sessionmaker() as session:
        await begin_write(session)
        await member_changes.change_members(session, gid="group:b", replace_with=[], actor="review")
        await session.rollback()
    await _assert_published_is_fresh(sessionmaker)
    assert (await _check(client, tokens, "user:u3"))["decision"] == "allow"


# -- plans, the sweeper and scans publish too ------------------------------------------------


async def test_apply_publishes_what_the_database_holds(app, client, admin, tokens, sessionmaker):
    await _seed(client, admin)
    r = await client.post(
        "/v1/grants",
        json={"principal": "user:u5", "resource": "ds.one", "action": "read", "effect": "allow"},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    assert (await _check(client, tokens, "user:u5"))["decision"] == "allow"
    doc = {
        "groups": {"b": ["user:u2", "group:a"], "c": ["user:u4"]},
        "datasets": {
            "ds.two": {"owner": "group:a", "sensitivity": "restricted",
                       "intended_audience": ["group:b"]},
            "ds.four": {"owner": "group:a", "sensitivity": "internal",
                        "intended_audience": ["user:u4"]},
        },
        "grants": [
            {"principal": "group:b", "resource": "ds.*", "action": "read",
             "justification": "review"},
            {"principal": "group:c", "resource": "ds.four", "action": "export"},
            {"principal": "user:u2", "resource": "ds.two", "action": "read", "effect": "deny"},
        ],
        "prune_grants": True,
        "accept_exposure": {"reason": "review", "until": "2099-01-01T00:00:00Z"},
    }  # fmt: skip
    r = await client.post("/v1/policy/apply", json=doc, headers=admin)
    assert r.status_code == 200, r.text
    await _assert_published_is_fresh(sessionmaker)
    assert (await _check(client, tokens, "user:u5"))["decision"] == "deny"  # pruned
    decided = await _check(client, tokens, "user:u4", "ds.four")
    assert decided["decision"] == "deny" and decided["reason"]["code"] == "no_grant"
    decided = await _check(client, tokens, "user:u2", "ds.two")
    assert decided["decision"] == "deny", decided
    decided = await _check(client, tokens, "user:u0", "ds.two")
    assert (decided["decision"], decided["out_of_audience"]) == ("allow", False), decided


async def test_time_events_and_scans_publish_what_the_database_holds(
    app, client, admin, tokens, sessionmaker
):
    await _seed(client, admin)
    soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    body = {"principal": "user:u5", "resource": "ds.one", "action": "read", "effect": "allow",
            "expires_at": soon}  # fmt: skip
    assert (await client.post("/v1/grants", json=body, headers=admin)).status_code == 201
    assert (await _check(client, tokens, "user:u5"))["decision"] == "allow"
    await asyncio.sleep(1.2)
    async with sessionmaker() as session, session.begin():
        await begin_write(session)
        events = await exposure_scan.record_time_events(session, actor="review")
    assert events.expired_grants
    await _assert_published_is_fresh(sessionmaker)
    decided = await _check(client, tokens, "user:u5")
    assert decided["reason"]["code"] == "grant_expired", decided
    assert (await client.post("/v1/scan", headers=admin)).status_code == 200
    await _assert_published_is_fresh(sessionmaker)


# -- concurrency ---------------------------------------------------------------------------------


async def test_concurrent_changes_in_one_worker_publish_what_the_database_holds(
    app, client, admin, tokens, sessionmaker
):
    await _seed(client, admin)
    await _check(client, tokens, "user:u0")

    async def grant(principal: str, dataset: str) -> int:
        body = {"principal": principal, "resource": dataset, "action": "read", "effect": "allow"}
        r = await client.post("/v1/grants", json=body, headers=admin)
        assert r.status_code == 201, r.text
        return int(r.json()["id"])

    async def member(group: str, user: str) -> None:
        r = await client.post(f"/v1/groups/{group}/members", json={"member": user}, headers=admin)
        assert r.status_code == 200, r.text

    ids = await asyncio.gather(*(grant(u, d) for u in USERS[2:] for d in DATASETS))
    await asyncio.gather(*(member(g[6:], u) for g in GROUPS[1:] for u in USERS[:3]))
    await _assert_published_is_fresh(sessionmaker)

    async def revoke(grant_id: int) -> None:
        r = await client.delete(f"/v1/grants/{grant_id}", headers=admin)
        assert r.status_code == 200, r.text

    checks = [_check(client, tokens, u, d) for u in USERS for d in DATASETS]
    await asyncio.gather(*(revoke(i) for i in ids), *checks)
    await _assert_published_is_fresh(sessionmaker)
    for user in USERS[2:]:
        assert (await _check(client, tokens, user))["decision"] == "deny"


# -- another worker ------------------------------------------------------------------------------


async def test_another_workers_changes_are_honoured_by_the_next_check(
    app, client, admin, tokens, settings, sessionmaker
):
    await _seed(client, admin)
    other = create_app(settings)
    async with other.router.lifespan_context(other):
        transport = httpx.ASGITransport(app=other)
        async with httpx.AsyncClient(transport=transport, base_url="http://b.test") as b:
            grant = {"principal": "user:u5", "resource": "ds.one", "action": "read"}
            r = await b.post("/v1/grants", json={**grant, "effect": "allow"}, headers=admin)
            assert r.status_code == 201, r.text
            grant_id = r.json()["id"]
            first = await _check(client, tokens, "user:u5")
            assert (first["decision"], first["out_of_audience"]) == ("allow", True)
            await _check(b, tokens, "user:u5")
            audience = ["group:a", "user:u5"]
            body = {"owner": "group:a", "sensitivity": "internal", "intended_audience": audience}
            assert (await b.put("/v1/datasets/ds.one", json=body, headers=admin)).status_code == 200
            after = await _check(client, tokens, "user:u5")
            assert (after["decision"], after["out_of_audience"]) == ("allow", False)
            # a change here, then one there, then a revoke there
            r = await client.post("/v1/groups/c/members", json={"member": "user:u5"}, headers=admin)
            assert r.status_code == 200
            r = await b.post("/v1/groups/b/members", json={"member": "group:c"}, headers=admin)
            assert r.status_code == 200
            body = {"principal": "group:b", "resource": "ds.two", "action": "read",
                    "effect": "allow"}  # fmt: skip
            assert (await client.post("/v1/grants", json=body, headers=admin)).status_code == 201
            assert (await _check(client, tokens, "user:u5", "ds.two"))["decision"] == "allow"
            assert (await b.delete(f"/v1/grants/{grant_id}", headers=admin)).status_code == 200
            assert (await _check(client, tokens, "user:u5"))["decision"] == "deny"
            await _assert_published_is_fresh(sessionmaker)


async def test_a_change_released_to_its_savepoint_then_rolled_back_is_not_published(
    app, client, admin, tokens, sessionmaker
):
    await _seed(client, admin)
    assert (await _check(client, tokens, "user:u5"))["decision"] == "deny"
    async with sessionmaker() as session:
        await begin_write(session)
        async with session.begin_nested():
            body = GrantCreate(
                principal="user:u5", resource="ds.one", action=Action.read, effect=Effect.allow
            )
            await grant_changes.create_grant(session, body=body, actor="review")
        await session.rollback()
    assert (await _check(client, tokens, "user:u5"))["decision"] == "deny"
    await _assert_published_is_fresh(sessionmaker)


async def test_after_a_savepoint_rollback_another_workers_revoke_is_still_honoured(
    app, client, admin, tokens, settings, sessionmaker
):
    """The state published for a change rolled back to its savepoint is labelled with a version
    the database never committed; the next change committed elsewhere takes that version, and
    this worker then never sees it: a revoke by another worker is not honoured here."""
    await _seed(client, admin)
    body = {"principal": "user:u4", "resource": "ds.one", "action": "read", "effect": "allow"}
    r = await client.post("/v1/grants", json=body, headers=admin)
    assert r.status_code == 201, r.text
    grant_id = r.json()["id"]
    assert (await _check(client, tokens, "user:u4"))["decision"] == "allow"
    async with sessionmaker() as session, session.begin():
        await begin_write(session)
        savepoint = await session.begin_nested()
        await member_changes.change_members(session, gid="group:c", add=["user:u5"], actor="review")
        await savepoint.rollback()
    other = create_app(settings)
    async with other.router.lifespan_context(other):
        transport = httpx.ASGITransport(app=other)
        async with httpx.AsyncClient(transport=transport, base_url="http://b.test") as b:
            assert (await b.delete(f"/v1/grants/{grant_id}", headers=admin)).status_code == 200
            assert (await _check(b, tokens, "user:u4"))["decision"] == "deny"
    decided = await _check(client, tokens, "user:u4")
    assert decided["decision"] == "deny", decided  # a stale allow after a revoke
