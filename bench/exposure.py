"""Benchmark of exposure analysis through the API, on a large generated organisation.

The organisation is `bench.exposure_analyser`'s (same seed, same generator): 100,000 users and
services, 10,000 groups nested 5 levels, 2,000 datasets, 50,000 grants with patterns, denies and
expiries, plus a dataset (``d0.t0.x0``) readable by about 55,000 principals. ``--quick`` is a
tenth of it.

Steps:

1. generate the organisation and bulk-load it into a fresh database (a SQLite file under
   ``bench/.work/``, or ``--postgres``) with SQLAlchemy Core inserts into the real tables after
   the migrations: loading 50,000 grants over HTTP is not what is measured here;
2. start a real ``aclaudit serve`` (one worker) and create an admin token with the CLI;
3. time over HTTP, one request at a time:

   * ``POST /v1/scan``: the full scan, first (opens every finding) and again (nothing changes);
   * one grant change: ``POST /v1/grants`` then ``DELETE /v1/grants/{id}``, over a mix of grants
     that widen access and grants that don't (a user outside the audience, the audience's own
     group, a team on a ``prefix.*`` pattern, a deny on a team, a service), with a
     ``POST /v1/check`` of the new grant right after each creation;
   * one membership change: ``POST /v1/groups/{g}/members`` then
     ``DELETE /v1/groups/{g}/members/{member}`` (a user into a team, a team into an org), with
     a ``POST /v1/check`` of the new member right after each addition;
   * ``GET /v1/datasets/d0.t0.x0/exposure`` (first call after the changes, then warm);
   * ``GET /v1/principals/{p}/access`` (first call after the changes, then warm);
   * a last ``POST /v1/scan``, which must open and resolve nothing: the findings that the
     incremental re-analyses left behind equal a full scan's.

Usage (repository root, the project's virtualenv)::

    python -m bench.exposure --quick       # a tenth of the size (about a minute)
    python -m bench.exposure               # full size (a few minutes: most of it loading)
    python -m bench.exposure --postgres    # PostgreSQL at 127.0.0.1:5432 instead of SQLite
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from app import migrate
from app.config import Settings
from app.db import create_engine
from app.models import Base
from bench.aclaudit_target import REPO, create_token, serve
from bench.exposure_analyser import NOW, Org, Shape, generate
from bench.procs import BenchError

WORK = REPO / "bench" / ".work"
PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
ACTOR = "bench-loader"
CHUNK = 5_000

# Targets from issue 4 (seconds).
SCAN_TARGET = 30.0
CHANGE_P95_TARGET = 0.100
EXPOSURE_TARGET = 0.200


# -- the organisation as rows -------------------------------------------------------------------


def sensitivity_of(dataset: str) -> str:
    """A fixed mix: d0-d3 restricted, d4-d7 confidential, d8-d15 internal, the rest public."""
    family = int(dataset.split(".", 1)[0][1:])
    if family < 4:
        return "restricted"
    if family < 8:
        return "confidential"
    return "internal" if family < 16 else "public"


def rows(org: Org, at: datetime) -> dict[str, list[dict[str, Any]]]:
    """Rows for the groups, memberships, datasets and grants tables.

    Every dataset is ``guard: alert`` (a ``block`` guard would refuse the widening changes that
    are timed). The generator's expiries are relative to its fixed `NOW`; they are moved to the
    real clock so that expired grants are expired and expiring ones still live.
    """
    shift = at.timestamp() - NOW
    groups = {g for g in org.groups} | {g for _member, g in org.links}
    groups |= {m for m, _group in org.links if m.startswith("group:")}
    grants = []
    for number, rule in enumerate(org.rules, start=1):
        expires = None
        if rule.exp:
            expires = datetime.fromtimestamp(float(rule.exp) + shift, UTC)
        grants.append(
            {
                "id": number,
                "principal": rule.sub,
                "resource": rule.obj,
                "action": rule.act,
                "effect": rule.eft,
                "expires_at": expires,
                # as the sweeper of a running service would have recorded it long ago
                "expired_at": expires if expires is not None and expires <= at else None,
                "justification": "bench",
                "created_by": ACTOR,
                "created_at": at,
                "revoked_at": None,
                "revoked_by": None,
            }
        )
    return {
        "groups": [{"id": g, "created_at": at} for g in sorted(groups)],
        "memberships": [
            {"group_id": g, "member": m, "created_at": at, "created_by": ACTOR}
            for m, g in org.links
        ],
        "datasets": [
            {
                "id": d,
                "description": "generated",
                "owner": org.audiences[d][0],
                "sensitivity": sensitivity_of(d),
                "intended_audience": org.audiences[d],
                "guard": "alert",
                "created_at": at,
                "updated_at": at,
                "updated_by": ACTOR,
            }
            for d in org.datasets
        ],
        "grants": grants,
    }


def progress(stage: str, done: int, total: int, started: float) -> None:
    rate = done / max(time.monotonic() - started, 1e-6)
    end = "\n" if done == total else ""
    sys.stderr.write(f"\r    {stage:<12} {done:>7,}/{total:,} ({rate:,.0f} rows/s){end}")
    sys.stderr.flush()


async def bulk_load(database_url: str, tables: dict[str, list[dict[str, Any]]]) -> None:
    """Core inserts into the real tables, in chunks, one transaction per table."""
    engine = create_engine(Settings(database_url=database_url))
    try:
        for name in ("groups", "datasets", "memberships", "grants"):
            table = Base.metadata.tables[name]
            batch = tables[name]
            started = time.monotonic()
            async with engine.begin() as conn:
                for start in range(0, len(batch), CHUNK):
                    await conn.execute(table.insert(), batch[start : start + CHUNK])
                    progress(name, min(start + CHUNK, len(batch)), len(batch), started)
        if engine.dialect.name == "postgresql":  # ids were given explicitly
            async with engine.begin() as conn:
                await conn.exec_driver_sql(
                    "SELECT setval(pg_get_serial_sequence('grants', 'id'), "
                    "(SELECT max(id) FROM grants))"
                )
    finally:
        await engine.dispose()


async def recreate_pg(name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def fresh_database(args: argparse.Namespace, stem: str = "exposure") -> str:
    if args.postgres:
        asyncio.run(recreate_pg(args.pg_database))
        return f"postgresql://postgres@127.0.0.1:5432/{args.pg_database}"
    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / (f"{stem}-quick.db" if args.quick else f"{stem}.db")
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return f"sqlite:///{path}"


# -- measuring ----------------------------------------------------------------------------------


def percentile(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class Row:
    what: str
    n: int
    p50: float
    p95: float
    target: float | None = None
    note: str = ""

    @property
    def verdict(self) -> str:
        if self.target is None:
            return ""
        return "pass" if self.p95 < self.target else "FAIL"


@dataclass
class Results:
    label: str
    rows: list[Row] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    def add(
        self,
        what: str,
        samples: Sequence[float],
        target: float | None = None,
        note: str = "",
    ) -> Row:
        row = Row(what, len(samples), percentile(samples, 0.5), percentile(samples, 0.95), target)
        row.note = note
        self.rows.append(row)
        print(f"    {what}: p50 {row.p50 * 1000:,.1f} ms, p95 {row.p95 * 1000:,.1f} ms {note}")
        return row

    def table(self) -> str:
        lines = [
            "| measurement | n | p50 ms | p95 ms | target | result |",
            "| --- | ---: | ---: | ---: | --- | --- |",
        ]
        for row in self.rows:
            target = "" if row.target is None else f"p95 < {row.target * 1000:,.0f} ms"
            lines.append(
                f"| {row.what} | {row.n} | {row.p50 * 1000:,.1f} | {row.p95 * 1000:,.1f} "
                f"| {target} | {row.verdict} |"
            )
        return "\n".join(lines)


class Api:
    """A keep-alive client that times each call and insists on the expected status."""

    def __init__(self, base_url: str, token: str) -> None:
        self.client = httpx.Client(
            base_url=base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(600.0),
        )

    def call(
        self, method: str, path: str, body: Any = None, expect: Iterable[int] = (200, 201)
    ) -> tuple[float, Any]:
        started = time.perf_counter()
        response = self.client.request(method, path, json=body)
        elapsed = time.perf_counter() - started
        if response.status_code not in tuple(expect):
            raise BenchError(f"{method} {path} {body} -> {response.status_code}: {response.text}")
        return elapsed, response.json()

    def close(self) -> None:
        self.client.close()


# -- the changes --------------------------------------------------------------------------------


def grant_bodies(org: Org, count: int, rng: random.Random) -> list[tuple[str, dict[str, Any]]]:
    """(kind, body): grants that widen access and grants that don't, in rotation."""
    kinds: list[tuple[str, Callable[[], dict[str, Any]]]] = []

    def exact() -> str:
        return str(rng.choice(org.datasets))

    def body(principal: str, resource: str, effect: str = "allow") -> dict[str, Any]:
        return {
            "principal": principal,
            "resource": resource,
            "action": "read",
            "effect": effect,
            "justification": "bench",
        }

    def user_exact() -> dict[str, Any]:
        return body(rng.choice(org.users), exact())

    def audience_exact() -> dict[str, Any]:
        dataset = exact()
        return body(org.audiences[dataset][0], dataset)

    def team_pattern() -> dict[str, Any]:
        dataset = exact()
        return body(rng.choice(org.teams), dataset.rsplit(".", 1)[0] + ".*")

    def team_deny() -> dict[str, Any]:
        return body(rng.choice(org.teams), exact(), "deny")

    def service_exact() -> dict[str, Any]:
        return body(rng.choice(org.services), exact())

    kinds = [
        ("user on a dataset (widens)", user_exact),
        ("audience group (does not widen)", audience_exact),
        ("team on prefix.* (widens)", team_pattern),
        ("deny on a team (narrows)", team_deny),
        ("service on a dataset (widens)", service_exact),
    ]
    return [(kinds[i % len(kinds)][0], kinds[i % len(kinds)][1]()) for i in range(count)]


def membership_changes(org: Org, count: int, rng: random.Random) -> list[tuple[str, str]]:
    """(group, member) pairs that are not links yet: mostly a user into a team, every fifth a
    team into an org (groups nest only downwards here, so no cycle and no depth problem)."""
    existing = set(org.links)
    chosen: list[tuple[str, str]] = []
    while len(chosen) < count:
        if len(chosen) % 5 == 4:
            member, group = rng.choice(org.teams), rng.choice(org.orgs)
        else:
            member, group = rng.choice(org.users + org.services), rng.choice(org.teams)
        if (member, group) not in existing:
            existing.add((member, group))
            chosen.append((group, member))
    return chosen


def check_after(api: Api, change: dict[str, Any], principal: str, dataset: str) -> float:
    """The seconds a check takes right after `change` (a mutation's answer): the check path must
    answer from the new policy at once, not after rebuilding it."""
    check = {"principal": principal, "dataset": dataset, "action": "read"}
    seconds, decided = api.call("POST", "/v1/check", check)
    if decided["policy_version"] < change["policy_version"]:
        raise BenchError(f"a check after a change used an older policy: {decided}")
    return seconds


def covered(org: Org, resource: str) -> str:
    """A dataset that a grant on `resource` covers."""
    if not resource.endswith(".*"):
        return resource
    return next(d for d in org.datasets if d.startswith(resource[:-1]))


def leaf_under(members: dict[str, list[str]], principal: str) -> str:
    """A user or service that `principal` holds (itself when it is one)."""
    while principal.startswith("group:"):
        principal = members[principal][0]
    return principal


def bare(group: str) -> str:
    return group.removeprefix("group:")


# -- the run ------------------------------------------------------------------------------------


def measure(api: Api, org: Org, args: argparse.Namespace, results: Results) -> None:
    rng = random.Random(args.seed + 10)

    print("full scan (POST /v1/scan):")
    seconds, first = api.call("POST", "/v1/scan")
    results.add("full scan, first (opens every finding)", [seconds], SCAN_TARGET)
    results.facts["scan_first"] = first
    print(f"      {first}")
    seconds, again = api.call("POST", "/v1/scan")
    results.add("full scan, again (nothing changes)", [seconds], SCAN_TARGET)
    results.facts["scan_again"] = again

    print(f"grant changes ({args.changes} created, then each deleted):")
    creates: list[float] = []
    deletes: list[float] = []
    checks: list[float] = []
    members: dict[str, list[str]] = {}
    for member, group in org.links:
        members.setdefault(group, []).append(member)
    opened = resolved = 0
    for kind, body in grant_bodies(org, args.changes, rng):
        seconds, created = api.call("POST", "/v1/grants", body)
        creates.append(seconds)
        opened += len(created["findings_opened"])
        reader = leaf_under(members, body["principal"])
        checks.append(check_after(api, created, reader, covered(org, body["resource"])))
        seconds, deleted = api.call("DELETE", f"/v1/grants/{created['id']}")
        deletes.append(seconds)
        resolved += len(deleted["findings_resolved"])
        if args.verbose:
            print(f"      {kind}: {creates[-1] * 1000:.1f} / {deletes[-1] * 1000:.1f} ms")
    note = f"({opened} findings opened, {resolved} resolved)"
    results.add("grant change: POST /v1/grants", creates, CHANGE_P95_TARGET, note)
    results.add("grant change: DELETE /v1/grants/{id}", deletes, CHANGE_P95_TARGET)
    results.add("check right after a grant change", checks)

    print(f"membership changes ({args.changes} added, then each removed):")
    adds: list[float] = []
    removes: list[float] = []
    opened = resolved = 0
    member_checks: list[float] = []
    datasets = org.datasets
    for n, (group, member) in enumerate(membership_changes(org, args.changes, rng)):
        seconds, added = api.call("POST", f"/v1/groups/{bare(group)}/members", {"member": member})
        adds.append(seconds)
        opened += len(added["findings_opened"])
        member_checks.append(check_after(api, added, leaf_under(members, member), datasets[n]))
        seconds, removed = api.call("DELETE", f"/v1/groups/{bare(group)}/members/{member}")
        removes.append(seconds)
        resolved += len(removed["findings_resolved"])
        if args.verbose:
            print(f"      {member} in {group}: {adds[-1] * 1000:.1f} / {removes[-1] * 1000:.1f} ms")
    note = f"({opened} findings opened, {resolved} resolved)"
    results.add("membership change: POST .../members", adds, CHANGE_P95_TARGET, note)
    results.add("membership change: DELETE .../members/{m}", removes, CHANGE_P95_TARGET)
    results.add("check right after a membership change", member_checks)

    path = f"/v1/datasets/{org.wide_dataset}/exposure"
    print(f"exposure endpoint (GET {path}):")
    seconds, exposure = api.call("GET", path)
    summary = {k: exposure[k] for k in ("intended_count", "effective_count", "excess_count")}
    results.facts["exposure"] = summary
    results.add("exposure endpoint, first call after the changes", [seconds], EXPOSURE_TARGET)
    warm = [api.call("GET", path)[0] for _ in range(args.repeats)]
    results.add(
        f"exposure endpoint, warm ({summary['effective_count']:,} readers)", warm, EXPOSURE_TARGET
    )
    if exposure["effective_count"] < org.shape.leaves // 2:
        raise BenchError(f"{org.wide_dataset} is readable by too few principals: {summary}")

    principal = org.users[len(org.users) // 3]
    path = f"/v1/principals/{principal}/access"
    print(f"principal access (GET {path}):")
    seconds, access = api.call("GET", path)
    results.add("principal access, first call after the changes", [seconds])
    warm = [api.call("GET", path)[0] for _ in range(args.repeats)]
    results.add(f"principal access, warm ({len(access['items'])} datasets)", warm)

    print("consistency (POST /v1/scan after every change was undone):")
    seconds, last = api.call("POST", "/v1/scan")
    results.facts["scan_last"] = last
    results.add("full scan, after the changes", [seconds], SCAN_TARGET)
    if last["opened"] or last["resolved"] or last.get("updated"):
        raise BenchError(
            "the incremental re-analyses left findings that a full scan changes: "
            + json.dumps(last)
        )
    print("      incremental findings equal a full scan's: 0 opened, 0 resolved, 0 updated")


def run(args: argparse.Namespace) -> Results:
    shape = Shape(seed=args.seed)
    if args.quick:
        shape = shape.scaled(10)
    backend = "postgresql" if args.postgres else "sqlite"
    results = Results(label=f"{'quick' if args.quick else 'full'}, {backend}, seed {args.seed}")

    started = time.monotonic()
    org = generate(shape)
    at = datetime.now(UTC)
    tables = rows(org, at)
    print(
        f"organisation: {len(org.users) + len(org.services):,} users and services, "
        f"{len(tables['groups']):,} groups, {len(org.links):,} memberships, "
        f"{len(org.datasets):,} datasets, {len(org.rules):,} grants "
        f"(generated in {time.monotonic() - started:.1f} s)"
    )
    results.facts["organisation"] = {name: len(batch) for name, batch in tables.items()}

    url = fresh_database(args)
    started = time.monotonic()
    migrate.upgrade(url)
    print(f"database: {url} (migrated in {time.monotonic() - started:.1f} s); bulk load:")
    started = time.monotonic()
    asyncio.run(bulk_load(url, tables))
    results.facts["load_seconds"] = round(time.monotonic() - started, 1)
    print(f"    loaded in {results.facts['load_seconds']} s")

    token = create_token(url, "bench-admin", "admin")
    log = WORK / f"exposure-serve-{backend}.log"
    with serve(url, log, ready_timeout=600.0) as server:
        print(f"server: {server.base_url} (log {log})")
        api = Api(server.base_url, token)
        try:
            started = time.perf_counter()
            api.call("GET", "/readyz")
            results.facts["readyz_first_seconds"] = round(time.perf_counter() - started, 2)
            print(
                f"    first /readyz (loads the check path's policy): "
                f"{results.facts['readyz_first_seconds']} s"
            )
            measure(api, org, args, results)
        finally:
            api.close()
    return results


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a tenth of the size")
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL instead of SQLite")
    parser.add_argument(
        "--pg-database",
        default="aclaudit_exposure_bench",
        help="the PostgreSQL database to (re)create (default %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=Shape.seed)
    parser.add_argument("--changes", type=int, default=30, help="grant and membership changes")
    parser.add_argument("--repeats", type=int, default=20, help="warm calls per read endpoint")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--verbose", action="store_true", help="print every change")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    print(f"python {sys.version.split()[0]}, bench.exposure {'--quick' if args.quick else ''}")
    try:
        results = run(args)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    print()
    print(f"Exposure analysis over HTTP ({results.label}):")
    print(results.table())
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "label": results.label,
            "rows": [asdict(r) for r in results.rows],
            **results.facts,
        }
        args.json.write_text(json.dumps(payload, indent=2, default=str))
    if any(row.verdict == "FAIL" for row in results.rows):
        sys.exit(2)


if __name__ == "__main__":
    main()
