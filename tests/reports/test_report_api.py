"""`GET /v1/reports/exposure` over HTTP, on SQLite and PostgreSQL."""

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.conftest import Tokens
from tests.reports.scenario import XSS_PURPOSE, make_incident

REPORT = "/v1/reports/exposure"


async def test_the_report_names_the_window_who_opened_and_closed_it_who_could_and_who_did(
    client: httpx.AsyncClient, tokens: Tokens, sessionmaker: async_sessionmaker[AsyncSession]
):
    incident = await make_incident(client, tokens, sessionmaker)
    reader = tokens["audit:read"]
    r = await client.get(REPORT, params={"dataset": "ea.*"}, headers=reader)
    assert r.status_code == 200, r.text
    report = r.json()
    assert [d["dataset"] for d in report["datasets"]] == ["ea.keystrokes", "ea.transcripts"]
    transcripts = report["datasets"][1]
    [window] = transcripts["windows"]
    assert window["open_at_since"] is False
    [opened] = window["opened_by"]
    assert opened["kind"] == "grant_added"
    assert opened["grant_id"] == incident.grant_id and opened["by"] == "mallory-admin"
    assert opened["principal"] == "group:all"
    [closed] = window["closed_by"]
    assert closed["kind"] == "grant_revoked" and closed["grant_id"] == incident.grant_id
    assert closed["by"] == "admin"
    assert window["start"] == opened["at"] and window["end"] == closed["at"]
    assert incident.before.isoformat() < window["start"] < incident.during.isoformat()
    assert window["end"] > incident.during.isoformat()

    # who could: as exposure?at= answers within the window, and now
    during = await client.get(
        "/v1/datasets/ea.transcripts/exposure",
        params={"at": incident.during.isoformat()},
        headers=reader,
    )
    assert window["peak_excess"] == during.json()["excess_count"] == 3
    could = transcripts["who_could"]
    assert could["peak_excess"] == 3 and could["ever_excess"] == 3
    now = (await client.get("/v1/datasets/ea.transcripts/exposure", headers=reader)).json()
    assert could["excess_at_until"] == now["excess_count"] == 0
    assert could["effective_at_until"] == now["effective_count"]
    assert could["intended_at_until"] == now["intended_count"] == 2
    assert [p["principal"] for p in could["principals"]] == ["user:ed", "user:emma", "user:eve"]
    assert not any(p["at_until"] for p in could["principals"])

    # who did
    did = {p["principal"]: p for p in transcripts["who_did"]["principals"]}
    assert set(did) == {"user:eve", "user:ed", "user:rita"}
    assert (did["user:eve"]["reads"], did["user:eve"]["out_of_audience"]) == (2, 2)
    assert {p["purpose"] for p in did["user:eve"]["purposes"]} == {"training", XSS_PURPOSE}
    assert (did["user:ed"]["allowed"], did["user:ed"]["out_of_audience"]) == (1, 1)
    assert (did["user:rita"]["allowed"], did["user:rita"]["out_of_audience"]) == (1, 0)
    assert report["datasets"][0]["who_did"]["principals"] == []

    integrity = report["integrity"]
    assert integrity["ok"] is True and integrity["first_bad_id"] is None
    assert integrity["period_last_entry"] >= integrity["period_first_entry"] >= 1


async def test_a_report_ending_inside_the_window_shows_it_open_and_who_could_then(
    client: httpx.AsyncClient, tokens: Tokens, sessionmaker: async_sessionmaker[AsyncSession]
):
    incident = await make_incident(client, tokens, sessionmaker)
    params = {
        "dataset": "ea.transcripts",
        "since": incident.before.isoformat(),
        "until": incident.during.isoformat(),
    }
    r = await client.get(REPORT, params=params, headers=tokens["audit:read"])
    assert r.status_code == 200, r.text
    [dataset] = r.json()["datasets"]
    [window] = dataset["windows"]
    assert window["end"] is None and window["closed_by"] == []
    assert dataset["who_could"]["excess_at_until"] == 3
    assert all(p["at_until"] for p in dataset["who_could"]["principals"])


async def test_who_could_is_paged_with_a_cursor(
    client: httpx.AsyncClient, tokens: Tokens, sessionmaker: async_sessionmaker[AsyncSession]
):
    await make_incident(client, tokens, sessionmaker)
    seen: list[tuple[str, str]] = []
    params = {"dataset": "ea.*", "limit": "2"}
    for _ in range(10):
        r = await client.get(REPORT, params=params, headers=tokens["audit:read"])
        assert r.status_code == 200, r.text
        body = r.json()
        page = [
            (d["dataset"], p["principal"])
            for d in body["datasets"]
            for p in d["who_could"]["principals"]
        ]
        assert len(page) <= 2
        seen += page
        if body["next_cursor"] is None:
            break
        params = {**params, "cursor": body["next_cursor"], "until": body["until"]}
    assert seen == sorted(seen) and len(seen) == len(set(seen)) == 6


async def test_bad_input_is_a_problem_naming_the_field(
    client: httpx.AsyncClient, tokens: Tokens, sessionmaker: async_sessionmaker[AsyncSession]
):
    await make_incident(client, tokens, sessionmaker, revoke=False)
    reader = tokens["audit:read"]
    cases = [
        ({"dataset": "ea.*x"}, "dataset"),
        ({"dataset": "EA/<x>"}, "dataset"),
        ({"dataset": "ea.*", "since": "yesterday"}, "since"),
        ({"dataset": "ea.*", "until": "2026-13-01T00:00:00Z"}, "until"),
        ({"dataset": "ea.*", "until": "2999-01-01T00:00:00Z"}, "until"),
        (
            {"dataset": "ea.*", "since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
            "since",
        ),
        ({"dataset": "ea.*", "cursor": "nonsense"}, "cursor"),
    ]
    for params, field in cases:
        r = await client.get(REPORT, params=params, headers=reader)
        assert r.status_code == 422, (params, r.status_code, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert any(e["loc"][-1] == field for e in r.json()["errors"]), (params, r.json())
    r = await client.get(REPORT, headers=reader)
    assert r.status_code == 422 and r.json()["errors"][0]["loc"][-1] == "dataset"
    r = await client.get(REPORT, params={"dataset": "nothing.*"}, headers=reader)
    assert r.status_code == 200 and r.json()["datasets"] == [], r.text
