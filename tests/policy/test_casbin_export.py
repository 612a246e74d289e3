"""`GET /v1/policy/casbin` as a Casbin user would take it: the exported CSV loaded by pycasbin's
own file adapter with `policies/model.conf` (and an `isLive` of the user's own) decides every
(principal, dataset, action, purpose) exactly as `/v1/check` does, after each of a random
sequence of the API's and the IdP's changes (grants allow and deny, for any purpose or for some,
with expiries; memberships; audiences and guards; holds; deactivations). A check without a
purpose is Casbin's request with purpose "", except on a dataset that requires a purpose, where
`/v1/check` denies it (`purpose_required`) as the export's header says."""

import asyncio
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import casbin
import httpx
import pytest

from app.db import begin_write
from app.identity import provisioning
from tests.identity.test_holds_agree_with_casbin import (
    API_GROUPS,
    CHECK_PURPOSES,
    DATASETS,
    GRANT_PURPOSES,
    IDP,
    IDP_GROUPS,
    RESOURCES,
    USERS,
    api_step,
    idp_step,
)

MODEL = Path(__file__).resolve().parents[2] / "policies" / "model.conf"
ACTIONS = ("read", "write", "export")


def is_live(exp: str, now: str) -> bool:
    """The model's isLive, written as its comment in the export says (not aclaudit's code)."""
    return exp == "" or float(now) < float(exp)


async def exported(
    client: httpx.AsyncClient, tokens: Any, tmp_path: Path
) -> tuple[casbin.Enforcer, str]:
    r = await client.get("/v1/policy/casbin", headers=tokens["audit:read"])
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    path = tmp_path / "policy.csv"
    path.write_text(r.text)
    enforcer = casbin.Enforcer(str(MODEL), str(path))
    enforcer.add_function("isLive", is_live)
    return enforcer, r.text


async def assert_export_decides_as_check(
    client: httpx.AsyncClient, tokens: Any, tmp_path: Path, step: str, required: set[str]
) -> str:
    """The export (its text), after checking it decides as /v1/check does (`required`: the
    datasets that require a purpose)."""
    enforcer, text = await exported(client, tokens, tmp_path)
    asked = [
        {"principal": p, "dataset": d, "action": a, "purpose": q}
        for p in USERS
        for d in DATASETS
        for a in ACTIONS
        for q in [*CHECK_PURPOSES, None]
    ]
    before = time.time()
    r = await client.post("/v1/check/batch", json={"checks": asked}, headers=tokens["check"])
    after = time.time()
    assert r.status_code == 200, r.text
    for check, answer in zip(asked, r.json()["results"], strict=True):
        if check["purpose"] is None and check["dataset"] in required:
            assert answer["decision"] == "deny", (step, check, answer)
            assert answer["reason"]["code"] == "purpose_required", (step, check, answer)
            continue
        request = (check["principal"], check["dataset"], check["action"], check["purpose"] or "")
        at_start = enforcer.enforce(*request, str(before - 0.01))
        at_end = enforcer.enforce(*request, str(after + 0.01))
        if at_start == at_end:  # (else an expiry fell inside the batch: either answer is right)
            assert (answer["decision"] == "allow") == at_start, (step, check, answer)
    return text


async def expiring_grant(
    client: httpx.AsyncClient, admin: Any, rng: random.Random, grants: list[int]
) -> str:
    """A grant of any action that lapses within a few steps, or in an hour."""
    seconds = rng.choice([0.3, 1.0, 3600.0])
    body = {
        "principal": rng.choice([*USERS, *IDP_GROUPS, *API_GROUPS]),
        "resource": rng.choice([*RESOURCES, "*"]),
        "action": rng.choice(ACTIONS),
        "effect": "deny" if rng.random() < 0.3 else "allow",
        "justification": "random",
        "expires_at": (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat(),
        "purposes": GRANT_PURPOSES[int(seconds * 10) % len(GRANT_PURPOSES)],
    }
    r = await client.post("/v1/grants", json=body, headers=admin)
    if r.status_code == 422 and "body.expires_at" in r.text:
        return "expiring grant: lapsed before it was made (a loaded machine)"
    assert r.status_code in (201, 409), r.text
    if r.status_code == 201:
        grants.append(r.json()["id"])
    return f"expiring grant {body} -> {r.status_code}"


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
async def test_exported_policy_decides_as_check_in_a_plain_casbin_enforcer(
    app, client, admin, tokens, tmp_path, seed
):
    rng = random.Random(seed)
    required = set()
    for n, dataset in enumerate(DATASETS):  # the first two require a purpose, the last not
        body = {"owner": "user:o", "sensitivity": "restricted", "intended_audience": API_GROUPS,
                "purpose_required": n < 2}  # fmt: skip
        r = await client.put(f"/v1/datasets/{dataset}", json=body, headers=admin)
        assert r.status_code == 201, r.text
        assert r.json()["purpose_required"] is (n < 2)
        if n < 2:
            required.add(dataset)
    for group in IDP_GROUPS:
        async with app.state.sessionmaker() as session, session.begin():
            await begin_write(session)
            await provisioning.claim_group(session, group=group, actor=IDP)
    grants: list[int] = []
    # Grants to the IdP's groups while they are empty (nothing to refuse): its later changes
    # are what would widen them, and are held.
    for group, resource in (("eng", "act.*"), ("all", "hr.pay"), ("ops", "act.keys")):
        body = {"principal": f"group:{group}", "resource": resource, "action": "read",
                "effect": "allow", "justification": "idp group"}  # fmt: skip
        r = await client.post("/v1/grants", json=body, headers=admin)
        assert r.status_code == 201, r.text
        grants.append(r.json()["id"])
    exports = []
    for n in range(24):
        roll = rng.random()
        if roll < 0.35:
            step = await idp_step(app, rng)
        elif roll < 0.55:
            step = await expiring_grant(client, admin, rng, grants)
        else:
            step = await api_step(client, admin, rng, grants)
        exports.append(
            await assert_export_decides_as_check(client, tokens, tmp_path, f"{n}: {step}", required)
        )
        if rng.random() < 0.2:
            await asyncio.sleep(0.35)  # let the shortest expiries lapse between steps
    lines = {line.split(", ")[0] + (" hold" if ", -" in line else "") for t in exports
             for line in t.splitlines()}  # fmt: skip
    assert {"g", "p", "p hold"} <= lines, "the sequence exported no membership or no hold"
    purposes = {line.split(", ")[4] for t in exports for line in t.splitlines() if line[:2] == "p,"}
    assert "*" in purposes and purposes - {"*"}, "the sequence exported no purpose named"


async def test_export_needs_audit_read_and_names_its_version(client, tokens, admin):
    r = await client.get("/v1/policy/casbin")
    assert r.status_code == 401
    r = await client.get("/v1/policy/casbin", headers=tokens["check"])
    assert r.status_code == 403
    r = await client.post(
        "/v1/grants",
        json={"principal": "user:a", "resource": "ea.*", "action": "read", "effect": "allow"},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    grant_id, version = r.json()["id"], r.json()["policy_version"]
    r = await client.get("/v1/policy/casbin", headers=tokens["audit:read"])
    assert (
        r.text.splitlines()[0]
        == f"# aclaudit policy, version {version}: load with policies/model.conf."
    )
    assert f"p, user:a, ea.*, read, *, allow, , {grant_id}" in r.text.splitlines()


async def test_a_grant_is_one_p_line_per_purpose_and_a_hold_denies_every_purpose(
    client, tokens, admin
):
    body = {"principal": "user:a", "resource": "ea.*", "action": "read", "effect": "allow",
            "purposes": ["model-training", "eval"]}  # fmt: skip
    r = await client.post("/v1/grants", json=body, headers=admin)
    assert r.status_code == 201, r.text
    assert r.json()["purposes"] == ["model-training", "eval"]
    grant_id = r.json()["id"]
    lines = (await client.get("/v1/policy/casbin", headers=tokens["audit:read"])).text.splitlines()
    assert [line for line in lines if line.endswith(f", {grant_id}")] == [
        f"p, user:a, ea.*, read, eval, allow, , {grant_id}",
        f"p, user:a, ea.*, read, model-training, allow, , {grant_id}",
    ]
