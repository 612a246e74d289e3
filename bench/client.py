"""Overhead of ``app.client`` over a raw httpx POST, on loopback.

Both send the same ``POST /v1/check`` body to the same tiny server, over one kept-alive
connection: a raw ASGI app (``bench.client:constant_app``, served by ``uvicorn --workers 1``)
that answers every request with one constant, valid check decision, so the server's cost is
small and equal for both and the difference is the client's own work (building the body,
validating the answer strictly, building the result).

  raw     ``httpx.Client.post("/v1/check", json=body)`` (the strictest baseline: no parsing)
  raw+json  the same, then ``response.json()["allowed"]`` (what a hand-rolled integration does)
  client  ``AclauditClient.check(...)`` (and the async pair, ``httpx.AsyncClient`` against
          ``AsyncAclauditClient``)

Rounds are interleaved (raw, raw+json, client, in a rotating order) so machine noise hits every
variant alike; each call is timed alone and the p50 of all calls is compared. The figure to
record is ``client p50 / raw p50`` (issue 6 asks < 1.10).

Usage (repository root, dev virtualenv)::

    python -m bench.client                  # 30 rounds of 300 calls per variant, sync and async
    python -m bench.client --rounds 5 --calls 100     # quick
    python -m bench.client --json bench/.work/client.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

from app.client import AclauditClient, AsyncAclauditClient
from bench.procs import LOOPBACK, BenchError, free_port, running

WORK = Path(__file__).resolve().parent / ".work" / "client"
REPO = Path(__file__).resolve().parent.parent
TOKEN = "bench-token"
PRINCIPAL = "service:trainer"
DATASET = "employee_activity.keystrokes"
PURPOSE = "model-training"
SUBJECTS = ["user:ana.lopez373", "user:ben.baker12"]
BODY: dict[str, Any] = {
    "principal": PRINCIPAL,
    "dataset": DATASET,
    "action": "read",
    "purpose": PURPOSE,
    "data_subjects": SUBJECTS,
}
DECISION = json.dumps(
    {
        "decision": "allow",
        "allowed": True,
        "decision_id": "0d3c5a8e-6f55-4a5e-9a53-1d2b8f3c9e10",
        "access_log_id": 1234,
        "reason": {"code": "granted", "grant_id": 2, "via": ["service:trainer"]},
        "out_of_audience": False,
        "policy_version": 42,
    }
).encode()
HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(DECISION))]


async def constant_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers every HTTP request with the same decision, after reading the body."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": DECISION})


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_sync(url: str, rounds: int, calls: int) -> dict[str, list[float]]:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with (
        httpx.Client(base_url=url, headers=auth) as raw,
        AclauditClient(url, token=TOKEN) as client,
    ):

        def post() -> None:
            raw.post("/v1/check", json=BODY)

        def post_json() -> None:
            assert raw.post("/v1/check", json=BODY).json()["allowed"] is True

        def check() -> None:
            assert client.check(PRINCIPAL, DATASET, purpose=PURPOSE, data_subjects=SUBJECTS).allowed

        variants: dict[str, Callable[[], None]] = {
            "raw": post,
            "raw+json": post_json,
            "client": check,
        }
        times: dict[str, list[float]] = {name: [] for name in variants}
        for fn in variants.values():  # warm-up: connections, caches
            for _ in range(50):
                fn()
        names = list(variants)
        clock = time.perf_counter
        for r in range(rounds):
            for name in names[r % 3 :] + names[: r % 3]:
                fn, out = variants[name], times[name]
                for _ in range(calls):
                    start = clock()
                    fn()
                    out.append(clock() - start)
        return times


async def run_async(url: str, rounds: int, calls: int) -> dict[str, list[float]]:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with (
        httpx.AsyncClient(base_url=url, headers=auth) as raw,
        AsyncAclauditClient(url, token=TOKEN) as client,
    ):

        async def post() -> None:
            await raw.post("/v1/check", json=BODY)

        async def post_json() -> None:
            assert (await raw.post("/v1/check", json=BODY)).json()["allowed"] is True

        async def check() -> None:
            result = await client.check(PRINCIPAL, DATASET, purpose=PURPOSE, data_subjects=SUBJECTS)
            assert result.allowed

        variants: dict[str, Callable[[], Awaitable[None]]] = {
            "raw": post,
            "raw+json": post_json,
            "client": check,
        }
        times: dict[str, list[float]] = {name: [] for name in variants}
        for fn in variants.values():
            for _ in range(50):
                await fn()
        names = list(variants)
        clock = time.perf_counter
        for r in range(rounds):
            for name in names[r % 3 :] + names[: r % 3]:
                fn, out = variants[name], times[name]
                for _ in range(calls):
                    start = clock()
                    await fn()
                    out.append(clock() - start)
        return times


def run_in_process(rounds: int, calls: int) -> dict[str, float]:
    """The client's own CPU work per check: the same pair over ``httpx.MockTransport`` (no
    network, no server), so the difference is all client."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=DECISION, headers={"content-type": "application/json"})

    url, auth = "http://bench.test", {"Authorization": f"Bearer {TOKEN}"}
    with (
        httpx.Client(base_url=url, headers=auth, transport=httpx.MockTransport(handler)) as raw,
        AclauditClient(url, token=TOKEN, transport=httpx.MockTransport(handler)) as client,
    ):
        times: dict[str, list[float]] = {"raw": [], "client": []}
        clock = time.perf_counter
        for _ in range(rounds):
            for _ in range(calls):
                start = clock()
                raw.post("/v1/check", json=BODY)
                times["raw"].append(clock() - start)
            for _ in range(calls):
                start = clock()
                client.check(PRINCIPAL, DATASET, purpose=PURPOSE, data_subjects=SUBJECTS)
                times["client"].append(clock() - start)
    raw_us, client_us = (statistics.median(times[k]) * 1e6 for k in ("raw", "client"))
    print("\nin-process (httpx.MockTransport, no network): p50 µs per call")
    print(
        f"  raw {raw_us:.1f}, client {client_us:.1f}: the client adds {client_us - raw_us:.1f} µs"
    )
    return {"raw_p50_us": raw_us, "client_p50_us": client_us}


def report(kind: str, times: dict[str, list[float]]) -> dict[str, Any]:
    base = statistics.median(times["raw"])
    rows = {}
    print(f"\n{kind}: {len(times['raw'])} calls per variant")
    print(f"  {'variant':<10} {'p50 µs':>9} {'p90 µs':>9} {'p99 µs':>9} {'p50 / raw':>10}")
    for name, values in times.items():
        p50 = statistics.median(values)
        rows[name] = {
            "p50_us": p50 * 1e6,
            "p90_us": percentile(values, 0.90) * 1e6,
            "p99_us": percentile(values, 0.99) * 1e6,
            "ratio_to_raw": p50 / base,
        }
        row = rows[name]
        print(
            f"  {name:<10} {row['p50_us']:>9.1f} {row['p90_us']:>9.1f} {row['p99_us']:>9.1f} "
            f"{row['ratio_to_raw']:>10.3f}"
        )
    ratio = rows["client"]["ratio_to_raw"]
    verdict = "met" if ratio < 1.10 else "NOT met"
    print(
        f"  client overhead over raw httpx: {100 * (ratio - 1):+.1f} % (target < 10 %: {verdict})"
    )
    return rows


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=30, help="interleaved rounds (30)")
    parser.add_argument("--calls", type=int, default=300, help="calls per variant per round")
    parser.add_argument("--only", choices=["sync", "async"], help="one client only")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    port = free_port()
    url = f"http://{LOOPBACK}:{port}"
    argv_server = [
        *(sys.executable, "-m", "uvicorn", "bench.client:constant_app"),
        *("--host", LOOPBACK, "--port", str(port), "--workers", "1", "--log-level", "warning"),
    ]
    print(f"python {sys.version.split()[0]}, httpx {httpx.__version__}; server {url}")
    results: dict[str, Any] = {}
    try:
        with running(
            "constant server",
            argv_server,
            base_url=url,
            ready_path="/healthz",
            log_path=WORK / "server.log",
            cwd=REPO,
        ):
            if args.only in (None, "sync"):
                results["sync"] = report("sync", run_sync(url, args.rounds, args.calls))
            if args.only in (None, "async"):
                times = asyncio.run(run_async(url, args.rounds, args.calls))
                results["async"] = report("async", times)
        results["in_process"] = run_in_process(args.rounds, args.calls)
    except BenchError as exc:
        sys.exit(f"bench.client: {exc}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
