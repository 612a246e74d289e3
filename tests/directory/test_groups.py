import httpx


async def test_nested_groups_report_direct_and_transitive_counts(client: httpx.AsyncClient, admin):
    r = await client.put(
        "/v1/groups/eng/members", json={"members": ["user:alice", "group:platform"]}, headers=admin
    )
    assert r.status_code == 200, r.text
    r = await client.put(
        "/v1/groups/platform/members", json={"members": ["user:bob", "service:ci"]}, headers=admin
    )
    assert r.status_code == 200
    body = (await client.get("/v1/groups/eng", headers=admin)).json()
    assert body["members"] == ["group:platform", "user:alice"]
    assert body["direct_member_count"] == 2
    assert body["transitive_member_count"] == 3  # alice, bob, service:ci


async def test_membership_cycle_is_refused_and_changes_nothing(client: httpx.AsyncClient, admin):
    await client.put("/v1/groups/a/members", json={"members": ["group:b"]}, headers=admin)
    await client.put("/v1/groups/b/members", json={"members": ["group:c"]}, headers=admin)
    r = await client.post("/v1/groups/c/members", json={"member": "group:a"}, headers=admin)
    assert r.status_code == 409
    assert r.headers["content-type"] == "application/problem+json"
    assert "cycle" in r.json()["detail"]
    assert (await client.get("/v1/groups/c", headers=admin)).json()["members"] == []


async def test_self_membership_is_a_cycle(client: httpx.AsyncClient, admin):
    r = await client.post("/v1/groups/a/members", json={"member": "group:a"}, headers=admin)
    assert r.status_code == 409
    assert (await client.get("/v1/groups/a", headers=admin)).status_code == 404


async def test_principals_are_lower_cased(client: httpx.AsyncClient, admin):
    r = await client.post("/v1/groups/eng/members", json={"member": "User:Alice"}, headers=admin)
    assert r.status_code == 200
    assert r.json()["members"] == ["user:alice"]


async def test_remove_member_and_unknown_member(client: httpx.AsyncClient, admin):
    await client.put(
        "/v1/groups/eng/members", json={"members": ["user:a", "user:b"]}, headers=admin
    )
    r = await client.delete("/v1/groups/eng/members/user:a", headers=admin)
    assert r.status_code == 200 and r.json()["members"] == ["user:b"]
    r = await client.delete("/v1/groups/eng/members/user:a", headers=admin)
    assert r.status_code == 404


async def test_group_list_pages_with_cursor(client: httpx.AsyncClient, admin):
    for name in ["a", "b", "c"]:
        await client.post(f"/v1/groups/{name}/members", json={"member": "user:x"}, headers=admin)
    first = (await client.get("/v1/groups?limit=2", headers=admin)).json()
    assert [g["id"] for g in first["items"]] == ["group:a", "group:b"]
    second = (
        await client.get(f"/v1/groups?limit=2&cursor={first['next_cursor']}", headers=admin)
    ).json()
    assert [g["id"] for g in second["items"]] == ["group:c"]
    assert second["next_cursor"] is None


async def test_nesting_beyond_what_casbin_follows_is_refused(client: httpx.AsyncClient, admin):
    """Casbin follows at most 9 membership links from a user; a 10th would silently stop a deny
    (or an allow) on the top group from reaching them, so it is refused, from either end."""
    assert (
        await client.put("/v1/groups/g1/members", json={"members": ["user:u"]}, headers=admin)
    ).status_code == 200
    for level in range(2, 10):  # u -> g1 -> ... -> g9: 9 links
        r = await client.put(
            f"/v1/groups/g{level}/members", json={"members": [f"group:g{level - 1}"]}, headers=admin
        )
        assert r.status_code == 200, r.text
    r = await client.put("/v1/groups/g10/members", json={"members": ["group:g9"]}, headers=admin)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.members.0"
    assert "10" in r.json()["detail"]
    # an empty chain of groups may be 9 links long, but then no user may join its bottom
    r = await client.put("/v1/groups/h1/members", json={"members": ["group:g9"]}, headers=admin)
    assert r.status_code == 422
    r = await client.post("/v1/groups/g1/members", json={"member": "group:h0"}, headers=admin)
    assert r.status_code == 200, r.text  # h0 -> g1 -> ... -> g9 is 9 links
    r = await client.post("/v1/groups/h0/members", json={"member": "user:v"}, headers=admin)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.member"
