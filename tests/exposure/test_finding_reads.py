"""`GET /v1/findings/{id}/reads`: who did, per finding: the allowed reads that went through
that finding's grant by principals in its excess at the time (outside the audience), so two
findings on one dataset list each their own reads, and a pair's later finding its own."""

from typing import Any

import httpx

AUDIENCE = ["group:research"]


async def put_members(
    client: httpx.AsyncClient, admin: Any, group: str, members: list[str]
) -> None:
    r = await client.put(f"/v1/groups/{group}/members", json={"members": members}, headers=admin)
    assert r.status_code == 200, r.text


async def org(client: httpx.AsyncClient, admin: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """research = {alice} is the audience; eng = {alice, bob, carol} and ops = {dave} each
    get an over-broad grant: two findings on one dataset."""
    await put_members(client, admin, "research", ["user:alice"])
    await put_members(client, admin, "eng", ["user:alice", "user:bob", "user:carol"])
    await put_members(client, admin, "ops", ["user:dave"])
    body = {
        "owner": "group:research",
        "sensitivity": "restricted",
        "intended_audience": AUDIENCE,
        "guard": "alert",
    }
    r = await client.put("/v1/datasets/activity.keys", json=body, headers=admin)
    assert r.status_code == 201, r.text
    made = []
    for group in ("group:eng", "group:ops"):
        grant = {
            "principal": group,
            "resource": "activity.*",
            "action": "read",
            "effect": "allow",
            "justification": "test",
        }
        r = await client.post("/v1/grants", json=grant, headers=admin)
        assert r.status_code == 201, r.text
        [finding] = r.json()["findings_opened"]
        made.append(finding)
    return made[0], made[1]


async def read(client: httpx.AsyncClient, tokens: Any, *principals: str) -> list[dict[str, Any]]:
    checks = [
        {"principal": p, "dataset": "activity.keys", "action": "read", "purpose": "t"}
        for p in principals
    ]
    r = await client.post("/v1/check/batch", json={"checks": checks}, headers=tokens["check"])
    assert r.status_code == 200, r.text
    results: list[dict[str, Any]] = r.json()["results"]
    return results


async def reads_of(client: httpx.AsyncClient, admin: Any, finding: dict[str, Any]) -> list[str]:
    r = await client.get(f"/v1/findings/{finding['id']}/reads", headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["next_cursor"] is None
    return [entry["principal"] for entry in r.json()["items"]]


async def test_two_findings_on_one_dataset_list_only_their_own_grants_reads(
    client: httpx.AsyncClient, admin: Any, tokens: Any
) -> None:
    eng, ops = await org(client, admin)
    results = await read(client, tokens, "user:bob", "user:dave", "user:alice", "user:eve")
    await read(client, tokens, "user:carol")
    alice = results[2]  # through eng's grant, but in the audience: in no finding's excess
    assert (alice["reason"]["grant_id"], alice["out_of_audience"]) == (eng["grant_id"], False)
    assert results[3]["decision"] == "deny"
    assert await reads_of(client, admin, eng) == ["user:carol", "user:bob"]
    assert await reads_of(client, admin, ops) == ["user:dave"]


async def test_a_findings_reads_page_by_cursor_and_the_last_page_says_what_was_archived(
    client: httpx.AsyncClient, admin: Any, tokens: Any
) -> None:
    eng, _ops = await org(client, admin)
    results = await read(client, tokens, "user:bob", "user:dave", "user:carol", "user:bob")
    url = f"/v1/findings/{eng['id']}/reads"
    first = (await client.get(f"{url}?limit=2", headers=admin)).json()
    ids = [results[3]["access_log_id"], results[2]["access_log_id"]]
    assert [e["id"] for e in first["items"]] == ids
    assert first["next_cursor"] == str(ids[-1]) and first.get("archived_through") is None
    rest = (await client.get(f"{url}?limit=2&cursor={first['next_cursor']}", headers=admin)).json()
    assert [e["id"] for e in rest["items"]] == [results[0]["access_log_id"]]
    assert rest["next_cursor"] is None and rest["archived_through"] is None


async def test_a_pairs_later_finding_lists_the_reads_since_it_opened(
    client: httpx.AsyncClient, admin: Any, tokens: Any
) -> None:
    """eng's excess leaves (its finding resolves) and another joins (a new finding of the
    same grant and dataset opens): each finding lists the reads of its own time."""
    eng, ops = await org(client, admin)
    await read(client, tokens, "user:bob")
    r = await client.put("/v1/groups/eng/members", json={"members": ["user:alice"]}, headers=admin)
    assert [f["id"] for f in r.json()["findings_resolved"]] == [eng["id"]], r.json()
    r = await client.post("/v1/groups/eng/members", json={"member": "user:erin"}, headers=admin)
    assert r.status_code in (200, 201), r.text
    [again] = r.json()["findings_opened"]
    assert (again["grant_id"], again["dataset"]) == (eng["grant_id"], eng["dataset"])
    assert again["id"] != eng["id"]
    await read(client, tokens, "user:erin", "user:dave")
    assert await reads_of(client, admin, eng) == ["user:bob"]
    assert await reads_of(client, admin, again) == ["user:erin"]
    assert await reads_of(client, admin, ops) == ["user:dave"]


async def test_reads_of_an_unknown_finding_are_404(client: httpx.AsyncClient, admin: Any) -> None:
    r = await client.get("/v1/findings/99/reads", headers=admin)
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
