"""SCIM requests as Okta and Entra send them, refusals that change nothing, and who may call
/scim/v2."""

import httpx

from tests.conftest import Tokens
from tests.identity.support import Scim, assert_scim_error, group_body, patch_body, user_body


async def test_a_refused_patch_changes_nothing(scim: Scim):
    a = await scim.create_group("A")
    b = await scim.create_group("B", [a["id"]])
    u = await scim.create_user("erin")
    r = await scim.patch(
        f"Groups/{a['id']}",
        patch_body(
            {"op": "replace", "path": "displayName", "value": "A2"},
            {"op": "add", "path": "members", "value": [{"value": u["id"]}]},
            {"op": "add", "path": "members", "value": [{"value": b["id"]}]},  # a cycle
        ),
    )
    assert r.status_code == 409 and r.headers["content-type"] == "application/scim+json"
    g = (await scim.get(f"Groups/{a['id']}")).json()
    assert g["displayName"] == "A" and "members" not in g, g
    await scim.create_user("lee")
    r = await scim.patch(
        f"Users/{u['id']}", patch_body({"op": "replace", "path": "userName", "value": "LEE"})
    )
    assert_scim_error(r, 409, "uniqueness")
    assert (await scim.get(f"Users/{u['id']}")).json()["userName"] == "erin"


async def test_a_refused_create_adopts_nothing(
    scim: Scim, client: httpx.AsyncClient, admin: dict[str, str]
):
    r = await client.put("/v1/groups/eng/members", json={"members": ["user:zed"]}, headers=admin)
    assert r.status_code in (200, 201), r.text
    r = await scim.post("Groups", {**group_body("Eng"), "members": [{"value": "nope"}]})
    assert_scim_error(r, 400, "invalidValue")
    body = {"members": ["user:zed", "user:amy"]}
    r = await client.put("/v1/groups/eng/members", json=body, headers=admin)
    assert r.status_code == 200, r.text  # still the API's


async def test_what_okta_and_entra_send(scim: Scim):
    u, v = await scim.create_user("frank"), await scim.create_user("gina")
    g = await scim.create_group("Ops", [u["id"]])
    for op in (
        {"op": "add", "path": "members", "value": [{"value": u["id"]}]},
        {"op": "remove", "path": f'members[value eq "{v["id"]}"]'},
        {"op": "Remove", "path": "members", "value": [{"value": "nope"}]},
    ):
        r = await scim.patch(f"Groups/{g['id']}", patch_body(op))
        assert r.status_code == 204, r.text
    r = await scim.patch(
        f"Users/{u['id']}", patch_body({"op": "replace", "value": {"active": False}})
    )
    assert r.status_code == 200 and r.json()["active"] is False, r.text
    op = {"op": "Replace", "path": "active", "value": "True"}
    r = await scim.patch(f"Users/{u['id']}", patch_body(op))
    assert r.status_code == 200 and r.json()["active"] is True, r.text
    op = {"op": "Replace", "path": "userName", "value": "Frank2"}
    assert (await scim.patch(f"Users/{u['id']}", patch_body(op))).status_code == 200
    assert await scim.member_ids(g["id"]) == [u["id"]]
    assert (await scim.listed("Users", filter='userName eq "FRANK2"'))["totalResults"] == 1
    flt = f'members[value eq "{u["id"]}"]'
    found = await scim.listed("Groups", filter=flt, excludedAttributes="members")
    assert found["totalResults"] == 1 and "members" not in found["Resources"][0], found
    assert (await scim.delete(f"Users/{v['id']}")).status_code == 204
    assert_scim_error(await scim.get(f"Users/{v['id']}"), 404)
    assert_scim_error(await scim.delete(f"Users/{v['id']}"), 404)
    assert (await scim.post("Groups", group_body("Eng Team"))).status_code == 201
    assert_scim_error(await scim.post("Groups", group_body("ENG team")), 409, "uniqueness")
    assert (await scim.post("Groups", group_body("eng-team"))).status_code == 201  # eng-team-2
    assert (await scim.post("Users", user_body("x" * 128))).status_code == 201
    assert_scim_error(await scim.post("Users", user_body("y" * 129)), 400, "invalidValue")


async def test_a_deleted_member_group_leaves_its_parent(
    scim: Scim, client: httpx.AsyncClient, admin: dict[str, str]
):
    u = await scim.create_user("hal")
    child = await scim.create_group("Child", [u["id"]])
    parent = await scim.create_group("Parent", [child["id"]])
    assert await scim.member_ids(parent["id"]) == [child["id"]]
    assert (await scim.delete(f"Groups/{child['id']}")).status_code == 204
    assert await scim.member_ids(parent["id"]) == []
    assert (await client.get("/v1/groups/parent", headers=admin)).json()["members"] == []
    assert_scim_error(await scim.get(f"Groups/{child['id']}"), 404)
    assert await scim.member_ids((await scim.create_group("Child"))["id"]) == []


async def test_only_scim_or_admin_tokens_reach_scim(
    client: httpx.AsyncClient, tokens: Tokens, scim: Scim
):
    u = await scim.create_user("ivy")
    paths = [
        *(("GET", p) for p in ("Users", "Groups", "ServiceProviderConfig", "Schemas")),
        *(("GET", p) for p in ("ResourceTypes", "ResourceTypes/User", "Me", f"Users/{u['id']}")),
        *((m, f"Users/{u['id']}") for m in ("PATCH", "PUT", "DELETE")),
        *(("POST", p) for p in ("Users", "Groups", "Users/.search", ".search", "Bulk")),
    ]
    for scope in ("check", "audit:read", "policy:write", "alerts:read", "metrics:read", None):
        headers = tokens[scope] if scope else {}
        for m, p in paths:
            r = await client.request(m, f"/scim/v2/{p}", headers=headers, json={})
            assert r.status_code in (401, 403, 404, 405), (scope, m, p, r.text[:200])
            assert r.headers["content-type"] == "application/scim+json", (scope, m, p)
    assert (await client.get("/scim/v2/Users", headers=tokens["admin"])).status_code == 200
    assert (await scim.get(f"Users/{u['id']}")).status_code == 200


async def test_every_scim_write_is_trailed_with_its_token(
    client: httpx.AsyncClient, admin: dict[str, str], scim: Scim
):
    u = await scim.create_user("jay")
    g = await scim.create_group("Jays", [u["id"]])
    await scim.patch(f"Groups/{g['id']}", patch_body({"op": "remove", "path": "members"}))
    await scim.put(f"Users/{u['id']}", user_body("jay", displayName="J"))
    await scim.delete(f"Groups/{g['id']}")
    await scim.delete(f"Users/{u['id']}")
    r = await client.get("/v1/admin/trail", params={"token_name": "scim"}, headers=admin)
    assert [i["method"] for i in r.json()["items"]] == [
        "DELETE",
        "DELETE",
        "PUT",
        "PATCH",
        "POST",
        "POST",
    ]


async def test_malformed_requests_are_scim_400s(scim: Scim):
    await scim.create_group("Eng")
    for q in (
        "attributes=",
        "excludedAttributes=",
        "attributes=,,",
        "attributes=a.b.c",
        'attributes=members[value eq "x"]',
        "count=-5",
        "startIndex=0",
        "count=10000",
    ):
        for path in ("Groups", "Users"):
            r = await scim.get(f"{path}?{q}")
            assert r.status_code in (200, 400), (q, r.text)
    for flt in (
        "(" * 3000 + 'userName eq "a"' + ")" * 3000,
        'userName eq "a\x00b"',
        "not (" * 2000 + 'userName eq "a"' + ")" * 2000,
    ):
        r = await scim.post(
            "Users/.search",
            {"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "filter": flt},
        )
        assert r.status_code in (200, 400), r.text[:300]
    r = await scim.request(
        "POST", "Users", content=b'{"schemas":', headers={"content-type": "text/plain"}
    )
    assert_scim_error(r, 400, "invalidSyntax")
    assert (await scim.request("POST", "Users", content=b"[" * 100000)).status_code == 400
