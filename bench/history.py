"""Benchmark of the policy's history: `at=` and the incident report over 30 days of changes.

1. The organisation of `bench.exposure` (same generator: 100,000 users and services, 50,000
   grants; ``--quick`` a tenth) loaded as version 1 thirty days ago, then ``--changes``
   (200,000; 20,000 quick) grants created and revoked, memberships added and removed and
   datasets' audiences and guards changed, one policy version each, spread over the 30 days:
   written in bulk as the change pipeline would write them (`bench.history_generate`, proven
   equal in ``tests/policy/test_history_generate.py``).
2. ``--log-entries`` (50,000; 5,000 quick) access-log reads over the same 30 days
   (`bench.log_generate`).
3. A real ``aclaudit serve`` (one worker) pinned with taskset to ``--server-cpus``, the client
   on ``--client-cpus``; timed one request at a time:

   * ``GET /v1/datasets/{d}/exposure?at=T`` for ``--instants`` distinct T, each in another
     policy version (no cache hides a rebuild), then the same T again (warm);
   * ``GET /v1/reports/exposure?dataset=d&since=<30 days ago>`` (walks every version);
   * ``aclaudit report --dataset d --since ...`` (the CLI, pinned like the server).

Usage (repository root, the project's virtualenv; under the bench lock)::

    flock -x /tmp/aclaudit-bench.lock python -m bench.history --quick
    flock -x /tmp/aclaudit-bench.lock python -m bench.history [--postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from app import migrate
from bench import history_generate, log_generate
from bench.aclaudit_target import REPO, cli_path, create_token, environment, serve
from bench.exposure import WORK, fresh_database, percentile, rows
from bench.exposure_analyser import Shape, generate
from bench.procs import BenchError, pinned, run_bench

AT_P95_TARGET = 0.5  # seconds
REPORT_TARGET = 10.0
DAYS = 30


def _timed_get(client: httpx.Client, path: str, params: dict[str, str]) -> tuple[float, Any]:
    started = time.perf_counter()
    response = client.get(path, params=params)
    seconds = time.perf_counter() - started
    if response.status_code != 200:
        raise BenchError(f"GET {path} {params} -> {response.status_code}: {response.text[:500]}")
    return seconds, response.json()


def _summary(samples: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(samples),
        "p50_ms": round(percentile(samples, 0.5) * 1000, 1),
        "p95_ms": round(percentile(samples, 0.95) * 1000, 1),
        "max_ms": round(max(samples) * 1000, 1),
    }


def build(args: argparse.Namespace, report: dict[str, Any]) -> tuple[str, Any, Any]:
    """The database: organisation, history and log. Returns its URL, the org, the history."""
    shape = Shape(seed=args.seed)
    if args.quick:
        shape = shape.scaled(10)
    org = generate(shape)
    end = datetime.now(UTC) - timedelta(minutes=2)
    start = end - timedelta(days=DAYS)
    started = time.monotonic()
    made = history_generate.generate(
        org, rows(org, start), start=start, end=end, changes=args.changes, seed=args.seed
    )
    history_rows = sum(len(r) for r in made.history.values())
    print(
        f"organisation: {len(org.users) + len(org.services):,} users and services, "
        f"{len(org.rules):,} grants; {len(made.changes):,} changes ({history_rows:,} history "
        f"rows) over {DAYS} days, generated in {time.monotonic() - started:.1f} s",
        flush=True,
    )
    url = fresh_database(args, stem="history")
    migrate.upgrade(url)
    started = time.monotonic()
    asyncio.run(history_generate.write(url, made))
    report["history_write_s"] = round(time.monotonic() - started, 1)
    shape_log = log_generate.LogShape(
        entries=args.log_entries,
        principals=[*org.users[:5000], *org.services[:100]],
        datasets=org.datasets,
        end=log_generate.newest_instant(),
        days=DAYS,
        policy_version=made.last_version,
        seed=args.seed,
    )
    started = time.monotonic()
    if args.postgres:
        asyncio.run(log_generate.generate(url, shape_log))
    else:
        asyncio.run(log_generate.generate_sqlite(url, shape_log))
    report["log_write_s"] = round(time.monotonic() - started, 1)
    report["organisation"] = {"principals": len(org.users) + len(org.services)}
    report["organisation"]["grants"] = len(org.rules)
    report["history"] = {"changes": len(made.changes), "rows": history_rows}
    report["history"]["versions"] = made.last_version
    report["log_entries"] = args.log_entries
    print(
        f"written: history in {report['history_write_s']} s, {args.log_entries:,} log entries "
        f"in {report['log_write_s']} s",
        flush=True,
    )
    return url, org, made


def measure(
    args: argparse.Namespace, url: str, org: Any, made: Any, report: dict[str, Any]
) -> None:
    token = create_token(url, "bench-history", "admin")
    backend = "postgresql" if args.postgres else "sqlite"
    dataset = org.wide_dataset
    instants = history_generate.instants(made, args.instants + 1, random.Random(args.seed + 1))
    first, instants = instants[0], instants[1:]
    random.Random(args.seed + 2).shuffle(instants)  # in no order: earlier and later ones
    since = (made.start + timedelta(seconds=1)).isoformat()
    with serve(url, WORK / f"history-serve-{backend}.log", 600.0, cpus=args.server_cpus) as server:
        if args.client_cpus is not None:
            os.sched_setaffinity(0, {int(c) for c in args.client_cpus.split(",")})
        headers = {"Authorization": f"Bearer {token}"}
        timeout = httpx.Timeout(900.0)
        with httpx.Client(base_url=server.base_url, headers=headers, timeout=timeout) as client:
            path = f"/v1/datasets/{dataset}/exposure"
            seconds, body = _timed_get(client, path, {"at": first.isoformat()})
            report["at_first_s"] = round(seconds, 3)
            print(f"exposure?at= first call (process warm-up): {seconds * 1000:,.0f} ms")
            cold = []
            for at in instants:
                seconds, body = _timed_get(client, path, {"at": at.isoformat()})
                cold.append(seconds)
            report["at_distinct"] = _summary(cold)
            report["at_distinct"]["effective_count_last"] = body["effective_count"]
            print(f"exposure?at= distinct T: {report['at_distinct']}", flush=True)
            warm = [_timed_get(client, path, {"at": instants[-1].isoformat()})[0]]
            warm += [
                _timed_get(client, path, {"at": instants[-1].isoformat()})[0]
                for _ in range(args.repeats - 1)
            ]
            report["at_warm"] = _summary(warm)
            print(f"exposure?at= same T again: {report['at_warm']}", flush=True)
            params = {"dataset": dataset, "since": since, "limit": "100"}
            seconds, body = _timed_get(client, "/v1/reports/exposure", params)
            report["report_api_s"] = round(seconds, 2)
            report["report_integrity"] = {
                k: body["integrity"][k]
                for k in ("ok", "entries", "verified_after", "verified_through")
            }
            walked = body["datasets"][0]["policy_versions_walked"] if body["datasets"] else 0
            report["report_versions_walked"] = walked
            print(
                f"report (API): {seconds:.2f} s, {walked:,} versions walked, integrity "
                f"{report['report_integrity']}",
                flush=True,
            )
    os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    argv = [
        str(cli_path()),
        "report",
        "--dataset",
        dataset,
        "--since",
        since,
        "--format",
        "json",
        "--top",
        "100",
        "--output",
        str(WORK / f"history-report-{backend}.json"),
    ]
    started = time.perf_counter()
    done = subprocess.run(
        pinned(argv, args.server_cpus),
        env=environment(url),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    report["report_cli_s"] = round(time.perf_counter() - started, 2)
    if done.returncode != 0:
        raise BenchError(f"aclaudit report failed ({done.returncode}):\n{done.stderr[-2000:]}")
    print(f"report (CLI, process start included): {report['report_cli_s']:.2f} s")


def verdicts(report: dict[str, Any]) -> dict[str, str]:
    at = report["at_distinct"]["p95_ms"] / 1000
    return {
        "at_p95": "pass" if at < AT_P95_TARGET else "FAIL",
        "report_api": "pass" if report["report_api_s"] < REPORT_TARGET else "FAIL",
        "report_cli": "pass" if report["report_cli_s"] < REPORT_TARGET else "FAIL",
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}}
    report["loadavg_before"] = Path("/proc/loadavg").read_text().split()[:3]
    url, org, made = build(args, report)
    report["loadavg_measured"] = Path("/proc/loadavg").read_text().split()[:3]
    measure(args, url, org, made, report)
    report["loadavg_after"] = Path("/proc/loadavg").read_text().split()[:3]
    report["verdicts"] = verdicts(report)
    print(f"verdicts: {report['verdicts']} (load {report['loadavg_measured']})")
    return report


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.history", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a tenth of the organisation")
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL instead of SQLite")
    parser.add_argument("--pg-database", default="hhist_history_bench")
    parser.add_argument("--changes", type=int, help="default 200,000 (20,000 quick)")
    parser.add_argument("--log-entries", type=int, help="default 50,000 (5,000 quick)")
    parser.add_argument("--instants", type=int, default=50, help="distinct T for at=")
    parser.add_argument("--repeats", type=int, default=10, help="warm calls at one T")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--server-cpus", default="0")
    parser.add_argument("--client-cpus", default="1")
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    args.changes = args.changes or (20_000 if args.quick else 200_000)
    args.log_entries = args.log_entries or (5_000 if args.quick else 50_000)
    if args.no_pin:
        args.server_cpus = args.client_cpus = None
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run_bench(lambda: run(args), args.json)


if __name__ == "__main__":
    sys.exit(main())
