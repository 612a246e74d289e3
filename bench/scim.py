"""Benchmark of an IdP's SCIM sync: an initial sync of 70,000 users and 10,000 groups, then a
stream of membership PATCHes (issue #18).

The organisation is the exposure benchmark's generator (`bench.exposure_analyser`, seed 1)
scaled to 70,000 users (plus 700 services, which the IdP does not own: they hold grants and
are named in audiences, but no memberships), 10,000 groups nested 5 levels
(`all-employees` > 9 divisions > 90 departments > 900 orgs > 9,000 teams), memberships as
there (a fifth of the users in a second team, 200 teams in a second org), 2,000 datasets with
35,000 grants in the same mix (everything `guard: alert`), plus 20 `d90.vault.k*` datasets guarded
`block`, each granted to its audience's org, two teams and an org outside it (so a member
joining those is held, not refused). ``--quick`` is a tenth of it.

Steps:

1. generate the organisation; bulk-load datasets and grants (no users, groups or memberships:
   those come from the IdP) into a fresh database after the migrations;
2. start a real ``aclaudit serve`` (one worker, pinned to CPU 0; this process on CPU 1) with a
   token of scope ``scim`` (and an admin token for ``POST /v1/scan``), or with ``--in-process``
   call `app.identity.provisioning` directly, one session per call, on the same app (the same
   work minus HTTP and the SCIM resource layer: useful for profiling);
3. a first ``POST /v1/scan`` (the grants to users reach them already);
4. the initial sync, as Okta does it with a few parallel connections (``--connections``):
   ``POST /scim/v2/Users`` for every user; ``POST /scim/v2/Groups`` with a displayName and no
   members for every group; then each group's members pushed by
   ``PATCH {"op":"add","path":"members","value":[...]}`` in batches of ``--batch``, groups in
   the order an IdP lists them (by displayName: the teams, which hold the users, come last, so
   each fills the organisation above it);
5. a scan, which must change nothing (the incremental re-analyses equal a full scan);
6. a stream of single-member PATCHes, one at a time, in rotation: Okta's add, Okta's remove
   (``members[value eq "..."]``) of that user, Entra's ``Add`` (``$ref: null``), Entra's
   ``Remove`` (value list), and Okta re-sending an add of a member already in (a no-op);
7. a last scan, which must change nothing either.

Usage (repository root, the project's virtualenv)::

    python -m bench.scim --quick                      # a tenth of the size
    python -m bench.scim --database postgresql --json bench/.work/scim-pg.json
    python -m bench.scim --in-process --quick         # without HTTP (profiling)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.policy.decision_index import Rule
from bench.exposure import WORK, bulk_load, percentile, recreate_pg, rows
from bench.exposure_analyser import Org, Shape, generate
from bench.procs import BenchError
from bench.scim_drivers import Driver, HttpDriver, InProcessDriver, Member

SYNC_TARGET = 600.0  # seconds, the whole initial sync
PATCH_P95_TARGET = 0.100
VAULTS = 20
PROFILE: dict[str, str] = {}  # --profile: phase and file (in-process runs)
VAULT = "d90.vault."  # (a family no generated pattern covers)


def stage(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def progress(name: str, done: int, total: int, started: float) -> None:
    if done % max(1, total // 10) and done != total:
        return
    elapsed = time.monotonic() - started
    sys.stderr.write(
        f"    {name:<10} {done:>7,}/{total:,} {elapsed:7.1f} s ({done / elapsed:,.0f}/s)\n"
    )
    sys.stderr.flush()


# -- the organisation ---------------------------------------------------------------------------


@dataclass
class Workload:
    org: Org
    users: list[str]  # userNames
    groups: list[str]  # displayNames, in the order the IdP pushes them
    members: dict[str, list[str]]  # displayName -> members ("user:.." or "group:..")
    tables: dict[str, list[dict[str, Any]]]


def workload(quick: bool, seed: int) -> Workload:
    shape = Shape(leaves=70_700, services=700, teams=9_000, grants=35_000, seed=seed)
    if quick:
        shape = shape.scaled(10)
    org = generate(shape)
    add_vaults(org, VAULTS // (10 if quick else 1))
    tables = rows(org, datetime.now(UTC))
    for dataset in tables["datasets"]:
        if dataset["id"].startswith(VAULT):
            dataset["guard"], dataset["sensitivity"] = "block", "restricted"
    tables["groups"], tables["memberships"] = [], []  # the IdP's
    members: dict[str, list[str]] = {}
    for member, group in org.links:
        if not member.startswith("service:"):
            members.setdefault(bare(group), []).append(member)
    groups = sorted(bare(g) for g in org.groups)
    return Workload(org, [bare(u) for u in org.users], groups, members, tables)


def add_vaults(org: Org, count: int) -> None:
    """`count` block-guarded datasets, each readable by its audience's org, two random teams
    and a random org (these may widen it: holds)."""
    rng = org.rng
    for k in range(count):
        dataset = f"{VAULT}k{k}"
        audience = [rng.choice(org.orgs), rng.choice(org.services)]
        org.datasets.append(dataset)
        org.audiences[dataset] = audience
        for subject in (audience[0], rng.choice(org.teams), rng.choice(org.teams)):
            org.rules.append(Rule(subject, dataset, "read", "allow", "", org.new_id()))
        org.rules.append(Rule(rng.choice(org.orgs), dataset, "read", "allow", "", org.new_id()))


def bare(principal: str) -> str:
    return principal.split(":", 1)[1]


# -- measuring ----------------------------------------------------------------------------------


@dataclass
class Results:
    label: str
    phases: dict[str, float] = field(default_factory=dict)  # seconds
    latencies: dict[str, list[float]] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, dict[str, float]]:
        return {
            name: {
                "n": len(s),
                "p50_ms": round(percentile(s, 0.5) * 1000, 2),
                "p95_ms": round(percentile(s, 0.95) * 1000, 2),
                "max_ms": round(max(s) * 1000, 2),
            }
            for name, s in self.latencies.items()
            if s
        }


async def timed_all(
    name: str,
    calls: Sequence[Callable[[], Awaitable[Any]]],
    connections: int,
    results: Results,
) -> list[Any]:
    """Run `calls` over `connections` parallel workers, in order; record each call's seconds."""
    out: list[Any] = [None] * len(calls)
    seconds: list[float] = []
    queue = iter(range(len(calls)))
    started = time.monotonic()
    done = 0

    async def worker() -> None:
        nonlocal done
        for n in queue:
            at = time.perf_counter()
            out[n] = await calls[n]()
            seconds.append(time.perf_counter() - at)
            done += 1
            progress(name, done, len(calls), started)

    profiler = None
    if PROFILE.get("phase") == name:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    await asyncio.gather(*(worker() for _ in range(connections)))
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(PROFILE["path"])
        stage(f"    profile of {name}: {PROFILE['path']}")
    results.phases[name] = round(time.monotonic() - started, 2)
    results.latencies[name] = seconds
    return out


async def scan(driver: Driver, name: str, results: Results, *, unchanged: bool) -> None:
    started = time.monotonic()
    found = await driver.scan()
    results.phases[name] = round(time.monotonic() - started, 2)
    results.facts[name] = found
    stage(f"    {name}: {found} in {results.phases[name]} s")
    if unchanged and (found["opened"] or found["resolved"] or found.get("updated")):
        raise BenchError(f"the incremental re-analyses left findings a scan changes: {found}")


async def initial_sync(driver: Driver, work: Workload, args: argparse.Namespace, results: Results):
    stage(f"initial sync ({args.connections} connections):")
    started = time.monotonic()
    user_ids = await timed_all(
        "users",
        [lambda u=u: driver.create_user(u) for u in work.users],  # type: ignore[misc]
        args.connections,
        results,
    )
    ids: dict[str, str] = {f"user:{u}": i for u, i in zip(work.users, user_ids, strict=True)}
    group_ids = await timed_all(
        "groups",
        [lambda g=g: driver.create_group(g) for g in work.groups],  # type: ignore[misc]
        args.connections,
        results,
    )
    ids.update({f"group:{g}": i for g, i in zip(work.groups, group_ids, strict=True)})
    pushes: list[tuple[str, list[Member]]] = []
    for group in work.groups:
        members = [Member(ids[m], m) for m in work.members.get(group, [])]
        for start in range(0, len(members), args.batch):
            pushes.append((ids[f"group:{group}"], members[start : start + args.batch]))
    await timed_all(
        "members",
        [lambda p=p: driver.add_members(*p, shape="okta") for p in pushes],  # type: ignore[misc]
        args.connections,
        results,
    )
    results.phases["initial sync"] = round(time.monotonic() - started, 2)
    results.facts["memberships"] = sum(len(m) for _, m in pushes)
    results.facts["group pushes"] = len(pushes)
    stage(f"    initial sync: {results.phases['initial sync']} s")
    return ids


async def stream(driver: Driver, work: Workload, ids: dict[str, str], args, results) -> None:
    """Single-member PATCHes, one at a time: (Okta add, Okta remove), (Entra add, Entra
    remove), and an Okta re-send of a member already in (no-op), in rotation."""
    import random

    rng = random.Random(args.seed + 18)
    teams = [g for g in work.groups if g.startswith("team-")]
    kinds: dict[str, list[float]] = {}
    started = time.monotonic()
    total = args.patches
    done = 0
    while done < total:
        team = rng.choice(teams)
        current = set(work.members.get(team, []))
        user = f"user:{rng.choice(work.users)}"
        group_id = ids[f"group:{team}"]
        idp = "okta" if (done // 5) % 2 == 0 else "entra"
        if user not in current:
            member = Member(ids[user], user)
            seconds = await driver.add_members(group_id, [member], shape=idp)
            kinds.setdefault(f"{idp} add", []).append(seconds)
            seconds = await driver.remove_member(group_id, member, shape=idp)
            kinds.setdefault(f"{idp} remove", []).append(seconds)
            done += 2
        if current and done < total:
            inside = sorted(current)[0]
            member = Member(ids[inside], inside)
            seconds = await driver.add_members(group_id, [member], shape="okta")
            kinds.setdefault("no-op add (already a member)", []).append(seconds)
            done += 1
        progress("patches", min(done, total), total, started)
    results.phases["patch stream"] = round(time.monotonic() - started, 2)
    results.latencies.update({f"PATCH {k}": v for k, v in kinds.items()})
    results.latencies["PATCH, every one"] = [s for v in kinds.values() for s in v]
    results.latencies["PATCH, member changes"] = [
        s for k, v in kinds.items() if not k.startswith("no-op") for s in v
    ]


# -- the run ------------------------------------------------------------------------------------


def fresh_database(args: argparse.Namespace) -> str:
    if args.database == "postgresql":
        asyncio.run(recreate_pg(args.pg_database))
        return f"postgresql://postgres@127.0.0.1:5432/{args.pg_database}"
    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / ("scim-quick.db" if args.quick else "scim.db")
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return f"sqlite:///{path}"


async def measure(driver: Driver, work: Workload, args, results: Results) -> None:
    await scan(driver, "scan before the sync", results, unchanged=False)
    ids = await initial_sync(driver, work, args, results)
    for kind, name in (("creates", "creates per commit"), ("pushes", "group PATCHes per commit")):
        batches = await driver.per_commit(kind)
        if batches is not None:
            stage(f"    {name}: {batches}")
            results.facts[name] = batches
    await scan(driver, "scan after the sync", results, unchanged=True)
    stage(f"PATCH stream ({args.patches}, one at a time):")
    await stream(driver, work, ids, args, results)
    await scan(driver, "scan after the PATCHes", results, unchanged=True)


def run(args: argparse.Namespace) -> Results:
    from app import migrate

    mode = "in-process" if args.in_process else "HTTP"
    label = f"{'quick' if args.quick else 'full'}, {args.database}, {mode}, seed {args.seed}"
    results = Results(label)
    started = time.monotonic()
    work = workload(args.quick, args.seed)
    results.facts["organisation"] = {
        "users": len(work.users),
        "groups": len(work.groups),
        "memberships": sum(len(m) for m in work.members.values()),
        "datasets": len(work.tables["datasets"]),
        "grants": len(work.tables["grants"]),
    }
    stage(f"organisation: {results.facts['organisation']} ({time.monotonic() - started:.1f} s)")
    url = fresh_database(args)
    migrate.upgrade(url)
    started = time.monotonic()
    asyncio.run(bulk_load(url, work.tables))
    stage(f"database: {url}, loaded in {time.monotonic() - started:.1f} s")
    driver: Driver
    if args.in_process:
        driver = InProcessDriver(url)
        asyncio.run(driver.run(lambda: measure(driver, work, args, results)))
    else:
        driver = HttpDriver(url, args.connections, None if args.no_pin else ("0", "1"))
        driver.serve(lambda: asyncio.run(measure(driver, work, args, results)))
    results.facts["holds"] = asyncio.run(count_holds(url))
    return results


async def count_holds(url: str) -> dict[str, int]:
    from sqlalchemy import func, select

    from app.config import Settings
    from app.db import create_engine
    from app.holds.models import Hold

    engine = create_engine(Settings(database_url=url))
    try:
        async with engine.connect() as conn:
            query = select(Hold.kind, func.count()).group_by(Hold.kind)
            return {kind: int(n) for kind, n in (await conn.execute(query)).all()}
    finally:
        await engine.dispose()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a tenth of the size")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--pg-database", default="aclaudit_scim_bench")
    parser.add_argument("--in-process", action="store_true", help="provisioning calls, no HTTP")
    parser.add_argument("--connections", type=int, default=4, help="the IdP's parallel requests")
    parser.add_argument("--batch", type=int, default=100, help="members per group PATCH")
    parser.add_argument("--patches", type=int, default=200, help="PATCHes in the stream")
    parser.add_argument("--seed", type=int, default=Shape.seed)
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and client")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--profile",
        metavar="PHASE=FILE",
        help="cProfile one phase of the sync (users, groups, members) into FILE (--in-process)",
    )
    return parser.parse_args(argv)


def report(results: Results) -> str:
    lines = [f"SCIM sync ({results.label}):", "", "| phase | seconds |", "| --- | ---: |"]
    lines += [f"| {name} | {seconds:,.1f} |" for name, seconds in results.phases.items()]
    lines += [
        "",
        "| requests | n | p50 ms | p95 ms | max ms |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, s in results.summary().items():
        lines.append(f"| {name} | {s['n']:,} | {s['p50_ms']} | {s['p95_ms']} | {s['max_ms']} |")
    sync = results.phases.get("initial sync", 0.0)
    p95 = results.summary().get("PATCH, member changes", {}).get("p95_ms", 0.0) / 1000
    lines += [
        "",
        f"initial sync {sync:,.1f} s (target < {SYNC_TARGET:.0f} s): "
        f"{'pass' if sync < SYNC_TARGET else 'FAIL'}; member PATCH p95 {p95 * 1000:.1f} ms "
        f"(target < {PATCH_P95_TARGET * 1000:.0f} ms): "
        f"{'pass' if p95 < PATCH_P95_TARGET else 'FAIL'}",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    stage(
        f"python {sys.version.split()[0]}, bench.scim {' '.join(sys.argv[1:])} (pid {os.getpid()})"
    )
    if args.profile:
        PROFILE["phase"], PROFILE["path"] = args.profile.split("=", 1)
    try:
        results = run(args)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    print(report(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {"label": results.label, "phases": results.phases,
                   "latencies": results.summary(), **results.facts}  # fmt: skip
        args.json.write_text(json.dumps(payload, indent=2, default=str))


if __name__ == "__main__":
    main()
