"""What docs/scim.md promises about the IdP's renames, deactivations and deletions, holds, and
adopted API groups, as a user of /v1/check sees it."""

from typing import Any

import httpx

from tests.conftest import Tokens
from tests.identity.support import PURPOSE, Scim, patch_body


async def decision(client: httpx.AsyncClient, tokens: Tokens, principal: str, dataset: str):
    body = {"principal": principal, "dataset": dataset, "action": "read", "purpose": PURPOSE}
    r = await client.post("/v1/check", json=body, headers=tokens["check"])
    assert r.status_code == 200, r.text
    return r.json()["decision"], r.json()["reason"]["code"]


async def put_dataset(
    client: httpx.AsyncClient, admin: dict[str, str], dataset: str, sensitivity: str, audience
) -> None:
    body = {"owner": "user:o", "sensitivity": sensitivity, "intended_audience": audience}
    r = await client.put(f"/v1/datasets/{dataset}", json=body, headers=admin)
    assert r.status_code in (200, 201), r.text


async def grant(client: httpx.AsyncClient, admin: dict[str, str], principal: str, dataset: str):
    body = {"principal": principal, "resource": dataset, "action": "read", "effect": "allow"}
    r = await client.post("/v1/grants", json={**body, "justification": "t"}, headers=admin)
    assert r.status_code == 201, r.text


async def holds(client: httpx.AsyncClient, admin: dict[str, str], query: str) -> list[Any]:
    r = await client.get(f"/v1/holds?{query}", headers=admin)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


async def test_a_rename_moves_memberships_and_retires_the_old_name(
    scim: Scim, client: httpx.AsyncClient, admin: dict[str, str], tokens: Tokens
):
    alice = await scim.create_user("alice")
    await scim.create_group("HR", [alice["id"]])
    await put_dataset(client, admin, "hr.reviews", "internal", ["group:hr", "user:alice"])
    await put_dataset(client, admin, "hr.notes", "internal", ["user:alice"])
    await grant(client, admin, "group:hr", "hr.reviews")
    await grant(client, admin, "user:alice", "hr.notes")
    r = await scim.patch(
        f"Users/{alice['id']}", patch_body({"op": "Replace", "path": "userName", "value": "al"})
    )
    assert r.status_code == 200, r.text
    assert await decision(client, tokens, "user:al", "hr.reviews") == ("allow", "granted")
    assert (await decision(client, tokens, "user:alice", "hr.reviews"))[0] == "deny"
    # a grant naming the old principal is not moved (docs/scim.md: re-grant it), and the old
    # name, which nobody in the IdP holds now, reads nothing
    assert (await decision(client, tokens, "user:al", "hr.notes"))[0] == "deny"
    inactive = ("deny", "principal_inactive")
    assert await decision(client, tokens, "user:alice", "hr.notes") == inactive
    assert await decision(client, tokens, "user:alice", "hr.reviews") == inactive


async def test_a_replacement_without_active_keeps_a_deactivated_user_out(
    scim: Scim, client: httpx.AsyncClient, admin: dict[str, str], tokens: Tokens
):
    bob = await scim.create_user("bob")
    await put_dataset(client, admin, "hr.notes", "internal", ["user:bob"])
    await grant(client, admin, "user:bob", "hr.notes")
    r = await scim.patch(
        f"Users/{bob['id']}", patch_body({"op": "replace", "value": {"active": False}})
    )
    assert r.status_code == 200, r.text
    body = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "bob"}
    r = await scim.put(f"Users/{bob['id']}", body)
    assert r.status_code == 200, r.text
    assert r.json().get("active") is not True
    assert await decision(client, tokens, "user:bob", "hr.notes") == ("deny", "principal_inactive")


async def test_a_guard_hold_ends_with_the_membership_and_a_deleted_group_gives_its_id_back(
    scim: Scim, client: httpx.AsyncClient, admin: dict[str, str], tokens: Tokens
):
    r = await client.put("/v1/groups/research/members", json={"members": []}, headers=admin)
    assert r.status_code == 200, r.text
    await put_dataset(client, admin, "act.keys", "restricted", ["group:research"])
    u1 = await scim.create_user("u1")
    eng = await scim.create_group("Eng")
    await grant(client, admin, "group:eng", "act.keys")
    add = {"op": "add", "path": "members", "value": [{"value": u1["id"]}]}
    assert (await scim.patch(f"Groups/{eng['id']}", patch_body(add))).status_code == 204
    assert await decision(client, tokens, "user:u1", "act.keys") == ("deny", "held_by_guard")

    remove = {"op": "remove", "path": f'members[value eq "{u1["id"]}"]'}
    assert (await scim.patch(f"Groups/{eng['id']}", patch_body(remove))).status_code == 204
    assert await holds(client, admin, "principal=user:u1&kind=guard") == []
    released = await holds(client, admin, "principal=user:u1&status=released")
    assert [h["release_reason"] for h in released] == [
        "no grant reaches the principal there any more"
    ]

    # The IdP deletes Eng; the grant to group:eng stays and reaches nobody ...
    assert (await scim.delete(f"Groups/{eng['id']}")).status_code == 204
    r = await client.get("/v1/groups/eng", headers=admin)
    assert r.status_code == 200 and r.json()["members"] == [], r.text
    # ... until the IdP creates a group whose name maps to group:eng again: it is that group
    r2 = await client.put(
        "/v1/groups/research/members", json={"members": ["user:u2"]}, headers=admin
    )
    assert r2.status_code == 200, r2.text
    u2 = await scim.create_user("u2")
    await scim.create_group("ENG", [u2["id"]])
    assert await decision(client, tokens, "user:u2", "act.keys") == ("allow", "granted")


async def test_an_adopted_api_group_has_the_members_the_idp_says(
    scim: Scim, client: httpx.AsyncClient, admin: dict[str, str], tokens: Tokens
):
    r = await client.put("/v1/groups/hr/members", json={"members": ["user:r1"]}, headers=admin)
    assert r.status_code == 200, r.text
    await put_dataset(client, admin, "hr.reviews", "internal", ["group:hr"])
    await grant(client, admin, "group:hr", "hr.reviews")
    hr = await scim.create_group("HR")  # no members, as Okta's Push Groups creates it
    assert await scim.member_ids(hr["id"]) == []
    assert (await decision(client, tokens, "user:r1", "hr.reviews"))[0] == "deny"
