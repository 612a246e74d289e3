"""Growing a block-guarded dataset's expanded intended audience: always `audience.grown`, and
beyond ACLAUDIT_AUDIENCE_GROWTH_APPROVAL principals only through an approval. The IdP is never
refused: its growth is alerted."""

from typing import Any

import httpx
from fastapi import FastAPI

from app.identity import provisioning
from tests.approvals.support import approved
from tests.identity.test_provisioning import claim, idp

EMPLOYEES = [f"user:e{i}" for i in range(30)]
KEYS = {"owner": "user:o", "sensitivity": "restricted", "intended_audience": ["group:mci-research"]}


async def company(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    """all-employees (30 people and research), mci-research (two), keystrokes for research,
    readable by all-employees through a grant that is a finding nobody accepted... none yet:
    the grant reaches research only."""
    r = await client.put(
        "/v1/groups/mci-research/members", json={"members": ["user:r1", "user:r2"]}, headers=admin
    )
    assert r.status_code == 200, r.text
    members = {"members": [*EMPLOYEES, "group:mci-research"]}
    r = await client.put("/v1/groups/all-employees/members", json=members, headers=admin)
    assert r.status_code == 200, r.text
    r = await client.put("/v1/datasets/activity.keystrokes", json=KEYS, headers=admin)
    assert r.status_code == 201, r.text
    grant = {"principal": "group:all-employees", "resource": "activity.*", "action": "read",
             "effect": "allow", "justification": "dashboards"}  # fmt: skip
    r = await client.post("/v1/grants", json=grant, headers=admin)
    assert r.status_code == 409, r.text  # the whole company beyond research: refused


async def alerts(client: httpx.AsyncClient, admin: dict[str, str], kind: str) -> list[Any]:
    items = (await client.get("/v1/alerts?limit=1000", headers=admin)).json()["items"]
    return [a for a in items if a["type"] == kind]


async def check(client: httpx.AsyncClient, tokens: Any, principal: str) -> str:
    body = {"principal": principal, "dataset": "activity.keystrokes", "action": "read",
            "purpose": "model-training"}  # fmt: skip
    r = await client.post("/v1/check", json=body, headers=tokens["check"])
    decision: str = r.json()["decision"]
    return decision


async def test_adding_all_employees_to_the_audience_group_is_refused_and_alerted_or_approved(
    client, admin, tokens
):
    """The issue's scenario: `group:all-employees` added to the group a block dataset is meant
    for made the whole company its audience with a 200, no finding and no alert."""
    await company(client, admin)
    grant = {"principal": "group:all-employees", "resource": "activity.keystrokes",
             "action": "read", "effect": "allow", "justification": "dashboards"}  # fmt: skip
    add = {"member": "group:all-employees"}
    r = await client.post("/v1/groups/mci-research/members", json=add, headers=admin)
    # all-employees contains research: that is a cycle; take research out of it first
    assert r.status_code == 409 and r.json()["type"].endswith("membership-cycle"), r.text
    r = await client.put(
        "/v1/groups/all-employees/members", json={"members": EMPLOYEES}, headers=admin
    )
    assert r.status_code == 200, r.text
    r = await client.post("/v1/groups/mci-research/members", json=add, headers=admin)
    assert r.status_code == 409, r.text
    problem = r.json()
    assert problem["type"].endswith("audience-growth-refused")
    assert problem["approvals"] == "/v1/approvals"
    assert [(g["dataset"], g["added"]) for g in problem["growth"]] == [("activity.keystrokes", 30)]
    members = (await client.get("/v1/groups/mci-research", headers=admin)).json()["members"]
    assert "group:all-employees" not in members
    # Through an approval it lands, and is alerted (high: beyond the limit), naming who did it.
    r = await approved(
        client, tokens["policy:write"], admin, "POST", "/v1/groups/mci-research/members", add
    )
    assert r.status_code == 200, r.text
    [grown] = await alerts(client, admin, "audience.grown")
    assert (grown["dataset"], grown["severity"]) == ("activity.keystrokes", "high")
    assert "grew by 30" in grown["summary"] and "policy-write" in grown["summary"]
    assert "approval" in grown["summary"]
    # The grant to everyone is now within the audience: no finding, as the approval accepted.
    r = await client.post("/v1/grants", json=grant, headers=admin)
    assert r.status_code == 201 and r.json()["findings_opened"] == [], r.text
    assert await check(client, tokens, "user:e7") == "allow"


async def test_small_growth_is_alerted_and_allowed(client, admin, tokens):
    await company(client, admin)
    r = await client.post(
        "/v1/groups/mci-research/members", json={"member": "user:e1"}, headers=admin
    )
    assert r.status_code == 200, r.text
    [grown] = await alerts(client, admin, "audience.grown")
    assert (grown["dataset"], grown["severity"]) == ("activity.keystrokes", "medium")
    assert "grew by 1 principals (user:e1) by admin" in grown["summary"]
    # A dataset PUT widening the audience by a few: alerted, allowed.
    body = {**KEYS, "intended_audience": ["group:mci-research", "user:e2", "user:e3"]}
    r = await client.put("/v1/datasets/activity.keystrokes", json=body, headers=admin)
    assert r.status_code == 200, r.text
    summaries = [g["summary"] for g in await alerts(client, admin, "audience.grown")]
    assert "grew by 2 principals (user:e2, user:e3) by admin" in summaries[1]


async def test_a_dataset_put_growing_the_audience_past_the_limit_needs_an_approval(
    client, admin, tokens
):
    await company(client, admin)
    body = {**KEYS, "intended_audience": ["group:all-employees"]}
    r = await client.put("/v1/datasets/activity.keystrokes", json=body, headers=admin)
    assert r.status_code == 409, r.text
    assert r.json()["growth"][0]["added"] == 30
    assert await alerts(client, admin, "audience.grown") == []
    stored = (await client.get("/v1/datasets/activity.keystrokes", headers=admin)).json()
    assert stored["intended_audience"] == ["group:mci-research"]
    r = await approved(
        client, tokens["policy:write"], admin, "PUT", "/v1/datasets/activity.keystrokes", body
    )
    assert r.status_code == 200, r.text
    assert len(await alerts(client, admin, "audience.grown")) == 1
    # An alert-guarded dataset's audience grows freely (nothing to alert).
    notes = {**KEYS, "sensitivity": "internal", "intended_audience": ["group:all-employees"]}
    r = await client.put("/v1/datasets/activity.notes", json=notes, headers=admin)
    assert r.status_code == 201, r.text
    notes["intended_audience"] = ["user:r1"]
    assert (
        await client.put("/v1/datasets/activity.notes", json=notes, headers=admin)
    ).status_code == 200
    notes["intended_audience"] = ["group:all-employees"]
    r = await client.put("/v1/datasets/activity.notes", json=notes, headers=admin)
    assert r.status_code == 200, r.text
    assert len(await alerts(client, admin, "audience.grown")) == 1


async def test_the_idp_growing_an_audience_is_never_refused_and_always_alerted(
    app: FastAPI, client, admin, tokens
):
    await claim(app, "group:mci-research")
    await idp(app, provisioning.change_members, group="group:mci-research", add=["user:r1"])
    r = await client.put("/v1/datasets/activity.keystrokes", json=KEYS, headers=admin)
    assert r.status_code == 201, r.text
    many = [f"user:n{i}" for i in range(25)]
    await idp(app, provisioning.change_members, group="group:mci-research", add=many)
    [grown] = await alerts(client, admin, "audience.grown")
    assert (grown["dataset"], grown["severity"]) == ("activity.keystrokes", "high")
    assert "grew by 25" in grown["summary"]
    members = (await client.get("/v1/groups/mci-research", headers=admin)).json()["members"]
    assert len(members) == 26


async def test_a_policy_document_growing_an_audience_is_judged_as_a_put_is(client, admin, tokens):
    await company(client, admin)
    doc = {
        "datasets": {"activity.keystrokes": {**KEYS, "intended_audience": ["group:all-employees"]}}
    }
    r = await client.post("/v1/policy/apply", json=doc, headers=admin)
    assert r.status_code == 409 and r.json()["growth"][0]["added"] == 30, r.text
    r = await approved(client, tokens["policy:write"], admin, "POST", "/v1/policy/apply", doc)
    assert r.status_code == 200, r.text
    assert r.json()["result"]["datasets_changed"] == ["activity.keystrokes"]
    [grown] = await alerts(client, admin, "audience.grown")
    assert "grew by 30" in grown["summary"]
