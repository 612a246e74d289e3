"""Security-staff methods over httpx.MockTransport: pagination, retries of idempotent GETs, the
alert feed's ``last_id``."""

import httpx
import pytest

from app.client import NotFound, PermissionDenied, ServiceUnavailable, TransportError

ENTRY = {
    "decision_id": "d",
    "at": "2026-11-27T03:00:00Z",
    "principal": "user:eve",
    "dataset": "employee_activity.keystrokes",
    "action": "read",
    "purpose": None,
    "decision": "allow",
    "reason": {"code": "granted"},
    "out_of_audience": True,
    "data_subjects": ["user:bob"],
    "request_id": None,
    "caller": "store",
    "policy_version": 1,
    "prev_hash": "0" * 64,
    "hash": "1" * 64,
}


async def test_an_access_log_page_says_where_the_archive_ends(make):
    seen: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(dict(request.url.params))
        items = [{**ENTRY, "id": i} for i in (12, 11)]
        return httpx.Response(
            200, json={"items": items, "next_cursor": None, "archived_through": 10}
        )

    page = await make(handler).call("access_log_page", dataset=ENTRY["dataset"], cursor="13")
    assert [e.id for e in page.items] == [12, 11]
    assert page.next_cursor is None and page.archived_through == 10
    assert seen == [{"dataset": ENTRY["dataset"], "limit": "100", "cursor": "13"}]


def alert(i: int) -> dict:
    return {
        "id": i,
        "type": "read.out_of_audience",
        "severity": "high",
        "at": ENTRY["at"],
        "summary": "s",
        "dataset": ENTRY["dataset"],
        "finding_id": None,
        "access_log_id": i,
    }


async def test_access_log_follows_next_cursor_until_the_last_page(make):
    seen: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        seen.append(params)
        start = int(params["cursor"]) - 1 if "cursor" in params else 10  # ids below the cursor
        ids = [i for i in range(start, start - 4, -1) if i > 0][: int(params["limit"])]
        nxt = str(ids[-1]) if ids and ids[-1] > 1 else None
        items = [{**ENTRY, "id": i} for i in ids]
        return httpx.Response(200, json={"items": items, "next_cursor": nxt})

    entries = await make(handler).collect(
        "access_log", principal="user:eve", out_of_audience=True, page_size=3
    )
    assert [e.id for e in entries] == [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]
    assert seen[0] == {"principal": "user:eve", "out_of_audience": "true", "limit": "3"}
    assert [p.get("cursor") for p in seen] == [None, "8", "5", "2"]


async def test_findings_iterate_every_page(make):
    finding = {"dataset": "d", "grant_id": 1, "principal": "group:all", "excess_count": 5,
               "excess_sample": [], "paths": [], "severity": "critical", "status": "open",
               "opened_at": ENTRY["at"], "added_later": "kept"}  # fmt: skip

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.params["status"] == "open"
        if "cursor" not in request.url.params:
            return httpx.Response(200, json={"items": [{**finding, "id": 1}], "next_cursor": "1"})
        return httpx.Response(200, json={"items": [{**finding, "id": 2}], "next_cursor": None})

    found = await make(handler).collect("findings", status="open")
    assert [f.id for f in found] == [1, 2]
    assert found[0].model_extra == {"paths": [], "added_later": "kept"}


async def test_idempotent_get_is_retried_on_503_and_transport_errors(make):
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise httpx.ReadTimeout("slow", request=request)
        if calls == 2:
            return httpx.Response(503, json={"detail": "busy"}, headers={"Retry-After": "0"})
        return httpx.Response(200, json={"items": [alert(5)], "last_id": 5})

    feed = await make(handler).call("alerts", after=4)
    assert calls == 3 and feed.last_id == 5 and feed.items[0].access_log_id == 5


async def test_get_gives_up_after_the_attempts(make):
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(503, json={"detail": "down"})

    with pytest.raises(ServiceUnavailable, match="down"):
        await make(handler).call("alerts")
    assert calls == 3

    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(TransportError):
        await make(refused).call("exposure", "employee_activity.keystrokes")


@pytest.mark.parametrize("status,error", [(403, PermissionDenied), (404, NotFound)])
async def test_get_4xx_is_raised_at_once(make, status, error):
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(status, json={"detail": "no"})

    with pytest.raises(error):
        await make(handler).call("finding", 1)
    assert calls == 1


async def test_follow_alerts_resumes_from_last_id(make):
    afters: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        after = int(request.url.params["after"])
        afters.append(str(after))
        items = [alert(i) for i in range(after + 1, min(after + 2, 4) + 1)] if after < 4 else []
        last_id = max([after, *[a["id"] for a in items]])
        return httpx.Response(200, json={"items": items, "last_id": last_id})

    client = make(handler)
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    def sleep_sync(seconds: float) -> None:
        slept.append(seconds)

    client.client._sleep = sleep if client.is_async else sleep_sync
    ids: list[int] = []
    pages = client.client.follow_alerts(after=0, interval=0.5, limit=2)
    for _ in range(2):
        page = await pages.__anext__() if client.is_async else next(pages)
        ids.extend(a.id for a in page.items)
    assert ids == [1, 2, 3, 4]
    assert afters == ["0", "2"] and slept == []
