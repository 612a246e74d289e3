"""Holds and the IdP's changes in the cases an adversarial review tried: removals and nesting,
deleted and re-created users, renames, expiring denies, export and write, access already
accepted, holds that lose their reason, plans, several changes in one transaction, races."""

from typing import Any

from fastapi import FastAPI

from app.identity import provisioning
from tests.approvals.support import approved, request
from tests.identity.test_provisioning import alerts, check, claim, exposure, holds, idp

GRANT = {"action": "read", "effect": "allow", "justification": "review"}
PURPOSE = {"purpose": "model-training"}


async def grant(client: Any, admin: Any, principal: str, resource: str, **extra: Any) -> Any:
    body = {**GRANT, "principal": principal, "resource": resource, **extra}
    return await client.post("/v1/grants", json=body, headers=admin)


async def dataset(client: Any, admin: Any, name: str, audience: list[str], **extra: Any) -> Any:
    body = {"owner": "user:o", "sensitivity": "restricted", "intended_audience": audience, **extra}
    return await client.put(f"/v1/datasets/{name}", json=body, headers=admin)


async def clean_scan(client: Any, admin: Any) -> None:
    scan = (await client.post("/v1/scan", headers=admin)).json()
    assert (scan["opened"], scan["resolved"], scan["updated"]) == (0, 0, 0), scan


async def decision(client: Any, tokens: Any, principal: str, name: str) -> tuple[str, str]:
    result = await check(client, tokens, principal, name)
    return result["decision"], result["reason"]["code"]


async def audience_owned_by_idp(app: FastAPI, client: Any, admin: Any) -> None:
    """act.keys (block) is meant for the IdP's group:sec = {u1}; the IdP's group:eng = {u1}
    may read it (a grant that widened nothing: u1 is in the audience)."""
    await claim(app, "group:sec")
    await claim(app, "group:eng")
    await idp(app, provisioning.change_members, group="group:sec", add=["user:u1"])
    await idp(app, provisioning.change_members, group="group:eng", add=["user:u1"])
    assert (await dataset(client, admin, "act.keys", ["group:sec"])).status_code == 201
    r = await grant(client, admin, "group:eng", "act.keys")
    assert r.status_code == 201, r.text
    assert await exposure(client, admin, "act.keys") == (1, 0)


async def test_idp_removing_a_user_from_the_audience_group_holds_them(app, client, admin, tokens):
    await audience_owned_by_idp(app, client, admin)
    done = await idp(app, provisioning.change_members, group="group:sec", remove=["user:u1"])
    assert [(h.principal, h.dataset) for h in done.holds_opened] == [("user:u1", "act.keys")]
    assert await decision(client, tokens, "user:u1", "act.keys") == ("deny", "held_by_guard")
    assert await exposure(client, admin, "act.keys") == (0, 0)
    await clean_scan(client, admin)


async def test_nested_audience_group_removal_is_held(app, client, admin, tokens):
    """The audience is the API's group:research, which holds the IdP's group:sec."""
    await claim(app, "group:sec")
    await claim(app, "group:eng")
    await idp(app, provisioning.change_members, group="group:sec", add=["user:u1"])
    await idp(app, provisioning.change_members, group="group:eng", add=["user:u1"])
    r = await client.put(
        "/v1/groups/research/members", json={"members": ["group:sec"]}, headers=admin
    )
    assert r.status_code == 200, r.text
    assert (await dataset(client, admin, "act.keys", ["group:research"])).status_code == 201
    assert (await grant(client, admin, "group:eng", "act.*")).status_code == 201
    await idp(app, provisioning.change_members, group="group:sec", remove=["user:u1"])
    assert await decision(client, tokens, "user:u1", "act.keys") == ("deny", "held_by_guard")
    await clean_scan(client, admin)


async def test_idp_deleting_the_audience_group_holds_its_members(app, client, admin, tokens):
    await audience_owned_by_idp(app, client, admin)
    await idp(app, provisioning.release_group, group="group:sec")
    assert await decision(client, tokens, "user:u1", "act.keys") == ("deny", "held_by_guard")
    await clean_scan(client, admin)


async def test_a_released_hold_comes_back_when_the_user_leaves_the_audience(
    app, client, admin, tokens
):
    await audience_owned_by_idp(app, client, admin)
    await idp(app, provisioning.change_members, group="group:sec", remove=["user:u1"])
    await idp(app, provisioning.change_members, group="group:sec", add=["user:u1"])
    assert await decision(client, tokens, "user:u1", "act.keys") == ("allow", "granted")
    assert await holds(client, admin) == []
    await idp(app, provisioning.change_members, group="group:sec", remove=["user:u1"])
    assert await decision(client, tokens, "user:u1", "act.keys") == ("deny", "held_by_guard")
    await clean_scan(client, admin)


async def test_a_group_added_into_an_idp_group_holds_its_members_and_later_ones(
    app, client, admin, tokens
):
    await claim(app, "group:eng")
    await claim(app, "group:ops")
    await idp(app, provisioning.change_members, group="group:ops", add=["user:x1"])
    assert (await dataset(client, admin, "act.keys", ["user:r1"])).status_code == 201
    assert (await grant(client, admin, "group:eng", "act.*")).status_code == 201
    await idp(app, provisioning.change_members, group="group:eng", add=["group:ops"])
    assert await decision(client, tokens, "user:x1", "act.keys") == ("deny", "held_by_guard")
    await idp(app, provisioning.change_members, group="group:ops", add=["user:x2"])
    assert await decision(client, tokens, "user:x2", "act.keys") == ("deny", "held_by_guard")
    # r1 (the audience) joins ops: may read; x1 and x2 stay held
    await idp(app, provisioning.change_members, group="group:ops", add=["user:r1"])
    assert await decision(client, tokens, "user:r1", "act.keys") == ("allow", "granted")
    assert await decision(client, tokens, "user:x1", "act.keys") == ("deny", "held_by_guard")
    assert await exposure(client, admin, "act.keys") == (1, 0)
    await clean_scan(client, admin)


async def test_export_and_expiring_denies_are_held(app, client, admin, tokens):
    from datetime import UTC, datetime, timedelta

    await claim(app, "group:eng")
    assert (await dataset(client, admin, "act.keys", ["user:r1"])).status_code == 201
    soon = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    r = await grant(client, admin, "group:eng", "act.keys", effect="deny", expires_at=soon)
    assert r.status_code == 201, r.text
    assert (await grant(client, admin, "group:eng", "act.keys")).status_code == 201
    assert (await grant(client, admin, "group:eng", "act.keys", action="export")).status_code == 201
    await idp(app, provisioning.change_members, group="group:eng", add=["user:u1"])
    found = await holds(client, admin)
    assert [(h["principal"], h["dataset"]) for h in found] == [("user:u1", "act.keys")]
    r = await client.post(
        "/v1/check",
        json={"principal": "user:u1", "dataset": "act.keys", "action": "export", **PURPOSE},
        headers=tokens["check"],
    )
    assert r.json()["reason"]["code"] in ("held_by_guard", "denied_by_grant")
    await clean_scan(client, admin)


async def test_a_hold_does_not_take_away_access_already_accepted(app, client, admin, tokens):
    """u1 reads act.keys through a direct grant whose exposure was accepted. The IdP then
    puts u1 in group:eng, which may read it too: the dataset's readers do not grow, so no hold
    takes away what u1 could read before."""
    await claim(app, "group:eng")
    assert (await dataset(client, admin, "act.keys", ["user:r1"])).status_code == 201
    assert (await grant(client, admin, "group:eng", "act.keys")).status_code == 201
    body = {"principal": "user:u1", "resource": "act.keys", "action": "read", "effect": "allow",
            "justification": "audit"}  # fmt: skip
    r = await approved(client, tokens["policy:write"], admin, "POST", "/v1/grants", body)
    assert r.status_code == 200, r.text
    assert await decision(client, tokens, "user:u1", "act.keys") == ("allow", "granted")
    readers = await exposure(client, admin, "act.keys")
    await idp(app, provisioning.change_members, group="group:eng", add=["user:u1"])
    assert await exposure(client, admin, "act.keys") == readers
    assert await decision(client, tokens, "user:u1", "act.keys") == ("allow", "granted")


async def test_a_hold_outlives_the_membership_behind_it(app, client, admin, tokens):
    """The IdP takes u1 out of group:eng again: the hold it caused goes with the membership,
    so a direct grant made afterwards with its exposure accepted lets u1 read."""
    await claim(app, "group:eng")
    assert (await dataset(client, admin, "act.keys", ["user:r1"])).status_code == 201
    assert (await grant(client, admin, "group:eng", "act.keys")).status_code == 201
    await idp(app, provisioning.change_members, group="group:eng", add=["user:u1"])
    await idp(app, provisioning.change_members, group="group:eng", remove=["user:u1"])
    body = {"principal": "user:u1", "resource": "act.keys", "action": "read", "effect": "allow",
            "justification": "audit"}  # fmt: skip
    r = await approved(client, tokens["policy:write"], admin, "POST", "/v1/grants", body)
    assert r.status_code == 200, r.text
    assert await decision(client, tokens, "user:u1", "act.keys") == ("allow", "granted")


async def test_a_user_added_while_inactive_is_held_on_reactivation(app, client, admin, tokens):
    await claim(app, "group:eng")
    assert (await dataset(client, admin, "act.keys", ["user:r1"])).status_code == 201
    assert (await grant(client, admin, "group:eng", "act.keys")).status_code == 201
    await idp(app, provisioning.set_active, principal="user:u1", active=False)
    await idp(app, provisioning.change_members, group="group:eng", add=["user:u1"])
    assert await decision(client, tokens, "user:u1", "act.keys") == ("deny", "principal_inactive")
    await idp(app, provisioning.set_active, principal="user:u1", active=True)
    assert await decision(client, tokens, "user:u1", "act.keys") == ("deny", "held_by_guard")
    assert await exposure(client, admin, "act.keys") == (0, 0)
    await clean_scan(client, admin)


async def test_scim_rename_and_deactivate_in_one_transaction(app, client, admin, tokens, settings):
    """As the SCIM layer does it: rename e1 to e2 and deactivate e2 in one transaction; this
    worker and a fresh one agree that e2 reads nothing."""
    from app.main import create_app

    await claim(app, "group:eng")
    await idp(app, provisioning.change_members, group="group:eng", add=["user:e1"])
    assert (await dataset(client, admin, "act.keys", ["group:eng"])).status_code == 201
    assert (await grant(client, admin, "group:eng", "act.keys")).status_code == 201
    assert await decision(client, tokens, "user:e1", "act.keys") == ("allow", "granted")
    async with app.state.sessionmaker() as session, session.begin():
        await provisioning.rename_user(session, old="user:e1", new="user:e2", actor="scim:okta")
        await provisioning.set_active(session, principal="user:e2", active=False, actor="scim")
    assert await decision(client, tokens, "user:e2", "act.keys") == ("deny", "principal_inactive")
    other = create_app(settings)
    async with other.router.lifespan_context(other):
        import httpx

        transport = httpx.ASGITransport(app=other)
        async with httpx.AsyncClient(transport=transport, base_url="http://b.test") as b:
            assert await decision(b, tokens, "user:e2", "act.keys") == (
                "deny",
                "principal_inactive",
            )
    await clean_scan(client, admin)


async def test_a_big_group_added_by_the_idp_is_held_not_refused(app, client, admin, tokens):
    """Past the analyser's small-change shortcuts (64 leaves, 50 touched)."""
    await claim(app, "group:eng")
    await claim(app, "group:all")
    users = [f"user:m{i}" for i in range(80)]
    await idp(app, provisioning.change_members, group="group:all", add=users)
    assert (await dataset(client, admin, "act.keys", ["user:r1", "user:m3"])).status_code == 201
    assert (await grant(client, admin, "group:eng", "act.*")).status_code == 201
    done = await idp(app, provisioning.change_members, group="group:eng", add=["group:all"])
    assert len(done.holds_opened) == 79
    assert await decision(client, tokens, "user:m7", "act.keys") == ("deny", "held_by_guard")
    assert await decision(client, tokens, "user:m3", "act.keys") == ("allow", "granted")
    done = await idp(app, provisioning.change_members, group="group:all", remove=users[:40])
    # those who left no longer need a hold: released (m0..m39 but m3), m40..m79 stay held
    assert len(done.holds_released) == 39
    assert len(await holds(client, admin, "?limit=500")) == 40
    await clean_scan(client, admin)
    # the audience grows to take in everyone (40 more: past the limit, two people decide it):
    # every hold released
    r = await dataset(client, admin, "act.keys", ["group:all", "user:r1"])
    assert r.status_code == 409 and r.json()["growth"][0]["added"] == 40, r.text
    body = {
        "owner": "user:o",
        "sensitivity": "restricted",
        "intended_audience": ["group:all", "user:r1"],
    }
    r = await approved(client, tokens["policy:write"], admin, "PUT", "/v1/datasets/act.keys", body)
    assert r.status_code == 200, r.text
    assert await holds(client, admin, "?limit=500") == []
    assert await decision(client, tokens, "user:m70", "act.keys") == ("allow", "granted")
    await clean_scan(client, admin)


async def test_a_hold_is_released_only_through_an_approval(app, client, admin, tokens):
    """Releasing a hold lets its principal read from outside the audience: two people decide
    it, and the exposure that opens is accepted with the approval."""
    await claim(app, "group:eng")
    assert (await dataset(client, admin, "act.keys", ["user:r1"])).status_code == 201
    assert (await grant(client, admin, "group:eng", "act.keys")).status_code == 201
    await idp(app, provisioning.change_members, group="group:eng", add=["user:u1"])
    [hold] = await holds(client, admin)
    r = await client.post(f"/v1/holds/{hold['id']}/release", headers=admin)
    assert r.status_code == 403 and r.json()["approvals"] == "/v1/approvals", r.text
    path = f"/v1/holds/{hold['id']}/release"
    r = await approved(client, tokens["policy:write"], admin, "POST", path, reason="u1 on call")
    assert r.status_code == 200, r.text
    result = r.json()["result"]
    assert result["hold"]["released_by"] == "admin"
    assert "u1 on call" in result["hold"]["release_reason"]
    [finding] = result["findings_opened"]
    assert (finding["status"], finding["excess_sample"]) == ("accepted", ["user:u1"])
    assert await holds(client, admin) == []
    assert await decision(client, tokens, "user:u1", "act.keys") == ("allow", "granted")
    # released already: a second request cannot apply, and is refused when made
    r = await request(client, tokens["policy:write"], "POST", path)
    assert r.status_code == 409 and "released already" in r.json()["detail"], r.text
    await clean_scan(client, admin)


async def test_plan_apply_releases_holds_and_a_plan_does_not(app, client, admin, tokens):
    await claim(app, "group:eng")
    assert (await dataset(client, admin, "act.keys", ["group:research"])).status_code == 201
    assert (await grant(client, admin, "group:eng", "act.keys")).status_code == 201
    await idp(app, provisioning.change_members, group="group:eng", add=["user:u1"])
    doc = {"groups": {"research": ["user:u1"]}}
    r = await client.post("/v1/policy/plan", json=doc, headers=admin)
    assert r.status_code == 200, r.text
    assert len(await holds(client, admin)) == 1
    r = await client.post("/v1/policy/apply", json=doc, headers=admin)
    assert r.status_code == 200, r.text
    assert await holds(client, admin) == []
    assert await decision(client, tokens, "user:u1", "act.keys") == ("allow", "granted")
    assert len(await alerts(client, admin, "access.released")) == 1
    await clean_scan(client, admin)


async def test_rename_onto_an_existing_principal(app, client, admin, tokens):
    """e1 (in the IdP's eng, which may read act.keys) is renamed onto x9, who exists already
    outside the audience: x9 may not read act.keys without a hold."""
    await claim(app, "group:eng")
    await idp(app, provisioning.change_members, group="group:eng", add=["user:e1"])
    r = await client.put("/v1/groups/other/members", json={"members": ["user:x9"]}, headers=admin)
    assert r.status_code == 200
    assert (await dataset(client, admin, "act.keys", ["user:e1"])).status_code == 201
    assert (await grant(client, admin, "group:eng", "act.keys")).status_code == 201
    await idp(app, provisioning.rename_user, old="user:e1", new="user:x9")
    assert await decision(client, tokens, "user:x9", "act.keys") == ("deny", "held_by_guard")
    await clean_scan(client, admin)


async def test_leaving_a_denied_idp_group_is_held(app, client, admin, tokens):
    """group:contractors (IdP) may not read act.keys; u1 is in it and in eng (which may).
    The IdP takes u1 out of contractors, then deletes contractors (c2 in it)."""
    await claim(app, "group:eng")
    await claim(app, "group:contractors")
    for group in ("group:eng", "group:contractors"):
        await idp(app, provisioning.change_members, group=group, add=["user:u1", "user:c2"])
    assert (await dataset(client, admin, "act.keys", ["user:r1"])).status_code == 201
    r = await grant(client, admin, "group:contractors", "act.keys", effect="deny")
    assert r.status_code == 201
    assert (await grant(client, admin, "group:eng", "act.*")).status_code == 201
    await idp(app, provisioning.change_members, group="group:contractors", remove=["user:u1"])
    assert await decision(client, tokens, "user:u1", "act.keys") == ("deny", "held_by_guard")
    await idp(app, provisioning.release_group, group="group:contractors")
    assert await decision(client, tokens, "user:c2", "act.keys") == ("deny", "held_by_guard")
    assert await exposure(client, admin, "act.keys") == (0, 0)
    await clean_scan(client, admin)


async def test_forgotten_then_recreated_user(app, client, admin, tokens):
    """Deleted by the IdP while held, created again (SCIM create: set_active True), put back in
    eng: still held on act.keys, and the stale guard hold does not block them once they are
    in the audience."""
    await claim(app, "group:eng")
    assert (await dataset(client, admin, "act.keys", ["group:research"])).status_code == 201
    assert (await grant(client, admin, "group:eng", "act.keys")).status_code == 201
    await idp(app, provisioning.change_members, group="group:eng", add=["user:u1"])
    await idp(app, provisioning.forget_user, principal="user:u1")
    await idp(app, provisioning.set_active, principal="user:u1", active=True)
    await idp(app, provisioning.change_members, group="group:eng", add=["user:u1"])
    assert await decision(client, tokens, "user:u1", "act.keys") == ("deny", "held_by_guard")
    r = await client.post("/v1/groups/research/members", json={"member": "user:u1"}, headers=admin)
    assert r.status_code == 200, r.text
    assert await decision(client, tokens, "user:u1", "act.keys") == ("allow", "granted")
    await clean_scan(client, admin)


async def test_joining_a_group_nested_in_the_audience_releases_the_hold(app, client, admin, tokens):
    await claim(app, "group:eng")
    await claim(app, "group:sec")
    r = await client.put(
        "/v1/groups/research/members", json={"members": ["group:sub", "group:sec"]}, headers=admin
    )
    assert r.status_code == 200, r.text
    assert (await dataset(client, admin, "act.keys", ["group:research"])).status_code == 201
    assert (await grant(client, admin, "group:eng", "act.keys")).status_code == 201
    await idp(app, provisioning.change_members, group="group:eng", add=["user:u1", "user:u2"])
    assert len(await holds(client, admin)) == 2
    r = await client.post("/v1/groups/sub/members", json={"member": "user:u1"}, headers=admin)
    assert r.status_code == 200, r.text
    await idp(app, provisioning.change_members, group="group:sec", add=["user:u2"])
    assert await holds(client, admin) == []
    assert await decision(client, tokens, "user:u1", "act.keys") == ("allow", "granted")
    assert await decision(client, tokens, "user:u2", "act.keys") == ("allow", "granted")
    await clean_scan(client, admin)


async def test_several_idp_changes_in_one_transaction(app, client, admin, tokens, settings):
    """A change, then a call that changes nothing after the lock, in one transaction: the
    state this worker publishes is the database's."""
    from app.main import create_app

    await claim(app, "group:eng")
    assert (await dataset(client, admin, "act.keys", ["user:r1"])).status_code == 201
    assert (await grant(client, admin, "group:eng", "act.keys")).status_code == 201
    await idp(app, provisioning.set_active, principal="user:zz", active=False)
    async with app.state.sessionmaker() as session, session.begin():
        await provisioning.change_members(session, group="group:eng", add=["user:u1"], actor="s")
        await provisioning.forget_user(session, principal="user:zz", actor="s")
        await provisioning.change_members(session, group="group:eng", add=["user:u2"], actor="s")
    assert await decision(client, tokens, "user:u1", "act.keys") == ("deny", "held_by_guard")
    assert await decision(client, tokens, "user:u2", "act.keys") == ("deny", "held_by_guard")
    other = create_app(settings)
    async with other.router.lifespan_context(other):
        import httpx

        transport = httpx.ASGITransport(app=other)
        async with httpx.AsyncClient(transport=transport, base_url="http://b.test") as b:
            for user in ("user:u1", "user:u2"):
                assert await decision(b, tokens, user, "act.keys") == ("deny", "held_by_guard")
    await clean_scan(client, admin)


async def test_a_deactivated_user_reads_no_dataset_registered_later(app, client, admin, tokens):
    await claim(app, "group:eng")
    await idp(app, provisioning.change_members, group="group:eng", add=["user:e1"])
    assert (await grant(client, admin, "group:eng", "act.*")).status_code == 201
    assert (await grant(client, admin, "group:eng", "act.*", action="export")).status_code == 201
    await idp(app, provisioning.set_active, principal="user:e1", active=False)
    assert (await dataset(client, admin, "act.new", ["user:r1"])).status_code == 201
    for action in ("read", "export", "write"):
        r = await client.post(
            "/v1/check",
            json={"principal": "user:e1", "dataset": "act.new", "action": action, **PURPOSE},
            headers=tokens["check"],
        )
        assert r.json()["reason"]["code"] == "principal_inactive", (action, r.json())
    assert await exposure(client, admin, "act.new") == (0, 0)
    await clean_scan(client, admin)


async def test_a_guard_hold_keeps_write_access_it_did_not_widen(app, client, admin, tokens):
    """u1 may write act.keys (a pipeline's job); joining eng (read) through the IdP is held for
    the reading actions only: u1's job keeps writing."""
    await claim(app, "group:eng")
    assert (await dataset(client, admin, "act.keys", ["user:r1"])).status_code == 201
    assert (await grant(client, admin, "group:eng", "act.keys")).status_code == 201
    assert (await grant(client, admin, "user:u1", "act.keys", action="write")).status_code == 201
    await idp(app, provisioning.change_members, group="group:eng", add=["user:u1"])
    assert await decision(client, tokens, "user:u1", "act.keys") == ("deny", "held_by_guard")
    r = await client.post(
        "/v1/check",
        json={"principal": "user:u1", "dataset": "act.keys", "action": "write", **PURPOSE},
        headers=tokens["check"],
    )
    assert r.json()["decision"] == "allow", r.text


async def test_two_idp_requests_racing(app, client, admin, tokens, database_url):
    """PostgreSQL: while one IdP change holds the policy lock, another on the same dataset
    (and a repeat of the first) waits for it; neither is lost, the state is the database's."""
    import asyncio

    import pytest

    if database_url.startswith("sqlite"):
        pytest.skip("SQLite writers take the lock at BEGIN IMMEDIATE")
    await claim(app, "group:eng")
    await claim(app, "group:sec")
    assert (await dataset(client, admin, "act.keys", ["group:sec"])).status_code == 201
    assert (await grant(client, admin, "group:eng", "act.keys")).status_code == 201
    maker = app.state.sessionmaker
    async with maker() as first:
        await first.begin()
        await provisioning.change_members(first, group="group:eng", add=["user:u1"], actor="s")

        async def later(group: str) -> None:
            async with maker() as session, session.begin():
                await provisioning.change_members(session, group=group, add=["user:u1"], actor="s")

        racing = [asyncio.create_task(later("group:eng")), asyncio.create_task(later("group:sec"))]
        await asyncio.sleep(0.3)
        assert not any(task.done() for task in racing)
        await first.commit()
        await asyncio.gather(*racing)
    assert await decision(client, tokens, "user:u1", "act.keys") == ("allow", "granted")
    assert await holds(client, admin) == []
    await clean_scan(client, admin)


async def test_a_renamed_users_old_name_keeps_no_access(app, client, admin, tokens):
    """e1 (reading hr.pay through a direct grant) is renamed e2 by the IdP: nobody is user:e1
    any more, so user:e1 reads nothing (a new hire given that userName inherits nothing)."""
    await claim(app, "group:eng")
    await idp(app, provisioning.change_members, group="group:eng", add=["user:e1"])
    body = {"owner": "user:o", "sensitivity": "internal", "intended_audience": ["user:e1"]}
    assert (await client.put("/v1/datasets/hr.pay", json=body, headers=admin)).status_code == 201
    assert (await grant(client, admin, "user:e1", "hr.pay")).status_code == 201
    await idp(app, provisioning.rename_user, old="user:e1", new="user:e2")
    assert (await decision(client, tokens, "user:e1", "hr.pay"))[0] == "deny"
