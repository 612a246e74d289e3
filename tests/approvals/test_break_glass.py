"""Break-glass: time-boxed read access at once (whatever the guard and any guard hold), a
critical alert, and a review finding only a second person closes; the next check after the
window denies."""

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from app import policy_version
from app.approvals.models import BreakGlass
from app.config import Settings
from app.identity import provisioning
from app.operations.sweeper import Sweeper
from app.policy.models import Grant
from tests.identity.test_provisioning import claim, idp

KEYS = {"owner": "user:o", "sensitivity": "restricted", "intended_audience": ["user:r1"]}
USE = {"principal": "user:oncall", "dataset": "act.keys", "purpose": "incident-4711",
       "reason": "corrupted rows in training", "minutes": 30}  # fmt: skip


async def check(client: httpx.AsyncClient, tokens: Any, principal: str) -> tuple[str, str]:
    body = {"principal": principal, "dataset": "act.keys", "action": "read",
            "purpose": USE["purpose"]}  # fmt: skip
    r = await client.post("/v1/check", json=body, headers=tokens["check"])
    assert r.status_code == 200, r.text
    return r.json()["decision"], r.json()["reason"]["code"]


async def close_window(sessionmaker: Any, grant_id: int) -> None:
    """The window's end moved into the past, as the clock would move it."""
    past = datetime.now(UTC) - timedelta(seconds=1)
    async with sessionmaker() as session, session.begin():
        await policy_version.advance(session)
        await session.execute(update(Grant).where(Grant.id == grant_id).values(expires_at=past))
        await session.execute(update(BreakGlass).values(expires_at=past))


async def test_break_glass_allows_at_once_alerts_and_denies_after_the_window(
    client, admin, tokens, sessionmaker
):
    r = await client.put("/v1/datasets/act.keys", json=KEYS, headers=admin)
    assert r.status_code == 201, r.text
    assert await check(client, tokens, "user:oncall") == ("deny", "no_grant")
    r = await client.post("/v1/break-glass", json=USE, headers=tokens["policy:write"])
    assert r.status_code == 201, r.text
    used = r.json()
    assert (used["used_by"], used["purpose"], used["minutes"]) == (
        "policy-write",
        "incident-4711",
        30,
    )
    expires = datetime.fromisoformat(used["expires_at"]) - datetime.fromisoformat(used["used_at"])
    assert expires == timedelta(minutes=30)
    assert await check(client, tokens, "user:oncall") == ("allow", "granted")
    feed = (await client.get("/v1/alerts", headers=admin)).json()["items"]
    [alert] = [a for a in feed if a["type"] == "break_glass.used"]
    assert (alert["severity"], alert["dataset"], alert["finding_id"]) == (
        "critical",
        "act.keys",
        used["finding_id"],
    )
    assert "policy-write" in alert["summary"] and "incident-4711" in alert["summary"]
    review = (await client.get(f"/v1/findings/{used['finding_id']}", headers=admin)).json()
    assert (review["kind"], review["status"], review["severity"]) == (
        "break_glass",
        "open",
        "critical",
    )
    listed = await client.get("/v1/findings?kind=break_glass", headers=admin)
    assert [f["id"] for f in listed.json()["items"]] == [used["finding_id"]]
    await close_window(sessionmaker, used["grant_id"])
    assert await check(client, tokens, "user:oncall") == ("deny", "grant_expired")


async def test_only_a_second_person_closes_the_review(client, admin, tokens):
    assert (await client.put("/v1/datasets/act.keys", json=KEYS, headers=admin)).is_success
    used = (await client.post("/v1/break-glass", json=USE, headers=tokens["policy:write"])).json()
    review = {"note": "checked the reads: incident only"}
    path = f"/v1/break-glass/{used['id']}/review"
    r = await client.post(path, json=review, headers=tokens["policy:write"])
    assert r.status_code == 403, r.text
    accept = {"reason": "fine", "until": "2099-01-01T00:00:00Z"}
    r = await client.post(f"/v1/findings/{used['finding_id']}/accept", json=accept, headers=admin)
    assert r.status_code == 409 and "/v1/break-glass/" in r.json()["detail"], r.text
    r = await client.post(path, json=review, headers=admin)
    assert r.status_code == 200, r.text
    assert (r.json()["reviewed_by"], r.json()["review_note"]) == ("admin", review["note"])
    finding = (await client.get(f"/v1/findings/{used['finding_id']}", headers=admin)).json()
    assert (finding["status"], finding["accepted_by"]) == ("resolved", "admin")
    r = await client.post(path, json=review, headers=admin)
    assert r.status_code == 409


@pytest.mark.parametrize(
    ("field", "value"),
    [("minutes", 0), ("minutes", 241), ("principal", "nobody"), ("principal", "group:eng"),
     ("dataset", "Bad..id"),
     ("purpose", ""), ("dataset", "not.registered")],
)  # fmt: skip
async def test_an_invalid_break_glass_is_422_naming_the_field(client, admin, field, value):
    assert (await client.put("/v1/datasets/act.keys", json=KEYS, headers=admin)).is_success
    r = await client.post("/v1/break-glass", json={**USE, field: value}, headers=admin)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == f"body.{field}"


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, sweeper_enabled=False)


async def test_break_glass_sets_a_guard_hold_aside_for_the_window_only(
    app: FastAPI, client, admin, tokens, settings
):
    """A guard hold is a deny, and a deny wins: break-glass sets it aside for the window, and
    the sweeper restores it before the window closes, so the principal is not let in through
    their group afterwards."""
    await claim(app, "group:eng")
    assert (await client.put("/v1/datasets/act.keys", json=KEYS, headers=admin)).is_success
    grant = {"principal": "group:eng", "resource": "act.keys", "action": "read",
             "effect": "allow", "justification": "eng reads"}  # fmt: skip
    assert (await client.post("/v1/grants", json=grant, headers=admin)).status_code == 201
    await idp(app, provisioning.change_members, group="group:eng", add=["user:oncall"])
    assert await check(client, tokens, "user:oncall") == ("deny", "held_by_guard")
    r = await client.post("/v1/break-glass", json=USE, headers=admin)
    assert r.status_code == 201, r.text
    used = r.json()
    assert used["hold_id"] is not None
    assert await check(client, tokens, "user:oncall") == ("allow", "granted")
    held = (await client.get("/v1/holds", headers=admin)).json()["items"]
    assert held == []
    await close_window(app.state.sessionmaker, used["grant_id"])
    sweeper = Sweeper(app.state.sessionmaker, settings)
    report = await sweeper.sweep_once()
    await sweeper.stop()
    assert report.break_glass_closed == [used["id"]]
    assert await check(client, tokens, "user:oncall") == ("deny", "held_by_guard")
    [hold] = (await client.get("/v1/holds", headers=admin)).json()["items"]
    assert (hold["principal"], hold["dataset"]) == ("user:oncall", "act.keys")
    listed = (await client.get("/v1/break-glass", headers=admin)).json()["items"]
    assert listed[0]["restored_hold_id"] == hold["id"]
    scan = (await client.post("/v1/scan", headers=admin)).json()
    assert (scan["opened"], scan["resolved"], scan["updated"]) == (0, 0, 0), scan
    # The reviewer sees what was read through the window; history replays every decision.
    reads = await client.get(f"/v1/findings/{used['finding_id']}/reads", headers=admin)
    assert [e["decision"] for e in reads.json()["items"]] == ["allow"]
    for entry in (await client.get("/v1/access-log", headers=admin)).json()["items"]:
        replay = await client.get(f"/v1/access-log/{entry['id']}/replay", headers=admin)
        assert replay.json()["matches"] is True, replay.text


async def test_break_glass_cannot_undo_a_deactivation_by_the_idp(app: FastAPI, client, admin):
    assert (await client.put("/v1/datasets/act.keys", json=KEYS, headers=admin)).is_success
    await idp(app, provisioning.set_active, principal="user:oncall", active=False)
    r = await client.post("/v1/break-glass", json=USE, headers=admin)
    assert r.status_code == 409, r.text
