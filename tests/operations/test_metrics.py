"""GET /metrics: parses as Prometheus text; counters match the checks made; scopes."""

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from app.config import Settings
from app.main import create_app
from tests.alerts.test_feed import poll, setup_exposed


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape by (name, sorted labels); fails if the text does not parse."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(scrape, name: str, **labels: str):
    return scrape[(name, tuple(sorted(labels.items())))]


async def scrape(client: httpx.AsyncClient, headers) -> dict:
    r = await client.get("/metrics", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return samples(r.text)


async def test_metrics_count_checks_findings_reads_and_alerts(client, tokens, admin):
    await setup_exposed(client, admin)  # one high finding; bob reads from outside
    check = tokens["check"]
    bob = {"principal": "user:bob", "dataset": "activity.keys", "action": "read",
           "purpose": "model-training"}  # fmt: skip
    nobody = {"principal": "user:zed", "dataset": "activity.keys", "action": "read",
              "purpose": "model-training"}  # fmt: skip
    for body in (bob, bob, nobody):
        assert (await client.post("/v1/check", json=body, headers=check)).status_code == 200
    r = await client.post("/v1/check/batch", json={"checks": [bob, nobody, nobody]}, headers=check)
    assert r.status_code == 200
    m = await scrape(client, tokens["metrics:read"])
    assert value(m, "aclaudit_checks_total", decision="allow") == 3
    assert value(m, "aclaudit_checks_total", decision="deny") == 3
    assert value(m, "aclaudit_check_duration_seconds_count", route="check") == 3
    assert value(m, "aclaudit_check_duration_seconds_count", route="batch") == 1
    assert value(m, "aclaudit_check_duration_seconds_bucket", route="check", le="+Inf") == 3
    assert value(m, "aclaudit_access_log_write_failures_total") == 0
    assert value(m, "aclaudit_open_findings", severity="high") == 1
    assert value(m, "aclaudit_open_findings", severity="critical") == 0
    assert value(m, "aclaudit_out_of_audience_reads_total") == 3
    # the finding's alert, and one read alert standing for bob's three reads
    feed = await poll(client, tokens)
    assert value(m, "aclaudit_alert_feed_head_id") == feed["last_id"] == 2
    assert [a["count"] for a in feed["items"]] == [1, 3]
    assert value(m, "aclaudit_access_log_head_id") == 6
    assert value(m, "aclaudit_database_up") == 1
    assert value(m, "aclaudit_log_integrity_failures_total") == 0


async def test_unrecorded_checks_count_as_denies_and_write_failures(app: FastAPI, client, tokens):
    await app.state.log_writer.stop()  # the access log can no longer be written
    body = {"principal": "user:a", "dataset": "some.data", "action": "read"}
    r = await client.post("/v1/check", json=body, headers=tokens["check"])
    assert r.status_code == 503 and r.json()["decision"] == "deny"
    m = await scrape(client, tokens["admin"])
    assert value(m, "aclaudit_checks_total", decision="deny") == 1
    assert value(m, "aclaudit_access_log_write_failures_total") == 1


@pytest.mark.parametrize(
    ("scope", "status"),
    [("metrics:read", 200), ("alerts:read", 200), ("admin", 200), ("check", 403), (None, 401)],
)
async def test_metrics_need_a_metrics_or_alerts_token(client, tokens, scope, status):
    headers = tokens[scope] if scope else {}
    r = await client.get("/metrics", headers=headers)
    assert r.status_code == status, r.text
    if status != 200:
        assert r.headers["content-type"] == "application/problem+json"


async def test_metrics_can_be_configured_open(database_url: str):
    app = create_app(Settings(database_url=database_url, metrics_open=True))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            r = await client.get("/metrics")
    assert r.status_code == 200
    assert value(samples(r.text), "aclaudit_checks_total", decision="allow") == 0
