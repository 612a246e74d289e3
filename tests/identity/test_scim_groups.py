"""SCIM Groups: `group:<id from displayName>` principals whose members are the directory's
memberships; the PATCH bodies Okta and Entra ID really send; refusals change nothing."""

import uuid
from typing import Any

import httpx
import pytest

from tests.identity.support import (
    GROUP,
    SCIM_JSON,
    Scim,
    assert_scim_error,
    group_body,
    patch_body,
)


async def _directory_members(client: httpx.AsyncClient, admin: dict[str, str], gid: str) -> list:
    r = await client.get(f"/v1/groups/{gid.split(':', 1)[1]}", headers=admin)
    assert r.status_code == 200, r.text
    return list(r.json()["members"])


async def test_a_group_is_created_with_members_and_read_back(
    scim: Scim, client: httpx.AsyncClient, admin: dict[str, str]
):
    alice = await scim.create_user("Alice")
    ops = await scim.create_group("Ops")
    r = await scim.post(
        "Groups",
        {
            "schemas": [GROUP],
            "displayName": "Data Science: EU",
            "externalId": "okta-00g1",
            "members": [
                {"value": alice["id"], "display": "alice@example.com"},
                {"value": ops["id"], "type": "Group"},
            ],
        },
    )
    assert r.status_code == 201, r.text
    assert r.headers["content-type"] == SCIM_JSON
    group = r.json()
    assert uuid.UUID(group["id"]).version == 4
    assert r.headers["location"] == group["meta"]["location"]
    assert group["meta"]["resourceType"] == "Group"
    assert (group["displayName"], group["externalId"]) == ("Data Science: EU", "okta-00g1")
    base = "http://aclaudit.test/scim/v2"
    ops_ref, alice_ref = f"{base}/Groups/{ops['id']}", f"{base}/Users/{alice['id']}"
    assert sorted(group["members"], key=lambda m: m["type"]) == [
        {"value": ops["id"], "$ref": ops_ref, "type": "Group", "display": "Ops"},
        {"value": alice["id"], "$ref": alice_ref, "type": "User", "display": "alice@example.com"},
    ]  # the display as sent, else the member's name
    assert (await scim.get(f"Groups/{group['id']}")).json() == group
    # the directory's group, owned by the IdP, with the principals as members
    assert await _directory_members(client, admin, "group:data-science-eu") == [
        "group:ops",
        "user:alice",
    ]


@pytest.mark.parametrize(
    ("display_name", "principal"),
    [
        ("Engineering", "group:engineering"),
        ("  Data  Science / EU  ", "group:data-science-eu"),
        ("ops_team.2026", "group:ops_team.2026"),
        ("R&D", "group:r-d"),
        ("Ünïcode Team", "group:n-code-team"),
    ],
)
async def test_the_group_principal_comes_from_the_display_name(
    scim: Scim, client: httpx.AsyncClient, admin: dict[str, str], display_name: str, principal: str
):
    alice = await scim.create_user("alice")
    await scim.create_group(display_name, [alice["id"]])
    assert await _directory_members(client, admin, principal) == ["user:alice"]


@pytest.mark.parametrize("display_name", ["!!!", "  ", "---", "_x", "é", "x" * 129])
async def test_a_display_name_that_names_no_group_is_a_400(
    scim: Scim, admin: dict[str, str], display_name: str
):
    before = await scim.state(admin)
    r = await scim.post("Groups", group_body(display_name))
    assert_scim_error(r, 400, "invalidValue")
    assert await scim.state(admin) == before


async def test_a_taken_display_name_is_a_409_and_a_taken_group_id_gets_a_suffix(
    scim: Scim, client: httpx.AsyncClient, admin: dict[str, str]
):
    eng = await scim.create_group("Eng Team")
    before = await scim.state(admin)
    for name in ("Eng Team", "eng team", "ENG TEAM"):
        assert_scim_error(await scim.post("Groups", group_body(name)), 409, "uniqueness", eng["id"])
    assert await scim.state(admin) == before
    # another displayName whose id is group:eng-team: the IdP's other group, with its own id
    alice = await scim.create_user("alice")
    await scim.create_group("eng-team", [alice["id"]])
    await scim.create_group("ENG  team!")
    assert await _directory_members(client, admin, "group:eng-team-2") == ["user:alice"]
    assert await _directory_members(client, admin, "group:eng-team-3") == []
    assert await _directory_members(client, admin, "group:eng-team") == []


async def test_two_groups_never_share_a_display_name(scim: Scim, admin: dict[str, str]):
    eng = await scim.create_group("Eng")
    old = await scim.create_group("Old")
    r = await scim.patch(
        f"Groups/{old['id']}", patch_body({"op": "replace", "path": "displayName", "value": "X"})
    )
    assert r.status_code == 204  # group:old, now shown as X
    before = await scim.state(admin)
    assert_scim_error(await scim.post("Groups", group_body("x")), 409, "uniqueness", old["id"])
    for op in (
        {"op": "replace", "path": "displayName", "value": "ENG"},
        {"op": "replace", "value": {"displayName": "eng"}},
    ):
        r = await scim.patch(f"Groups/{old['id']}", patch_body(op))
        assert_scim_error(r, 409, "uniqueness", eng["id"])
    r = await scim.put(f"Groups/{old['id']}", group_body("Eng"))
    assert_scim_error(r, 409, "uniqueness", eng["id"])
    assert await scim.state(admin) == before
    r = await scim.put(f"Groups/{old['id']}", group_body("x"))  # its own name, in another case
    assert r.status_code == 200, r.text


async def test_members_that_are_not_scim_ids_are_a_400_and_nothing_changes(
    scim: Scim, admin: dict[str, str]
):
    alice = await scim.create_user("alice")
    eng = await scim.create_group("eng", [alice["id"]])
    before = await scim.state(admin)
    unknown = str(uuid.uuid4())
    assert_scim_error(
        await scim.post("Groups", group_body("new", [alice["id"], unknown])),
        400,
        "invalidValue",
        unknown,
    )
    for op in (
        {"op": "add", "path": "members", "value": [{"value": unknown}]},
        {"op": "add", "path": "members", "value": [{"value": "user:alice"}]},
        {"op": "replace", "path": "members", "value": [{"value": unknown}]},
        {"op": "add", "path": "members", "value": [{"display": "no value"}]},
    ):
        r = await scim.patch(f"Groups/{eng['id']}", patch_body(op))
        assert_scim_error(r, 400, "invalidValue")
    r = await scim.put(f"Groups/{eng['id']}", group_body("eng", [unknown]))
    assert_scim_error(r, 400, "invalidValue", unknown)
    assert await scim.state(admin) == before


async def test_okta_group_patches(scim: Scim, client: httpx.AsyncClient, admin: dict[str, str]):
    a, b, c = [await scim.create_user(n) for n in ("a", "b", "c")]
    group = await scim.create_group("Okta Group", [a["id"], b["id"]])
    url = f"Groups/{group['id']}"
    # remove by filter and add, in one request; the rename Okta sends with every change
    r = await scim.patch(
        url,
        patch_body(
            {"op": "remove", "path": f'members[value eq "{a["id"]}"]'},
            {"op": "add", "path": "members", "value": [{"value": c["id"], "display": "c@x"}]},
            {"op": "replace", "value": {"id": group["id"], "displayName": "Okta Group"}},
        ),
    )
    assert r.status_code == 204 and r.content == b"", r.text
    assert await scim.member_ids(group["id"]) == sorted([b["id"], c["id"]])
    # the full push
    r = await scim.patch(
        url,
        patch_body({"op": "replace", "path": "members", "value": [{"value": a["id"]}]}),
    )
    assert r.status_code == 204
    assert await scim.member_ids(group["id"]) == [a["id"]]
    # a rename keeps the principal
    r = await scim.patch(
        url, patch_body({"op": "replace", "value": {"id": group["id"], "displayName": "Renamed"}})
    )
    assert r.status_code == 204
    renamed = (await scim.get(url)).json()
    assert renamed["displayName"] == "Renamed"
    assert await _directory_members(client, admin, "group:okta-group") == ["user:a"]
    assert (await scim.listed("Groups", filter='displayName eq "renamed"'))["totalResults"] == 1


async def test_entra_group_patches(scim: Scim):
    a, b = [await scim.create_user(n) for n in ("a", "b")]
    group = await scim.create_group("Entra Group", externalId="e-1")
    url = f"Groups/{group['id']}"
    steps: list[tuple[list[dict[str, Any]], list[dict[str, Any]]]] = [
        ([{"op": "Add", "path": "members", "value": [{"$ref": None, "value": a["id"]}]}], [a]),
        ([{"op": "Add", "path": "members", "value": [{"value": b["id"]}]}], [a, b]),
        ([{"op": "Remove", "path": "members", "value": [{"value": a["id"]}]}], [b]),  # legacy
        ([{"op": "remove", "path": f'members[value eq "{b["id"]}"]'}], []),  # flagged
        ([{"op": "ADD", "path": "members", "value": [{"value": b["id"]}]}], [b]),
        ([{"op": "Add", "path": "members", "value": [{"value": b["id"]}]}], [b]),  # already in
        ([{"op": "Remove", "path": "members", "value": [{"value": a["id"]}]}], [b]),  # not in
    ]
    for ops, expected in steps:
        r = await scim.patch(url, patch_body(*ops))
        assert r.status_code == 204, (ops, r.text)
        assert await scim.member_ids(group["id"]) == sorted(m["id"] for m in expected), ops
    r = await scim.patch(
        url,
        patch_body(
            {"op": "Replace", "path": "displayName", "value": "Entra Renamed"},
            {"op": "Replace", "path": "externalId", "value": "e-2"},
        ),
    )
    assert r.status_code == 204
    body = (await scim.get(url, params={"excludedAttributes": "members"})).json()
    assert (body["displayName"], body["externalId"]) == ("Entra Renamed", "e-2")
    assert "members" not in body
    # remove externalId, then all members
    r = await scim.patch(
        url, patch_body({"op": "remove", "path": "externalId"}, {"op": "remove", "path": "members"})
    )
    assert r.status_code == 204
    body = (await scim.get(url)).json()
    assert "externalId" not in body and "members" not in body


async def test_a_patch_with_attributes_answers_200_with_the_group(scim: Scim):
    a = await scim.create_user("a")
    group = await scim.create_group("g")
    r = await scim.patch(
        f"Groups/{group['id']}",
        patch_body({"op": "add", "path": "members", "value": [{"value": a["id"]}]}),
        params={"attributes": "members"},
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == SCIM_JSON
    assert [m["value"] for m in r.json()["members"]] == [a["id"]]
    assert "displayName" not in r.json()


@pytest.mark.parametrize(
    ("op", "scim_type"),
    [
        ({"op": "add", "path": 'members[value eq "x"]', "value": []}, "invalidFilter"),
        ({"op": "remove", "path": 'members[type eq "User"]'}, "invalidFilter"),
        ({"op": "remove", "path": "members[value eq ]"}, "invalidPath"),
        ({"op": "remove", "path": "displayName"}, "mutability"),
        ({"op": "replace", "path": "displayName", "value": ""}, "invalidValue"),
        ({"op": "replace", "path": "nosuch", "value": "x"}, "invalidPath"),
        ({"op": "replace", "value": {"nosuch": "x"}}, "invalidValue"),
        ({"op": "move", "path": "displayName", "value": "x"}, "invalidValue"),
    ],
)
async def test_a_refused_group_patch_changes_nothing(
    scim: Scim, admin: dict[str, str], op: dict[str, Any], scim_type: str
):
    a = await scim.create_user("a")
    group = await scim.create_group("g", [a["id"]])
    before = await scim.state(admin)
    r = await scim.patch(
        f"Groups/{group['id']}",
        patch_body({"op": "add", "path": "members", "value": [{"value": a["id"]}]}, op),
    )
    assert_scim_error(r, 400, scim_type)
    assert await scim.state(admin) == before


async def test_a_group_cannot_contain_itself(scim: Scim, admin: dict[str, str]):
    group = await scim.create_group("g")
    before = await scim.state(admin)
    r = await scim.patch(
        f"Groups/{group['id']}",
        patch_body({"op": "add", "path": "members", "value": [{"value": group["id"]}]}),
    )
    assert_scim_error(r, 409, None, "group:g")
    assert await scim.state(admin) == before


async def test_put_replaces_name_and_members_but_not_the_principal(
    scim: Scim, client: httpx.AsyncClient, admin: dict[str, str]
):
    a, b = [await scim.create_user(n) for n in ("a", "b")]
    group = await scim.create_group("eng", [a["id"]], externalId="x")
    r = await scim.put(f"Groups/{group['id']}", group_body("Engineering", [b["id"]]))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["displayName"] == "Engineering" and "externalId" not in body
    assert [m["value"] for m in body["members"]] == [b["id"]]
    assert body["meta"]["created"] == group["meta"]["created"]
    assert await _directory_members(client, admin, "group:eng") == ["user:b"]


async def test_filters_on_groups(scim: Scim):
    a, b = [await scim.create_user(n) for n in ("a", "b")]
    eng = await scim.create_group("Eng", [a["id"]], externalId="E1")
    ops = await scim.create_group("Ops", [b["id"]])
    both = await scim.create_group("Both", [a["id"], b["id"], eng["id"]])

    async def names(flt: str, **params: Any) -> list[str]:
        listed = await scim.listed("Groups", filter=flt, **params)
        return sorted(g["displayName"] for g in listed["Resources"])

    assert await names('displayName eq "eng"') == ["Eng"]
    assert await names('externalId eq "E1"') == ["Eng"]
    assert await names('externalId eq "e1"') == []
    assert await names(f'members[value eq "{a["id"]}"]') == ["Both", "Eng"]
    assert await names(f'members eq "{b["id"]}"') == ["Both", "Ops"]
    assert await names(f'members.value eq "{eng["id"]}"') == ["Both"]
    assert await names(f'displayName eq "Ops" and members[value eq "{b["id"]}"]') == ["Ops"]
    assert await names(f'id eq "{ops["id"]}" or id eq "{both["id"]}"') == ["Both", "Ops"]
    assert await names(f'members[value eq "{uuid.uuid4()}"]') == []
    # Entra's lookup
    listed = await scim.listed(
        "Groups", filter='displayName eq "Both"', excludedAttributes="members"
    )
    assert [g.get("members") for g in listed["Resources"]] == [None]
    for flt in ('members[display eq "x"]', 'displayName co "E"', 'userName eq "a"'):
        assert_scim_error(await scim.get("Groups", params={"filter": flt}), 400, "invalidFilter")


async def test_group_pages(scim: Scim):
    made = [await scim.create_group(f"g{i}") for i in range(5)]
    page = await scim.listed("Groups", startIndex=2, count=2)
    assert (page["totalResults"], page["startIndex"], page["itemsPerPage"]) == (5, 2, 2)
    assert [g["id"] for g in page["Resources"]] == [g["id"] for g in made[1:3]]


async def test_delete_releases_the_group(
    scim: Scim, client: httpx.AsyncClient, admin: dict[str, str]
):
    a = await scim.create_user("a")
    inner = await scim.create_group("inner", [a["id"]])
    outer = await scim.create_group("outer", [inner["id"]])
    r = await scim.delete(f"Groups/{inner['id']}")
    assert r.status_code == 204 and r.content == b""
    assert_scim_error(await scim.get(f"Groups/{inner['id']}"), 404)
    assert_scim_error(await scim.delete(f"Groups/{inner['id']}"), 404)
    assert await scim.member_ids(outer["id"]) == []  # its own memberships went with it
    assert "group:inner" not in await _directory_members(client, admin, "group:outer")


async def test_deleting_a_user_removes_it_from_its_groups(scim: Scim):
    a, b = [await scim.create_user(n) for n in ("a", "b")]
    group = await scim.create_group("g", [a["id"], b["id"]])
    assert (await scim.delete(f"Users/{a['id']}")).status_code == 204
    assert await scim.member_ids(group["id"]) == [b["id"]]


async def test_a_renamed_user_stays_in_its_groups(
    scim: Scim, client: httpx.AsyncClient, admin: dict[str, str]
):
    a = await scim.create_user("a")
    group = await scim.create_group("g", [a["id"]])
    r = await scim.patch(
        f"Users/{a['id']}", patch_body({"op": "replace", "path": "userName", "value": "a2"})
    )
    assert r.status_code == 200, r.text
    assert await scim.member_ids(group["id"]) == [a["id"]]
    assert await _directory_members(client, admin, "group:g") == ["user:a2"]
