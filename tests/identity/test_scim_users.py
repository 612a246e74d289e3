"""SCIM Users: create, read, list with filters and pages, replace, modify, delete; and every
refusal is a SCIM error that changes nothing."""

import uuid
from typing import Any

import httpx
import pytest

from tests.identity.support import (
    ENTERPRISE,
    GROUP,
    SCIM_JSON,
    USER,
    Scim,
    assert_scim_error,
    patch_body,
    user_body,
)


async def test_a_user_is_created_read_and_listed_as_the_idp_sent_it(scim: Scim):
    sent = user_body(
        "Alice@Example.com",
        externalId="00u1",
        name={"givenName": "Alice", "familyName": "Smith"},
        emails=[{"value": "alice@example.com", "primary": True, "type": "work"}],
        password="never-stored",
        groups=[],
        **{ENTERPRISE: {"department": "R&D"}},
    )
    sent["schemas"].append(ENTERPRISE)
    r = await scim.post("Users", sent)
    assert r.status_code == 201, r.text
    assert r.headers["content-type"] == SCIM_JSON
    created = r.json()
    assert uuid.UUID(created["id"]).version == 4
    assert r.headers["location"] == created["meta"]["location"]
    assert created["meta"]["location"].endswith(f"/scim/v2/Users/{created['id']}")
    assert created["meta"]["resourceType"] == "User"
    assert created["meta"]["created"] and created["meta"]["lastModified"]
    assert created["userName"] == "Alice@Example.com"  # as spelled by the IdP
    assert created["active"] is True  # the default
    assert created[ENTERPRISE] == {"department": "R&D"}
    assert "password" not in created
    r = await scim.get(f"Users/{created['id']}")
    assert r.status_code == 200 and r.headers["content-type"] == SCIM_JSON
    assert r.json() == created
    listed = await scim.listed("Users")
    assert listed["totalResults"] == 1 and listed["Resources"] == [created]
    assert "never-stored" not in str(listed)


async def test_attributes_and_excluded_attributes_select_what_is_returned(scim: Scim):
    alice = await scim.create_user("alice", displayName="Alice", externalId="e1")
    r = await scim.get(f"Users/{alice['id']}", params={"attributes": "userName"})
    assert r.json() == {"schemas": [USER], "id": alice["id"], "userName": "alice"}
    r = await scim.get(f"Users/{alice['id']}", params={"excludedAttributes": "displayName"})
    assert "displayName" not in r.json() and r.json()["externalId"] == "e1"
    listed = await scim.listed("Users", attributes="externalId")
    assert listed["Resources"] == [{"schemas": [USER], "id": alice["id"], "externalId": "e1"}]


async def test_a_request_in_application_json_is_accepted(scim: Scim):
    r = await scim.request(
        "POST",
        "Users",
        content=b'{"schemas": ["%s"], "userName": "bob"}' % USER.encode(),
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 201, r.text


@pytest.mark.parametrize(
    ("body", "scim_type", "mentions"),
    [
        ({"schemas": [GROUP], "userName": "x"}, "invalidSyntax", "schemas"),
        ({"userName": "x"}, "invalidSyntax", "schemas"),
        ({"schemas": [USER], "userName": "x", "nick": 1}, "invalidSyntax", "nick"),
        ({"schemas": [USER]}, "invalidValue", "userName"),
        ({"schemas": [USER], "userName": "x", "emails": [{"value": "no"}]}, "invalidValue", ""),
        ({"schemas": [USER], "userName": "x", "active": "maybe"}, "invalidValue", "active"),
        ({"schemas": [USER], "userName": "Ålice"}, "invalidValue", "'Ålice'"),
        ({"schemas": [USER], "userName": "alice smith"}, "invalidValue", "'alice smith'"),
        ({"schemas": [USER], "userName": "-alice"}, "invalidValue", "'-alice'"),
        ({"schemas": [USER], "userName": "a" * 129}, "invalidValue", "userName"),
        ({"schemas": [USER], "userName": "\u212aelvin"}, "invalidValue", "userName"),  # Kelvin sign
    ],
)  # fmt: skip
async def test_a_user_the_schema_or_the_mapping_refuses_is_a_400_that_changes_nothing(
    scim: Scim, admin: dict[str, str], body: dict[str, Any], scim_type: str, mentions: str
):
    await scim.create_user("existing")
    before = await scim.state(admin)
    assert_scim_error(await scim.post("Users", body), 400, scim_type, mentions)
    assert await scim.state(admin) == before


@pytest.mark.parametrize(
    "content", [b"", b"{", b"[]", b'"user"', b"\xff\xfe", b"[" * 5000, b"null"]
)
async def test_a_body_that_is_not_a_json_object_is_a_400_invalid_syntax(
    scim: Scim, admin: dict[str, str], content: bytes
):
    before = await scim.state(admin)
    r = await scim.request(
        "POST", "Users", content=content, headers={"content-type": "application/scim+json"}
    )
    assert_scim_error(r, 400, "invalidSyntax")
    assert await scim.state(admin) == before


async def test_a_taken_user_name_is_a_409_uniqueness_whatever_its_case(
    scim: Scim, admin: dict[str, str]
):
    alice = await scim.create_user("alice", externalId="first")
    bob = await scim.create_user("bob")
    before = await scim.state(admin)
    for name in ("alice", "ALICE", "Alice"):
        assert_scim_error(await scim.post("Users", user_body(name)), 409, "uniqueness", alice["id"])
    # renaming bob onto alice, by PUT or PATCH
    r = await scim.put(f"Users/{bob['id']}", user_body("Alice"))
    assert_scim_error(r, 409, "uniqueness")
    r = await scim.patch(
        f"Users/{bob['id']}", patch_body({"op": "replace", "path": "userName", "value": "alice"})
    )
    assert_scim_error(r, 409, "uniqueness")
    assert await scim.state(admin) == before


async def _users(scim: Scim, n: int) -> list[dict[str, Any]]:
    return [
        await scim.create_user(f"user{i}", externalId=f"Ext-{i}", displayName=f"User {i % 2}")
        for i in range(n)
    ]


async def _found(scim: Scim, flt: str) -> list[str]:
    listed = await scim.listed("Users", filter=flt)
    assert listed["totalResults"] == len(listed["Resources"])
    return sorted(u["userName"] for u in listed["Resources"])


async def test_filters_on_user_name_external_id_display_name_id_and_active(scim: Scim):
    users = await _users(scim, 4)
    await scim.patch(
        f"Users/{users[3]['id']}", patch_body({"op": "replace", "path": "active", "value": False})
    )
    assert await _found(scim, 'userName eq "USER1"') == ["user1"]  # case-insensitive
    assert await _found(scim, 'USERNAME Eq "user1"') == ["user1"]
    assert await _found(scim, 'externalId eq "Ext-2"') == ["user2"]
    assert await _found(scim, 'externalId eq "ext-2"') == []  # case-exact
    assert await _found(scim, 'displayName eq "user 1"') == ["user1", "user3"]
    assert await _found(scim, f'id eq "{users[0]["id"]}"') == ["user0"]
    assert await _found(scim, 'userName eq "user0" or externalId eq "Ext-2"') == ["user0", "user2"]
    assert await _found(scim, 'displayName eq "User 1" and active eq true') == ["user1"]
    assert await _found(scim, 'not (displayName eq "User 1")') == ["user0", "user2"]
    assert await _found(scim, 'userName eq "nobody"') == []
    assert await _found(scim, f'userName eq "{uuid.uuid4()}"') == []  # Entra's test connection


@pytest.mark.parametrize(
    ("flt", "mentions"),
    [
        ('userName eq "x" and', ""),
        ("userName eq ", ""),
        ('userName eq "unterminated', ""),
        ("((", ""),
        ('nosuch eq "x"', "nosuch"),
        ('userName co "al"', "'co'"),
        ('userName sw "al"', "'sw'"),
        ("userName pr", "'pr'"),
        ('emails.value eq "a@example.com"', "emails.value"),
        ('emails[type eq "work"]', "emails"),
        ('name.givenName eq "A"', "name.givenName"),
        ('active eq "maybe"', ""),
    ],
)
async def test_a_filter_that_is_malformed_or_not_supported_is_a_400_invalid_filter(
    scim: Scim, flt: str, mentions: str
):
    await scim.create_user("alice")
    r = await scim.get("Users", params={"filter": flt})
    assert_scim_error(r, 400, "invalidFilter", mentions)


async def test_pages_are_in_creation_order_by_start_index_and_count(scim: Scim):
    users = await _users(scim, 5)
    ids = [u["id"] for u in users]
    page = await scim.listed("Users", startIndex=2, count=2)
    assert (page["totalResults"], page["startIndex"], page["itemsPerPage"]) == (5, 2, 2)
    assert [u["id"] for u in page["Resources"]] == ids[1:3]
    page = await scim.listed("Users", startIndex=5, count=100)
    assert [u["id"] for u in page["Resources"]] == ids[4:]
    page = await scim.listed("Users", startIndex=9, count=100)
    assert (page["totalResults"], page["itemsPerPage"], page.get("Resources", [])) == (5, 0, [])
    page = await scim.listed("Users", count=0)
    assert (page["totalResults"], page["itemsPerPage"]) == (5, 0)
    page = await scim.listed("Users", startIndex=0, count=-1)  # floored to 1 and 0 (RFC 7644)
    assert (page["startIndex"], page["itemsPerPage"]) == (1, 0)
    # Okta's loop: startIndex += count until totalResults
    seen, start = [], 1
    while start <= 5:
        page = await scim.listed("Users", startIndex=start, count=2)
        seen += [u["id"] for u in page["Resources"]]
        start += 2
    assert seen == ids
    page = await scim.listed("Users", filter='displayName eq "User 0"', startIndex=2, count=1)
    assert page["totalResults"] == 3 and [u["id"] for u in page["Resources"]] == [ids[2]]


async def test_bad_paging_values_are_a_400(scim: Scim):
    assert_scim_error(await scim.get("Users", params={"count": "many"}), 400, "invalidValue")
    assert_scim_error(await scim.get("Users", params={"startIndex": "x"}), 400, "invalidValue")


async def test_the_users_search_endpoint_answers_like_the_list(scim: Scim):
    await _users(scim, 3)
    r = await scim.post(
        "Users/.search",
        {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
            "filter": 'userName eq "user2"',
            "attributes": ["userName"],
        },
    )
    assert r.status_code == 200, r.text
    assert [u["userName"] for u in r.json()["Resources"]] == ["user2"]
    r = await scim.post("Users/.search", {"filter": "userName co"})
    assert_scim_error(r, 400, "invalidFilter")


async def test_put_replaces_the_user_keeping_its_id_and_created(scim: Scim):
    alice = await scim.create_user("alice", displayName="Alice", nickName="al")
    replaced = user_body("alice", displayName="Alice B", id="client-chosen")
    r = await scim.put(f"Users/{alice['id']}", replaced)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == alice["id"] and body["displayName"] == "Alice B"
    assert "nickName" not in body  # replaced, not merged
    assert body["meta"]["created"] == alice["meta"]["created"]
    assert (await scim.get(f"Users/{alice['id']}")).json() == body


async def test_okta_and_entra_user_patches(scim: Scim):
    alice = await scim.create_user("alice", emails=[{"value": "a@example.com", "type": "work"}])
    url = f"Users/{alice['id']}"

    async def patched(*ops: dict[str, Any]) -> dict[str, Any]:
        r = await scim.patch(url, patch_body(*ops))
        assert r.status_code == 200, r.text
        assert r.json() == (await scim.get(url)).json()
        return dict(r.json())

    # Okta deactivates without a path; Entra's legacy flavour sends a string boolean
    assert (await patched({"op": "replace", "value": {"active": False}}))["active"] is False
    assert (await patched({"op": "Replace", "path": "active", "value": "True"}))["active"] is True
    assert (await patched({"op": "Replace", "path": "active", "value": "False"}))["active"] is False
    # Entra: one Replace per attribute, dotted keys without a path, Add of a new value
    body = await patched(
        {"op": "Replace", "path": 'emails[type eq "work"].value', "value": "b@example.com"},
        {
            "op": "replace",
            "value": {"name.givenName": "Al", f"{ENTERPRISE}:employeeNumber": "42"},
        },
        {"op": "Add", "path": "nickName", "value": "ally"},
    )
    assert body["emails"] == [{"value": "b@example.com", "type": "work"}]
    assert body["name"] == {"givenName": "Al"}
    assert body[ENTERPRISE] == {"employeeNumber": "42"}
    assert body["nickName"] == "ally"
    # a no-op leaves lastModified alone
    again = await patched({"op": "replace", "value": {"active": False}})
    assert again["meta"]["lastModified"] == body["meta"]["lastModified"]


async def test_a_rename_changes_the_principal_and_frees_the_old_name(scim: Scim):
    alice = await scim.create_user("alice")
    r = await scim.patch(
        f"Users/{alice['id']}",
        patch_body({"op": "Replace", "path": "userName", "value": "Alice.Smith"}),
    )
    assert r.status_code == 200, r.text
    assert await _found(scim, 'userName eq "alice.smith"') == ["Alice.Smith"]
    assert await _found(scim, 'userName eq "alice"') == []
    await scim.create_user("alice")  # the old name is free


@pytest.mark.parametrize(
    ("ops", "scim_type"),
    [
        ([{"op": "replace", "path": "nosuch", "value": "x"}], "invalidPath"),
        ([{"op": "move", "path": "nickName", "value": "x"}], "invalidValue"),
        ([{"op": "replace", "path": "userName", "value": "not valid"}], "invalidValue"),
        ([{"op": "remove", "path": "userName"}], "mutability"),
        ([{"op": "replace", "path": "emails", "value": [{"value": "nope"}]}], "invalidValue"),
        (
            [
                {"op": "replace", "path": "nickName", "value": "x"},
                {"op": "replace", "path": "userName", "value": "bad name"},
            ],
            "invalidValue",
        ),
    ],
)
async def test_a_refused_user_patch_changes_nothing(
    scim: Scim, admin: dict[str, str], ops: list[dict[str, Any]], scim_type: str
):
    alice = await scim.create_user("alice")
    before = await scim.state(admin)
    r = await scim.patch(f"Users/{alice['id']}", patch_body(*ops))
    assert_scim_error(r, 400, scim_type)
    assert await scim.state(admin) == before


async def test_a_patch_without_the_patch_op_schema_is_a_400(scim: Scim):
    alice = await scim.create_user("alice")
    r = await scim.patch(
        f"Users/{alice['id']}", {"Operations": [{"op": "replace", "value": {"active": False}}]}
    )
    assert_scim_error(r, 400, "invalidSyntax")


async def test_delete_forgets_the_user_and_frees_the_name(scim: Scim):
    alice = await scim.create_user("alice")
    r = await scim.delete(f"Users/{alice['id']}")
    assert r.status_code == 204 and r.content == b""
    assert_scim_error(await scim.get(f"Users/{alice['id']}"), 404, None, alice["id"])
    assert_scim_error(await scim.delete(f"Users/{alice['id']}"), 404)
    assert (await scim.listed("Users"))["totalResults"] == 0
    again = await scim.create_user("alice")
    assert again["id"] != alice["id"]


async def test_unknown_ids_are_404_for_every_method(scim: Scim, admin: dict[str, str]):
    before = await scim.state(admin)
    missing = str(uuid.uuid4())
    for method, body in (("GET", None), ("PUT", user_body("x")), ("DELETE", None)):
        r = await scim.request(method, f"Users/{missing}", json=body)
        assert_scim_error(r, 404, None, missing)
    r = await scim.patch(f"Users/{missing}", patch_body({"op": "replace", "value": {"active": 0}}))
    assert_scim_error(r, 404)
    assert await scim.state(admin) == before


async def test_a_body_over_the_limit_is_a_413_scim_error(
    scim: Scim, admin: dict[str, str], client: httpx.AsyncClient
):
    limit = client._transport.app.state.settings.max_body_bytes  # type: ignore[attr-defined]
    before = await scim.state(admin)
    huge = user_body("alice", nickName="x" * limit)
    assert_scim_error(await scim.post("Users", huge), 413)

    async def chunks():  # no Content-Length: counted as it arrives
        yield b'{"schemas": ["%s"], "userName": "alice", "nickName": "' % USER.encode()
        for _ in range(limit // 65536 + 1):
            yield b"x" * 65536
        yield b'"}'

    r = await scim.request("POST", "Users", content=chunks())
    assert_scim_error(r, 413)
    assert await scim.state(admin) == before


async def test_entra_create_body_and_its_feature_flag_on_the_tenant_url(scim: Scim):
    """Entra ID's documented create body (root-level nulls, meta, roles), sent to a tenant URL
    carrying its feature flag, as every request then does."""
    body = {
        "schemas": [USER, ENTERPRISE],
        "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
        "userName": "Test_User_ab6490ee@testuser.com",
        "active": True,
        "emails": [{"primary": True, "type": "work", "value": "Test_User_x@testuser.com"}],
        "meta": {"resourceType": "User"},
        "name": {"formatted": "givenName familyName", "familyName": "f", "givenName": "g"},
        "roles": [],
        "department": None,
        "manager": None,
        ENTERPRISE: {"employeeNumber": "1"},
    }
    r = await scim.post("Users", body, params={"aadOptscim062020": ""})
    assert r.status_code == 201, r.text
    created = r.json()
    flt = f'externalId eq "{body["externalId"]}"'
    listed = await scim.listed("Users", aadOptscim062020="", filter=flt)
    assert [u["id"] for u in listed["Resources"]] == [created["id"]]
    r = await scim.patch(
        f"Users/{created['id']}?aadOptscim062020",
        patch_body({"op": "replace", "path": "active", "value": False}),
    )
    assert r.status_code == 200 and r.json()["active"] is False
    # a root-level attribute with a value is still unknown
    r = await scim.post("Users", {**body, "userName": "other", "department": "R&D"})
    assert_scim_error(r, 400, "invalidSyntax", "department")
