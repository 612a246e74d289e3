"""The clients against the real application (both database backends): decisions, the guard,
the access log, findings, exposure and the alert feed."""

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from app.client import (
    AccessDenied,
    AclauditClient,
    AsyncAclauditClient,
    CheckRequest,
    PermissionDenied,
)
from tests.conftest import Tokens
from tests.e2e.servers import Server

DATASET = "activity.keys"


async def seed(client: httpx.AsyncClient, admin: dict[str, str]) -> int:
    """group:r (alice) is the audience and may read; a grant to bob reaches outside it."""
    r = await client.put(
        f"/v1/datasets/{DATASET}",
        json={"owner": "group:r", "sensitivity": "internal", "intended_audience": ["group:r"]},
        headers=admin,
    )
    assert r.status_code in (200, 201), r.text
    r = await client.put("/v1/groups/r/members", json={"members": ["user:alice"]}, headers=admin)
    assert r.status_code == 200, r.text
    for principal in ("group:r", "user:bob"):
        r = await client.post(
            "/v1/grants",
            json={
                "principal": principal,
                "resource": "activity.*",
                "action": "read",
                "effect": "allow",
            },
            headers=admin,
        )
        assert r.status_code == 201, r.text
    return int(r.json()["id"])


def token(tokens: Tokens, scope: str) -> str:
    return tokens[scope]["Authorization"].removeprefix("Bearer ")


@pytest.fixture
async def aclaudit(app: FastAPI, tokens: Tokens) -> AsyncIterator[AsyncAclauditClient]:
    transport = httpx.ASGITransport(app=app)
    async with AsyncAclauditClient(
        "http://aclaudit.test", token=token(tokens, "admin"), transport=transport
    ) as c:
        yield c


async def test_decisions_guard_and_audit_trail_through_the_async_client(
    app, client, admin, tokens, aclaudit: AsyncAclauditClient
):
    bob_grant = await seed(client, admin)

    allowed = await aclaudit.check(
        "user:alice", DATASET, purpose="research", data_subjects=["user:zed"]
    )
    assert allowed.allowed and allowed.recorded and not allowed.out_of_audience
    assert allowed.reason.code == "granted" and allowed.reason.via[-1] == "group:r"

    outside = await aclaudit.check("user:bob", DATASET, purpose="curiosity")
    assert outside.allowed and outside.out_of_audience

    denied = await aclaudit.check("user:carol", DATASET)
    assert not denied.allowed and denied.recorded and denied.reason.code == "no_grant"

    reads: list[str] = []

    @aclaudit.guard(
        principal=lambda a: a["user"], dataset=DATASET, data_subjects=lambda a: [a["subject"]]
    )
    async def read(user: str, subject: str) -> str:
        reads.append(user)
        return "rows"

    assert await read("user:alice", "user:zed") == "rows"
    with pytest.raises(AccessDenied) as info:
        await read("user:carol", "user:zed")
    assert reads == ["user:alice"] and info.value.reason == "no_grant"

    batch = await aclaudit.check_batch(
        [CheckRequest("user:alice", DATASET), CheckRequest("user:carol", DATASET)]
    )
    assert [r.decision for r in batch] == ["allow", "deny"]

    entries = [e async for e in aclaudit.access_log(principal="user:alice", page_size=1)]
    assert len(entries) == 3 and entries[0].id > entries[-1].id  # newest first, 3 pages
    assert entries[-1].data_subjects == ["user:zed"] and entries[-1].purpose == "research"
    assert (await aclaudit.access_log_entry(entries[0].id)).hash == entries[0].hash
    assert (await aclaudit.verify_access_log()).ok

    findings = [f async for f in aclaudit.findings(status="open", dataset=DATASET)]
    assert [f.grant_id for f in findings] == [bob_grant]
    assert findings[0].id is not None
    assert [e.principal async for e in aclaudit.finding_reads(findings[0].id)] == ["user:bob"]
    exposure = await aclaudit.exposure(DATASET)
    assert exposure.excess_count == 1 and exposure.items[0].principal == "user:bob"

    feed = await aclaudit.alerts(after=0)
    types = [a.type for a in feed.items]
    assert "finding.opened" in types and "read.out_of_audience" in types
    out_of_audience = [a for a in feed.items if a.type == "read.out_of_audience"]
    assert out_of_audience[0].access_log_id == outside.access_log_id
    assert (await aclaudit.alerts(after=feed.last_id)).items == []

    r = await client.delete(f"/v1/grants/{bob_grant}", headers=admin)
    assert r.status_code == 200
    assert not (await aclaudit.check("user:bob", DATASET)).allowed  # no stale allow


async def test_a_check_token_cannot_read_the_access_log(app, tokens):
    transport = httpx.ASGITransport(app=app)
    async with AsyncAclauditClient(
        "http://aclaudit.test", token=token(tokens, "check"), transport=transport
    ) as checker:
        assert (await checker.check("user:alice", DATASET)).reason.code == "unknown_dataset"
        with pytest.raises(PermissionDenied):
            [e async for e in checker.access_log()]


@pytest.mark.slow
async def test_sync_client_against_a_real_server_fails_closed_when_it_stops(
    database_url, tokens, admin, tmp_path
):
    server = Server(database_url, log=tmp_path / "server.log").start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            await seed(http, admin)
            # a fresh server's first check sets up its route and policy: not what is under
            # test, and on a loaded machine it can outlast the client's 2 s read timeout
            body = {"principal": "user:alice", "dataset": DATASET, "action": "read"}
            warm = await http.post("/v1/check", json=body, headers=tokens["check"])
            assert warm.status_code == 200, warm.text
        with AclauditClient(server.url, token=token(tokens, "check")) as aclaudit:
            with aclaudit.guard(principal="user:alice", dataset=DATASET) as decision:
                assert decision.allowed and decision.recorded
            with (
                pytest.raises(AccessDenied),
                aclaudit.guard(principal="user:carol", dataset=DATASET),
            ):
                pytest.fail("the read must not run")
            server.stop()
            refused = aclaudit.check("user:alice", DATASET)
            assert not refused.allowed and refused.reason.code == "unavailable"
    finally:
        server.stop()
