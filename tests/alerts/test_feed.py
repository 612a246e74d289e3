"""The alert feed: every event once, in id order, written with the event itself."""

from datetime import UTC, datetime, timedelta

from sqlalchemy import text

LATER = (datetime.now(UTC) + timedelta(days=1)).isoformat()


async def setup_exposed(client, admin):
    await client.put("/v1/groups/research/members", json={"members": ["user:alice"]}, headers=admin)
    await client.put(
        "/v1/groups/all/members", json={"members": ["group:research", "user:bob"]}, headers=admin
    )
    await client.put(
        "/v1/datasets/activity.keys",
        json={
            "owner": "group:research",
            "sensitivity": "restricted",
            "intended_audience": ["group:research"],
            "guard": "alert",
        },
        headers=admin,
    )
    r = await client.post(
        "/v1/grants",
        json={
            "principal": "group:all",
            "resource": "activity.*",
            "action": "read",
            "effect": "allow",
            "justification": "t",
        },
        headers=admin,
    )
    assert r.status_code == 201, r.text
    return r.json()


async def poll(client, tokens, after: int = 0, limit: int = 100):
    r = await client.get(f"/v1/alerts?after={after}&limit={limit}", headers=tokens["alerts:read"])
    assert r.status_code == 200, r.text
    return r.json()


async def test_finding_lifecycle_and_reads_appear_once_in_order(
    client, tokens, admin, sessionmaker
):
    grant = await setup_exposed(client, admin)
    finding_id = grant["findings_opened"][0]["id"]
    first = await poll(client, tokens)
    assert [(a["type"], a["finding_id"]) for a in first["items"]] == [
        ("finding.opened", finding_id)
    ]
    assert first["items"][0]["severity"] == "high"
    assert first["items"][0]["dataset"] == "activity.keys"
    assert first["items"][0]["at"] == grant["findings_opened"][0]["opened_at"]  # one instant

    check = await client.post(
        "/v1/check",
        json={
            "principal": "user:bob",
            "dataset": "activity.keys",
            "action": "read",
            "purpose": "model-training",
        },
        headers=tokens["check"],
    )
    inside = await client.post(
        "/v1/check",
        json={
            "principal": "user:alice",
            "dataset": "activity.keys",
            "action": "read",
            "purpose": "model-training",
        },
        headers=tokens["check"],
    )
    assert inside.json()["out_of_audience"] is False
    await client.post(
        f"/v1/findings/{finding_id}/accept", json={"reason": "drill", "until": LATER}, headers=admin
    )
    await client.delete(f"/v1/grants/{grant['id']}", headers=admin)
    second = await poll(client, tokens, after=first["last_id"])
    assert [a["type"] for a in second["items"]] == [
        "read.out_of_audience",
        "finding.accepted",
        "finding.resolved",
    ]
    assert second["items"][0]["access_log_id"] == check.json()["access_log_id"]
    assert second["items"][0]["finding_id"] == finding_id  # the finding the read went through
    assert second["items"][0]["severity"] == "critical"
    ids = [a["id"] for a in first["items"] + second["items"]]
    assert ids == list(range(1, len(ids) + 1))
    assert (await poll(client, tokens, after=second["last_id"])) == {
        "items": [],
        "last_id": second["last_id"],
    }


async def test_tampered_log_raises_an_integrity_alert(client, tokens, admin, sessionmaker):
    await setup_exposed(client, admin)
    await client.post(
        "/v1/check",
        json={
            "principal": "user:bob",
            "dataset": "activity.keys",
            "action": "read",
            "purpose": "model-training",
        },
        headers=tokens["check"],
    )
    async with sessionmaker() as session, session.begin():
        await session.execute(text("UPDATE access_log SET principal = 'user:x' WHERE id = 1"))
    assert (await client.get("/v1/access-log/verify", headers=admin)).json()["ok"] is False
    items = (await poll(client, tokens))["items"]
    assert items[-1]["type"] == "log.integrity_failed" and items[-1]["severity"] == "critical"


async def test_alert_feed_pages_with_limit(client, tokens, admin):
    await setup_exposed(client, admin)
    readers = ["user:bob", "user:carol", "user:dave"]  # a read alert each
    members = {"members": ["group:research", *readers]}
    await client.put("/v1/groups/all/members", json=members, headers=admin)
    for reader in readers:
        await client.post(
            "/v1/check",
            json={
                "principal": reader,
                "dataset": "activity.keys",
                "action": "read",
                "purpose": "model-training",
            },
            headers=tokens["check"],
        )
    seen, after = [], 0
    while True:
        page = await poll(client, tokens, after=after, limit=2)
        if not page["items"]:
            break
        seen += [a["id"] for a in page["items"]]
        after = page["last_id"]
    assert seen == [1, 2, 3, 4]


async def test_alerts_need_the_alerts_scope(client, tokens):
    assert (await client.get("/v1/alerts")).status_code == 401
    assert (await client.get("/v1/alerts", headers=tokens["audit:read"])).status_code == 403
