"""Two-person control over HTTP: accepting exposure on a block-guarded dataset is requested by
one principal and applied when another approves it."""

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from app.approvals.models import Approval
from tests.approvals.support import UNTIL, approved, request

ACCEPT = {"reason": "reviewed", "until": UNTIL}


def grant_body(principal: str, resource: str = "act.keys", **extra: Any) -> dict[str, Any]:
    return {"principal": principal, "resource": resource, "action": "read", "effect": "allow",
            "justification": "test", **extra}  # fmt: skip


async def org(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    r = await client.put(
        "/v1/groups/research/members", json={"members": ["user:r1"]}, headers=admin
    )
    assert r.status_code == 200, r.text
    members = {"members": ["user:a1", "user:a2", "group:research"]}
    assert (await client.put("/v1/groups/all/members", json=members, headers=admin)).is_success
    body = {"owner": "user:o", "sensitivity": "restricted", "intended_audience": ["group:research"]}
    assert (await client.put("/v1/datasets/act.keys", json=body, headers=admin)).status_code == 201
    body = {**body, "sensitivity": "internal"}  # guard: alert
    assert (await client.put("/v1/datasets/act.notes", json=body, headers=admin)).status_code == 201


async def test_direct_accept_exposure_on_a_block_dataset_is_403_pointing_to_approvals(
    client, admin
):
    await org(client, admin)
    r = await client.post(
        "/v1/grants", json=grant_body("group:all", accept_exposure=ACCEPT), headers=admin
    )
    assert r.status_code == 403, r.text
    problem = r.json()
    assert r.headers["content-type"].startswith("application/problem+json")
    assert problem["approvals"] == "/v1/approvals" and "/v1/approvals" in problem["detail"]
    assert [(f["dataset"], f["grant_id"]) for f in problem["findings"]] == [("act.keys", None)]
    assert (await client.get("/v1/grants", headers=admin)).json()["items"] == []
    # An alert-guarded dataset keeps direct acceptance.
    r = await client.post(
        "/v1/grants",
        json=grant_body("group:all", "act.notes", accept_exposure=ACCEPT),
        headers=admin,
    )
    assert r.status_code == 201, r.text
    assert [f["status"] for f in r.json()["findings_opened"]] == ["accepted"]


async def test_a_requested_grant_changes_nothing_until_another_principal_approves_it(
    client, admin, tokens
):
    await org(client, admin)
    writer = tokens["policy:write"]
    r = await request(client, writer, "POST", "/v1/grants", grant_body("group:all"))
    assert r.status_code == 201, r.text
    asked = r.json()
    assert asked["status"] == "pending" and asked["requested_by"] == "policy-write"
    assert [(f["dataset"], f["excess_count"], f["grant_id"]) for f in asked["would_open"]] == [
        ("act.keys", 2, None)
    ]
    assert (await client.get("/v1/grants", headers=admin)).json()["items"] == []
    assert (await client.get("/v1/findings", headers=admin)).json()["items"] == []
    # The requester cannot approve it.
    r = await client.post(f"/v1/approvals/{asked['id']}/approve", headers=writer)
    assert r.status_code == 403, r.text
    # Another principal with policy:write does: applied with the acceptance, in one go.
    r = await client.post(f"/v1/approvals/{asked['id']}/approve", headers=admin)
    assert r.status_code == 200, r.text
    done = r.json()
    assert done["status"] == "approved" and done["decided_by"] == "admin"
    grant = done["result"]
    assert grant["created_by"] == "policy-write"
    [finding] = grant["findings_opened"]
    assert (finding["status"], finding["accepted_by"], finding["reason"]) == (
        "accepted",
        "admin",
        "reviewed",
    )
    assert [g["id"] for g in (await client.get("/v1/grants", headers=admin)).json()["items"]] == [
        grant["id"]
    ]
    # Decided: a second decision is 409.
    for verb in ("approve", "reject"):
        r = await client.post(f"/v1/approvals/{asked['id']}/{verb}", headers=admin)
        assert r.status_code == 409, r.text
    alerts = (await client.get("/v1/alerts", headers=admin)).json()["items"]
    types = [a["type"] for a in alerts]
    assert types.index("approval.requested") < types.index("approval.approved")
    trail = (await client.get("/v1/admin/trail", headers=admin)).json()["items"]
    posted = [(e["token_name"], e["path"], e["status"]) for e in trail if e["method"] == "POST"]
    assert ("policy-write", "/v1/approvals", 201) in posted
    assert ("admin", f"/v1/approvals/{asked['id']}/approve", 200) in posted


async def test_a_rejected_request_changes_nothing(client, admin, tokens):
    await org(client, admin)
    r = await request(client, tokens["policy:write"], "POST", "/v1/grants", grant_body("group:all"))
    approval = r.json()["id"]
    r = await client.post(
        f"/v1/approvals/{approval}/reject", json={"note": "too wide"}, headers=admin
    )
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["decision_note"]) == ("rejected", "too wide")
    assert (await client.get("/v1/grants", headers=admin)).json()["items"] == []
    r = await client.post(f"/v1/approvals/{approval}/approve", headers=admin)
    assert r.status_code == 409
    types = [a["type"] for a in (await client.get("/v1/alerts", headers=admin)).json()["items"]]
    assert "approval.rejected" in types
    listed = await client.get("/v1/approvals?status=rejected", headers=admin)
    assert [a["id"] for a in listed.json()["items"]] == [approval]
    assert (await client.get("/v1/approvals?status=pending", headers=admin)).json()["items"] == []


async def test_an_expired_request_cannot_be_approved(client, admin, tokens, sessionmaker):
    await org(client, admin)
    r = await request(client, tokens["policy:write"], "POST", "/v1/grants", grant_body("group:all"))
    approval = r.json()["id"]
    async with sessionmaker() as session, session.begin():
        past = datetime.now(UTC) - timedelta(seconds=1)
        await session.execute(update(Approval).values(expires_at=past))
    r = await client.post(f"/v1/approvals/{approval}/approve", headers=admin)
    assert r.status_code == 409 and "expired" in r.json()["detail"]
    assert (await client.get(f"/v1/approvals/{approval}", headers=admin)).json()[
        "status"
    ] == "expired"
    listed = await client.get("/v1/approvals?status=expired", headers=admin)
    assert [a["id"] for a in listed.json()["items"]] == [approval]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"method": "POST", "path": "/v1/grants", "body": {"resource": "act.keys"}},
         "change.body.principal"),
        ({"method": "POST", "path": "/v1/grants",
          "body": {**grant_body("user:x"), "principal": "nobody"}}, "change.body.principal"),
        ({"method": "POST", "path": "/v1/grants",
          "body": {**grant_body("user:x"), "accept_exposure": ACCEPT}},
         "change.body.accept_exposure"),
        ({"method": "POST", "path": "/v1/grants", "body": grant_body("user:x", justification=None)},
         "change.body.justification"),
        ({"method": "PUT", "path": "/v1/datasets/Bad..Id", "body": {}}, "change.path"),
        ({"method": "POST", "path": "/v1/checks", "body": {}}, "change.path"),
        ({"method": "POST", "path": "/v1/findings/1/accept", "body": {"reason": "x"}},
         "change.body.reason"),
        ({"method": "PUT", "path": "/v1/groups/all/members", "body": {"members": "user:x"}},
         "change.body.members"),
        ({"method": "GET", "path": "/v1/grants", "body": {}}, "body.change.method"),
    ],
)  # fmt: skip
async def test_an_invalid_change_is_422_naming_its_field(client, admin, tokens, change, field):
    await org(client, admin)
    r = await client.post(
        "/v1/approvals",
        json={"change": change, "reason": "r", "until": UNTIL},
        headers=tokens["policy:write"],
    )
    assert r.status_code == 422, r.text
    assert field in r.text
    assert (await client.get("/v1/approvals", headers=admin)).json()["items"] == []


async def test_a_change_that_no_longer_applies_fails_with_its_error_and_stays_pending(
    client, admin, tokens
):
    await org(client, admin)
    writer = tokens["policy:write"]
    # research joins all, with all inside the audience... refused later as a cycle
    r = await request(
        client, writer, "POST", "/v1/groups/research/members", {"member": "group:extra"}
    )
    assert r.status_code == 201, r.text
    approval = r.json()["id"]
    r = await client.post(
        "/v1/groups/extra/members", json={"member": "group:research"}, headers=admin
    )
    assert r.status_code == 200, r.text
    r = await client.post(f"/v1/approvals/{approval}/approve", headers=admin)
    assert r.status_code == 409 and r.json()["type"].endswith("membership-cycle"), r.text
    assert (await client.get(f"/v1/approvals/{approval}", headers=admin)).json()[
        "status"
    ] == "pending"
    # A request that cannot apply now is refused when made.
    r = await request(client, writer, "POST", "/v1/findings/999/accept")
    assert r.status_code == 404, r.text


async def test_members_and_findings_and_datasets_are_approved_through_the_same_pipeline(
    client, admin, tokens
):
    await org(client, admin)
    writer = tokens["policy:write"]
    assert (
        await client.post("/v1/grants", json=grant_body("group:all"), headers=admin)
    ).status_code == 409
    # a grant to an empty group, then a member through an approval
    assert (await client.post("/v1/grants", json=grant_body("group:ops"), headers=admin)).is_success
    r = await client.post("/v1/groups/ops/members", json={"member": "user:o1"}, headers=admin)
    assert r.status_code == 409
    r = await approved(
        client, writer, admin, "POST", "/v1/groups/ops/members", {"member": "user:o1"}
    )
    assert r.status_code == 200, r.text
    [finding] = r.json()["result"]["findings_opened"]
    assert finding["status"] == "accepted"
    # narrowing the audience of the dataset, through an approval
    r = await client.post("/v1/grants", json=grant_body("group:research"), headers=admin)
    assert r.status_code == 201, r.text
    body = {"owner": "user:o", "sensitivity": "restricted", "intended_audience": []}
    r = await client.put("/v1/datasets/act.keys", json=body, headers=admin)
    assert r.status_code == 409
    r = await approved(client, writer, admin, "PUT", "/v1/datasets/act.keys", body)
    assert r.status_code == 200, r.text
    assert r.json()["result"]["intended_audience"] == []
    # a reopened finding accepted again, through an approval
    r = await client.post(f"/v1/findings/{finding['id']}/accept", json=ACCEPT, headers=admin)
    assert r.status_code == 403
    r = await approved(client, writer, admin, "POST", f"/v1/findings/{finding['id']}/accept")
    assert r.status_code == 200, r.text
    assert r.json()["result"]["accepted_by"] == "admin"
