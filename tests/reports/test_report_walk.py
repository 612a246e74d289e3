"""The report's incremental walk answers as `exposure?at=` (a rebuild from the history) at
every instant of a history with nested groups, denies, an audience change, an expiry and
changes to other datasets; its windows open and close where the excess does."""

import asyncio
from datetime import UTC, datetime, timedelta

import httpx

from tests.conftest import Tokens

REPORT = "/v1/reports/exposure"
DATASET = {"owner": "group:aud", "sensitivity": "internal", "intended_audience": ["group:aud"]}


async def _now() -> datetime:
    await asyncio.sleep(0.02)
    return datetime.now(UTC)


async def test_every_instant_of_the_walk_equals_exposure_at_that_instant(
    client: httpx.AsyncClient, tokens: Tokens
):
    admin, reader = tokens["admin"], tokens["audit:read"]

    async def ok(r: httpx.Response) -> None:
        assert r.is_success, r.text

    await ok(
        await client.put("/v1/groups/aud/members", json={"members": ["user:z"]}, headers=admin)
    )
    await ok(
        await client.put(
            "/v1/groups/team/members", json={"members": ["user:a", "user:b"]}, headers=admin
        )
    )
    await ok(
        await client.put(
            "/v1/groups/dept/members", json={"members": ["group:team", "user:c"]}, headers=admin
        )
    )
    await ok(await client.put("/v1/datasets/x.d", json=DATASET, headers=admin))
    await ok(await client.put("/v1/datasets/y.d", json=DATASET, headers=admin))
    since = await _now()
    instants = [since]

    def grant(principal: str, resource: str, **extra: str) -> dict[str, str]:
        return {
            "principal": principal,
            "resource": resource,
            "action": "read",
            "effect": "allow",
            **extra,
        }

    r = await client.post("/v1/grants", json=grant("group:dept", "x.*"), headers=admin)
    await ok(r)
    broad = r.json()["id"]
    instants.append(await _now())
    await ok(await client.post("/v1/groups/team/members", json={"member": "user:d"}, headers=admin))
    instants.append(await _now())
    await ok(
        await client.post("/v1/grants", json=grant("user:a", "x.d", effect="deny"), headers=admin)
    )
    instants.append(await _now())
    await ok(await client.post("/v1/grants", json=grant("user:q", "y.*"), headers=admin))
    instants.append(await _now())
    audience = {**DATASET, "intended_audience": ["group:aud", "group:team"]}
    await ok(await client.put("/v1/datasets/x.d", json=audience, headers=admin))
    instants.append(await _now())
    await ok(await client.delete("/v1/groups/dept/members/user:c", headers=admin))
    closed_at = await _now()
    instants.append(closed_at)
    expires = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    r = await client.post(
        "/v1/grants", json=grant("user:e", "x.d", expires_at=expires), headers=admin
    )
    await ok(r)
    temporary = r.json()["id"]
    instants.append(await _now())
    await asyncio.sleep(1.1)
    instants.append(await _now())

    expected_excess = [0, 3, 4, 3, 3, 1, 0, 1, 0]
    for instant, expected in zip(instants, expected_excess, strict=True):
        at = instant.isoformat()
        exposure = await client.get("/v1/datasets/x.d/exposure", params={"at": at}, headers=reader)
        params = {"dataset": "x.d", "since": since.isoformat(), "until": at}
        report = await client.get(REPORT, params=params, headers=reader)
        assert report.status_code == 200, report.text
        could = report.json()["datasets"][0]["who_could"]
        assert could["excess_at_until"] == exposure.json()["excess_count"] == expected, at
        assert could["effective_at_until"] == exposure.json()["effective_count"], at
        assert could["intended_at_until"] == exposure.json()["intended_count"], at

    params = {"dataset": "x.d", "since": since.isoformat(), "until": instants[-1].isoformat()}
    [dataset] = (await client.get(REPORT, params=params, headers=reader)).json()["datasets"]
    first, second = dataset["windows"]
    assert [c["kind"] for c in first["opened_by"]] == ["grant_added"]
    assert first["opened_by"][0]["grant_id"] == broad and first["peak_excess"] == 4
    [removed] = first["closed_by"]
    assert (removed["kind"], removed["member"], removed["group"]) == (
        "member_removed",
        "user:c",
        "group:dept",
    )
    assert first["end"] < closed_at.isoformat()
    assert second["opened_by"][0]["grant_id"] == temporary and second["peak_excess"] == 1
    [expired] = second["closed_by"]
    assert (expired["kind"], expired["grant_id"], expired["version"]) == (
        "grant_expired",
        temporary,
        None,
    )
    assert datetime.fromisoformat(second["end"]) == datetime.fromisoformat(expires)
    could = dataset["who_could"]
    names = ["user:a", "user:b", "user:c", "user:d", "user:e"]  # user:a until the deny
    assert [p["principal"] for p in could["principals"]] == names
    assert could["ever_excess"] == 5 and could["peak_excess"] == 4
