"""Benchmark of the hot path, ``POST /v1/check``, on loopback.

One run measures, each with 32 connections (wrk, 2 threads) and one server worker process:

  (a) a bare FastAPI POST endpoint returning a constant JSON (``bench/bare_app.py``), served with
      ``uvicorn bench.bare_app:app --workers 1 --log-level warning`` (uvloop/httptools when
      installed, as for aclaudit);
  (b) aclaudit on SQLite (a fresh file in a temporary directory), ``aclaudit serve --workers 1``;
  (c) aclaudit on PostgreSQL (database ``aclaudit_bench`` on 127.0.0.1:5432, dropped and created
      anew);
  (d) Cerbos (npm package ``@cerbos/cerbos-linux-<arch>``, installed into ``bench/.tools`` on
      first use) with the equivalent policy (see ``bench/cerbos_pdp.py`` for the mapping), audit
      decision logs written to a file, ``GOMAXPROCS=1`` by default (one core, like one uvicorn
      worker; ``--cerbos-gomaxprocs 0`` lets Go use every core).

The policy (``bench/workload.py``): 10k users in 100 teams < 10 departments < ``group:all``,
1,000 datasets ``d{f}.t{j}``, 10k grants mixing ``prefix.*`` patterns and exact datasets, allow and
deny, written straight into aclaudit's freshly migrated tables before the server starts
(``--load-over-http`` loads them through the API instead, which takes most of an hour; nothing is
reused between runs). The request mix is 2,000 distinct check bodies, half allowed and half
denied. Before timing a target, ~200 of them are sent one by one and its answers compared with
Cerbos's (and with the benchmark's own Casbin-semantics reference); the run stops if any differ.

The server under test runs on CPU 0 and wrk on CPU 1 (taskset; ``--server-cpus``,
``--load-cpus``, ``--no-pin``), so they do not take each other's core. aclaudit runs with no
``ACLAUDIT_`` setting from the caller's environment; ``--checkpoint-key`` sets
``ACLAUDIT_CHECKPOINT_KEY`` (signed checkpoints and heads).

The table gives req/s, p50 and p99 latency (wrk, after a warm-up) and the req/s ratio to (a) and
to (d): the ratios are the figures to record, since the machine is shared and noisy. It also gives
the CPU time the server process (with any children) spent per answered request during the timed
run, from /proc: what each target costs, apart from how long requests wait. Then, when
``app.policy.decision_index`` exists, in-process p50/p99 of ``DecisionIndex.decide`` at 100, 10k
and 100k grants and of pycasbin's ``Enforcer.enforce`` at 100 and 10k.

Usage (from the repository root, in the project's virtualenv; needs ``wrk``:
``apt-get update && apt-get install -y wrk``, and ``npm`` for Cerbos)::

    . .venv/bin/activate
    python -m bench.check                      # full run: 15 s per target after a 3 s warm-up
    python -m bench.check --quick              # smoke run: 3 s per target, 2k users, 2k grants
    python -m bench.check --targets a,d        # only some targets
    python -m bench.check --only sqlite        # one target: bare, sqlite, postgresql or cerbos
    python -m bench.check --rounds 3           # every target three times, interleaved; medians
    python -m bench.check --checkpoint-key K   # the server signs its log heads with key K
    python -m bench.check --no-pin             # server and wrk not pinned to CPUs 0 and 1
    python -m bench.check --enforce-only       # only the in-process decide()/enforce timings
    python -m bench.check --json bench/.work/check.json   # also write the figures as JSON
    python -m bench.check --help               # sizes, durations, connections, seed, ...

Working files (bodies, Cerbos policies, audit and server logs) go to ``bench/.work/check``,
which is emptied at the start of each run. Every process started is stopped on the way out.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from bench import aclaudit_target, cerbos_pdp, enforce
from bench.loadgen import Load, WrkResult, measure, wrk_path
from bench.procs import LOOPBACK, BenchError, Server, free_port, run_bench, running
from bench.workload import Shape, Workload, build

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
WORK = BENCH_DIR / ".work" / "check"

TARGETS = {
    "a": "(a) bare FastAPI",
    "b": "(b) aclaudit SQLite",
    "c": "(c) aclaudit PostgreSQL",
    "d": "(d) Cerbos",
}
RUN_ORDER = ("a", "d", "b", "c")  # Cerbos before aclaudit: its answers are the yardstick
ONLY = {"bare": "a", "sqlite": "b", "postgresql": "c", "cerbos": "d"}


@dataclass
class Outcome:
    target: str
    label: str
    result: WrkResult | None = None
    note: str = ""


@dataclass
class Context:
    args: argparse.Namespace
    load: Load
    workload: Workload
    check_bodies: list[dict[str, Any]]
    check_file: Path
    cerbos_bodies: list[dict[str, Any]]
    cerbos_file: Path
    sample: list[int]  # indices into the bodies, sent one by one before timing
    cerbos_answers: list[str] | None = None


# -- the targets ------------------------------------------------------------------------------


def _uvicorn_argv(app: str, port: int) -> list[str]:
    script = Path(sys.executable).parent / "uvicorn"
    argv = [str(script)] if script.exists() else [sys.executable, "-m", "uvicorn"]
    argv += [app, "--workers", "1", "--log-level", "warning", "--host", LOOPBACK]
    argv += ["--port", str(port)]
    if importlib.util.find_spec("uvloop"):
        argv += ["--loop", "uvloop"]
    if importlib.util.find_spec("httptools"):
        argv += ["--http", "httptools"]
    return argv


def run_bare(ctx: Context) -> Outcome:
    port = free_port()
    with running(
        "bare FastAPI",
        _uvicorn_argv("bench.bare_app:app", port),
        base_url=f"http://{LOOPBACK}:{port}",
        ready_path="/healthz",
        log_path=WORK / "bare.log",
        cwd=REPO,
        cpus=ctx.args.server_cpus,
    ) as server:
        return _measure("a", server, "/v1/check", ctx.check_file, None, ctx)


def run_cerbos(ctx: Context) -> Outcome:
    policy_dir = WORK / "cerbos" / "policies"
    started = time.monotonic()
    files = cerbos_pdp.write_policies(ctx.workload, policy_dir)
    print(f"    wrote {files} Cerbos resource policies to {policy_dir}")
    gomaxprocs = ctx.args.cerbos_gomaxprocs
    with cerbos_pdp.serve(
        policy_dir, WORK / "cerbos", gomaxprocs=gomaxprocs, cpus=ctx.args.server_cpus
    ) as server:
        print(f"    Cerbos ready in {time.monotonic() - started:.1f} s")
        answers = _cerbos_decisions(server, [ctx.cerbos_bodies[i] for i in ctx.sample])
        _compare("Cerbos", answers, "the reference", _expected(ctx), ctx)
        ctx.cerbos_answers = answers
        outcome = _measure("d", server, cerbos_pdp.CHECK_PATH, ctx.cerbos_file, None, ctx)
    procs = f"GOMAXPROCS={gomaxprocs}" if gomaxprocs > 0 else "GOMAXPROCS unset"
    outcome.note = procs
    return outcome


def run_aclaudit(target: str, ctx: Context) -> Outcome:
    with _database(target) as database_url:
        over_http = ctx.args.load_over_http
        if not over_http:
            seconds = aclaudit_target.seed_policy(database_url, ctx.workload)
            print(f"    policy written to the database in {seconds:.1f} s")
            loaded = f"policy seeded in {seconds:.0f} s"
        admin = aclaudit_target.create_token(database_url, "bench", "admin")
        checker = aclaudit_target.create_token(database_url, "checker", "check")
        log = WORK / f"aclaudit-{target}.log"
        with aclaudit_target.serve(
            database_url, log, cpus=ctx.args.server_cpus, checkpoint_key=ctx.args.checkpoint_key
        ) as server:
            probe = ctx.check_bodies[ctx.sample[0]] if ctx.sample else ctx.check_bodies[0]
            try:  # before spending minutes loading the policy
                asyncio.run(aclaudit_target.decisions(server.base_url, checker, [probe]))
            except aclaudit_target.EndpointMissing:
                message = "POST /v1/check answers 404 (not built yet): skipped"
                print(f"    {message}")
                return Outcome(target, TARGETS[target], note=message)
            if over_http:
                seconds = asyncio.run(
                    aclaudit_target.load_policy(
                        server.base_url, admin, ctx.workload, ctx.args.load_concurrency
                    )
                )
                print(f"    policy loaded over HTTP in {seconds:.1f} s")
                loaded = f"policy loaded over HTTP in {seconds:.0f} s"
            answers = asyncio.run(
                aclaudit_target.decisions(
                    server.base_url, checker, [ctx.check_bodies[i] for i in ctx.sample]
                )
            )
            if ctx.cerbos_answers is not None:
                _compare("aclaudit", answers, "Cerbos", ctx.cerbos_answers, ctx)
            _compare("aclaudit", answers, "the reference", _expected(ctx), ctx)
            outcome = _measure(
                target, server, "/v1/check", ctx.check_file, f"Bearer {checker}", ctx
            )
            _check_server(server)
            outcome.note = loaded
            return outcome


@contextmanager
def _database(target: str) -> Iterator[str]:
    if target == "b":
        with tempfile.TemporaryDirectory(prefix="aclaudit-bench-") as tmp:
            yield f"sqlite:///{tmp}/bench.db"
        return
    url = aclaudit_target.recreate_pg_database()
    try:
        yield url
    finally:
        try:
            aclaudit_target.drop_pg_database()
        except BenchError as exc:
            print(f"    (could not drop {aclaudit_target.PG_DATABASE}: {exc})")


# -- helpers ----------------------------------------------------------------------------------


def _measure(
    target: str, server: Server, path: str, bodies: Path, auth: str | None, ctx: Context
) -> Outcome:
    load = ctx.load
    print(
        f"    wrk: {load.connections} connections, {load.warmup:g} s warm-up + {load.duration:g} s"
    )
    result = measure(server.base_url + path, bodies, auth, load, server.process.pid)
    cpu = result.cpu_us_per_request
    print(
        f"    {result.rps:,.0f} req/s, p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms"
        + ("" if cpu is None else f", server CPU {cpu:.0f} us per request")
        + (f", {result.non_2xx} non-2xx" if result.non_2xx else "")
        + (f", {result.socket_errors} socket errors" if result.socket_errors else "")
    )
    failed = result.non_2xx + result.socket_errors
    if failed > result.requests * 0.01:
        print(f"    WARNING: {failed} of {result.requests} requests failed; see the server log")
    return Outcome(target, TARGETS[target], result)


def _check_server(server: Server) -> None:
    if not server.alive():
        raise BenchError(
            f"{server.name} died under load; log {server.log_path}:\n{server.log_tail()}"
        )


def _cerbos_decisions(server: Server, bodies: list[dict[str, Any]]) -> list[str]:
    answers = []
    with httpx.Client(base_url=server.base_url, timeout=30.0) as client:
        for body in bodies:
            response = client.post(cerbos_pdp.CHECK_PATH, json=body)
            if response.status_code != 200:
                raise BenchError(
                    f"Cerbos answered {response.status_code} to {body}: {response.text[:500]}"
                )
            answers.append(cerbos_pdp.decision(response.json()))
    return answers


def _expected(ctx: Context) -> list[str]:
    checks = ctx.workload.checks
    return ["allow" if checks[i].allowed else "deny" for i in ctx.sample]


def _compare(name: str, got: list[str], other: str, want: list[str], ctx: Context) -> None:
    wrong = [(i, g, w) for i, g, w in zip(ctx.sample, got, want, strict=True) if g != w]
    if not wrong:
        print(f"    {name} agrees with {other} on {len(got)} sampled checks")
        return
    lines = [
        f"  {ctx.workload.checks[i].principal} read {ctx.workload.checks[i].dataset}: "
        f"{name} says {g}, {other} says {w}"
        for i, g, w in wrong[:10]
    ]
    raise BenchError(
        f"{name} and {other} disagree on {len(wrong)} of {len(got)} sampled checks, so the "
        "comparison would be meaningless:\n" + "\n".join(lines)
    )


def _write_lines(path: Path, bodies: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(b, separators=(",", ":")) + "\n" for b in bodies))


def prepare(args: argparse.Namespace, load: Load) -> Context:
    if WORK.exists():
        shutil.rmtree(WORK)
    WORK.mkdir(parents=True)
    shape = Shape(users=args.users, grants=args.grants, seed=args.seed)
    workload = build(shape, checks=args.bodies)
    print(f"workload: {workload.describe()}")
    check_bodies = [
        aclaudit_target.check_body(c.principal, c.dataset, f"bench-{n}")
        for n, c in enumerate(workload.checks)
    ]
    cerbos_bodies = [
        cerbos_pdp.request_body(workload, c, f"bench-{n}") for n, c in enumerate(workload.checks)
    ]
    check_file, cerbos_file = WORK / "check-bodies.jsonl", WORK / "cerbos-bodies.jsonl"
    _write_lines(check_file, check_bodies)
    _write_lines(cerbos_file, cerbos_bodies)
    count = min(args.sample, len(workload.checks))
    sample = sorted(random.Random(args.seed).sample(range(len(workload.checks)), count))
    return Context(
        args, load, workload, check_bodies, check_file, cerbos_bodies, cerbos_file, sample
    )


def ratio(result: WrkResult, base: Outcome | None) -> float | None:
    """req/s of `result` over req/s of `base` (None when there is no base figure)."""
    if base is None or base.result is None or not base.result.rps:
        return None
    return result.rps / base.result.rps


def results_table(outcomes: dict[str, Outcome]) -> str:
    base_a = outcomes.get("a")
    base_d = outcomes.get("d")

    def shown(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    header = (
        f"{'target':<26} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'/ (a)':>7} {'/ (d)':>7} "
        f"{'CPU us/req':>10} {'errors':>7}  note"
    )
    lines = [header, "-" * len(header)]
    for key in TARGETS:
        outcome = outcomes.get(key)
        if outcome is None:
            continue
        r = outcome.result
        if r is None:
            lines.append(
                f"{outcome.label:<26} {'-':>9} {'-':>8} {'-':>8} {'-':>7} {'-':>7} "
                f"{'-':>10} {'-':>7}  {outcome.note}"
            )
            continue
        lines.append(
            f"{outcome.label:<26} {r.rps:>9,.0f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f} "
            f"{shown(ratio(r, base_a)):>7} {shown(ratio(r, base_d)):>7} "
            f"{'-' if r.cpu_us_per_request is None else f'{r.cpu_us_per_request:.0f}':>10} "
            f"{r.non_2xx + r.socket_errors:>7}  "
            f"{outcome.note}"
        )
    return "\n".join(lines)


def _figures(result: WrkResult, outcomes: dict[str, Outcome]) -> dict[str, Any]:
    return asdict(result) | {
        "rps": result.rps,
        "cpu_us_per_request": result.cpu_us_per_request,
        "ratio_to_a": ratio(result, outcomes.get("a")),
        "ratio_to_d": ratio(result, outcomes.get("d")),
    }


def _round_figures(outcomes: dict[str, Outcome]) -> dict[str, Any]:
    return {
        k: {"label": o.label, "note": o.note, **(_figures(o.result, outcomes) if o.result else {})}
        for k, o in outcomes.items()
    }


MEDIAN_FIGURES = ("rps", "p50_ms", "p99_ms", "ratio_to_a", "ratio_to_d", "cpu_us_per_request")


def medians(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per target, the median over the rounds of each figure (ratios within their round)."""
    summary: dict[str, Any] = {}
    for key, first in rounds[0].items():
        summary[key] = {"label": first["label"], "rounds": len(rounds)}
        for name in MEDIAN_FIGURES:
            values = [r[key][name] for r in rounds if r[key].get(name) is not None]
            summary[key][name] = statistics.median(values) if values else None
    return summary


def medians_table(summary: dict[str, Any]) -> str:
    def shown(value: float | None, form: str) -> str:
        return "-" if value is None else format(value, form)

    header = (
        f"{'target':<26} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'/ (a)':>7} {'/ (d)':>7} "
        f"{'CPU us/req':>10}"
    )
    lines = [header, "-" * len(header)]
    for figures in summary.values():
        lines.append(
            f"{figures['label']:<26} {shown(figures['rps'], ',.0f'):>9} "
            f"{shown(figures['p50_ms'], '.2f'):>8} {shown(figures['p99_ms'], '.2f'):>8} "
            f"{shown(figures['ratio_to_a'], '.3f'):>7} {shown(figures['ratio_to_d'], '.3f'):>7} "
            f"{shown(figures['cpu_us_per_request'], '.0f'):>10}"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.check",
        description="Benchmark POST /v1/check against a bare FastAPI endpoint and Cerbos.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 3 s per target after 1 s of warm-up, and a 2,000-user, 2,000-grant "
        "policy unless --users/--grants say otherwise",
    )
    parser.add_argument("--duration", type=float, default=15.0, help="seconds timed per target")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of warm-up per target")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument(
        "--targets", default="a,b,c,d", help="comma-separated subset of a,b,c,d (default all)"
    )
    parser.add_argument("--users", type=int, help="default 10,000 (2,000 with --quick)")
    parser.add_argument("--grants", type=int, help="default 10,000 (2,000 with --quick)")
    parser.add_argument("--bodies", type=int, default=2000, help="distinct check bodies")
    parser.add_argument("--sample", type=int, default=200, help="checks compared before timing")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--only",
        choices=sorted(ONLY),
        help="run one target (same as --targets with its letter); Cerbos's answers are then "
        "not compared with aclaudit's, only the reference's",
    )
    parser.add_argument(
        "--load-over-http",
        action="store_true",
        help="load the policy through aclaudit's API (slow) instead of writing it to the tables",
    )
    parser.add_argument(
        "--load-concurrency",
        type=int,
        default=4,
        help="concurrent requests loading the policy with --load-over-http",
    )
    parser.add_argument(
        "--cerbos-gomaxprocs", type=int, default=1, help="GOMAXPROCS for Cerbos; 0 leaves it unset"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure every target this many times, interleaved (a, d, b, c, a, d, ...), and "
        "also give the medians of the rounds' figures and ratios",
    )
    parser.add_argument(
        "--server-cpus",
        default="0",
        help="taskset CPU list of the server under test (default 0); wrk runs on --load-cpus",
    )
    parser.add_argument("--load-cpus", default="1", help="taskset CPU list of wrk (default 1)")
    parser.add_argument(
        "--no-pin", action="store_true", help="run the server and wrk unpinned (no taskset)"
    )
    parser.add_argument(
        "--checkpoint-key",
        help="ACLAUDIT_CHECKPOINT_KEY for aclaudit's server (by default unset: the benchmark "
        "drops every ACLAUDIT_ variable of its own environment)",
    )
    parser.add_argument("--no-enforce", action="store_true", help="skip the in-process timings")
    parser.add_argument("--enforce-only", action="store_true", help="only the in-process timings")
    parser.add_argument("--enforce-requests", type=int, default=3000)
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.warmup = 3.0, 1.0
    policy_size = 2_000 if args.quick else 10_000
    args.users = args.users or policy_size
    args.grants = args.grants or policy_size
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.no_pin:
        args.server_cpus = args.load_cpus = None
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    if args.only:
        targets = [ONLY[args.only]]
    unknown = sorted(set(targets) - set(TARGETS))
    if unknown:
        parser.error(f"unknown targets {unknown}; choose from a, b, c, d")
    args.targets = [t for t in RUN_ORDER if t in targets]
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}}
    if not args.enforce_only and args.targets:
        wrk_path()  # fail early if wrk is missing
        if "d" in args.targets:
            cerbos_pdp.binary()
        load = Load(args.duration, args.warmup, args.connections, args.threads, cpus=args.load_cpus)
        ctx = prepare(args, load)
        runners: dict[str, Callable[[Context], Outcome]] = {
            "a": run_bare,
            "d": run_cerbos,
            "b": partial(run_aclaudit, "b"),
            "c": partial(run_aclaudit, "c"),
        }
        rounds: list[dict[str, Outcome]] = []
        for number in range(1, args.rounds + 1):
            outcomes: dict[str, Outcome] = {}
            for target in args.targets:
                print(f"\n{TARGETS[target]}" + (f", round {number}" if args.rounds > 1 else ""))
                outcomes[target] = runners[target](ctx)
            print("\n" + results_table(outcomes))
            rounds.append(outcomes)
        report["workload"] = ctx.workload.describe()
        report["rounds"] = [_round_figures(outcomes) for outcomes in rounds]
        report["targets"] = report["rounds"][0]
        if args.rounds > 1:
            report["targets"] = medians(report["rounds"])
            print(f"\nmedians of {args.rounds} rounds\n" + medians_table(report["targets"]))
    if not args.no_enforce:
        print("\nin-process decision latency (single calls, time.perf_counter_ns)")
        timings = enforce.run(requests_per_size=args.enforce_requests, seed=args.seed)
        if timings:
            print(enforce.table(timings))
        report["enforce"] = [asdict(t) for t in timings]
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run_bench(lambda: run(args), args.json)


if __name__ == "__main__":
    sys.exit(main())
