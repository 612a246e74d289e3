"""What the IdP's SCIM pushes do to access, seen through /v1/check: members of an IdP group
read what the group may; a deactivated or deleted user reads nothing from the next check on; a
renamed user keeps their groups under the new name; the API cannot change an IdP group."""

from typing import Any

import httpx

from tests.conftest import Tokens
from tests.identity.support import Scim, patch_body


async def _decision(client: httpx.AsyncClient, tokens: Tokens, principal: str) -> tuple:
    r = await client.post(
        "/v1/check",
        json={"principal": principal, "dataset": "hr.reviews", "action": "read"},
        headers=tokens["check"],
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body["decision"], body["reason"]["code"]


async def _dataset_for(client: httpx.AsyncClient, admin: dict[str, str], principal: str) -> None:
    body = {"owner": "user:o", "sensitivity": "internal", "intended_audience": [principal]}
    r = await client.put("/v1/datasets/hr.reviews", json=body, headers=admin)
    assert r.status_code == 201, r.text
    grant = {"principal": principal, "resource": "hr.reviews", "action": "read", "effect": "allow"}
    r = await client.post("/v1/grants", json=grant, headers=admin)
    assert r.status_code == 201, r.text


async def test_idp_group_members_read_what_the_group_may(
    scim: Scim, client: httpx.AsyncClient, admin: dict[str, str], tokens: Tokens
):
    alice, bob = await scim.create_user("alice"), await scim.create_user("bob")
    hr = await scim.create_group("HR", [alice["id"]])
    await _dataset_for(client, admin, "group:hr")
    assert await _decision(client, tokens, "user:alice") == ("allow", "granted")
    assert (await _decision(client, tokens, "user:bob"))[0] == "deny"
    r = await scim.patch(
        f"Groups/{hr['id']}",
        patch_body(
            {"op": "remove", "path": f'members[value eq "{alice["id"]}"]'},
            {"op": "add", "path": "members", "value": [{"value": bob["id"]}]},
        ),
    )
    assert r.status_code == 204, r.text
    assert (await _decision(client, tokens, "user:alice"))[0] == "deny"
    assert await _decision(client, tokens, "user:bob") == ("allow", "granted")
    # the API cannot change the IdP's group
    r = await client.put("/v1/groups/hr/members", json={"members": []}, headers=admin)
    assert r.status_code == 409, r.text
    assert await scim.member_ids(hr["id"]) == [bob["id"]]


async def test_deactivation_and_deletion_end_access_at_the_next_check(
    scim: Scim, client: httpx.AsyncClient, admin: dict[str, str], tokens: Tokens
):
    await _dataset_for(client, admin, "user:alice")
    alice = await scim.create_user("alice")
    url = f"Users/{alice['id']}"
    assert (await _decision(client, tokens, "user:alice"))[0] == "allow"
    r = await scim.patch(url, patch_body({"op": "Replace", "path": "active", "value": "False"}))
    assert r.status_code == 200, r.text
    assert await _decision(client, tokens, "user:alice") == ("deny", "principal_inactive")
    r = await scim.patch(url, patch_body({"op": "replace", "value": {"active": True}}))
    assert r.status_code == 200, r.text
    assert (await _decision(client, tokens, "user:alice"))[0] == "allow"
    assert (await scim.delete(url)).status_code == 204
    assert await _decision(client, tokens, "user:alice") == ("deny", "principal_inactive")
    await scim.create_user("alice")  # back: the inactive hold is lifted
    assert (await _decision(client, tokens, "user:alice"))[0] == "allow"


async def test_a_user_created_inactive_reads_nothing(
    scim: Scim, client: httpx.AsyncClient, admin: dict[str, str], tokens: Tokens
):
    await _dataset_for(client, admin, "user:alice")
    await scim.create_user("Alice", active=False)
    assert await _decision(client, tokens, "user:alice") == ("deny", "principal_inactive")


async def test_a_renamed_user_keeps_their_groups_under_the_new_name(
    scim: Scim, client: httpx.AsyncClient, admin: dict[str, str], tokens: Tokens
):
    alice = await scim.create_user("alice")
    await scim.create_group("HR", [alice["id"]])
    await _dataset_for(client, admin, "group:hr")
    r = await scim.put(f"Users/{alice['id']}", {**alice, "userName": "alice.smith"})
    assert r.status_code == 200, r.text
    assert (await _decision(client, tokens, "user:alice.smith"))[0] == "allow"
    assert (await _decision(client, tokens, "user:alice"))[0] == "deny"
