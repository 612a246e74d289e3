"""Unused access: the sweeper opens a `kind=unused` finding for an allow grant no read went
through for ACLAUDIT_UNUSED_AFTER_DAYS, and resolves it when the grant is used, revoked or
expires. Time is driven by backdating the grant's creation and the reads' instants."""

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.accesslog import archiver
from app.config import Settings
from app.db import begin_write, utcnow
from app.exposure import unused
from app.operations.sweeper import Sweeper
from tests.accesslog.archive_helpers import archive_settings, make_batches
from tests.alerts.test_feed import poll

DAYS = 90


@pytest.fixture
def settings(database_url: str) -> Settings:
    # The tests sweep themselves (`sweep`), when they mean to; checkpoints let them archive.
    return archive_settings(database_url).model_copy(
        update={"sweeper_enabled": False, "integrity_interval_seconds": 0}
    )


async def org(client: httpx.AsyncClient, admin: Any) -> None:
    """research = {alice}; activity.keys is for research; eng = {bob}."""
    for group, members in [("research", ["user:alice"]), ("eng", ["user:bob"])]:
        r = await client.put(
            f"/v1/groups/{group}/members", json={"members": members}, headers=admin
        )
        assert r.status_code == 200, r.text
    r = await client.put(
        "/v1/datasets/activity.keys",
        json={"owner": "group:research", "sensitivity": "internal",
              "intended_audience": ["group:research"]},
        headers=admin,
    )  # fmt: skip
    assert r.status_code == 201, r.text


async def make_grant(
    client: httpx.AsyncClient, admin: Any, principal: str = "group:research", **extra: Any
) -> int:
    body = {"principal": principal, "resource": "activity.keys", "action": "read",
            "effect": "allow", **extra}  # fmt: skip
    r = await client.post("/v1/grants", json=body, headers=admin)
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


async def execute(maker: async_sessionmaker[AsyncSession], sql: str, **params: Any) -> None:
    async with maker() as session, session.begin():
        await begin_write(session)
        await session.execute(text(sql), params)


async def age(maker: async_sessionmaker[AsyncSession], grant_id: int, days: int) -> None:
    """The grant was made `days` ago."""
    await execute(
        maker, "UPDATE grants SET created_at = :at WHERE id = :id",
        at=utcnow() - timedelta(days=days), id=grant_id,
    )  # fmt: skip


async def read(client: httpx.AsyncClient, tokens: Any, principal: str = "user:alice") -> int:
    body = {"principal": principal, "dataset": "activity.keys", "action": "read"}
    r = await client.post("/v1/check", json=body, headers=tokens["check"])
    assert r.status_code == 200 and r.json()["decision"] == "allow", r.text
    return int(r.json()["access_log_id"])


@pytest.fixture
def sweeper(sessionmaker: async_sessionmaker[AsyncSession], settings: Settings) -> Sweeper:
    return Sweeper(sessionmaker, settings, unused_every=0)  # every tick looks


async def sweep(sweeper: Sweeper) -> Any:
    report = await sweeper.sweep_once()
    assert report.is_holder
    return report


async def unused_findings(client: httpx.AsyncClient, admin: Any, **params: Any) -> list[Any]:
    r = await client.get("/v1/findings", params={"kind": "unused", **params}, headers=admin)
    assert r.status_code == 200, r.text
    items: list[Any] = r.json()["items"]
    assert all(f["kind"] == "unused" for f in items)
    return items


async def test_a_grant_never_used_for_the_threshold_opens_one_unused_finding_and_alert(
    client, admin, tokens, sessionmaker, sweeper
):
    await org(client, admin)
    grant_id = await make_grant(client, admin)
    await age(sessionmaker, grant_id, DAYS - 1)
    assert (await sweep(sweeper)).unused_opened == []
    await age(sessionmaker, grant_id, DAYS + 1)
    report = await sweep(sweeper)
    [finding] = await unused_findings(client, admin)
    assert report.unused_opened == [finding["id"]]
    assert finding["grant_id"] == grant_id and finding["status"] == "open"
    assert finding["last_used_at"] is None and finding["severity"] == "low"
    assert finding["dataset"] == "activity.keys" and finding["principal"] == "group:research"
    assert await unused_findings(client, admin, status="open") == [finding]
    exposure = await client.get("/v1/findings", params={"kind": "exposure"}, headers=admin)
    assert exposure.json()["items"] == []
    [alert] = [a for a in (await poll(client, tokens))["items"] if a["type"] == "finding.opened"]
    assert alert["finding_id"] == finding["id"] and alert["severity"] == "low"
    assert "unused" in alert["summary"] and "never used" in alert["summary"]
    # Its grant put no one in an excess: no reads to show.
    r = await client.get(f"/v1/findings/{finding['id']}/reads", headers=admin)
    assert r.status_code == 409, r.text
    # Sweeping again (here, or by another worker) opens nothing more.
    await sweep(sweeper)
    assert len(await unused_findings(client, admin)) == 1


async def test_a_grant_used_within_the_threshold_opens_nothing(
    client, admin, tokens, sessionmaker, sweeper
):
    await org(client, admin)
    grant_id = await make_grant(client, admin)
    await read(client, tokens)
    await age(sessionmaker, grant_id, 2 * DAYS)
    await sweep(sweeper)
    assert await unused_findings(client, admin) == []


async def test_a_read_long_ago_counts_from_its_instant(
    client, admin, tokens, sessionmaker, sweeper
):
    await org(client, admin)
    grant_id = await make_grant(client, admin)
    entry = await read(client, tokens)
    used = (utcnow() - timedelta(days=DAYS + 5)).replace(microsecond=0)
    await execute(sessionmaker, "UPDATE access_log SET at = :at WHERE id = :id", at=used, id=entry)
    await age(sessionmaker, grant_id, 2 * DAYS)
    await sweep(sweeper)
    [finding] = await unused_findings(client, admin)
    assert datetime.fromisoformat(finding["last_used_at"]) == used


async def test_a_read_through_the_grant_resolves_its_unused_finding(
    client, admin, tokens, sessionmaker, sweeper
):
    await org(client, admin)
    grant_id = await make_grant(client, admin)
    await age(sessionmaker, grant_id, DAYS + 1)
    await sweep(sweeper)
    [finding] = await unused_findings(client, admin)
    await read(client, tokens)
    report = await sweep(sweeper)
    assert report.unused_resolved == [finding["id"]]
    [resolved] = await unused_findings(client, admin)
    assert resolved["status"] == "resolved" and resolved["resolved_at"] is not None
    alerts = [(a["type"], a["finding_id"]) for a in (await poll(client, tokens))["items"]]
    assert alerts[-1] == ("finding.resolved", finding["id"])


async def test_revoking_or_expiring_the_grant_resolves_its_unused_finding(
    client, admin, sessionmaker, sweeper
):
    await org(client, admin)
    revoked = await make_grant(client, admin)
    expiring = await make_grant(
        client, admin, "user:alice",
        expires_at=(datetime.now(UTC) + timedelta(days=1)).isoformat(),
    )  # fmt: skip
    for grant_id in (revoked, expiring):
        await age(sessionmaker, grant_id, DAYS + 1)
    await sweep(sweeper)
    assert {f["grant_id"] for f in await unused_findings(client, admin, status="open")} == {
        revoked,
        expiring,
    }
    r = await client.delete(f"/v1/grants/{revoked}", headers=admin)
    assert r.status_code == 200, r.text
    # At once, in the revoke's answer (as simulating it shows).
    [resolved] = r.json()["findings_resolved"]
    assert (resolved["kind"], resolved["grant_id"], resolved["status"]) == (
        "unused",
        revoked,
        "resolved",
    )
    assert [f["grant_id"] for f in await unused_findings(client, admin, status="open")] == [
        expiring
    ]
    await execute(
        sessionmaker, "UPDATE grants SET expires_at = :at WHERE id = :id",
        at=utcnow() - timedelta(seconds=1), id=expiring,
    )  # fmt: skip
    await sweep(sweeper)
    assert await unused_findings(client, admin, status="open") == []
    assert len(await unused_findings(client, admin, status="resolved")) == 2


async def test_deny_and_write_grants_are_never_unused_findings(
    client, admin, sessionmaker, sweeper
):
    await org(client, admin)
    deny = await make_grant(client, admin, "user:bob", effect="deny")
    write = await make_grant(client, admin, "user:bob", action="write")
    for grant_id in (deny, write):
        await age(sessionmaker, grant_id, 2 * DAYS)
    await sweep(sweeper)
    assert await unused_findings(client, admin) == []


async def test_two_sweepers_and_concurrent_sweeps_open_one_finding(
    client, admin, sessionmaker, settings
):
    await org(client, admin)
    grant_id = await make_grant(client, admin)
    await age(sessionmaker, grant_id, DAYS + 1)
    first, second = (Sweeper(sessionmaker, settings, unused_every=0) for _ in range(2))
    await asyncio.gather(first.sweep_once(), second.sweep_once())
    # The lease handed over: the other sweeper works too.
    await execute(sessionmaker, "UPDATE leases SET expires_at = :at", at=utcnow() - timedelta(1))
    await asyncio.gather(first.sweep_once(), second.sweep_once())

    async def sweep_directly() -> None:  # as a sweeper whose lease lapsed mid-tick would
        async with sessionmaker() as session, session.begin():
            await begin_write(session)
            await unused.sweep(session, now=utcnow(), after_days=DAYS)

    await execute(sessionmaker, "UPDATE findings SET status = 'resolved'")
    await asyncio.gather(sweep_directly(), sweep_directly())
    findings = await unused_findings(client, admin)
    assert [f["status"] for f in findings] == ["resolved", "open"]


async def test_exposure_analysis_leaves_unused_findings_alone(
    client, admin, tokens, sessionmaker, sweeper
):
    """A grant both over-broad and unused has a finding of each kind on the same dataset."""
    await org(client, admin)
    grant_id = await make_grant(client, admin, "group:eng")
    await age(sessionmaker, grant_id, DAYS + 1)
    await sweep(sweeper)
    [finding] = await unused_findings(client, admin)
    r = await client.post("/v1/scan", headers=admin)
    assert r.status_code == 200 and r.json()["opened"] == 0 and r.json()["resolved"] == 0, r.text
    r = await client.put("/v1/groups/eng/members", json={"members": ["user:carol"]}, headers=admin)
    assert r.status_code == 200, r.text
    assert await unused_findings(client, admin) == [finding]
    exposure = (await client.get("/v1/findings?kind=exposure", headers=admin)).json()["items"]
    assert [(f["grant_id"], f["status"], f["excess_count"]) for f in exposure] == [
        (grant_id, "open", 1)
    ]
    # A read through the grant from outside the audience names the exposure finding.
    await read(client, tokens, "user:carol")
    [alert] = [
        a for a in (await poll(client, tokens))["items"] if a["type"] == "read.out_of_audience"
    ]
    assert alert["finding_id"] == exposure[0]["id"]


async def test_simulating_the_revocation_of_unused_grants_shows_their_findings_resolve(
    client, admin, sessionmaker, sweeper
):
    await org(client, admin)
    quiet = await make_grant(client, admin, "group:eng")  # over-broad too
    await age(sessionmaker, quiet, DAYS + 1)
    await sweep(sweeper)
    [finding] = await unused_findings(client, admin)
    r = await client.post(
        "/v1/grants/simulate", json={"remove": [finding["grant_id"]]}, headers=admin
    )
    assert r.status_code == 200, r.text
    resolve = [(f["kind"], f["grant_id"]) for f in r.json()["would_resolve"]]
    assert sorted(resolve) == [("exposure", quiet), ("unused", quiet)]
    assert r.json()["would_open"] == []
    assert await unused_findings(client, admin, status="open") == [finding]  # nothing changed


async def test_an_accepted_unused_finding_still_resolves_when_the_grant_is_used(
    client, admin, tokens, sessionmaker, sweeper
):
    await org(client, admin)
    grant_id = await make_grant(client, admin)
    await age(sessionmaker, grant_id, DAYS + 1)
    await sweep(sweeper)
    [finding] = await unused_findings(client, admin)
    until = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    r = await client.post(
        f"/v1/findings/{finding['id']}/accept",
        json={"reason": "break-glass grant, used once a year", "until": until},
        headers=admin,
    )
    assert r.status_code == 200 and r.json()["status"] == "accepted", r.text
    await sweep(sweeper)
    assert (await unused_findings(client, admin))[0]["status"] == "accepted"
    await read(client, tokens)
    await sweep(sweeper)
    assert (await unused_findings(client, admin))[0]["status"] == "resolved"


async def test_archiving_the_reads_keeps_the_grants_last_use(
    client, admin, tokens, sessionmaker, settings, sweeper, tmp_path
):
    """The log is archived before any sweep folded it: the archiver folds it first."""
    readers = [f"user:u{b}x{i}" for b in range(2) for i in range(10)]
    r = await client.put("/v1/groups/r/members", json={"members": readers}, headers=admin)
    assert r.status_code == 200, r.text
    await make_batches(client, tokens, admin, 2)  # 20 reads through group:r's grant
    done = await archiver.archive(
        sessionmaker, settings, before=datetime(2100, 1, 1, tzinfo=UTC), directory=tmp_path,
        max_entries=20, progress=lambda _line: None,
    )  # fmt: skip
    assert done.entries == 20
    async with sessionmaker() as session:
        left = await session.scalar(text("SELECT count(*) FROM access_log"))
        grant_id = await session.scalar(text("SELECT id FROM grants"))
    assert left == 0
    await age(sessionmaker, grant_id, DAYS + 1)
    await sweep(sweeper)
    assert await unused_findings(client, admin) == []  # used a moment ago, archived or not


async def test_the_sweeper_folds_reads_every_tick_and_looks_for_unused_grants_less_often(
    client, admin, tokens, sessionmaker, settings
):
    await org(client, admin)
    grant_id = await make_grant(client, admin)
    await age(sessionmaker, grant_id, DAYS + 1)
    sweeper = Sweeper(sessionmaker, settings, unused_every=3600)
    assert len((await sweep(sweeper)).unused_opened) == 1  # the first tick looks
    entry = await read(client, tokens)
    assert (await sweep(sweeper)).unused_resolved == []  # not looking again yet
    async with sessionmaker() as session:
        folded = await session.scalar(
            text("SELECT last_entry_id FROM grant_last_use WHERE grant_id = :id"), {"id": grant_id}
        )
    assert folded == entry
    assert [f["status"] for f in await unused_findings(client, admin)] == ["open"]
