"""What the IdP's changes do to access (`app.identity.provisioning`), below the SCIM layer:
holds instead of refusals on block-guarded datasets, released when the principal joins the
audience; deactivation and deletion deny everything; IdP-owned groups refuse the API."""

from typing import Any

import httpx
from fastapi import FastAPI

from app.db import begin_write
from app.identity import provisioning

IDP = "scim:okta"


async def idp(app: FastAPI, call: Any, **kwargs: Any) -> provisioning.Provisioned:
    """One IdP change in its own committed transaction, as a SCIM request makes it."""
    async with app.state.sessionmaker() as session, session.begin():
        await begin_write(session)
        result: provisioning.Provisioned = await call(session, actor=IDP, **kwargs)
    return result


async def claim(app: FastAPI, group: str) -> None:
    async with app.state.sessionmaker() as session, session.begin():
        await begin_write(session)
        await provisioning.claim_group(session, group=group, actor=IDP)


async def check(client: httpx.AsyncClient, tokens, principal: str, dataset: str) -> dict[str, Any]:
    r = await client.post(
        "/v1/check",
        json={
            "principal": principal,
            "dataset": dataset,
            "action": "read",
            "purpose": "model-training",
        },
        headers=tokens["check"],
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def exposure(client: httpx.AsyncClient, admin, dataset: str) -> tuple[int, int]:
    body = (await client.get(f"/v1/datasets/{dataset}/exposure", headers=admin)).json()
    return body["effective_count"], body["excess_count"]


async def alerts(client: httpx.AsyncClient, admin, kind: str) -> list[dict[str, Any]]:
    items = (await client.get("/v1/alerts?limit=1000", headers=admin)).json()["items"]
    return [a for a in items if a["type"] == kind]


async def holds(client: httpx.AsyncClient, admin, query: str = "") -> list[dict[str, Any]]:
    r = await client.get(f"/v1/holds{query}", headers=admin)
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


async def setup(app: FastAPI, client: httpx.AsyncClient, admin) -> None:
    """act.keys: restricted (block), meant for group:research (API-owned, holding r1); the
    IdP's group:eng holds e1 and may read it (a grant made while that widened nothing)."""
    r = await client.put(
        "/v1/groups/research/members", json={"members": ["user:r1", "user:e1"]}, headers=admin
    )
    assert r.status_code == 200, r.text
    body = {"owner": "user:o", "sensitivity": "restricted", "intended_audience": ["group:research"]}
    assert (await client.put("/v1/datasets/act.keys", json=body, headers=admin)).status_code == 201
    await claim(app, "group:eng")
    await idp(app, provisioning.change_members, group="group:eng", add=["user:e1"])
    grant = {"principal": "group:eng", "resource": "act.keys", "action": "read",
             "effect": "allow", "justification": "eng reads keys"}  # fmt: skip
    assert (await client.post("/v1/grants", json=grant, headers=admin)).status_code == 201


async def test_an_idp_membership_that_widens_a_block_dataset_is_held_not_refused(
    app, client, admin, tokens
):
    await setup(app, client, admin)
    assert (await check(client, tokens, "user:e1", "act.keys"))["decision"] == "allow"
    before = await exposure(client, admin, "act.keys")

    done = await idp(app, provisioning.change_members, group="group:eng", add=["user:u1"])

    assert [(h.principal, h.dataset, h.kind) for h in done.holds_opened] == [
        ("user:u1", "act.keys", "guard")
    ]
    result = await check(client, tokens, "user:u1", "act.keys")
    assert (result["decision"], result["reason"]["code"]) == ("deny", "held_by_guard")
    assert (await check(client, tokens, "user:e1", "act.keys"))["decision"] == "allow"
    assert await exposure(client, admin, "act.keys") == before  # nothing widened
    listed = await holds(client, admin, "?dataset=act.keys&principal=user:u1")
    assert [(h["principal"], h["group_id"], h["released_at"]) for h in listed] == [
        ("user:u1", "group:eng", None)
    ]
    held = await alerts(client, admin, "access.held")
    assert [(a["dataset"], "user:u1" in a["summary"]) for a in held] == [("act.keys", True)]
    assert (await client.get("/v1/findings", headers=admin)).json()["items"] == []
    # The membership itself stands: the IdP is the truth about groups.
    group = (await client.get("/v1/groups/eng", headers=admin)).json()
    assert "user:u1" in group["members"]

    # Joining the audience releases the hold: u1 is meant to read it.
    r = await client.post("/v1/groups/research/members", json={"member": "user:u1"}, headers=admin)
    assert r.status_code == 200, r.text
    assert (await check(client, tokens, "user:u1", "act.keys"))["decision"] == "allow"
    assert await holds(client, admin, "?principal=user:u1") == []
    released = await holds(client, admin, "?principal=user:u1&status=released")
    assert [h["release_reason"] for h in released] == [
        "the principal joined the dataset's intended audience"
    ]
    assert len(await alerts(client, admin, "access.released")) == 1
    scan = (await client.post("/v1/scan", headers=admin)).json()
    assert (scan["opened"], scan["resolved"], scan["updated"]) == (0, 0, 0), scan


async def test_a_repeated_idp_change_changes_nothing_more(app, client, admin, tokens):
    await setup(app, client, admin)
    await idp(app, provisioning.change_members, group="group:eng", add=["user:u1"])
    version = (await client.get("/readyz")).json()["policy_version"]
    again = await idp(app, provisioning.change_members, group="group:eng", add=["user:u1"])
    assert again == provisioning.Provisioned()
    assert (await client.get("/readyz")).json()["policy_version"] == version
    assert len(await holds(client, admin)) == 1


async def test_deactivation_and_deletion_remove_every_access_at_the_next_check(
    app, client, admin, tokens
):
    await setup(app, client, admin)
    own = {"principal": "user:e1", "resource": "open.*", "action": "read", "effect": "allow"}
    assert (await client.post("/v1/grants", json=own, headers=admin)).status_code == 201
    body = {"owner": "user:o", "sensitivity": "internal", "intended_audience": ["user:e1"]}
    assert (
        await client.put("/v1/datasets/open.notes", json=body, headers=admin)
    ).status_code == 201

    await idp(app, provisioning.set_active, principal="user:e1", active=False)
    for dataset in ("act.keys", "open.notes"):
        result = await check(client, tokens, "user:e1", dataset)
        assert (result["decision"], result["reason"]["code"]) == ("deny", "principal_inactive")
    assert [h["dataset"] for h in await holds(client, admin, "?kind=inactive")] == ["*"]
    assert await exposure(client, admin, "act.keys") == (0, 0)  # e1 was the only reader

    await idp(app, provisioning.set_active, principal="user:e1", active=True)
    assert (await check(client, tokens, "user:e1", "open.notes"))["decision"] == "allow"
    assert (await check(client, tokens, "user:e1", "act.keys"))["decision"] == "allow"
    assert await holds(client, admin, "?kind=inactive") == []

    await idp(app, provisioning.forget_user, principal="user:e1")
    for dataset in ("act.keys", "open.notes"):
        result = await check(client, tokens, "user:e1", dataset)
        assert (result["decision"], result["reason"]["code"]) == ("deny", "principal_inactive")
    eng = (await client.get("/v1/groups/eng", headers=admin)).json()
    assert "user:e1" not in eng["members"]
    scan = (await client.post("/v1/scan", headers=admin)).json()
    assert (scan["opened"], scan["resolved"], scan["updated"]) == (0, 0, 0), scan


async def test_an_idp_owned_group_refuses_member_changes_through_the_api(app, client, admin):
    await setup(app, client, admin)
    for r in (
        await client.put("/v1/groups/eng/members", json={"members": []}, headers=admin),
        await client.post("/v1/groups/eng/members", json={"member": "user:x"}, headers=admin),
        await client.delete("/v1/groups/eng/members/user:e1", headers=admin),
        await client.post("/v1/policy/apply", json={"groups": {"eng": ["user:x"]}}, headers=admin),
    ):
        assert r.status_code == 409, r.text
        assert "identity provider" in r.json()["detail"]
    eng = (await client.get("/v1/groups/eng", headers=admin)).json()
    assert eng["members"] == ["user:e1"]


async def test_a_renamed_user_takes_their_memberships_along(app, client, admin, tokens):
    await setup(app, client, admin)
    await idp(app, provisioning.rename_user, old="user:e1", new="user:e2")
    for group in ("eng", "research"):  # the IdP's groups and the API's: the same person
        members = (await client.get(f"/v1/groups/{group}", headers=admin)).json()["members"]
        assert "user:e2" in members and "user:e1" not in members
    assert (await check(client, tokens, "user:e2", "act.keys"))["decision"] == "allow"
    result = await check(client, tokens, "user:e1", "act.keys")
    assert (result["decision"], result["reason"]["code"]) == ("deny", "principal_inactive")


async def test_explain_names_the_hold_behind_a_denial(app, client, admin):
    await setup(app, client, admin)
    done = await idp(app, provisioning.change_members, group="group:eng", add=["user:u1"])
    r = await client.get(
        "/v1/explain",
        params={"principal": "user:u1", "dataset": "act.keys", "purpose": "model-training"},
        headers=admin,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["decision"], body["reason"]["code"]) == ("deny", "held_by_guard")
    denies = [(g["grant_id"], g["hold_id"]) for g in body["grants"] if g["effect"] == "deny"]
    assert denies == [(None, done.holds_opened[0].id)]
