"""No caller, however unprivileged or anonymous, slows checks for others.

A real server (pinned to one CPU where taskset exists) answers checks from a load process
(pinned to another) at a baseline rate; then again while a low-privilege or anonymous client
runs one abusive loop. Checks keep at least half their baseline throughput and never get a 503.
Figures are printed (run with -s) and recorded in docs/benchmarks.md.
"""

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.load import http_request
from tests.e2e.servers import Server, pinned

pytestmark = [pytest.mark.slow, pytest.mark.alone]

SECONDS = 4.0
CHECK_CONNECTIONS = 16
ROOT = Path(__file__).resolve().parents[2]
CHECK = {"principal": "user:alice", "dataset": "ea.d0", "action": "read"}
PROPOSALS = [
    {"principal": f"user:sim{n}", "resource": "ea.*", "action": "read", "effect": "allow"}
    for n in range(1000)
]
JSON = {"Content-Type": "application/json"}
JUNK = {"Authorization": "Bearer acl_junk"}


def abuses(tokens: Any) -> dict[str, dict[str, Any]]:
    """Each abusive loop, as the load process's spec (one more case is one more entry)."""
    simulate = json.dumps({"add": PROPOSALS}).encode()
    return {
        # an audit:read token (simulate's scope) asking for 1,000 proposals, back to back
        "simulate-1000": {
            "connections": 1,
            "request": http_request(
                "POST", "/v1/grants/simulate", {**JSON, **tokens["audit:read"]}, simulate
            ),
        },
        # no token, on a trailed path, from 16 connections
        "no-token-flood": {
            "connections": 16,
            "request": http_request("GET", "/v1/alerts?after=0", {}),
        },
        # a junk token, on a trailed path and on it with a trailing slash (once a 307, written
        # to the admin trail each), from 16 connections
        "junk-token-flood": {
            "connections": 16,
            "request": http_request("GET", "/v1/alerts?after=0", JUNK),
        },
        "junk-token-trailing-slash": {
            "connections": 16,
            "request": http_request("GET", "/v1/alerts/?after=0", JUNK),
        },
        # a check token (every data-platform service has one) refused 403 on the alert feed
        "check-token-403-flood": {
            "connections": 16,
            "request": http_request("GET", "/v1/alerts?after=0", tokens["check"]),
        },
        # no token, a 60 MiB body announced (the first bytes sent) on a write route
        "large-body-no-token": {
            "connections": 4,
            "request": http_request("POST", "/v1/grants", JSON, b'{"add": [', 60 << 20),
            "partial": True,
        },
        # an audit:read token verifying the chains, back to back: resumed (reads what was
        # appended since the last one) and in full (reads every row each time); a verify is
        # paced to a third of the worker, so one takes seconds here
        "verify-loop": {
            "connections": 1,
            "request": http_request("GET", "/v1/access-log/verify", tokens["audit:read"]),
            "timeout": 30,
        },
        "verify-full-loop": {
            "connections": 1,
            "timeout": 30,
            "request": http_request("GET", "/v1/access-log/verify?full=true", tokens["audit:read"]),
        },
    }


def measure(server: Server, spec: dict[str, Any]) -> dict[str, Any]:
    command = pinned([sys.executable, "-m", "tests.e2e.load", str(server.port), str(SECONDS)], "1")
    done = subprocess.run(
        command,
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=90,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


async def prepare(url: str, admin: dict[str, str], tokens: Any) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30) as c:
        r = await c.put("/v1/groups/r/members", json={"members": ["user:alice"]}, headers=admin)
        assert r.status_code == 200, r.text
        for n in range(4):
            r = await c.put(
                f"/v1/datasets/ea.d{n}",
                json={
                    "owner": "group:r",
                    "sensitivity": "internal",
                    "intended_audience": ["group:r"],
                },
                headers=admin,
            )
            assert r.status_code in (200, 201), r.text
        grant = {"principal": "group:r", "resource": "ea.*", "action": "read", "effect": "allow"}
        assert (await c.post("/v1/grants", json=grant, headers=admin)).status_code == 201
        r = await c.post("/v1/check", json=CHECK, headers=tokens["check"])  # caches the token
        assert r.json()["decision"] == "allow", r.text


@pytest.fixture
def served(database_url: str, tokens: Any, admin: dict[str, str], tmp_path: Path) -> Any:
    server = Server(database_url, log=tmp_path / "server.log", cpus="0").start()
    try:
        asyncio.run(prepare(server.url, admin, tokens))
        yield server
    finally:
        server.stop()


def check_load(tokens: Any) -> dict[str, Any]:
    return {
        "connections": CHECK_CONNECTIONS,
        "request": http_request(
            "POST", "/v1/check", {**JSON, **tokens["check"]}, json.dumps(CHECK).encode()
        ),
    }


def under_abuse(
    server: Server, tokens: Any, database_url: str, cases: dict[str, dict[str, Any]]
) -> None:
    checks = check_load(tokens)
    baseline = measure(server, {"checks": checks})["checks"]
    backend = database_url.split(":", 1)[0]
    print(f"\n{backend} baseline: {baseline}")
    assert set(baseline["statuses"]) == {"200"}, baseline
    failures = []
    for name, abuse in cases.items():
        result = measure(server, {"checks": checks, "abuse": abuse})
        print(f"{backend} {name}: checks {result['checks']}; abuse {result['abuse']}")
        under, abusive = result["checks"], result["abuse"]
        if set(under["statuses"]) != {"200"} or under["rps"] < baseline["rps"] / 2:
            failures.append((name, under))
        if not abusive["requests"] or abusive["errors"]:  # each answered (a body: unread)
            failures.append((name, abusive))
    assert not failures, failures


def test_checks_keep_half_their_throughput_under_each_abusive_loop(
    served: Server, tokens: Any, database_url: str
):
    under_abuse(served, tokens, database_url, abuses(tokens))
