"""read.out_of_audience alerts: one per (principal, dataset, window), with the count of reads
it stands for; the access log keeps every read."""

import asyncio
import time
from datetime import UTC, datetime

from app.alerts import windows
from app.alerts.schemas import AlertType
from app.alerts.service import AlertEvent
from app.config import Settings
from tests.accesslog.test_verify import served
from tests.alerts.test_feed import poll, setup_exposed


def read(principal: str, dataset: str = "activity.keys") -> dict:
    return {
        "principal": principal,
        "dataset": dataset,
        "action": "read",
        "purpose": "model-training",
    }


async def read_alerts(client, tokens) -> list[dict]:
    return [a for a in (await poll(client, tokens))["items"] if a["type"] == "read.out_of_audience"]


def test_windows_are_aligned_to_the_epoch_so_every_worker_agrees():
    window = windows.window_at(7201.5, 3600)
    assert window.start == datetime.fromtimestamp(7200, UTC)
    assert window.end == datetime.fromtimestamp(10800, UTC)
    assert windows.window_at(7199.99, 3600).end == window.start


def test_only_the_first_read_of_a_key_without_an_open_window_raises():
    def event(principal: str, entry: int, severity: str = "high", grant: int = 1) -> AlertEvent:
        return AlertEvent(
            AlertType.read_out_of_audience,
            severity,
            "s",
            dataset="d",
            access_log_id=entry,
            principal=principal,
            action="read",
            grant_id=grant,
        )

    events = [event("user:a", 1), event("user:b", 2), event("user:a", 3)]
    # news within a window: a higher severity, another grant
    events += [event("user:a", 4, severity="critical"), event("user:a", 5, grant=2)]
    split = windows.split_reads(events, is_open={("user:b", "d", "read", 1, "high")})
    assert [e.access_log_id for e in split.raised] == [1, 4, 5]
    assert split.opened == [
        ("user:a", "d", "read", 1, "high"),
        ("user:a", "d", "read", 1, "critical"),
        ("user:a", "d", "read", 2, "high"),
    ]
    assert split.reads[("user:a", "d", "read", 1, "high")] == (2, 3)
    assert split.reads[("user:b", "d", "read", 1, "high")] == (1, 2)


async def test_repeated_reads_raise_one_alert_that_counts_them(client, tokens, admin):
    await setup_exposed(client, admin)
    await client.put(
        "/v1/groups/all/members",
        json={"members": ["group:research", "user:bob", "user:carol"]},
        headers=admin,
    )
    logged = []
    for _ in range(4):
        r = await client.post("/v1/check", json=read("user:bob"), headers=tokens["check"])
        assert r.json()["out_of_audience"] is True
        logged.append(r.json()["access_log_id"])
    batch = await client.post(
        "/v1/check/batch",
        json={"checks": [read("user:bob"), read("user:carol"), read("user:carol")]},
        headers=tokens["check"],
    )
    assert batch.status_code == 200, batch.text
    carol_first = batch.json()["results"][1]["access_log_id"]
    alerts = await read_alerts(client, tokens)
    assert [(a["access_log_id"], a["count"]) for a in alerts] == [(logged[0], 5), (carol_first, 2)]
    assert [a["summary"].split()[0] for a in alerts] == ["user:bob", "user:carol"]
    now = datetime.now(UTC)
    assert all(datetime.fromisoformat(a["window_end"]) > now for a in alerts)
    # the log keeps every read
    page = (await client.get("/v1/access-log?out_of_audience=true", headers=admin)).json()
    assert len(page["items"]) == 7


async def test_a_new_window_raises_a_new_alert(database_url, tokens, admin):
    async with served(Settings(database_url=database_url, read_alert_window_seconds=1)) as (
        client,
        _,
    ):
        await setup_exposed(client, admin)
        first = await client.post("/v1/check", json=read("user:bob"), headers=tokens["check"])
        await client.post("/v1/check", json=read("user:bob"), headers=tokens["check"])
        await asyncio.sleep(1.05 - time.time() % 1)  # into the next one-second window
        later = await client.post("/v1/check", json=read("user:bob"), headers=tokens["check"])
        alerts = await read_alerts(client, tokens)
    assert [a["access_log_id"] for a in alerts] == [
        first.json()["access_log_id"],
        later.json()["access_log_id"],
    ]
    assert [a["count"] for a in alerts] == [2, 1]


async def test_a_zero_window_alerts_every_read(database_url, tokens, admin):
    async with served(Settings(database_url=database_url, read_alert_window_seconds=0)) as (
        client,
        _,
    ):
        await setup_exposed(client, admin)
        for _ in range(3):
            await client.post("/v1/check", json=read("user:bob"), headers=tokens["check"])
        alerts = await read_alerts(client, tokens)
    assert [a["count"] for a in alerts] == [1, 1, 1]
    assert all(a["window_end"] is None for a in alerts)


async def test_other_alerts_stand_for_one_event(client, tokens, admin):
    await setup_exposed(client, admin)
    items = (await poll(client, tokens))["items"]
    assert [(a["type"], a["count"], a["window_end"]) for a in items] == [
        ("finding.opened", 1, None)
    ]
