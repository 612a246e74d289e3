"""Real ``aclaudit serve --workers 2``: metrics summed over workers, JSON logs with request ids,
one sweeper across workers, and SIGTERM under load losing nothing."""

import asyncio
import contextlib
import importlib.util
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.servers import Server
from tests.e2e.test_workers_and_crashes import CHECK, seed

pytestmark = pytest.mark.slow
POLLER = Path(__file__).resolve().parents[2] / "docs" / "examples" / "alert_poller.py"


def load_poller():
    spec = importlib.util.spec_from_file_location("alert_poller", POLLER)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def checks_total(text: str) -> dict[str, float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "aclaudit_checks_total":
                out[sample.labels["decision"]] = sample.value
    return out


async def test_metrics_count_every_check_across_two_workers(database_url, tokens, admin, tmp_path):
    log = tmp_path / "server.log"
    server = Server(database_url, workers=2, log=log).start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            await seed(client, admin)  # alice may read
        workers: dict[int, int] = {}
        sent = {"allow": 0, "deny": 0}
        for i in range(300):  # a fresh connection each time, so both workers answer
            if i >= 60 and len(workers) == 2:
                break
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as c:
                worker = (await c.get("/healthz")).json()["worker"]
                body = CHECK if i % 3 else {**CHECK, "principal": "user:mallory"}
                r = await c.post(
                    "/v1/check",
                    json=body,
                    headers={**tokens["check"], "X-Request-ID": f"metrics-{i}"},
                )
                assert r.status_code == 200
                assert r.headers["x-request-id"] == f"metrics-{i}"
                sent[r.json()["decision"]] += 1
                workers[worker] = workers.get(worker, 0) + 1
        assert len(workers) == 2, "both workers must have answered checks"
        assert sent["allow"] and sent["deny"]
        for _ in range(6):  # whichever worker scrapes, the sum is the same
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as c:
                r = await c.get("/metrics", headers=tokens["metrics:read"])
                assert r.status_code == 200, r.text
                assert checks_total(r.text) == {"allow": sent["allow"], "deny": sent["deny"]}
    finally:
        assert server.stop() == 0
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert lines, "the server logs JSON lines"
    access = {line["request_id"]: line for line in lines if line["logger"] == "aclaudit.access"}
    for i in range(sum(sent.values())):
        assert access[f"metrics-{i}"]["msg"] == "POST /v1/check 200"
    assert {line["pid"] for line in access.values()} >= set(workers)


async def test_one_sweeper_reopens_an_acceptance_once_across_two_workers(
    database_url, tokens, admin, tmp_path
):
    env = {"ACLAUDIT_SWEEP_INTERVAL_SECONDS": "0.3"}
    server = Server(database_url, workers=2, log=tmp_path / "server.log", env=env).start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            await seed(client, admin)
            r = await client.put(  # bob is outside the audience but in group:r
                "/v1/groups/r/members", json={"members": ["user:alice", "user:bob"]}, headers=admin
            )
            assert r.status_code == 200, r.text
            r = await client.put(
                "/v1/datasets/activity.keys",
                json={"owner": "group:r", "sensitivity": "internal",
                      "intended_audience": ["user:alice"]},
                headers=admin,
            )  # fmt: skip
            finding_id = r.json()["findings_opened"][0]["id"]
            until = (datetime.now(UTC) + timedelta(seconds=1.5)).isoformat()
            r = await client.post(
                f"/v1/findings/{finding_id}/accept",
                json={"reason": "trial", "until": until},
                headers=admin,
            )
            assert r.status_code == 200, r.text
        await asyncio.sleep(5)  # no request meanwhile: the sweeper alone reopens it
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            feed = await client.get("/v1/alerts?limit=1000", headers=tokens["alerts:read"])
        kinds = [(a["type"], a["finding_id"]) for a in feed.json()["items"]]
        assert kinds == [
            ("finding.opened", finding_id),
            ("finding.accepted", finding_id),
            ("finding.reopened", finding_id),
        ]
        # the documented poller example follows the real feed
        poller = load_poller()
        handled: list[dict] = []
        saved: list[int] = []

        def follow() -> int:
            with httpx.Client(base_url=server.url, headers=tokens["alerts:read"]) as c:
                last_id, count = 0, 1
                while count:
                    last_id, count = poller.poll_once(c, last_id, handled.append, saved.append)
                return last_id

        assert await asyncio.to_thread(follow) == 3
        assert handled == feed.json()["items"]
        assert saved == [1, 2, 3]
    finally:
        server.stop()


async def test_sigterm_under_load_drains_every_answered_check(
    database_url, tokens, admin, tmp_path
):
    log = tmp_path / "server.log"
    server = Server(database_url, workers=2, log=log).start()
    answered: list[dict] = []
    refused: list[dict] = []
    kept: list[httpx.AsyncClient] = []
    enough = asyncio.Event()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            await seed(client, admin)

        async def hammer(worker: int, connection: httpx.AsyncClient | None) -> None:
            for i in range(100_000):
                # Fresh connections, so checks keep arriving at both workers while they drain
                # (one sent while the server closes is refused at the connection); and kept-alive
                # ones, each with a check almost always in the workers' hands at SIGTERM.
                async with contextlib.AsyncExitStack() as stack:
                    c = connection
                    if c is None:
                        fresh = httpx.AsyncClient(base_url=server.url, timeout=15)
                        c = await stack.enter_async_context(fresh)
                    body = {**CHECK, "request_id": f"w{worker}-{i}"}
                    try:
                        r = await c.post("/v1/check", json=body, headers=tokens["check"])
                    except httpx.TransportError:
                        return  # the server stopped accepting
                if r.status_code == 200:
                    answered.append(r.json())
                    if len(answered) >= 200:
                        enough.set()
                else:
                    refused.append({"status": r.status_code, **r.json()})

        kept += [httpx.AsyncClient(base_url=server.url, timeout=15) for _ in range(4)]
        tasks = [asyncio.create_task(hammer(w, None)) for w in range(8)]
        tasks += [asyncio.create_task(hammer(8 + n, c)) for n, c in enumerate(kept)]
        await asyncio.wait_for(enough.wait(), timeout=60)
        before_sigterm = len(answered)
        code = await asyncio.to_thread(server.stop)  # SIGTERM while checks are in flight
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.gather(*tasks), timeout=30)
    finally:
        for c in kept:
            await c.aclose()
        server.stop()

    assert len(answered) > before_sigterm, "checks in flight at SIGTERM are answered"
    assert code == 0, log.read_text()[-2000:]
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert sum(line["msg"] == "Application shutdown complete." for line in lines) == 2
    assert all(r["status"] == 503 and r["decision"] == "deny" for r in refused), refused[:3]
    restarted = Server(database_url, workers=1, log=log).start()
    try:
        async with httpx.AsyncClient(base_url=restarted.url, timeout=30) as client:
            for answer in answered:
                r = await client.get(f"/v1/access-log/{answer['access_log_id']}", headers=admin)
                assert r.status_code == 200, answer
                assert r.json()["decision_id"] == answer["decision_id"]
                assert r.json()["decision"] == answer["decision"]
            verify = (await client.get("/v1/access-log/verify", headers=admin)).json()
            assert verify["ok"] is True, verify
            assert verify["entries"] >= len(answered)
    finally:
        restarted.stop()
