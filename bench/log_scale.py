"""The access log at production scale, on PostgreSQL (issue #22).

One run:

1. writes the benchmark's policy (``bench/workload.py``) into two fresh databases,
   ``<prefix>empty`` and ``<prefix>full``, and generates ``--entries`` hash-chained entries
   (default 10 million) straight into the second one's log (``bench/log_generate.py``; the
   result passes ``aclaudit log verify``);
2. browsing: ``GET /v1/access-log`` with each filter, its first page and a page deep in the
   cursor (from the middle of the log), ``--browse-requests`` sequential requests each (a
   different filter value each time) to one ``aclaudit serve``; p50/p95 (target p95 < 20 ms);
3. check throughput with the full log against the empty one: the same server on each database in
   turn, wrk, ``--rounds`` interleaved rounds (empty, full, empty, full, ...); the ratio of the
   medians (target within 10 %);
4. three ``aclaudit serve`` replicas on the full database (one wrk per replica, each with a
   third of the connections, all at once) against one replica;
5. ``aclaudit log archive`` of the oldest tenth of the log (one million entries of ten million):
   the time it takes (``--skip-archive``: not run).

Servers run on ``--server-cpus`` (default CPU 0), wrk and the browsing client on
``--load-cpus`` (default CPU 1); PostgreSQL runs wherever the system puts it. Replicas share the
server CPUs: on two cores they cannot add capacity, only contention (see the report).

Usage (repository root, project virtualenv; needs wrk and PostgreSQL on 127.0.0.1:5432)::

    python -m bench.log_scale                 # 10 million entries (about 15 min in all)
    python -m bench.log_scale --quick         # 200k entries, short wrk runs
    python -m bench.log_scale --entries 2000000 --skip-archive --json bench/.work/log.json
    python -m bench.log_scale --keep          # keep the databases; --reuse skips generating
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench import aclaudit_target, log_generate
from bench.loadgen import Load, WrkResult, measure, wrk_path
from bench.procs import BenchError, Server, run_bench
from bench.workload import Shape, Workload, build

WORK = Path(__file__).resolve().parent / ".work" / "log_scale"
PG = "postgresql://postgres@127.0.0.1:5432/"


# -- databases --------------------------------------------------------------------------------


async def _admin(statements: Sequence[str]) -> Any:
    import asyncpg

    conn = await asyncpg.connect(PG + "postgres", timeout=10)
    try:
        result = None
        for statement in statements:
            result = await conn.fetch(statement)
        return result
    finally:
        await conn.close()


def recreate(name: str) -> str:
    asyncio.run(
        _admin([f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"'])
    )
    return PG + name


def drop(name: str) -> None:
    asyncio.run(_admin([f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)']))


async def _fetch(url: str, sql: str, *args: Any) -> list[Any]:
    import asyncpg

    conn = await asyncpg.connect(url, timeout=10)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


def fetch(url: str, sql: str, *args: Any) -> list[Any]:
    return asyncio.run(_fetch(url, sql, *args))


def head_id(url: str) -> int:
    return int(fetch(url, "SELECT last_id FROM access_log_head WHERE id = 1")[0][0])


def reusable(url: str, entries: int) -> bool:
    """The database holds a generated log of at least `entries` entries (and the checks of
    earlier runs), none of them archived."""
    try:
        head, archived = fetch(
            url,
            "SELECT (SELECT last_id FROM access_log_head WHERE id = 1), "
            "(SELECT count(*) FROM access_log_archives)",
        )[0]
    except Exception:  # no such database or table: nothing to reuse
        return False
    return head is not None and head >= entries and archived == 0


# -- browsing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Latency:
    name: str
    requests: int
    p50_ms: float
    p95_ms: float
    max_ms: float
    items: float  # mean entries per page


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def browse_filters(
    workload: Workload, middle_at: datetime
) -> dict[str, Callable[[random.Random], dict[str, Any]]]:
    """Each filter of GET /v1/access-log as a maker of query parameters (a fresh value each
    call). ``since``/``until`` windows are around the middle of the log's 30 days."""
    users, datasets = workload.org.users, workload.org.datasets

    def at(offset_hours: float) -> str:
        return (middle_at + timedelta(hours=offset_hours)).isoformat()

    return {
        "none": lambda r: {},
        "principal": lambda r: {"principal": r.choice(users)},
        "dataset": lambda r: {"dataset": r.choice(datasets)},
        "decision=allow": lambda r: {"decision": "allow"},
        "decision=deny": lambda r: {"decision": "deny"},
        "out_of_audience=true": lambda r: {"out_of_audience": "true"},
        "out_of_audience=false": lambda r: {"out_of_audience": "false"},
        "data_subject": lambda r: {
            "data_subject": log_generate.subject(r.randrange(log_generate.SUBJECTS))
        },
        "since": lambda r: {"since": at(r.uniform(-240, 0))},
        "until": lambda r: {"until": at(r.uniform(-240, 0))},
        "since+until (1 h)": lambda r: (lambda h: {"since": at(h), "until": at(h + 1)})(
            r.uniform(-240, -1)
        ),
        "principal+dataset": lambda r: {
            "principal": r.choice(users),
            "dataset": r.choice(datasets),
        },
    }


def browse(
    server: Server,
    token: str,
    filters: dict[str, Callable[[random.Random], dict[str, Any]]],
    middle: int,
    requests: int,
    seed: int,
) -> list[Latency]:
    """Sequential requests, each filter's first page then a page from `middle` down."""
    results: list[Latency] = []
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=60.0) as client:
        for name, make in filters.items():
            for deep in (False, True):
                rng = random.Random(seed)
                times, items = [], 0
                for n in range(requests + 3):  # three warm-up requests, not counted
                    params = make(rng)
                    if deep:
                        params["cursor"] = str(middle)
                    started = time.perf_counter()
                    response = client.get("/v1/access-log", params=params)
                    elapsed = (time.perf_counter() - started) * 1000
                    if response.status_code != 200:
                        raise BenchError(
                            f"GET /v1/access-log {params} -> {response.status_code}: "
                            f"{response.text[:300]}"
                        )
                    if n >= 3:
                        times.append(elapsed)
                        items += len(response.json()["items"])
                label = f"{name}, {'deep' if deep else 'first page'}"
                latency = Latency(
                    label,
                    requests,
                    percentile(times, 0.5),
                    percentile(times, 0.95),
                    max(times),
                    items / requests,
                )
                print(
                    f"    {label:<38} p50 {latency.p50_ms:7.2f} ms  p95 {latency.p95_ms:7.2f} ms"
                    f"  ({latency.items:.0f} items)",
                    flush=True,
                )
                results.append(latency)
    return results


def browse_table(results: list[Latency]) -> str:
    header = (
        f"{'GET /v1/access-log filter, page':<40} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} "
        f"{'items':>6}  "
    )
    lines = [header, "-" * len(header)]
    for r in results:
        flag = "" if r.p95_ms < 20 else "over 20 ms"
        lines.append(
            f"{r.name:<40} {r.p50_ms:>8.2f} {r.p95_ms:>8.2f} {r.max_ms:>8.1f} {r.items:>6.0f}  "
            f"{flag}"
        )
    return "\n".join(lines)


# -- checks -----------------------------------------------------------------------------------


def check_file(workload: Workload) -> Path:
    path = WORK / "check-bodies.jsonl"
    bodies = [
        aclaudit_target.check_body(c.principal, c.dataset, f"bench-{n}")
        for n, c in enumerate(workload.checks)
    ]
    path.write_text("".join(json.dumps(b, separators=(",", ":")) + "\n" for b in bodies))
    return path


def throughput(server: Server, bodies: Path, token: str, load: Load) -> WrkResult:
    result = measure(
        server.base_url + "/v1/check", bodies, f"Bearer {token}", load, server.process.pid
    )
    failed = result.non_2xx + result.socket_errors
    print(
        f"    {result.rps:,.0f} checks/s, p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms"
        + (f", {failed} failed" if failed else ""),
        flush=True,
    )
    if not server.alive():
        raise BenchError(f"the server died under load:\n{server.log_tail()}")
    return result


@contextmanager
def servers(url: str, count: int, args: argparse.Namespace, name: str) -> Iterator[list[Server]]:
    with ExitStack() as stack:
        yield [
            stack.enter_context(
                aclaudit_target.serve(
                    url,
                    WORK / f"{name}-{n}.log",
                    cpus=args.server_cpus,
                    checkpoint_key=args.checkpoint_key,
                )
            )
            for n in range(count)
        ]


def replicas(
    url: str, bodies: Path, token: str, args: argparse.Namespace, load: Load
) -> dict[str, Any]:
    """Total check throughput of one server and of three (one wrk per replica, each with a
    third of the connections and one thread, run at the same time), `args.rounds` interleaved
    rounds; the ratio of the medians."""
    totals: dict[int, list[float]] = {1: [], 3: []}
    for number in range(1, args.rounds + 1):
        for count in (1, 3):
            print(f"\n{count} replica(s) on the full log, round {number}", flush=True)
            with servers(url, count, args, f"replicas{count}") as running:
                share = Load(
                    load.duration,
                    load.warmup,
                    max(1, load.connections // count),
                    1 if count > 1 else load.threads,
                    load.timeout,
                    load.cpus,
                )
                urls = [s.base_url + "/v1/check" for s in running]
                with ThreadPoolExecutor(max_workers=count) as pool:
                    runs = [pool.submit(measure, u, bodies, f"Bearer {token}", share) for u in urls]
                    results = [r.result() for r in runs]
            total = sum(r.rps for r in results)
            failed = sum(r.non_2xx + r.socket_errors for r in results)
            print(
                f"    {total:,.0f} checks/s in all ("
                + ", ".join(f"{r.rps:,.0f}" for r in results)
                + f"); p99 {max(r.p99_ms for r in results):.2f} ms"
                + (f", {failed} failed" if failed else ""),
                flush=True,
            )
            totals[count].append(total)
    one, three = statistics.median(totals[1]), statistics.median(totals[3])
    return {"rounds": totals, "replicas_1": one, "replicas_3": three, "ratio_3_to_1": three / one}


# -- archiving --------------------------------------------------------------------------------


def archive(url: str, entries: int, checkpoint_key: str | None) -> dict[str, Any]:
    """``aclaudit log archive`` of the entries written before entry `entries` + 1's instant."""
    rows = fetch(url, "SELECT at FROM access_log WHERE id = $1", entries + 1)
    if not rows:
        raise BenchError(f"no entry {entries + 1} to archive up to")
    before = rows[0][0]
    target = WORK / "archive"
    shutil.rmtree(target, ignore_errors=True)
    argv = [
        str(aclaudit_target.cli_path()),
        "log",
        "archive",
        "--before",
        before.isoformat(),
        "--to",
        str(target),
    ]
    print(f"\narchiving: {' '.join(argv[1:])}", flush=True)
    started = time.monotonic()
    done = subprocess.run(
        argv,
        env=aclaudit_target.environment(url, checkpoint_key),
        cwd=aclaudit_target.REPO,
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise BenchError(
            f"aclaudit log archive failed ({done.returncode}):\n"
            f"{done.stdout}\n{done.stderr[-2000:]}"
        )
    print(f"    {done.stdout.strip()} in {seconds:.1f} s", flush=True)
    archived = fetch(url, "SELECT coalesce(sum(entries), 0) FROM access_log_archives")[0][0]
    size = sum(p.stat().st_size for p in target.glob("*.gz"))
    return {
        "before": before.isoformat(),
        "entries": int(archived),
        "seconds": seconds,
        "entries_per_s": int(archived) / seconds if seconds else None,
        "bytes": size,
    }


# -- the run ----------------------------------------------------------------------------------


def prepare_full(
    url_name: str, workload: Workload, args: argparse.Namespace
) -> tuple[str, dict[str, Any]]:
    """The database with the generated log (reused with --reuse when it holds as many)."""
    url = PG + url_name
    if args.reuse and reusable(url, args.entries):
        print(f"reusing {url_name}: its log holds {args.entries:,} entries or more", flush=True)
        return url, {"reused": True}
    url = recreate(url_name)
    seconds = aclaudit_target.seed_policy(url, workload)
    print(f"  policy written in {seconds:.1f} s; generating {args.entries:,} entries", flush=True)
    shape = log_generate.LogShape(
        entries=args.entries,
        principals=workload.org.users,
        datasets=workload.org.datasets,
        end=log_generate.newest_instant(),
        checkpoint_every=args.checkpoint_every,
        checkpoint_key=args.checkpoint_key.encode() if args.checkpoint_key else None,
        seed=args.seed,
    )
    made = asyncio.run(log_generate.generate(url, shape))
    print(
        f"  generated {made.entries:,} entries ({made.subjects:,} subject rows): load "
        f"{made.load_s:.0f} s, keys and indexes {made.index_s:.0f} s, vacuum {made.vacuum_s:.0f} s;"
        f" {made.entries_per_s:,.0f} entries/s",
        flush=True,
    )
    size = fetch(url, "SELECT pg_database_size(current_database())")[0][0]
    return url, {**asdict(made), "entries_per_s": made.entries_per_s, "database_bytes": int(size)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    wrk_path()
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    load = Load(args.duration, args.warmup, args.connections, args.threads, cpus=args.load_cpus)
    workload = build(Shape(users=args.users, grants=args.grants, seed=args.seed))
    print(f"workload: {workload.describe()}", flush=True)
    report: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}}
    empty_name, full_name = f"{args.db_prefix}empty", f"{args.db_prefix}full"
    empty = recreate(empty_name)
    aclaudit_target.seed_policy(empty, workload)
    full, report["generated"] = prepare_full(full_name, workload, args)
    tokens = {
        url: aclaudit_target.create_token(url, f"checker-{os.getpid()}", "check")
        for url in (empty, full)
    }
    reader = aclaudit_target.create_token(full, f"reader-{os.getpid()}", "audit:read")
    bodies = check_file(workload)
    try:
        head = head_id(full)
        middle = head // 2
        middle_at = fetch(full, "SELECT at FROM access_log WHERE id = $1", middle)[0][0]
        print(
            f"\nbrowsing ({args.browse_requests} requests each; deep pages from cursor {middle:,})"
        )
        with servers(full, 1, args, "browse") as (server,):
            if args.load_cpus is not None:
                os.sched_setaffinity(0, {int(c) for c in args.load_cpus.split(",")})
            latencies = browse(
                server,
                reader,
                browse_filters(workload, middle_at),
                middle,
                args.browse_requests,
                args.seed,
            )
            os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
        report["browse"] = [asdict(r) for r in latencies]
        rounds: dict[str, list[WrkResult]] = {"empty": [], "full": []}
        for number in range(1, args.rounds + 1):
            for label, url in (("empty", empty), ("full", full)):
                print(f"\nchecks, {label} log, round {number}", flush=True)
                with servers(url, 1, args, f"checks-{label}") as (server,):
                    rounds[label].append(throughput(server, bodies, tokens[url], load))
        medians = {k: statistics.median(r.rps for r in v) for k, v in rounds.items()}
        report["checks"] = {
            "rounds": {k: [asdict(r) for r in v] for k, v in rounds.items()},
            "median_rps": medians,
            "ratio_full_to_empty": medians["full"] / medians["empty"],
        }
        report["replicas"] = replicas(full, bodies, tokens[full], args, load)
        if not args.skip_archive:
            report["archive"] = archive(full, head // 10, args.checkpoint_key)
    finally:
        if not args.keep:
            drop(empty_name)
            drop(full_name)
    print("\n" + summary(report, latencies))
    return report


def summary(report: dict[str, Any], latencies: list[Latency]) -> str:
    lines = [browse_table(latencies), ""]
    checks = report["checks"]
    lines.append(
        f"checks/s (median of {len(checks['rounds']['empty'])} interleaved rounds): empty log "
        f"{checks['median_rps']['empty']:,.0f}, full log {checks['median_rps']['full']:,.0f}; "
        f"full / empty {checks['ratio_full_to_empty']:.3f} (target >= 0.90)"
    )
    r = report["replicas"]
    lines.append(
        f"replicas (medians): one {r['replicas_1']:,.0f} checks/s, three "
        f"{r['replicas_3']:,.0f} checks/s in all; three / one {r['ratio_3_to_1']:.3f}"
    )
    if "archive" in report:
        a = report["archive"]
        lines.append(
            f"archive: {a['entries']:,} entries in {a['seconds']:.1f} s "
            f"({a['entries_per_s']:,.0f}/s, {a['bytes'] / 1e6:,.0f} MB of segments)"
        )
    g = report["generated"]
    if "entries" in g:
        lines.append(
            f"generated {g['entries']:,} entries at {g['entries_per_s']:,.0f}/s; database "
            f"{g['database_bytes'] / 1e9:.1f} GB"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.log_scale",
        description="Browsing, check throughput, replicas and archiving with a large access log "
        "on PostgreSQL.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="200k entries, 3 s wrk runs, a 2k policy"
    )
    parser.add_argument("--entries", type=int, help="log size (default 10,000,000; 200,000 quick)")
    parser.add_argument("--browse-requests", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved empty/full rounds")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per wrk run")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--users", type=int, help="default 10,000 (2,000 quick)")
    parser.add_argument("--grants", type=int, help="default 10,000 (2,000 quick)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--checkpoint-every", type=int, default=1000, help="as ACLAUDIT_CHECKPOINT_EVERY"
    )
    parser.add_argument("--checkpoint-key", help="ACLAUDIT_CHECKPOINT_KEY for the log and servers")
    parser.add_argument("--skip-archive", action="store_true", help="do not time the archive")
    parser.add_argument("--db-prefix", default="aclaudit_logscale_", help="database name prefix")
    parser.add_argument("--keep", action="store_true", help="keep the databases afterwards")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="reuse <prefix>full (kept by --keep) when its log holds --entries entries or "
        "more and none were archived (the earlier run had --skip-archive)",
    )
    parser.add_argument("--server-cpus", default="0")
    parser.add_argument("--load-cpus", default="1")
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.warmup = 3.0, 1.0
    args.entries = args.entries or (200_000 if args.quick else 10_000_000)
    policy = 2_000 if args.quick else 10_000
    args.users, args.grants = args.users or policy, args.grants or policy
    if args.no_pin:
        args.server_cpus = args.load_cpus = None
    if args.entries < 10 * args.checkpoint_every:
        parser.error("--entries must be at least ten checkpoints")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run_bench(lambda: run(args), args.json)


if __name__ == "__main__":
    sys.exit(main())
