from datetime import datetime
from typing import Any

import httpx
from fastapi import FastAPI

from app.auth.dependencies import AuditReader

TRAIL = "/v1/admin/trail"


async def read_trail(
    client: httpx.AsyncClient, admin: dict[str, str], query: str = ""
) -> list[Any]:
    """The whole trail, newest first, without the entries that reading the trail itself left."""
    r = await client.get(f"{TRAIL}?limit=1000{query}", headers=admin)
    assert r.status_code == 200, r.text
    return [e for e in r.json()["items"] if e["path"] != TRAIL]


def summary(entry: dict[str, Any]) -> tuple[Any, ...]:
    return (entry["token_name"], entry["method"], entry["path"], entry["query"], entry["status"])


async def test_mutations_and_refused_mutation_attempts_are_trailed_newest_first(
    app: FastAPI, client: httpx.AsyncClient, tokens: Any, admin: dict[str, str]
):
    writer, reader = tokens["policy:write"], tokens["audit:read"]
    dataset = {"owner": "group:eng", "sensitivity": "internal"}
    grant = {"principal": "group:eng", "resource": "eng.*", "action": "read", "effect": "allow"}
    Call = tuple[str, str, dict[str, Any] | None, dict[str, str], int, tuple[Any, ...] | None]
    calls: list[Call] = [
        ("PUT", "/v1/groups/eng/members", {"members": ["user:a"]}, writer, 200,
         ("policy-write", "PUT", "/v1/groups/eng/members", "", 200)),
        ("POST", "/v1/groups/eng/members", {"member": "user:b"}, writer, 200,
         ("policy-write", "POST", "/v1/groups/eng/members", "", 200)),
        ("DELETE", "/v1/groups/eng/members/user:a", None, writer, 200,
         ("policy-write", "DELETE", "/v1/groups/eng/members/user:a", "", 200)),
        ("PUT", "/v1/datasets/eng.wiki?reason=onboarding", dataset, writer, 201,
         ("policy-write", "PUT", "/v1/datasets/eng.wiki", "reason=onboarding", 201)),
        ("POST", "/v1/grants", grant, writer, 201,
         ("policy-write", "POST", "/v1/grants", "", 201)),
        ("DELETE", "/v1/grants/1", None, writer, 200,
         ("policy-write", "DELETE", "/v1/grants/1", "", 200)),
        ("POST", "/v1/grants", grant, {}, 401, None),  # counted, below
        ("POST", "/v1/grants", grant, {"Authorization": "Bearer stolen"}, 401, None),
        ("PUT", "/v1/datasets/eng.wiki", dataset, reader, 403, None),  # counted, below
        ("DELETE", "/v1/groups/eng/members/user:b", None, tokens["check"], 403, None),
        ("POST", "/v1/grants", {"principal": "nobody"}, writer, 422,
         ("policy-write", "POST", "/v1/grants", "", 422)),
    ]  # fmt: skip
    for method, url, body, headers, status, _ in calls:
        r = await client.request(method, url, json=body, headers=headers)
        assert r.status_code == status, (method, url, r.text)
    # Plain reads of groups, datasets and grants are not trailed.
    for url in ["/v1/groups", "/v1/groups/eng", "/v1/datasets", "/v1/datasets/eng.wiki",
                "/v1/grants", "/v1/grants/1"]:  # fmt: skip
        assert (await client.get(url, headers=reader)).status_code == 200, url

    # Each answer to an authorised caller has its entry, written before the answer was sent.
    entries = await read_trail(client, admin)
    expected = [entry for *_, entry in reversed(calls) if entry is not None]
    assert [summary(e) for e in entries] == expected
    assert {e["count"] for e in entries} == {1}

    # Refusals before authorisation (no valid token, or not the scope) are counted, and
    # written together (by the sweeper's next tick, or now), naming the token where known.
    await app.state.sweeper.flush_refusals()
    counted = [e for e in await read_trail(client, admin) if e not in entries]
    assert {(*summary(e), e["count"]) for e in counted} == {
        (None, "POST", "/v1/grants", "", 401, 2),
        ("audit-read", "PUT", "/v1/datasets/{dataset}", "", 403, 1),
        ("check", "DELETE", "/v1/groups/{group}/members/{member}", "", 403, 1),
    }
    ids = [e["id"] for e in entries]
    assert ids == sorted(ids, reverse=True)
    times = [datetime.fromisoformat(e["at"]) for e in entries]
    assert times == sorted(times, reverse=True)


async def test_reading_the_trail_needs_admin_and_is_itself_trailed(
    app: FastAPI, client: httpx.AsyncClient, tokens: Any, admin: dict[str, str]
):
    r = await client.get(TRAIL, headers=tokens["audit:read"])
    assert r.status_code == 403
    await app.state.sweeper.flush_refusals()  # the refusal: counted, written together
    await client.get(f"{TRAIL}?limit=5", headers=admin)
    items = (await client.get(TRAIL, headers=admin)).json()["items"]
    assert [summary(e) for e in items] == [
        ("admin", "GET", TRAIL, "limit=5", 200),
        ("audit-read", "GET", TRAIL, "", 403),
    ]


async def test_trail_pages_with_cursor_cover_every_entry_once(
    client: httpx.AsyncClient, tokens: Any, admin: dict[str, str]
):
    writer = tokens["policy:write"]
    for n in range(7):
        r = await client.post(f"/v1/groups/g{n}/members", json={"member": "user:x"}, headers=writer)
        assert r.status_code == 200
    everything = await read_trail(client, admin)
    assert len(everything) == 7

    paged: list[Any] = []
    cursor: str | None = None
    pages = 0
    while True:
        query = f"{TRAIL}?limit=2" + (f"&cursor={cursor}" if cursor else "")
        body = (await client.get(query, headers=admin)).json()
        paged.extend(e for e in body["items"] if e["path"] != TRAIL)
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
        assert pages < 10, "pagination does not end"
    assert paged == everything
    assert [e["path"] for e in paged] == [f"/v1/groups/g{n}/members" for n in reversed(range(7))]


async def test_trail_filters_by_token_name(
    app: FastAPI, client: httpx.AsyncClient, tokens: Any, admin: dict[str, str]
):
    await client.post("/v1/groups/a/members", json={"member": "user:x"}, headers=admin)
    await client.post("/v1/groups/b/members", json={"member": "user:x"}, headers=tokens["check"])
    await app.state.sweeper.flush_refusals()  # the 403: counted under the token's name
    entries = await read_trail(client, admin, "&token_name=check")
    assert [summary(e) for e in entries] == [
        ("check", "POST", "/v1/groups/{group}/members", "", 403)
    ]


async def test_a_change_commits_only_with_its_trail_entry(
    client: httpx.AsyncClient, admin: dict[str, str], monkeypatch: Any
):
    """The entry is written in the change's own transaction: if it fails, nothing changed."""
    from sqlalchemy.exc import OperationalError

    from app.auth import service as auth_service

    def broken(*_: Any, **__: Any) -> None:
        raise OperationalError("INSERT INTO admin_trail", {}, Exception("disk full"))

    monkeypatch.setattr(auth_service, "record_trail", broken)
    body = {"principal": "user:a", "resource": "eng.*", "action": "read", "effect": "allow"}
    r = await client.post("/v1/grants", json=body, headers=admin)
    assert r.status_code == 503, r.text
    monkeypatch.undo()
    assert (await client.get("/v1/grants", headers=admin)).json()["items"] == []
    assert await read_trail(client, admin) == []  # no entry claims a change that never happened


async def test_an_overlong_query_is_refused_so_the_trail_never_cuts_a_filter(
    app: FastAPI, client: httpx.AsyncClient, tokens: Any, admin: dict[str, str]
):
    query = "pad=" + "x" * 4100 + "&data_subject=user:bob"
    r = await client.get(f"/v1/access-log?{query}", headers=tokens["audit:read"])
    assert r.status_code == 414 and r.headers["content-type"] == "application/problem+json"
    await app.state.sweeper.flush_refusals()  # refused before the token was looked at: counted
    [entry] = await read_trail(client, admin)
    assert (entry["path"], entry["status"]) == ("/v1/access-log", 414)


async def test_reading_the_alert_feed_is_trailed(
    client: httpx.AsyncClient, tokens: Any, admin: dict[str, str]
):
    """Alerts name who read which dataset out of audience: reading them is audit-sensitive."""
    assert (
        await client.get("/v1/alerts?after=0", headers=tokens["alerts:read"])
    ).status_code == 200
    [entry] = await read_trail(client, admin)
    assert summary(entry) == ("alerts-read", "GET", "/v1/alerts", "after=0", 200)


async def test_a_server_error_on_a_trailed_route_is_trailed(app, tokens: Any, admin):
    """No route is known to fail; this one is added to make sure a 500 leaves its entry too
    (the 500 itself is rendered outside the trail's middleware)."""

    async def boom(_: AuditReader) -> None:
        raise RuntimeError("boom")

    app.add_api_route("/v1/findings-boom", boom)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://aclaudit.test") as c:
        r = await c.get("/v1/findings-boom", headers=tokens["audit:read"])
        assert r.status_code == 500
        [entry] = await read_trail(c, admin)
    assert summary(entry) == ("audit-read", "GET", "/v1/findings-boom", "", 500)
