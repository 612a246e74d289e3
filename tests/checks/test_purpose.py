"""Purpose: data collected for training is read for training. Grants name the purposes they
allow; a dataset that requires a purpose denies a check without one; a purpose no live grant
allows is denied and says so, in the answer, the access log, explain and replay."""

from typing import Any

import httpx
import pytest

from app.client import AsyncAclauditClient

KEYS = "employee_activity.keystrokes"
METRICS = "ops.metrics"


async def seed(client: httpx.AsyncClient, admin: dict[str, str]) -> dict[str, int]:
    """Research may read the activity data for model training; everyone may read the ops
    metrics for any purpose."""
    r = await client.put(
        "/v1/groups/mci-research/members", json={"members": ["user:alice"]}, headers=admin
    )
    assert r.status_code == 200, r.text
    r = await client.put(
        "/v1/groups/all-employees/members",
        json={"members": ["user:alice", "user:bob"]},
        headers=admin,
    )
    assert r.status_code == 200, r.text
    for dataset, sensitivity in ((KEYS, "confidential"), (METRICS, "internal")):
        body = {"owner": "user:o", "sensitivity": sensitivity, "intended_audience": []}
        r = await client.put(f"/v1/datasets/{dataset}", json=body, headers=admin)
        assert r.status_code == 201, r.text
    ids = {}
    grants: dict[str, dict[str, Any]] = {
        "training": {
            "principal": "group:mci-research",
            "resource": "employee_activity.*",
            "purposes": ["model-training"],
            "justification": "charter MCI-7",
        },
        "metrics": {"principal": "group:all-employees", "resource": "ops.*"},
        "bob_eval": {
            "principal": "user:bob",
            "resource": METRICS,
            "purposes": ["eval"],
            "effect": "deny",
        },
    }
    for name, grant in grants.items():
        body = {"action": "read", "effect": "allow", **grant}
        r = await client.post("/v1/grants", json=body, headers=admin)
        assert r.status_code == 201, r.text
        ids[name] = r.json()["id"]
    return ids


async def check(client, tokens, principal, dataset, purpose=None):
    body = {"principal": principal, "dataset": dataset, "action": "read"}
    if purpose is not None:
        body["purpose"] = purpose
    r = await client.post("/v1/check", json=body, headers=tokens["check"])
    assert r.status_code == 200, r.text
    return r.json()


async def test_datasets_require_a_purpose_by_sensitivity_unless_told(client, admin):
    expected = {"public": False, "internal": False, "confidential": True, "restricted": True}
    body: dict[str, Any]
    for sensitivity, required in expected.items():
        body = {"owner": "user:o", "sensitivity": sensitivity}
        r = await client.put(f"/v1/datasets/d.{sensitivity}", json=body, headers=admin)
        assert r.status_code == 201, r.text
        assert r.json()["purpose_required"] is required
    body = {"owner": "user:o", "sensitivity": "restricted", "purpose_required": False}
    r = await client.put("/v1/datasets/d.restricted", json=body, headers=admin)
    assert r.json()["purpose_required"] is False
    # Omitted, a stored requirement is kept, and re-classifying as sensitive raises it.
    body = {"owner": "user:o", "sensitivity": "public", "purpose_required": True}
    await client.put("/v1/datasets/d.public", json=body, headers=admin)
    r = await client.put("/v1/datasets/d.public", json={**body, "purpose_required": None},
                         headers=admin)  # fmt: skip
    assert r.json()["purpose_required"] is True
    body = {"owner": "user:o", "sensitivity": "confidential"}
    r = await client.put("/v1/datasets/d.internal", json=body, headers=admin)
    assert r.json()["purpose_required"] is True


async def test_a_check_without_purpose_on_a_dataset_that_requires_one_is_denied_and_logged(
    client, admin, tokens
):
    await seed(client, admin)
    answer = await check(client, tokens, "user:alice", KEYS)
    assert (answer["decision"], answer["reason"]["code"]) == ("deny", "purpose_required")
    entry = await client.get(
        f"/v1/access-log/{answer['access_log_id']}", headers=tokens["audit:read"]
    )
    assert entry.json()["reason"]["code"] == "purpose_required"
    assert entry.json()["purpose"] is None
    # A dataset that does not require one: a grant for any purpose allows a check naming none.
    answer = await check(client, tokens, "user:alice", METRICS)
    assert (answer["decision"], answer["reason"]["code"]) == ("allow", "granted")


async def test_a_grant_for_a_purpose_allows_only_that_purpose(client, admin, tokens):
    ids = await seed(client, admin)
    answer = await check(client, tokens, "user:alice", KEYS, "model-training")
    assert (answer["decision"], answer["reason"]["grant_id"]) == ("allow", ids["training"])
    for purpose in ("analytics", "*", "Model-Training"):
        answer = await check(client, tokens, "user:alice", KEYS, purpose)
        assert (answer["decision"], answer["reason"]["code"]) == ("deny", "purpose_not_granted")
    # No grant at all, whatever the purpose: no_grant.
    answer = await check(client, tokens, "user:bob", KEYS, "model-training")
    assert (answer["decision"], answer["reason"]["code"]) == ("deny", "no_grant")
    # A deny for one purpose denies that purpose only.
    answer = await check(client, tokens, "user:bob", METRICS, "eval")
    assert (answer["decision"], answer["reason"]["code"]) == ("deny", "denied_by_grant")
    answer = await check(client, tokens, "user:bob", METRICS, "dashboards")
    assert (answer["decision"], answer["reason"]["grant_id"]) == ("allow", ids["metrics"])


async def test_the_batch_and_the_access_log_carry_the_purpose_and_its_reasons(
    client, admin, tokens
):
    await seed(client, admin)
    checks = [
        {"principal": "user:alice", "dataset": KEYS, "action": "read", "purpose": purpose}
        for purpose in ("model-training", "analytics")
    ] + [{"principal": "user:alice", "dataset": KEYS, "action": "read"}]
    r = await client.post("/v1/check/batch", json={"checks": checks}, headers=tokens["check"])
    assert r.status_code == 200, r.text
    codes = [result["reason"]["code"] for result in r.json()["results"]]
    assert codes == ["granted", "purpose_not_granted", "purpose_required"]
    r = await client.get(f"/v1/access-log?dataset={KEYS}", headers=tokens["audit:read"])
    logged = {(e["purpose"], e["reason"]["code"]) for e in r.json()["items"]}
    assert logged == {
        ("model-training", "granted"),
        ("analytics", "purpose_not_granted"),
        (None, "purpose_required"),
    }
    for entry in r.json()["items"]:  # the policy's history replays each exactly
        replay = await client.get(
            f"/v1/access-log/{entry['id']}/replay", headers=tokens["audit:read"]
        )
        assert replay.json()["matches"] is True, replay.json()


async def test_explain_and_access_answer_per_purpose(client, admin, tokens):
    ids = await seed(client, admin)
    reader = tokens["audit:read"]
    query = f"/v1/explain?principal=user:alice&dataset={KEYS}"
    r = await client.get(query + "&purpose=model-training", headers=reader)
    assert (r.json()["decision"], r.json()["purpose"]) == ("allow", "model-training")
    assert [(g["grant_id"], g["purpose"]) for g in r.json()["grants"]] == [
        (ids["training"], "model-training")
    ]
    r = await client.get(query + "&purpose=analytics", headers=reader)
    assert (r.json()["decision"], r.json()["reason"]["code"]) == ("deny", "purpose_not_granted")
    r = await client.get(query, headers=reader)
    assert r.json()["reason"]["code"] == "purpose_required"
    r = await client.get("/v1/principals/user:alice/access", headers=reader)
    assert {(i["dataset"], tuple(i["purposes"])) for i in r.json()["items"]} == {
        (KEYS, ("model-training",)),
        (METRICS, ("*", "eval", "model-training")),  # any: those named too
    }
    r = await client.get("/v1/principals/user:bob/access", headers=reader)
    # bob may read the metrics for any purpose but eval, which a deny for it holds back
    assert {(i["dataset"], tuple(i["purposes"])) for i in r.json()["items"]} == {
        (METRICS, ("*", "model-training"))
    }


@pytest.mark.parametrize(
    ("purposes", "field"),
    [
        (["Model-Training"], "purposes.0"),
        (["model training"], "purposes.0"),
        (["-x"], "purposes.0"),
        (["a" * 65], "purposes.0"),
        (["ok", ""], "purposes.1"),
        (["*", "model-training"], "purposes"),
        ([], "purposes"),
        ("model-training", "purposes"),
        ([None], "purposes.0"),
    ],
)
async def test_a_bad_purpose_is_refused_naming_the_field(client, admin, purposes, field):
    body = {"principal": "user:a", "resource": "x.y", "action": "read", "effect": "allow",
            "purposes": purposes}  # fmt: skip
    r = await client.post("/v1/grants", json=body, headers=admin)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    names = {".".join(str(p) for p in e["loc"]) for e in r.json()["errors"]}
    assert f"body.{field}" in names or any(n.startswith(f"body.{field}") for n in names), names


async def test_grants_default_to_any_purpose_and_list_their_purposes(client, admin):
    body = {"principal": "user:a", "resource": "x.y", "action": "read", "effect": "allow"}
    r = await client.post("/v1/grants", json=body, headers=admin)
    assert r.json()["purposes"] == ["*"]
    r = await client.post("/v1/grants", json={**body, "purposes": ["b", "a", "b"]}, headers=admin)
    assert r.json()["purposes"] == ["b", "a"]
    r = await client.get(f"/v1/grants/{r.json()['id']}", headers=admin)
    assert r.json()["purposes"] == ["b", "a"]


def test_the_openapi_document_lists_the_purpose_reasons(app):
    schema = app.openapi()["components"]["schemas"]["ReasonCode"]
    assert {"purpose_required", "purpose_not_granted"} <= set(schema["enum"])
    assert "purpose_required" in schema["description"]


async def test_the_client_takes_the_purpose_reasons_as_recorded_denies(app, client, admin, tokens):
    await seed(client, admin)
    transport = httpx.ASGITransport(app=app)
    secret = tokens["check"]["Authorization"].removeprefix("Bearer ")
    async with AsyncAclauditClient("http://aclaudit.test", token=secret, transport=transport) as c:
        allowed = await c.check("user:alice", KEYS, purpose="model-training")
        assert allowed.allowed and allowed.reason.code == "granted"
        for purpose, code in ((None, "purpose_required"), ("analytics", "purpose_not_granted")):
            denied = await c.check("user:alice", KEYS, purpose=purpose)
            assert (denied.allowed, denied.recorded, denied.reason.code) == (False, True, code)
