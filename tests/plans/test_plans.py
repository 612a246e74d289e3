"""Policy documents: plan shows and changes nothing; apply makes them true, all or nothing."""

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.approvals.support import approved, request

LATER = (datetime.now(UTC) + timedelta(days=30)).isoformat()
AUDIENCE = ["group:research", "service:trainer"]
STATE = ("/v1/grants", "/v1/findings", "/v1/groups", "/v1/datasets", "/v1/alerts")


def document(guard: str = "alert", **extra: Any) -> dict[str, Any]:
    """research = {alice}; eng = {bob, carol}; all = {eng, research, dave}."""
    return {
        "groups": {
            "research": ["user:alice"],
            "eng": ["user:bob", "user:carol"],
            "all": ["group:eng", "group:research", "user:dave"],
        },
        "datasets": {
            "activity.keys": {
                "owner": "group:research",
                "sensitivity": "restricted",
                "intended_audience": AUDIENCE,
                "guard": guard,
            }
        },
        "grants": [
            {
                "principal": "group:research",
                "resource": "activity.*",
                "action": "read",
                "justification": "the research itself",
            }
        ],
        **extra,
    }


OVER_BROAD = {
    "principal": "group:all",
    "resource": "activity.*",
    "action": "read",
    "justification": "everyone",
}


async def state(client: httpx.AsyncClient, admin: dict[str, str]) -> list[Any]:
    snapshot = [(await client.get(path, headers=admin)).json() for path in STATE]
    snapshot.append((await client.get("/readyz")).json()["policy_version"])
    return snapshot


async def test_apply_makes_the_document_true_and_is_idempotent(client, admin):
    r = await client.post("/v1/policy/apply", json=document(), headers=admin)
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["applied"] is True and result["policy_version"] >= 1
    assert result["datasets_changed"] == ["activity.keys"]
    assert {m["group"] for m in result["memberships_changed"]} == {
        "group:research",
        "group:eng",
        "group:all",
    }
    assert [g["principal"] for g in result["grants_created"]] == ["group:research"]
    assert result["findings_opened"] == [] and result["refused"] == []
    group = (await client.get("/v1/groups/all", headers=admin)).json()
    assert group["transitive_member_count"] == 4  # alice, bob, carol, dave

    again = (await client.post("/v1/policy/apply", json=document(), headers=admin)).json()
    assert again["datasets_changed"] == again["memberships_changed"] == []
    assert again["grants_created"] == again["grants_revoked"] == []
    assert again["policy_version"] is None  # nothing changed, not even the version


async def test_plan_reports_what_apply_would_do_and_changes_nothing(client, admin):
    await client.post("/v1/policy/apply", json=document(), headers=admin)
    before = await state(client, admin)
    wider = document(grants=[*document()["grants"], OVER_BROAD])
    r = await client.post("/v1/policy/plan", json=wider, headers=admin)
    assert r.status_code == 200, r.text
    planned = r.json()
    assert planned["applied"] is False and planned["policy_version"] is None
    assert [g["principal"] for g in planned["grants_created"]] == ["group:all"]
    [finding] = planned["findings_opened"]
    assert (finding["dataset"], finding["principal"], finding["excess_count"]) == (
        "activity.keys",
        "group:all",
        3,
    )
    assert finding["severity"] == "high" and planned["refused"] == []
    assert await state(client, admin) == before

    applied = (await client.post("/v1/policy/apply", json=wider, headers=admin)).json()
    [opened] = applied["findings_opened"]
    assert (opened["excess_count"], opened["excess_sample"]) == (3, finding["excess_sample"])


async def test_block_guard_refuses_the_whole_document_unless_accepted(client, admin, tokens):
    await client.post("/v1/policy/apply", json=document(guard="block"), headers=admin)
    before = await state(client, admin)
    wider = document(guard="block", grants=[*document()["grants"], OVER_BROAD])
    wider["groups"]["research"] = ["user:alice", "user:erin"]  # a harmless change beside it

    planned = (await client.post("/v1/policy/plan", json=wider, headers=admin)).json()
    [refused] = planned["refused"]
    assert (refused["dataset"], refused["principal"]) == ("activity.keys", "group:all")

    r = await client.post("/v1/policy/apply", json=wider, headers=admin)
    assert r.status_code == 409, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert [(f["principal"], f["grant_id"]) for f in r.json()["findings"]] == [
        ("group:all", None)  # the document's new grant was never made
    ]
    assert await state(client, admin) == before  # erin did not join research either

    # Accepted directly: the plan says apply refuses it, and apply does (two-person control).
    direct = {**wider, "accept_exposure": {"reason": "red-team exercise", "until": LATER}}
    planned = (await client.post("/v1/policy/plan", json=direct, headers=admin)).json()
    assert [f["principal"] for f in planned["refused"]] == ["group:all"]
    r = await client.post("/v1/policy/apply", json=direct, headers=admin)
    assert r.status_code == 403 and r.json()["approvals"] == "/v1/approvals", r.text
    assert await state(client, admin) == before
    asked = await request(
        client, tokens["policy:write"], "POST", "/v1/policy/apply", wider,
        reason="red-team exercise", until=LATER,
    )  # fmt: skip
    assert asked.status_code == 201, asked.text
    [would_open] = asked.json()["would_open"]
    assert (would_open["status"], would_open["reason"]) == ("accepted", "red-team exercise")
    # nothing changed but the request's alert
    assert (await state(client, admin))[:4] == before[:4] and (await state(client, admin))[
        5:
    ] == before[5:]
    r = await client.post(f"/v1/approvals/{asked.json()['id']}/approve", headers=admin)
    assert r.status_code == 200, r.text
    [accepted] = r.json()["result"]["findings_opened"]
    assert accepted["status"] == "accepted" and accepted["reason"] == "red-team exercise"
    assert accepted["excess_sample"] == would_open["excess_sample"]


async def test_guard_judges_the_net_effect_of_the_document(client, admin):
    """A broad allow and a deny for everyone outside the audience, together, expose nothing."""
    await client.post("/v1/policy/apply", json=document(guard="block"), headers=admin)
    deny_eng = {"principal": "group:eng", "resource": "activity.*", "action": "read"}
    deny_dave = {"principal": "user:dave", "resource": "activity.*", "action": "read"}
    grants = [
        *document()["grants"],
        OVER_BROAD,
        {**deny_eng, "effect": "deny"},
        {**deny_dave, "effect": "deny"},
    ]
    r = await client.post(
        "/v1/policy/apply", json=document(guard="block", grants=grants), headers=admin
    )
    assert r.status_code == 200, r.text
    assert r.json()["findings_opened"] == []


async def test_prune_revokes_unlisted_grants_and_resolves_their_findings(client, admin):
    wider = document(grants=[*document()["grants"], OVER_BROAD])
    opened = (await client.post("/v1/policy/apply", json=wider, headers=admin)).json()
    [finding] = opened["findings_opened"]

    kept = (await client.post("/v1/policy/apply", json=document(), headers=admin)).json()
    assert kept["grants_revoked"] == []  # without prune_grants, unlisted grants stay

    pruned = (
        await client.post("/v1/policy/apply", json=document(prune_grants=True), headers=admin)
    ).json()
    assert [g["principal"] for g in pruned["grants_revoked"]] == ["group:all"]
    assert [f["id"] for f in pruned["findings_resolved"]] == [finding["id"]]
    listed = (await client.get("/v1/grants", headers=admin)).json()["items"]
    assert [g["principal"] for g in listed] == ["group:research"]


async def test_membership_changes_in_a_document_are_guarded_too(client, admin):
    await client.post("/v1/policy/apply", json=document(guard="block"), headers=admin)
    joined = document(guard="block")
    joined["groups"]["research"] = ["user:alice", "group:eng"]  # eng is not the audience
    # ...but joining research makes eng part of the audience, so that is not an exposure:
    assert (await client.post("/v1/policy/plan", json=joined, headers=admin)).json()[
        "refused"
    ] == []
    granted = document(guard="block", grants=[*document()["grants"]])
    granted["grants"].append(
        {"principal": "group:eng", "resource": "activity.*", "action": "read", "justification": "x"}
    )
    assert (await client.post("/v1/policy/apply", json=granted, headers=admin)).status_code == 409


async def test_incremental_result_matches_a_full_scan(client, admin):
    wider = document(grants=[*document()["grants"], OVER_BROAD])
    await client.post("/v1/policy/apply", json=wider, headers=admin)
    moved = document(grants=wider["grants"])
    moved["groups"]["eng"] = ["user:bob"]
    moved["groups"]["all"] = ["group:eng", "group:research", "user:dave", "user:frank"]
    await client.post("/v1/policy/apply", json=moved, headers=admin)
    scan = (await client.post("/v1/scan", headers=admin)).json()
    assert (scan["opened"], scan["resolved"]) == (0, 0)
    [finding] = (await client.get("/v1/findings?status=open", headers=admin)).json()["items"]
    assert finding["excess_count"] == 3  # bob, dave, frank (carol left eng)


async def test_invalid_document_names_the_field_and_changes_nothing(client, admin):
    before = await state(client, admin)
    unjustified = document(grants=[{**OVER_BROAD, "justification": None}])
    r = await client.post("/v1/policy/apply", json=unjustified, headers=admin)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == "body.grants.0.justification"
    assert await state(client, admin) == before

    cyclic = document()
    cyclic["groups"]["eng"] = ["user:bob", "group:all"]
    r = await client.post("/v1/policy/apply", json=cyclic, headers=admin)
    assert r.status_code == 409, r.text
    assert r.json()["errors"][0]["field"] == "body.groups.all.0"  # eng already holds all
    assert await state(client, admin) == before

    r = await client.post("/v1/policy/plan", json={"grant": []}, headers=admin)
    assert r.status_code == 422 and "grant" in r.json()["detail"]
    r = await client.post("/v1/policy/plan", json={"groups": {"Bad Name": []}}, headers=admin)
    assert r.status_code == 422, r.text

    # two keys that name one group once lower-cased: one set of members would silently vanish
    twice = {"groups": {"ENG-X": ["user:q"], "eng-x": ["user:r"]}}
    for route in ("plan", "apply"):
        r = await client.post(f"/v1/policy/{route}", json=twice, headers=admin)
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["field"] == "body.groups"
    assert await state(client, admin) == before


async def test_plan_and_apply_need_policy_write(client, tokens):
    for route in ("plan", "apply"):
        r = await client.post(f"/v1/policy/{route}", json=document(), headers=tokens["audit:read"])
        assert r.status_code == 403, r.text
    r = await client.post("/v1/policy/plan", json=document(), headers=tokens["policy:write"])
    assert r.status_code == 200 and r.json()["applied"] is False
    r = await client.post("/v1/policy/apply", json=document(), headers=tokens["policy:write"])
    assert r.status_code == 200 and r.json()["applied"] is True


async def guard_alerts(client: httpx.AsyncClient, admin: dict[str, str]) -> list[Any]:
    items = (await client.get("/v1/alerts", headers=admin)).json()["items"]
    return [a for a in items if a["type"] == "dataset.guard_changed"]


async def test_a_document_cannot_switch_a_block_guard_off_to_widen_the_dataset(client, admin):
    await client.post("/v1/policy/apply", json=document(guard="block"), headers=admin)
    before = await state(client, admin)
    # One document: the guard lowered and the grant to everyone beside it.
    switched = document(guard="alert", grants=[*document()["grants"], OVER_BROAD])
    r = await client.post("/v1/policy/apply", json=switched, headers=admin)
    assert r.status_code == 409, r.text
    assert r.json()["type"].endswith("/guard-change-refused")
    assert [(f["id"], f["grant_id"]) for f in r.json()["findings"]] == [(None, None)]
    planned = (await client.post("/v1/policy/plan", json=switched, headers=admin)).json()
    [change] = planned["guards_changed"]
    assert (change["dataset"], change["old_guard"], change["new_guard"], change["refused"]) == (
        "activity.keys",
        "block",
        "alert",
        True,
    )
    assert [(f["principal"], f["excess_count"]) for f in planned["refused"]] == [("group:all", 3)]
    # Lowered alone, it is refused too: nothing is open, but the guard would be off.
    r = await client.post("/v1/policy/apply", json=document(guard="alert"), headers=admin)
    assert r.status_code == 409, r.text
    assert await state(client, admin) == before
    assert await guard_alerts(client, admin) == []

    # A document that omits the guard keeps it, even when it re-classifies the dataset.
    omitted = document(grants=[*document()["grants"], OVER_BROAD])
    del omitted["datasets"]["activity.keys"]["guard"]
    omitted["datasets"]["activity.keys"]["sensitivity"] = "internal"
    r = await client.post("/v1/policy/apply", json=omitted, headers=admin)
    assert r.status_code == 409, r.text
    assert (await client.get("/v1/datasets/activity.keys", headers=admin)).json()["guard"] == (
        "block"
    )


async def test_a_document_raising_a_guard_over_open_findings_needs_acceptance(
    client, admin, tokens
):
    wider = document(guard="alert", grants=[*document()["grants"], OVER_BROAD])
    applied = (await client.post("/v1/policy/apply", json=wider, headers=admin)).json()
    [finding] = applied["findings_opened"]
    raised = document(guard="block", grants=wider["grants"])
    r = await client.post("/v1/policy/apply", json=raised, headers=admin)
    assert r.status_code == 409, r.text
    assert [f["id"] for f in r.json()["findings"]] == [finding["id"]]
    planned = (await client.post("/v1/policy/plan", json=raised, headers=admin)).json()
    [change] = planned["guards_changed"]
    assert change["refused"] is True
    assert [f["id"] for f in change["findings"]] == [finding["id"]]
    assert [f["id"] for f in planned["refused"]] == [finding["id"]]
    assert (await client.get("/v1/datasets/activity.keys", headers=admin)).json()["guard"] == (
        "alert"
    )

    direct = {**raised, "accept_exposure": {"reason": "owner signed off", "until": LATER}}
    planned = (await client.post("/v1/policy/plan", json=direct, headers=admin)).json()
    assert planned["refused"] == [] and planned["guards_changed"][0]["refused"] is False
    assert await guard_alerts(client, admin) == []  # a plan raises nothing
    r = await client.post("/v1/policy/apply", json=direct, headers=admin)
    assert r.status_code == 403, r.text  # accepting on a block guard takes two people
    r = await approved(
        client, tokens["policy:write"], admin, "POST", "/v1/policy/apply", raised,
        reason="owner signed off", until=LATER,
    )  # fmt: skip
    assert r.status_code == 200, r.text
    [change] = r.json()["result"]["guards_changed"]
    [accepted] = change["findings"]
    assert (accepted["id"], accepted["status"], accepted["reason"]) == (
        finding["id"],
        "accepted",
        "owner signed off",
    )
    [alert] = await guard_alerts(client, admin)
    assert alert["dataset"] == "activity.keys"
    assert "from alert to block by policy-write" in alert["summary"]
    # Applied again, nothing moves and nothing more is raised.
    again = (await client.post("/v1/policy/apply", json=direct, headers=admin)).json()
    assert again["guards_changed"] == [] and len(await guard_alerts(client, admin)) == 1


async def test_plans_answer_while_other_writers_commit_meanwhile(client, admin, tokens):
    """A plan rolls its work back before its admin-trail entry is written; that entry must be
    written as a writer, or SQLite refuses it at once (503) when another writer committed in
    between (checks commit their log entries all the time)."""
    import asyncio

    await client.post("/v1/policy/apply", json=document(), headers=admin)
    check = {"principal": "user:alice", "dataset": "employee_activity.keystrokes", "action": "read"}

    async def checks() -> None:
        for _ in range(60):
            r = await client.post("/v1/check", json=check, headers=tokens["check"])
            assert r.status_code == 200, r.text

    async def plans() -> list[int]:
        answers = []
        for _ in range(30):
            r = await client.post("/v1/policy/plan", json=document(), headers=admin)
            answers.append(r.status_code)
        return answers

    *_, answers = await asyncio.gather(checks(), checks(), checks(), plans())
    assert answers == [200] * 30
