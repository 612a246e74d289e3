"""What an IdP (or anyone holding its token) may send that no column or query can take: every
such request is a 4xx SCIM error that changes nothing, never a 5xx (an IdP retries a 503
forever), on SQLite and PostgreSQL alike."""

import pytest

from tests.identity.support import Scim, assert_scim_error, group_body, patch_body, user_body

SEARCH = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"


async def test_values_longer_than_their_columns_are_a_400_naming_the_attribute_and_limit(
    scim: Scim, admin: dict[str, str]
):
    amy = await scim.create_user("amy")
    eng = await scim.create_group("Eng")
    before = await scim.state(admin)
    refused = [
        (await scim.post("Users", user_body("alice", displayName="x" * 257)), "displayName"),
        (await scim.post("Users", user_body("bob", externalId="x" * 300)), "externalId"),
        (
            await scim.put(f"Users/{amy['id']}", user_body("amy", externalId="e" * 300)),
            "externalId",
        ),
        (
            await scim.patch(
                f"Users/{amy['id']}",
                patch_body({"op": "replace", "path": "displayName", "value": "d" * 300}),
            ),
            "displayName",
        ),
        # 302 characters whose group id ("a-b") is valid
        (await scim.post("Groups", group_body("a" + "!" * 300 + "b")), "displayName"),
        (await scim.post("Groups", group_body("Ops", externalId="o" * 257)), "externalId"),
        (await scim.put(f"Groups/{eng['id']}", group_body("E" * 257)), "displayName"),
        (
            await scim.patch(
                f"Groups/{eng['id']}",
                patch_body({"op": "replace", "path": "externalId", "value": "x" * 257}),
            ),
            "externalId",
        ),
    ]
    for r, attribute in refused:
        body = assert_scim_error(r, 400, "invalidValue", attribute)
        assert "at most 256 characters" in body["detail"], body
    assert await scim.state(admin) == before
    # the limit itself is accepted
    long = await scim.create_user("long", displayName="é" * 256, externalId="x" * 256)
    assert long["displayName"] == "é" * 256
    name = "c" + "!" * 254 + "d"  # group:c-d
    assert (await scim.create_group(name))["displayName"] == name


async def test_a_display_name_whose_comparison_form_is_too_long_is_a_400(scim: Scim):
    # "İ" lower-cases to two code points: 200 of them compare as 400 characters
    r = await scim.post("Groups", group_body("Team " + "İ" * 200))
    assert_scim_error(r, 400, "invalidValue", "displayName")


@pytest.mark.parametrize("path", ["Users", "Groups"])
@pytest.mark.parametrize("resource_id", ["a%00b", "not-a-uuid", "%00", "1" * 300])
async def test_an_id_that_is_no_uuid_is_a_404_for_every_method(
    scim: Scim, path: str, resource_id: str
):
    body = user_body("x") if path == "Users" else group_body("X")
    for method in ("GET", "PUT", "DELETE"):
        r = await scim.request(method, f"{path}/{resource_id}", json=body)
        assert_scim_error(r, 404)
    op = {"op": "replace", "path": "displayName", "value": "y"}
    assert_scim_error(await scim.patch(f"{path}/{resource_id}", patch_body(op)), 404)


async def test_ids_that_are_no_uuid_are_unknown_members_and_match_no_filter(scim: Scim):
    amy = await scim.create_user("amy")
    eng = await scim.create_group("Eng", [amy["id"]])
    r = await scim.post("Groups", group_body("Ops", ["not-a-uuid"]))
    assert_scim_error(r, 400, "invalidValue", "not-a-uuid")
    for flt in ('id eq "x"', 'members[value eq "x"]', 'members eq "1"'):
        assert (await scim.listed("Groups", filter=flt))["totalResults"] == 0, flt
    assert (await scim.listed("Users", filter='id eq "x"'))["totalResults"] == 0
    remove = {"op": "remove", "path": 'members[value eq "x"]'}
    assert (await scim.patch(f"Groups/{eng['id']}", patch_body(remove))).status_code == 204
    assert await scim.member_ids(eng["id"]) == [amy["id"]]


async def test_a_nul_character_anywhere_in_a_request_is_a_400_naming_where(
    scim: Scim, admin: dict[str, str]
):
    amy = await scim.create_user("amy")
    eng = await scim.create_group("Eng")
    before = await scim.state(admin)
    refused = [
        (await scim.post("Users", user_body("carol", displayName="a\x00b")), "displayName"),
        (await scim.post("Users", user_body("c\x00rol")), "userName"),
        (
            await scim.post("Users", user_body("dan", emails=[{"value": "d@x.org\x00"}])),
            "emails[0].value",
        ),
        (
            await scim.post(
                "Groups",
                {**group_body("Ops"), "members": [{"value": amy["id"], "display": "a\x00"}]},
            ),
            "members[0].display",
        ),
        (await scim.put(f"Users/{amy['id']}", user_body("amy", externalId="\x00")), "externalId"),
        (
            await scim.patch(
                f"Groups/{eng['id']}",
                patch_body({"op": "add", "path": "members", "value": [{"value": "a\x00"}]}),
            ),
            "Operations[0].value[0].value",
        ),
        (
            await scim.post("Users/.search", {"schemas": [SEARCH], "filter": 'userName eq "\x00"'}),
            "filter",
        ),
        (await scim.get("Groups", params={"filter": 'displayName eq "a\x00"'}), "filter"),
    ]
    for r, where in refused:
        body = assert_scim_error(r, 400, "invalidValue", where)
        assert "NUL" in body["detail"], body
    assert await scim.state(admin) == before


async def test_a_huge_start_index_is_an_empty_page(scim: Scim):
    await scim.create_user("amy")
    r = await scim.get("Users", params={"startIndex": str(2**63), "count": "10"})
    assert r.status_code == 200, r.text
    assert (r.json()["totalResults"], r.json().get("Resources", [])) == (1, [])
    r = await scim.get("Groups", params={"startIndex": str(10**20)})
    assert r.status_code == 200, r.text
    assert r.json().get("Resources", []) == []


async def test_a_filter_of_more_than_200_comparisons_is_a_400_saying_the_limit(scim: Scim):
    amy = await scim.create_user("amy")
    await scim.create_group("Eng", [amy["id"]])
    flt = " or ".join(['userName eq "a"'] * 5000)
    r = await scim.post("Users/.search", {"schemas": [SEARCH], "filter": flt})
    assert_scim_error(r, 400, "invalidFilter", "at most 200")
    flt = " or ".join(f'members[value eq "{i}"]' for i in range(40000))
    r = await scim.post("Groups/.search", {"schemas": [SEARCH], "filter": flt})
    assert_scim_error(r, 400, "invalidFilter", "40000 comparisons")
    r = await scim.get("Users", params={"filter": " or ".join(['id eq "x"'] * 201)})
    assert_scim_error(r, 400, "invalidFilter", "at most 200")
    # 200 are answered; words inside values are no comparisons
    flt = " or ".join([f'userName eq "{n} eq x"' for n in range(199)] + ['userName eq "amy"'])
    r = await scim.post("Users/.search", {"schemas": [SEARCH], "filter": flt})
    assert r.status_code == 200 and r.json()["totalResults"] == 1, r.text[:300]
    flt = " or ".join([f'members[value eq "{amy["id"]}"]'] * 200)
    assert (await scim.listed("Groups", filter=flt))["totalResults"] == 1


async def test_active_compares_with_booleans_or_their_strings(scim: Scim):
    await scim.create_user("on")
    await scim.create_user("off", active=False)

    async def found(flt: str) -> list[str]:
        listed = await scim.listed("Users", filter=flt)
        return sorted(u["userName"] for u in listed.get("Resources", []))

    for value, names in (
        ("true", ["on"]),
        ("false", ["off"]),
        ('"false"', ["off"]),
        ('"False"', ["off"]),
        ('"TRUE"', ["on"]),
    ):
        assert await found(f"active eq {value}") == names, value
    for value in ('"no"', '""', "1", '"0"'):
        r = await scim.get("Users", params={"filter": f"active eq {value}"})
        assert_scim_error(r, 400, "invalidFilter")
