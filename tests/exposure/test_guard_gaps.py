"""Guard gaps from the security review: expiring denies, export grants, widened acceptances and
dataset registration are all judged like any other change."""

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI

from app.config import Settings
from app.operations.sweeper import Sweeper
from tests.approvals.support import approved, request


def soon(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


ACCEPT = {"reason": "reviewed", "until": soon(86400)}


async def members(client: httpx.AsyncClient, admin, group: str, ms: list[str], **extra):
    return await client.put(
        f"/v1/groups/{group}/members", json={"members": ms, **extra}, headers=admin
    )


async def dataset(
    client: httpx.AsyncClient, admin, id: str, audience: list[str], **extra
) -> httpx.Response:
    body = {"owner": "user:owner", "sensitivity": "restricted", "intended_audience": audience}
    return await client.put(f"/v1/datasets/{id}", json={**body, **extra}, headers=admin)


async def grant(client: httpx.AsyncClient, admin, principal: str, resource: str, **extra):
    body = {"principal": principal, "resource": resource, "action": "read", "effect": "allow",
            "justification": "test", **extra}  # fmt: skip
    return await client.post("/v1/grants", json=body, headers=admin)


async def through_approval(
    client: httpx.AsyncClient, tokens, admin, method: str, path: str, body=None, accept=ACCEPT
) -> dict[str, Any]:
    """The change accepted through two-person control (the policy:write token asks, admin
    approves): what the change's own endpoint answered."""
    r = await approved(
        client, tokens["policy:write"], admin, method, path, body,
        reason=accept["reason"], until=accept["until"],
    )  # fmt: skip
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()["result"]
    return result


async def grant_approved(client, tokens, admin, principal: str, resource: str, **extra):
    body = {"principal": principal, "resource": resource, "action": "read", "effect": "allow",
            "justification": "test", **extra}  # fmt: skip
    return await through_approval(client, tokens, admin, "POST", "/v1/grants", body)


async def dataset_approved(client, tokens, admin, id: str, audience: list[str], **extra):
    body = {"owner": "user:owner", "sensitivity": "restricted", "intended_audience": audience}
    return await through_approval(
        client, tokens, admin, "PUT", f"/v1/datasets/{id}", {**body, **extra}
    )


async def check(client: httpx.AsyncClient, tokens, principal: str, ds: str, action="read"):
    r = await client.post(
        "/v1/check",
        json={"principal": principal, "dataset": ds, "action": action, "purpose": "t"},
        headers=tokens["check"],
    )
    assert r.status_code == 200, r.text
    return r.json()


async def findings(client: httpx.AsyncClient, admin) -> list[dict[str, Any]]:
    r = await client.get("/v1/findings", headers=admin)
    items: list[dict[str, Any]] = r.json()["items"]
    return items


async def scan_is_clean(client: httpx.AsyncClient, admin) -> None:
    scan = (await client.post("/v1/scan", headers=admin)).json()
    assert (scan["opened"], scan["resolved"], scan["updated"]) == (0, 0, 0), scan


async def org(client: httpx.AsyncClient, admin) -> None:
    assert (await members(client, admin, "research", ["user:r1"])).status_code == 200
    r = await members(client, admin, "all", ["user:a1", "user:a2", "group:research"])
    assert r.status_code == 200
    assert (await dataset(client, admin, "act.keys", ["group:research"])).status_code == 201


async def test_an_expiring_deny_does_not_hide_an_allow_from_the_block_guard(client, admin, tokens):
    await org(client, admin)
    r = await grant(client, admin, "group:all", "act.keys", effect="deny", expires_at=soon(60))
    assert r.status_code == 201, r.text
    r = await grant(client, admin, "group:all", "act.keys")
    assert r.status_code == 409, r.text
    refused = r.json()["findings"]
    assert [(f["dataset"], f["excess_count"]) for f in refused] == [("act.keys", 2)]
    # Adding a member under the allow is judged the same way.
    r = await grant(client, admin, "group:all", "act.keys", accept_exposure=ACCEPT)
    assert r.status_code == 403, r.text  # accepting on a block dataset takes two people
    made = await grant_approved(client, tokens, admin, "group:all", "act.keys")
    assert made["findings_opened"] == []  # hidden for now: nothing to record yet
    r = await members(client, admin, "all", ["user:a1", "user:a2", "user:a3", "group:research"])
    assert r.status_code == 409, r.text
    # A deny that never expires contains the exposure for good.
    r = await grant(client, admin, "group:all", "act.*", effect="deny")
    assert r.status_code == 201, r.text
    r = await members(client, admin, "all", ["user:a1", "user:a2", "user:a3", "group:research"])
    assert r.status_code == 200, r.text
    await scan_is_clean(client, admin)


async def test_findings_open_when_an_expiring_deny_lapses(
    app: FastAPI, client, admin, tokens, settings: Settings
):
    await app.state.sweeper.stop()
    await org(client, admin)
    r = await grant(client, admin, "group:all", "act.keys", effect="deny", expires_at=soon(1.5))
    assert r.status_code == 201, r.text
    allow_id = (await grant_approved(client, tokens, admin, "group:all", "act.keys"))["id"]
    assert await findings(client, admin) == []
    await asyncio.sleep(2)
    sweeper = Sweeper(app.state.sessionmaker, settings)
    report = await sweeper.sweep_once()
    await sweeper.stop()
    assert len(report.opened) == 1
    [found] = await findings(client, admin)
    assert (found["grant_id"], found["excess_count"], found["status"]) == (allow_id, 2, "open")
    assert (await check(client, tokens, "user:a1", "act.keys"))["decision"] == "allow"
    await scan_is_clean(client, admin)


async def test_export_grants_are_guarded_and_flagged(client, admin, tokens):
    await org(client, admin)
    r = await grant(client, admin, "group:all", "act.keys", action="export")
    assert r.status_code == 409, r.text
    assert [f["excess_count"] for f in r.json()["findings"]] == [2]
    proposal = {
        "principal": "group:all",
        "resource": "act.*",
        "action": "export",
        "effect": "allow",
    }
    sim = await client.post(
        "/v1/grants/simulate", json={"add": [{**proposal, "effect": "allow"}]}, headers=admin
    )
    assert [f["excess_count"] for f in sim.json()["would_open"]] == [2]
    made = await grant_approved(client, tokens, admin, "group:all", "act.keys", action="export")
    export_id = made["id"]
    [opened] = made["findings_opened"]
    assert (opened["grant_id"], opened["excess_count"], opened["status"]) == (
        export_id,
        2,
        "accepted",
    )
    # A member added under the export grant widens it; a deny on export contains it.
    r = await members(client, admin, "all", ["user:a1", "user:a2", "user:a3", "group:research"])
    assert r.status_code == 409, r.text
    r = await grant(client, admin, "user:a1", "act.keys", action="export", effect="deny")
    assert r.status_code == 201, r.text
    [found] = await findings(client, admin)
    assert found["excess_count"] == 1
    await scan_is_clean(client, admin)
    # A read deny does not contain an export.
    r = await grant(client, admin, "user:a2", "act.keys", effect="deny")
    assert r.status_code == 201, r.text
    [found] = await findings(client, admin)
    assert found["excess_count"] == 1
    r = await client.delete(f"/v1/grants/{export_id}", headers=admin)
    assert r.status_code == 200, r.text
    assert [f["grant_id"] for f in r.json()["findings_resolved"]] == [export_id]
    await scan_is_clean(client, admin)


async def test_a_widened_accepted_finding_reopens_on_an_alert_dataset(client, admin):
    assert (await members(client, admin, "contractors", ["user:c1"])).status_code == 200
    r = await dataset(client, admin, "hr.perf", ["user:r1"], sensitivity="confidential")
    assert r.status_code == 201, r.text
    r = await grant(client, admin, "group:contractors", "hr.perf")
    fid = r.json()["findings_opened"][0]["id"]
    r = await client.post(f"/v1/findings/{fid}/accept", json=ACCEPT, headers=admin)
    assert r.status_code == 200, r.text
    last = (await client.get("/v1/alerts", headers=admin)).json()["last_id"]
    # The acceptance covered one contractor: sixty more reopen it.
    r = await members(client, admin, "contractors", ["user:c1"] + [f"user:x{i}" for i in range(60)])
    assert r.status_code == 200, r.text
    assert [f["id"] for f in r.json()["findings_opened"]] == [fid]
    found = (await client.get(f"/v1/findings/{fid}", headers=admin)).json()
    assert (found["status"], found["excess_count"], found["severity"]) == ("open", 61, "high")
    alerts = (await client.get("/v1/alerts", params={"after": last}, headers=admin)).json()
    assert [a["type"] for a in alerts["items"]] == ["finding.reopened"]
    await scan_is_clean(client, admin)
    # Accepted again, then widened through many leaves (the membership fast path).
    r = await client.post(f"/v1/findings/{fid}/accept", json=ACCEPT, headers=admin)
    assert r.status_code == 200, r.text
    r = await members(client, admin, "contractors", ["user:c1"] + [f"user:x{i}" for i in range(61)])
    assert r.status_code == 200, r.text
    found = (await client.get(f"/v1/findings/{fid}", headers=admin)).json()
    assert (found["status"], found["excess_count"]) == ("open", 62)
    # Accepted again, then narrowed: it stays accepted.
    r = await client.post(f"/v1/findings/{fid}/accept", json=ACCEPT, headers=admin)
    r = await members(client, admin, "contractors", ["user:c1"] + [f"user:x{i}" for i in range(30)])
    assert r.status_code == 200, r.text
    assert r.json()["findings_opened"] == []
    found = (await client.get(f"/v1/findings/{fid}", headers=admin)).json()
    assert (found["status"], found["excess_count"]) == ("accepted", 31)
    await scan_is_clean(client, admin)


async def test_a_change_accepting_a_stored_finding_it_widens_answers_and_alerts_it(
    client, admin, tokens
):
    assert (await members(client, admin, "contractors", ["user:c1"])).status_code == 200
    assert (await dataset(client, admin, "hr.perf", ["user:r1"])).status_code == 201  # block
    made = await grant_approved(client, tokens, admin, "group:contractors", "hr.perf")
    fid = made["findings_opened"][0]["id"]
    for n, reason in enumerate(["more contractors", "still more"], start=2):
        again = {"reason": reason, "until": soon(3600)}
        body = {"member": f"user:c{n}"}
        asked = await request(
            client, tokens["policy:write"], "POST", "/v1/groups/contractors/members", body,
            reason=reason, until=again["until"],
        )  # fmt: skip
        last = (await client.get("/v1/alerts", headers=admin)).json()["last_id"]
        r = await client.post(f"/v1/approvals/{asked.json()['id']}/approve", headers=admin)
        assert r.status_code == 200, r.text
        [opened] = r.json()["result"]["findings_opened"]
        assert (opened["id"], opened["status"], opened["reason"]) == (fid, "accepted", reason)
        assert opened["excess_count"] == n
        assert (await client.get(f"/v1/findings/{fid}", headers=admin)).json() == opened
        alerts = (await client.get("/v1/alerts", params={"after": last}, headers=admin)).json()
        assert [(a["type"], a["finding_id"]) for a in alerts["items"]] == [
            ("finding.accepted", fid),
            ("approval.approved", None),
        ]
    await scan_is_clean(client, admin)


async def test_registering_or_narrowing_a_block_dataset_is_guarded(client, admin, tokens):
    assert (await members(client, admin, "research", ["user:r1"])).status_code == 200
    r = await members(client, admin, "all", ["user:a1", "group:research"])
    assert r.status_code == 200
    assert (await grant(client, admin, "group:all", "act.*")).status_code == 201
    r = await dataset(client, admin, "act.keys", ["group:research"])
    assert r.status_code == 409, r.text
    assert [f["excess_count"] for f in r.json()["findings"]] == [1]
    assert (await client.get("/v1/datasets/act.keys", headers=admin)).status_code == 404
    made = await dataset_approved(client, tokens, admin, "act.keys", ["group:research"])
    assert [f["status"] for f in made["findings_opened"]] == ["accepted"]
    # An alert dataset is registered and reported, not refused.
    r = await dataset(client, admin, "act.logs", ["group:research"], guard="alert")
    assert r.status_code == 201, r.text
    assert [f["status"] for f in r.json()["findings_opened"]] == ["open"]
    # Narrowing a block dataset's audience.
    r = await dataset(client, admin, "act.all", ["group:all"])
    assert r.status_code == 201, r.text
    assert r.json()["findings_opened"] == []
    r = await dataset(client, admin, "act.all", ["group:research"])
    assert r.status_code == 409, r.text
    r = await client.get("/v1/datasets/act.all", headers=admin)
    assert r.json()["intended_audience"] == ["group:all"]
    made = await dataset_approved(client, tokens, admin, "act.all", ["group:research"])
    assert [f["status"] for f in made["findings_opened"]] == ["accepted"]
    # Widening it back is never refused.
    r = await dataset(client, admin, "act.all", ["group:all"])
    assert r.status_code == 200, r.text
    await scan_is_clean(client, admin)


async def test_simulate_says_what_the_block_guard_would_refuse(client, admin):
    """Policy CI learns of a refusal before the change is made, the expiring-deny case included."""
    await members(client, admin, "all", ["user:a1", "user:a2", "user:r1"])
    await members(client, admin, "research", ["user:r1"])
    assert (await dataset(client, admin, "act.keys", ["group:research"])).status_code == 201
    assert (
        await dataset(client, admin, "act.open", ["group:research"], guard="alert")
    ).status_code == 201
    broad = {"principal": "group:all", "resource": "act.*", "action": "read", "effect": "allow"}
    r = await client.post("/v1/grants/simulate", json={"add": [broad]}, headers=admin)
    result = r.json()
    assert [(f["dataset"], f["excess_count"]) for f in result["would_open"]] == [
        ("act.keys", 2),
        ("act.open", 2),
    ]
    assert [(f["dataset"], f["grant_id"]) for f in result["would_refuse"]] == [("act.keys", None)]

    deny = {**broad, "effect": "deny", "expires_at": soon(3600)}
    assert (await client.post("/v1/grants", json=deny, headers=admin)).status_code == 201
    result = (await client.post("/v1/grants/simulate", json={"add": [broad]}, headers=admin)).json()
    assert result["would_open"] == []  # the deny contains it today...
    # ...but not after it expires, which is why creating the grant would be refused:
    assert [f["dataset"] for f in result["would_refuse"]] == ["act.keys"]
    r = await grant(client, admin, "group:all", "act.*")
    assert r.status_code == 409, r.text
