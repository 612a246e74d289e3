"""What the IdP is told matches what it can find again: displayNames compare as scim2-models
compares them (Unicode, any case) on every database, a group's name is free once no group
bears it, and an adopted API group's members are exactly those the IdP sent."""

import httpx

from tests.conftest import Tokens
from tests.identity.support import PURPOSE, Scim, assert_scim_error, group_body, patch_body


async def check(
    client: httpx.AsyncClient, tokens: Tokens, principal: str, dataset: str
) -> tuple[str, str]:
    body = {"principal": principal, "dataset": dataset, "action": "read", "purpose": PURPOSE}
    r = await client.post("/v1/check", json=body, headers=tokens["check"])
    assert r.status_code == 200, r.text
    return r.json()["decision"], r.json()["reason"]["code"]


async def _members(client: httpx.AsyncClient, admin: dict[str, str], gid: str) -> list[str]:
    r = await client.get(f"/v1/groups/{gid}", headers=admin)
    assert r.status_code == 200, r.text
    return list(r.json()["members"])


async def test_display_name_filters_compare_unicode_in_any_case(scim: Scim):
    equipe = await scim.create_group("ÉQUIPE Zed")
    await scim.create_group("Equipe Zed")  # another group: É is not E
    for flt in (
        'displayName eq "ÉQUIPE Zed"',
        'displayName eq "équipe zed"',
        'displayName eq "E\u0301QUIPE ZED"',  # É decomposed (NFD)
    ):
        found = await scim.listed("Groups", filter=flt)
        assert [g["id"] for g in found["Resources"]] == [equipe["id"]], (flt, found)
    amy = await scim.create_user("amy", displayName="Ærø Ölz")
    for flt in ('displayName eq "ærø ölz"', 'displayName eq "ÆRØ ÖLZ"'):
        found = await scim.listed("Users", filter=flt)
        assert [u["id"] for u in found["Resources"]] == [amy["id"]], (flt, found)


async def test_two_groups_never_share_a_unicode_display_name_in_any_case(scim: Scim):
    zed = await scim.create_group("ÉQUIPE Zed")
    for name in ("équipe zed", "E\u0301quipe ZED"):
        r = await scim.post("Groups", group_body(name))
        assert_scim_error(r, 409, "uniqueness", zed["id"])
    ops = await scim.create_group("Ops")
    op = {"op": "replace", "path": "displayName", "value": "Équipe ZED"}
    assert_scim_error(await scim.patch(f"Groups/{ops['id']}", patch_body(op)), 409, "uniqueness")
    op = {"op": "replace", "path": "displayName", "value": "équipe zed"}  # its own, recased
    assert (await scim.patch(f"Groups/{zed['id']}", patch_body(op))).status_code == 204


async def test_a_renamed_groups_old_name_can_be_created_again_with_a_new_id(
    scim: Scim, client: httpx.AsyncClient, admin: dict[str, str]
):
    # Entra/Okta look a group up by displayName, find none, and create it
    amy, bob = await scim.create_user("amy"), await scim.create_user("bob")
    eng = await scim.create_group("Eng", [amy["id"]])
    r = await scim.put(f"Groups/{eng['id']}", group_body("Platform", [amy["id"]]))
    assert r.status_code == 200, r.text
    assert (await scim.listed("Groups", filter='displayName eq "Eng"'))["totalResults"] == 0
    r = await scim.post("Groups", group_body("Eng", [bob["id"]]))
    assert r.status_code == 201, r.text
    # group:eng stays the renamed group's (grants naming it keep their meaning)
    assert await _members(client, admin, "eng") == ["user:amy"]
    assert await _members(client, admin, "eng-2") == ["user:bob"]
    # and again: the next free id
    r = await scim.put(f"Groups/{r.json()['id']}", group_body("Eng 2026", [bob["id"]]))
    assert r.status_code == 200, r.text
    await client.put("/v1/groups/eng-3/members", json={"members": ["user:zed"]}, headers=admin)
    third = await scim.create_group("ENG")
    assert await _members(client, admin, "eng-4") == []  # eng-3 is the API's: not taken
    assert await _members(client, admin, "eng-3") == ["user:zed"]
    assert (await scim.get(f"Groups/{third['id']}")).json()["displayName"] == "ENG"
    # a group of the same name, in any case, is still a 409
    assert_scim_error(await scim.post("Groups", group_body("eng")), 409, "uniqueness")


async def test_a_suffixed_group_id_fits_the_id_limit(
    scim: Scim, client: httpx.AsyncClient, admin: dict[str, str]
):
    name = "a" * 128
    first = await scim.create_group(name)
    assert (await scim.put(f"Groups/{first['id']}", group_body("Other"))).status_code == 200
    await scim.create_group(name)
    assert await _members(client, admin, "a" * 126 + "-2") == []


async def test_an_adopted_api_group_has_exactly_the_members_the_idp_sent(
    scim: Scim, client: httpx.AsyncClient, admin: dict[str, str]
):
    body = {"members": ["user:zed", "user:amy"]}
    assert (await client.put("/v1/groups/sales/members", json=body, headers=admin)).is_success
    assert (await client.put("/v1/groups/ops/members", json=body, headers=admin)).is_success
    # adopted without members: zed and amy, whom the IdP never sent, are no longer in it
    sales = await scim.create_group("Sales")
    assert "members" not in sales
    assert await _members(client, admin, "sales") == []
    # adopted with members: the IdP's list replaces the API's
    amy = await scim.create_user("amy")
    ops = await scim.create_group("Ops", [amy["id"]])
    assert [m["value"] for m in ops["members"]] == [amy["id"]]
    assert await _members(client, admin, "ops") == ["user:amy"]
    # and from now on the group is the IdP's
    r = await client.put("/v1/groups/ops/members", json=body, headers=admin)
    assert r.status_code == 409, r.text


async def test_adopting_a_group_is_never_refused_by_the_guard_and_holds_whom_it_widens(
    scim: Scim, client: httpx.AsyncClient, admin: dict[str, str], tokens: Tokens
):
    """act.keys (block) is meant for group:research = {r1, e1}; the API's group:eng = {e1}
    reads it. The IdP then creates Eng with u1 only."""
    body = {"members": ["user:r1", "user:e1"]}
    assert (await client.put("/v1/groups/research/members", json=body, headers=admin)).is_success
    assert (
        await client.put("/v1/groups/eng/members", json={"members": ["user:e1"]}, headers=admin)
    ).is_success
    dataset = {
        "owner": "user:o",
        "sensitivity": "restricted",
        "intended_audience": ["group:research"],
    }
    assert (await client.put("/v1/datasets/act.keys", json=dataset, headers=admin)).is_success
    grant = {"principal": "group:eng", "resource": "act.keys", "action": "read",
             "effect": "allow", "justification": "eng reads keys"}  # fmt: skip
    assert (await client.post("/v1/grants", json=grant, headers=admin)).status_code == 201
    u1 = await scim.create_user("u1")

    eng = await scim.create_group("Eng", [u1["id"]])

    assert [m["value"] for m in eng["members"]] == [u1["id"]]
    assert await _members(client, admin, "eng") == ["user:u1"]
    assert await check(client, tokens, "user:u1", "act.keys") == ("deny", "held_by_guard")
    assert (await check(client, tokens, "user:e1", "act.keys"))[0] == "deny"  # left eng
    held = (await client.get("/v1/holds?dataset=act.keys", headers=admin)).json()["items"]
    assert [(h["principal"], h["group_id"]) for h in held] == [("user:u1", "group:eng")]
