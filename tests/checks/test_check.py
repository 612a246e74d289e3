from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import text, update

from app import policy_version
from app.identifiers import Action, Effect
from app.policy import service as policy_service
from app.policy import snapshot as snapshot_module
from app.policy.models import Grant
from app.policy.schemas import GrantCreate
from app.policy.state import PolicyState, load_rows

AUDIENCE = ["group:mci-research", "service:trainer"]


async def seed(client: httpx.AsyncClient, admin: dict[str, str]) -> dict[str, int]:
    """A small org: eng ⊃ platform ⊃ bob; research holds alice; one keystrokes dataset."""
    await client.put("/v1/groups/platform/members", json={"members": ["user:bob"]}, headers=admin)
    await client.put(
        "/v1/groups/eng/members", json={"members": ["group:platform", "user:carol"]}, headers=admin
    )
    await client.put(
        "/v1/groups/mci-research/members", json={"members": ["user:alice"]}, headers=admin
    )
    r = await client.put(
        "/v1/datasets/employee_activity.keystrokes",
        json={
            "owner": "group:mci-research",
            "sensitivity": "internal",
            "intended_audience": AUDIENCE,
        },
        headers=admin,
    )
    assert r.status_code == 201, r.text
    ids = {}
    for name, principal, effect in [
        ("research", "group:mci-research", "allow"),
        ("eng", "group:eng", "allow"),
        ("carol_deny", "user:carol", "deny"),
    ]:
        r = await client.post(
            "/v1/grants",
            json={
                "principal": principal,
                "resource": "employee_activity.*",
                "action": "read",
                "effect": effect,
            },
            headers=admin,
        )
        assert r.status_code == 201, r.text
        ids[name] = r.json()["id"]
    return ids


def check_body(principal: str, dataset: str = "employee_activity.keystrokes", **extra):
    return {"principal": principal, "dataset": dataset, "action": "read", **extra}


async def test_allow_through_nested_group_reports_grant_and_path(client, tokens, admin):
    ids = await seed(client, admin)
    r = await client.post(
        "/v1/check",
        json=check_body(
            "user:bob", purpose="debugging", request_id="r-1", data_subjects=["user:dana"]
        ),
        headers=tokens["check"],
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["decision"] == "allow" and body["allowed"] is True
    assert body["reason"] == {
        "code": "granted",
        "grant_id": ids["eng"],
        "via": ["user:bob", "group:platform", "group:eng"],
    }
    assert body["out_of_audience"] is True  # bob is in eng, not in the intended audience
    entry = (await client.get(f"/v1/access-log/{body['access_log_id']}", headers=admin)).json()
    assert entry["decision_id"] == body["decision_id"]
    assert entry["caller"] == "check"
    assert entry["purpose"] == "debugging" and entry["request_id"] == "r-1"
    assert entry["data_subjects"] == ["user:dana"]
    assert entry["policy_version"] == body["policy_version"]


async def test_audience_member_read_is_not_out_of_audience(client, tokens, admin):
    await seed(client, admin)
    body = (
        await client.post("/v1/check", json=check_body("user:alice"), headers=tokens["check"])
    ).json()
    assert body["decision"] == "allow" and body["out_of_audience"] is False


async def test_deny_grant_wins_over_group_allow(client, tokens, admin):
    ids = await seed(client, admin)
    body = (
        await client.post("/v1/check", json=check_body("user:carol"), headers=tokens["check"])
    ).json()
    assert body["decision"] == "deny"
    assert body["reason"]["code"] == "denied_by_grant"
    assert body["reason"]["grant_id"] == ids["carol_deny"]


async def test_unknown_dataset_and_no_grant_deny_with_their_codes(client, tokens, admin):
    await seed(client, admin)
    unknown = (
        await client.post(
            "/v1/check", json=check_body("user:alice", "hr.secret"), headers=tokens["check"]
        )
    ).json()
    assert (unknown["decision"], unknown["reason"]["code"]) == ("deny", "unknown_dataset")
    stranger = (
        await client.post("/v1/check", json=check_body("user:mallory"), headers=tokens["check"])
    ).json()
    assert (stranger["decision"], stranger["reason"]["code"]) == ("deny", "no_grant")


async def test_revoked_grant_denies_next_check(client, tokens, admin):
    ids = await seed(client, admin)
    before = (
        await client.post("/v1/check", json=check_body("user:alice"), headers=tokens["check"])
    ).json()
    assert before["decision"] == "allow"
    assert (await client.delete(f"/v1/grants/{ids['research']}", headers=admin)).status_code == 200
    after = (
        await client.post("/v1/check", json=check_body("user:alice"), headers=tokens["check"])
    ).json()
    assert (after["decision"], after["reason"]["code"]) == ("deny", "no_grant")
    assert after["policy_version"] > before["policy_version"]


def count_builds(monkeypatch) -> list[int]:
    """The versions whose check index is built from the database from now on."""
    builds: list[int] = []
    real_build = snapshot_module.CheckIndex.build

    async def counted_build(kind, rows, state):
        builds.append(state.version)
        return await real_build(kind, rows, state)

    monkeypatch.setattr(snapshot_module.CheckIndex, "build", counted_build)
    return builds


async def test_policy_changes_are_followed_without_rebuilding_the_policy(
    app, client, tokens, admin, monkeypatch
):
    """A grant or membership changed through this process updates its check snapshot in place
    of a rebuild (seconds at 100k grants): the next check answers from the new policy at once,
    and as a rebuilt snapshot would."""
    ids = await seed(client, admin)
    check = {"json": check_body("user:dave"), "headers": tokens["check"]}
    assert (await client.post("/v1/check", **check)).json()["decision"] == "deny"
    real_build = snapshot_module.CheckIndex.build
    builds = count_builds(monkeypatch)
    body = {"principal": "user:dave", "resource": "employee_activity.keystrokes",
            "action": "read", "effect": "allow"}  # fmt: skip
    created = (await client.post("/v1/grants", json=body, headers=admin)).json()
    allowed = (await client.post("/v1/check", **check)).json()
    assert (allowed["decision"], allowed["reason"]["grant_id"]) == ("allow", created["id"])
    assert (await client.delete(f"/v1/grants/{ids['research']}", headers=admin)).status_code == 200
    alice = (
        await client.post("/v1/check", json=check_body("user:alice"), headers=tokens["check"])
    ).json()
    assert (alice["decision"], alice["reason"]["code"]) == ("deny", "no_grant")
    # Memberships too: erin joins eng (allowed through it), carol leaves it (her own deny
    # still denies), bob's team is replaced by one without him (his groups known beforehand).
    bob = await client.post("/v1/check", json=check_body("user:bob"), headers=tokens["check"])
    assert bob.json()["decision"] == "allow"
    for method, path, payload in [
        ("POST", "/v1/groups/eng/members", {"member": "user:erin"}),
        ("DELETE", "/v1/groups/eng/members/user:carol", None),
        ("PUT", "/v1/groups/platform/members", {"members": ["user:frank"]}),
    ]:
        r = await client.request(method, path, json=payload, headers=admin)
        assert r.status_code == 200, r.text
    answers = {}
    for principal in ("user:erin", "user:carol", "user:bob", "user:frank"):
        r = await client.post("/v1/check", json=check_body(principal), headers=tokens["check"])
        answers[principal] = (r.json()["decision"], r.json()["reason"]["via"])
    assert answers == {
        "user:erin": ("allow", ["user:erin", "group:eng"]),
        "user:carol": ("deny", ["user:carol"]),
        "user:bob": ("deny", []),
        "user:frank": ("allow", ["user:frank", "group:platform", "group:eng"]),
    }
    assert builds == []
    followed = app.state.policy.loaded
    async with app.state.sessionmaker() as session:
        rows = await load_rows(session)
    rebuilt = await real_build(snapshot_module.CHECKS, rows, PolicyState.of_rows(0, rows))
    for principal in ("alice", "bob", "carol", "dave", "erin", "frank", "zoe"):
        for dataset in ("employee_activity.keystrokes", "no.such"):
            for purpose in (None, "model-training"):
                request = (f"user:{principal}", dataset, "read", purpose, 1000.0)
                assert followed.decide(*request) == rebuilt.decide(*request), request
        assert followed.ancestors(f"user:{principal}") == rebuilt.ancestors(f"user:{principal}")


async def test_a_dataset_change_is_seen_by_the_next_check_without_a_rebuild(
    client, tokens, admin, monkeypatch
):
    """Re-scoping a dataset or registering one changes the next check's audience and datasets
    at once, derived from the previous snapshot (a rebuild takes seconds at 100k grants)."""
    await seed(client, admin)
    bob = {"json": check_body("user:bob"), "headers": tokens["check"]}
    first = (await client.post("/v1/check", **bob)).json()
    assert (first["decision"], first["out_of_audience"]) == ("allow", True)
    builds = count_builds(monkeypatch)
    body = {"owner": "group:mci-research", "sensitivity": "internal",
            "intended_audience": [*AUDIENCE, "group:eng"], "guard": "alert"}  # fmt: skip
    r = await client.put("/v1/datasets/employee_activity.keystrokes", json=body, headers=admin)
    assert r.status_code == 200, r.text
    second = (await client.post("/v1/check", **bob)).json()
    assert (second["decision"], second["out_of_audience"]) == ("allow", False)
    mouse = {"json": check_body("user:bob", "employee_activity.mouse"), "headers": tokens["check"]}
    unknown = (await client.post("/v1/check", **mouse)).json()
    assert unknown["reason"]["code"] == "unknown_dataset"
    r = await client.put("/v1/datasets/employee_activity.mouse", json=body, headers=admin)
    assert r.status_code == 201, r.text
    known = (await client.post("/v1/check", **mouse)).json()
    assert (known["decision"], known["reason"]["code"]) == ("allow", "granted")
    assert builds == []


async def test_a_change_this_process_did_not_make_is_never_skipped(
    app, client, tokens, admin, sessionmaker
):
    """Another worker's change (written straight to the database here) moved the version
    after this process's snapshot: a grant created through this process next must not be
    applied on top of the stale snapshot. The next check reloads and sees both changes."""
    await seed(client, admin)
    check = {"json": check_body("user:erin"), "headers": tokens["check"]}
    assert (await client.post("/v1/check", **check)).json()["decision"] == "deny"
    async with sessionmaker() as session, session.begin():
        erin = GrantCreate(
            principal="user:erin",
            resource="employee_activity.*",
            action=Action.read,
            effect=Effect.allow,
        )
        await policy_service.create_grant(session, body=erin, actor="another-worker")
    body = {"principal": "user:dave", "resource": "employee_activity.keystrokes",
            "action": "read", "effect": "allow"}  # fmt: skip
    assert (await client.post("/v1/grants", json=body, headers=admin)).status_code == 201
    assert (await client.post("/v1/check", **check)).json()["decision"] == "allow"
    dave = await client.post("/v1/check", json=check_body("user:dave"), headers=tokens["check"])
    assert dave.json()["decision"] == "allow"


async def test_expired_grant_denies_with_grant_expired(client, tokens, admin, sessionmaker):
    ids = await seed(client, admin)
    async with sessionmaker() as session, session.begin():
        await policy_version.advance(session)
        await session.execute(
            update(Grant)
            .where(Grant.id == ids["research"])
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    body = (
        await client.post("/v1/check", json=check_body("user:alice"), headers=tokens["check"])
    ).json()
    assert body["decision"] == "deny"
    assert body["reason"] == {"code": "grant_expired", "grant_id": ids["research"], "via": []}


async def test_batch_answers_in_order_and_logs_each(client, tokens, admin):
    await seed(client, admin)
    checks = [check_body(p) for p in ["user:alice", "user:mallory", "user:bob"]]
    r = await client.post("/v1/check/batch", json={"checks": checks}, headers=tokens["check"])
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["decision"] for x in results] == ["allow", "deny", "allow"]
    log_ids = [x["access_log_id"] for x in results]
    assert log_ids == list(range(log_ids[0], log_ids[0] + 3))
    page = (await client.get("/v1/access-log?limit=3", headers=admin)).json()
    assert [e["id"] for e in page["items"]] == log_ids[::-1]


async def test_check_needs_check_scope(client, tokens):
    r = await client.post("/v1/check", json=check_body("user:a"))
    assert r.status_code == 401
    r = await client.post("/v1/check", json=check_body("user:a"), headers=tokens["audit:read"])
    assert r.status_code == 403


async def test_unwritable_log_answers_503_deny_and_never_allows(
    client, tokens, admin, sessionmaker
):
    await seed(client, admin)
    ok = await client.post("/v1/check", json=check_body("user:alice"), headers=tokens["check"])
    assert ok.json()["decision"] == "allow"
    async with sessionmaker() as session, session.begin():
        await session.execute(text("ALTER TABLE access_log RENAME TO broken_log"))
    try:
        r = await client.post("/v1/check", json=check_body("user:alice"), headers=tokens["check"])
        assert r.status_code == 503
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["decision"] == "deny" and r.json()["allowed"] is False
        r = await client.post(
            "/v1/check/batch", json={"checks": [check_body("user:alice")]}, headers=tokens["check"]
        )
        assert r.status_code == 503 and r.json()["decision"] == "deny"
    finally:
        async with sessionmaker() as session, session.begin():
            await session.execute(text("ALTER TABLE broken_log RENAME TO access_log"))
    r = await client.post("/v1/check", json=check_body("user:alice"), headers=tokens["check"])
    assert r.json()["decision"] == "allow"  # recovers once the log is writable again


async def test_revoked_token_is_refused_on_the_next_check(client, tokens, admin, sessionmaker):
    from app.auth import service as auth_service

    await seed(client, admin)
    assert (
        await client.post("/v1/check", json=check_body("user:alice"), headers=tokens["check"])
    ).status_code == 200
    async with sessionmaker() as session, session.begin():
        await auth_service.revoke_token(session, name="check")
    r = await client.post("/v1/check", json=check_body("user:alice"), headers=tokens["check"])
    assert r.status_code == 401


async def test_explain_lists_every_path_to_each_matching_grant(client, tokens, admin):
    """user:multi reaches group:pg through p1 and through p2: cutting one path leaves access."""
    for group, members in [("p1", ["user:multi"]), ("p2", ["user:multi"]),
                           ("pg", ["group:p1", "group:p2"])]:  # fmt: skip
        r = await client.put(
            f"/v1/groups/{group}/members", json={"members": members}, headers=admin
        )
        assert r.status_code == 200, r.text
    body = {"owner": "group:pg", "sensitivity": "internal", "intended_audience": ["group:pg"]}
    assert (await client.put("/v1/datasets/pp.a", json=body, headers=admin)).status_code == 201
    for principal, effect in [("group:pg", "allow"), ("user:multi", "deny")]:
        grant = {"principal": principal, "resource": "pp.*", "action": "read", "effect": effect}
        assert (await client.post("/v1/grants", json=grant, headers=admin)).status_code == 201
    query = {"principal": "user:multi", "dataset": "pp.a", "action": "read"}
    r = await client.get("/v1/explain", params=query, headers=tokens["audit:read"])
    assert r.status_code == 200, r.text
    explained = r.json()
    assert explained["decision"] == "deny" and explained["reason"]["code"] == "denied_by_grant"
    by_subject = {g["subject"]: g for g in explained["grants"]}
    assert by_subject["user:multi"]["paths"] == [["user:multi"]]
    allow = by_subject["group:pg"]
    assert allow["effect"] == "allow" and allow["paths_complete"] is True
    assert allow["paths"] == [
        ["user:multi", "group:p1", "group:pg"],
        ["user:multi", "group:p2", "group:pg"],
    ]
    assert allow["via"] in allow["paths"]
