"""Review of #18 (SCIM): failing tests for defects found. A refusal under /scim/v2 must be a
4xx SCIM error (never a 5xx: an IdP retries a 503 forever), and what the IdP is told must
match what it can find again."""

import httpx

from tests.identity.support import Scim, assert_scim_error, group_body, user_body

SEARCH = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"


def _client_error(r: httpx.Response) -> None:
    assert 400 <= r.status_code < 500, r.text[:300]
    assert r.headers["content-type"] == "application/scim+json", r.headers


async def test_review_values_longer_than_their_columns_are_a_400(scim: Scim):
    # String(256) on PostgreSQL: the overflow is a DBAPIError, answered 503 "retry shortly"
    r = await scim.post("Users", user_body("alice", displayName="x" * 300))
    assert r.status_code in (201, 400), r.text
    r = await scim.post("Users", user_body("bob", externalId="x" * 300))
    assert r.status_code in (201, 400), r.text
    amy = await scim.create_user("amy")
    r = await scim.put(f"Users/{amy['id']}", user_body("amy", externalId="e" * 300))
    assert r.status_code in (200, 400), r.text
    # a displayName of 302 characters whose group id ("a-b") is valid
    r = await scim.post("Groups", group_body("a" + "!" * 300 + "b"))
    assert r.status_code in (201, 400), r.text


async def test_review_nul_in_an_id_is_a_404(scim: Scim):
    r = await scim.get("Users/a%00b")
    assert_scim_error(r, 404)
    r = await scim.get("Groups/a%00b")
    assert_scim_error(r, 404)


async def test_review_nul_in_a_stored_value_is_a_400(scim: Scim):
    r = await scim.post("Users", user_body("carol", displayName="a\x00b"))
    assert r.status_code in (201, 400), r.text


async def test_review_huge_start_index_is_an_empty_page(scim: Scim):
    # SQLite: OverflowError escapes (a 500); PostgreSQL: bigint out of range (503)
    r = await scim.get("Users", params={"startIndex": str(2**63), "count": "10"})
    assert r.status_code in (200, 400), r.text
    r = await scim.get("Groups", params={"startIndex": str(10**20)})
    assert r.status_code in (200, 400), r.text


async def test_review_long_or_filters_are_answered_or_refused(scim: Scim):
    # 5,000 `or` terms: SQLite's expression depth limit (503); 40,000 members[...] terms:
    # past 32,767 bind parameters on PostgreSQL and SQLite's variable limit (503)
    flt = " or ".join(['userName eq "a"'] * 5000)
    r = await scim.post("Users/.search", {"schemas": [SEARCH], "filter": flt})
    assert r.status_code in (200, 400), r.text[:300]
    flt = " or ".join(f'members[value eq "{i}"]' for i in range(40000))
    r = await scim.post("Groups/.search", {"schemas": [SEARCH], "filter": flt})
    assert r.status_code in (200, 400), r.text[:300]


async def test_review_non_ascii_display_name_filter_finds_the_group(scim: Scim):
    # func.lower(column) (ASCII-only on SQLite) compared with Python's Unicode str.lower()
    created = await scim.create_group("ÉQUIPE Zed")
    found = await scim.listed("Groups", filter='displayName eq "ÉQUIPE Zed"')
    assert [g["id"] for g in found["Resources"]] == [created["id"]], found


async def test_review_a_renamed_groups_old_name_can_be_created_again(scim: Scim):
    # Entra/Okta: filter displayName eq "Eng" finds nothing, so they POST it; the 409 names a
    # group now called "Platform" and the IdP can never provision "Eng"
    eng = await scim.create_group("Eng")
    r = await scim.put(f"Groups/{eng['id']}", group_body("Platform"))
    assert r.status_code == 200, r.text
    assert (await scim.listed("Groups", filter='displayName eq "Eng"'))["totalResults"] == 0
    r = await scim.post("Groups", group_body("Eng"))
    assert r.status_code == 201, r.text


async def test_review_adopted_group_members_are_visible_to_the_idp(
    scim: Scim, client: httpx.AsyncClient, admin: dict[str, str]
):
    # a /v1 group adopted by the IdP keeps members the IdP cannot see (no SCIM id), so
    # Okta/Entra (PATCH add/remove by id, never PUT) can never remove them
    r = await client.put("/v1/groups/sales/members", json={"members": ["user:zed"]}, headers=admin)
    assert r.status_code in (200, 201), r.text
    sales = await scim.create_group("Sales")
    directory = (await client.get("/v1/groups/sales", headers=admin)).json()
    assert len(directory["members"]) == len(sales.get("members", [])), (directory, sales)
