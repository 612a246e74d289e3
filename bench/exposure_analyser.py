"""Benchmark of the exposure analyser (``app.exposure.analyser``) on a large organisation.

The organisation, generated from a seed (defaults; ``--quick`` divides the leaves, teams,
grants and columns by 10, keeping the upper levels of the hierarchy):

* 10,000 groups nested 5 levels: ``group:all-employees`` > 9 divisions > 90 departments >
  900 orgs > 8,999 teams, plus 200 extra group-in-group links (a team also in a second org);
* 100,000 leaves: 99,000 users and 1,000 services, each in one team, a fifth of them in a second;
* 2,000 datasets ``d{i}.t{j}.x{k}`` (20 x 10 x 10), each meant for one org and one service;
* 50,000 grants: 75% exact datasets, 18% ``d{i}.t{j}.*``, 7% ``d{i}.*`` and 5 ``*``; to users
  (45%), services (5%), teams (35%), orgs (10%), departments (4%), divisions (1%); 5% deny;
  80% read (the rest write/export); 10% expired, 10% expiring later. On top of those, the demo's
  over-broad grant (``group:all-employees`` may read ``d19.*``: 100 datasets readable by everyone)
  and five division grants on ``d0.t0.x0`` (about 55,000 readers) with a deny on one department.

It times (a) building the analyser, (b) a full scan: every dataset's exposure for ``read`` with its
per-grant excess, as bitsets with counts and a sample of 10 names per finding (what a service
stores), twice (cold, then warm memos); and `grant_excess`, which materialises every name, on
100 datasets spread evenly (``--names``: all of them); (c) incremental re-analysis, changes
applied in place, p50/p95 over 50 random changes each: after one grant change (half added, half
removed), carrying out its `reanalysis_for_rule` (and, for comparison, re-analysing every covered
dataset whole); after one membership change (half added, half removed), carrying out its
`reanalysis_for_membership`; and (d) `effective()` for the dataset readable by ~55,000 principals.
Before timing, the analyser's answers on 20 datasets x 250 principals are checked against
`DecisionIndex.decide` (itself property-tested against pycasbin). Also printed: `copy()` (for
copy-and-swap updates) and peak RSS.

Usage (from the repository root, in the project's virtualenv)::

    python -m bench.exposure_analyser            # full size (about 30 s)
    python -m bench.exposure_analyser --quick    # a tenth of the size (seconds)
    python -m bench.exposure_analyser --seed 3
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from app.exposure.analyser import ExposureAnalyser, Reanalysis, datasets_covered
from app.policy.decision_index import DecisionIndex, Rule

NOW = 1_750_000_000.0
ACTION = "read"
SAMPLE = 10  # names kept per finding
T = TypeVar("T")


@dataclass(frozen=True)
class Shape:
    leaves: int = 100_000
    services: int = 1_000
    divisions: int = 9
    departments_per_division: int = 10
    orgs_per_department: int = 10
    teams: int = 8_999
    extra_group_links: int = 200
    families: int = 20  # d{i}
    tables: int = 10  # t{j}
    columns: int = 10  # x{k}
    grants: int = 50_000
    changes: int = 50
    seed: int = 1

    def scaled(self, factor: int) -> Shape:
        return Shape(
            leaves=self.leaves // factor,
            services=self.services // factor,
            divisions=self.divisions,
            departments_per_division=self.departments_per_division,
            orgs_per_department=self.orgs_per_department,
            teams=self.teams // factor,
            extra_group_links=self.extra_group_links // factor,
            families=self.families,
            tables=self.tables,
            columns=max(1, self.columns // factor),
            grants=self.grants // factor,
            changes=self.changes,
            seed=self.seed,
        )


@dataclass
class Org:
    shape: Shape
    rng: random.Random
    links: list[tuple[str, str]] = field(default_factory=list)
    divisions: list[str] = field(default_factory=list)
    departments: list[str] = field(default_factory=list)
    orgs: list[str] = field(default_factory=list)
    teams: list[str] = field(default_factory=list)
    users: list[str] = field(default_factory=list)
    services: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    audiences: dict[str, list[str]] = field(default_factory=dict)
    rules: list[Rule] = field(default_factory=list)
    wide_dataset: str = "d0.t0.x0"
    _next_id: int = 0

    @property
    def groups(self) -> list[str]:
        return ["group:all-employees", *self.divisions, *self.departments, *self.orgs, *self.teams]

    def new_id(self) -> str:
        self._next_id += 1
        return f"g{self._next_id}"


def generate(shape: Shape) -> Org:
    rng = random.Random(shape.seed)
    org = Org(shape, rng)
    top = "group:all-employees"
    for a in range(shape.divisions):
        division = f"group:div-{a}"
        org.divisions.append(division)
        org.links.append((division, top))
        for b in range(shape.departments_per_division):
            department = f"group:dept-{a}-{b}"
            org.departments.append(department)
            org.links.append((department, division))
            for c in range(shape.orgs_per_department):
                unit = f"group:org-{a}-{b}-{c}"
                org.orgs.append(unit)
                org.links.append((unit, department))
    for t in range(shape.teams):
        team = f"group:team-{t}"
        org.teams.append(team)
        org.links.append((team, org.orgs[t * len(org.orgs) // shape.teams]))
    for _ in range(shape.extra_group_links):
        org.links.append((rng.choice(org.teams), rng.choice(org.orgs)))

    org.users = [f"user:u{i}" for i in range(shape.leaves - shape.services)]
    org.services = [f"service:s{i}" for i in range(shape.services)]
    leaves = org.users + org.services
    for i, leaf in enumerate(leaves):
        org.links.append((leaf, org.teams[i * shape.teams // len(leaves)]))
        if rng.random() < 0.2:
            org.links.append((leaf, rng.choice(org.teams)))
    org.links = list(dict.fromkeys(org.links))

    org.datasets = [
        f"d{i}.t{j}.x{k}"
        for i in range(shape.families)
        for j in range(shape.tables)
        for k in range(shape.columns)
    ]
    for dataset in org.datasets:
        org.audiences[dataset] = [rng.choice(org.orgs), rng.choice(org.services)]

    org.rules = [random_rule(org) for _ in range(shape.grants)]
    for _ in range(5):
        org.rules.append(Rule(rng.choice(org.services), "*", ACTION, "allow", "", org.new_id()))
    # The demo's failure: everyone may read a whole family of datasets.
    org.rules.append(Rule(top, f"d{shape.families - 1}.*", ACTION, "allow", "", org.new_id()))
    # A dataset readable by over half the company, minus one department.
    for division in org.divisions[:5]:
        org.rules.append(Rule(division, org.wide_dataset, ACTION, "allow", "", org.new_id()))
    org.rules.append(Rule(org.departments[0], org.wide_dataset, ACTION, "deny", "", org.new_id()))
    return org


def random_rule(org: Org) -> Rule:
    rng = org.rng
    shape = org.shape
    i, j = rng.randrange(shape.families), rng.randrange(shape.tables)
    roll = rng.random()
    if roll < 0.75:
        obj = f"d{i}.t{j}.x{rng.randrange(shape.columns)}"
    elif roll < 0.93:
        obj = f"d{i}.t{j}.*"
    else:
        obj = f"d{i}.*"
    roll = rng.random()
    subjects: list[str]
    if roll < 0.45:
        subjects = org.users
    elif roll < 0.50:
        subjects = org.services
    elif roll < 0.85:
        subjects = org.teams
    elif roll < 0.95:
        subjects = org.orgs
    elif roll < 0.99:
        subjects = org.departments
    else:
        subjects = org.divisions
    roll = rng.random()
    exp = "" if roll < 0.8 else str(NOW - 86_400) if roll < 0.9 else str(NOW + 86_400 * 30)
    return Rule(
        sub=rng.choice(subjects),
        obj=obj,
        act=rng.choices([ACTION, "write", "export"], weights=[8, 1, 1])[0],
        eft="deny" if rng.random() < 0.05 else "allow",
        exp=exp,
        id=org.new_id(),
    )


# -- measuring ----------------------------------------------------------------------------------


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def percentile(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class Finding:
    dataset: str
    grant_id: str
    excess_count: int
    excess_sample: list[str]


def analyse(analyser: ExposureAnalyser, org: Org, dataset: str) -> list[Finding]:
    """What a service does per dataset: the exposure as bitsets, a finding per grant with excess."""
    intended = analyser.intended_bits(org.audiences[dataset])
    exposure = analyser.exposure(dataset, ACTION, NOW, intended)
    return findings_of(analyser, dataset, exposure.by_grant, exposure.excess_counts)


def findings_of(
    analyser: ExposureAnalyser,
    dataset: str,
    by_grant: Mapping[str, int],
    counts: Mapping[str, int],
) -> list[Finding]:
    found: list[Finding] = []
    for grant_id, bits in by_grant.items():
        if bits:
            count = counts[grant_id]
            sample = analyser.directory.sample(bits, SAMPLE, count)
            found.append(Finding(dataset, grant_id, count, sample))
    return found


def reanalyse(analyser: ExposureAnalyser, org: Org, plan: Reanalysis) -> int:
    """Carry out a change's Reanalysis; returns how many findings it (re)computed."""
    computed = 0
    for dataset, rules in plan.grants.items():
        intended = analyser.intended_bits(org.audiences[dataset])
        excess = analyser.grant_excess_bits(rules, dataset, ACTION, NOW, intended)
        by_grant = {grant_id: e.bits for grant_id, e in excess.items()}
        counts = {grant_id: e.count for grant_id, e in excess.items()}
        computed += len(findings_of(analyser, dataset, by_grant, counts))
    return computed


def full_scan(analyser: ExposureAnalyser, org: Org) -> list[Finding]:
    findings: list[Finding] = []
    for dataset in org.datasets:
        findings.extend(analyse(analyser, org, dataset))
    return findings


def scan_with_names(analyser: ExposureAnalyser, org: Org, datasets: Sequence[str]) -> int:
    total = 0
    for dataset in datasets:
        intended = analyser.intended(org.audiences[dataset])
        excess = analyser.grant_excess(dataset, ACTION, NOW, intended)
        total += sum(len(names) for names in excess.values())
    return total


def spot_check(analyser: ExposureAnalyser, org: Org, datasets: int, principals: int) -> int:
    """Compare with DecisionIndex (Casbin-exact) on random datasets x random principals."""
    index = DecisionIndex(org.rules, org.links)
    rng = random.Random(org.shape.seed + 1)
    leaves = org.users + org.services
    chosen = [org.wide_dataset, *rng.sample(org.datasets, datasets - 1)]
    checked = 0
    for dataset in chosen:
        effective = analyser.effective(dataset, ACTION, NOW)
        for principal in rng.sample(leaves, principals):
            expected = index.decide(principal, dataset, ACTION, "", NOW).allowed
            if (principal in effective) != expected:
                raise AssertionError(f"analyser and Casbin differ: {principal} on {dataset}")
            checked += 1
    return checked


def grant_changes(analyser: ExposureAnalyser, org: Org, whole: bool) -> list[float]:
    """Alternately add a new random grant and remove an existing one, re-analysing each time:
    with the change's Reanalysis, or (`whole`) every covered dataset in full."""
    rng = random.Random(org.shape.seed + 2)
    timings: list[float] = []
    for n in range(org.shape.changes):
        if n % 2 == 0:
            rule = random_rule(org)
            start = time.perf_counter()
            analyser.add_rule(rule)
        else:
            rule = org.rules[rng.randrange(len(org.rules))]
            start = time.perf_counter()
            analyser.remove_rule(rule)
        if whole:
            for dataset in datasets_covered(rule.obj, org.datasets):
                analyse(analyser, org, dataset)
        else:
            reanalyse(analyser, org, analyser.reanalysis_for_rule(rule, org.datasets, ACTION))
        timings.append(time.perf_counter() - start)
        # Undo, so that both variants see the same sequence of policies.
        if n % 2 == 0:
            analyser.remove_rule(rule)
        else:
            analyser.add_rule(rule)
    return timings


@dataclass
class MembershipTimings:
    seconds: list[float] = field(default_factory=list)
    datasets: list[int] = field(default_factory=list)  # datasets in the Reanalysis
    pairs: list[int] = field(default_factory=list)  # (dataset, grant) pairs recomputed


def membership_changes(analyser: ExposureAnalyser, org: Org) -> MembershipTimings:
    """Alternately add a random leaf to a random group and remove an existing membership."""
    rng = random.Random(org.shape.seed + 3)
    leaves = org.users + org.services
    groups = org.groups
    timings = MembershipTimings()
    for n in range(org.shape.changes):
        before = analyser.copy()  # as the service keeps the committed one
        if n % 2 == 0:
            member, group = rng.choice(leaves), rng.choice(groups)
            start = time.perf_counter()
            analyser.add_link(member, group)
        else:
            member, group = org.links[rng.randrange(len(org.links))]
            start = time.perf_counter()
            analyser.remove_link(member, group)
        plan = analyser.reanalysis_for_membership(
            before, [group], org.datasets, org.audiences, ACTION
        )
        reanalyse(analyser, org, plan)
        timings.seconds.append(time.perf_counter() - start)
        timings.datasets.append(len(plan.grants))
        timings.pairs.append(sum(len(rules) for rules in plan.grants.values()))
    return timings


def run(shape: Shape, names: bool) -> None:
    seconds, org = timed(lambda: generate(shape))
    print(
        f"organisation: {len(org.users) + len(org.services):,} leaves, {len(org.groups):,} groups,"
        f" {len(org.links):,} links, {len(org.datasets):,} datasets, {len(org.rules):,} grants"
        f" (generated in {seconds:.1f} s, seed {shape.seed})"
    )

    seconds, analyser = timed(lambda: ExposureAnalyser(org.rules, org.links))
    print(f"(a) build analyser:                        {seconds:.2f} s")

    seconds, findings = timed(lambda: full_scan(analyser, org))
    excess_total = sum(f.excess_count for f in findings)
    print(
        f"(b) full scan, bitsets, cold memos:        {seconds:.2f} s"
        f"  ({len(findings):,} findings, {excess_total:,} excess (grant, principal) pairs)"
    )
    seconds, _ = timed(lambda: full_scan(analyser, org))
    print(f"    full scan, bitsets, warm memos:        {seconds:.2f} s")
    chosen = org.datasets if names else org.datasets[:: max(1, len(org.datasets) // 100)]
    seconds, named = timed(lambda: scan_with_names(analyser, org, chosen))
    estimate = "" if names else f", about {seconds * len(org.datasets) / len(chosen):.0f} s for all"
    print(
        f"    grant_excess with names, {len(chosen):,} datasets: {seconds:.2f} s"
        f"  ({named:,} names{estimate})"
    )
    print(f"    max RSS so far:                        {max_rss_mb():.0f} MB")

    checked = spot_check(analyser, org, datasets=20, principals=250)
    print(f"    spot check vs DecisionIndex:           {checked:,} decisions agree")

    copies = [timed(analyser.copy)[0] for _ in range(3)]
    print(f"    copy() (for copy-and-swap updates):    {ms(statistics.median(copies))}")

    timings = grant_changes(analyser, org, whole=False)
    print(
        f"(c) grant change + Reanalysis:             p50 {ms(percentile(timings, 0.5))},"
        f" p95 {ms(percentile(timings, 0.95))}, max {ms(max(timings))} ({len(timings)} changes)"
    )
    timings = grant_changes(analyser, org, whole=True)
    print(
        f"    grant change + covered datasets whole: p50 {ms(percentile(timings, 0.5))},"
        f" p95 {ms(percentile(timings, 0.95))}, max {ms(max(timings))}"
    )
    membership = membership_changes(analyser, org)
    timings = membership.seconds
    print(
        f"    membership change + Reanalysis:        p50 {ms(percentile(timings, 0.5))},"
        f" p95 {ms(percentile(timings, 0.95))}, max {ms(max(timings))} ({len(timings)} changes;"
        f" datasets: median {statistics.median(membership.datasets):.0f},"
        f" max {max(membership.datasets)}; (dataset, grant) pairs: median"
        f" {statistics.median(membership.pairs):.0f}, max {max(membership.pairs)})"
    )

    analyser.effective(org.wide_dataset, ACTION, NOW)  # warm the member sets
    samples = [timed(lambda: analyser.effective(org.wide_dataset, ACTION, NOW)) for _ in range(5)]
    readers = len(samples[0][1])
    bits_seconds = min(
        timed(lambda: analyser.exposure(org.wide_dataset, ACTION, NOW))[0] for _ in range(5)
    )
    print(
        f"(d) effective({org.wide_dataset}):                 "
        f"{ms(min(s for s, _ in samples))} for {readers:,} readers"
        f" (as bitset, without names: {ms(bits_seconds)})"
    )
    print(f"max RSS: {max_rss_mb():.0f} MB")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a tenth of the size")
    parser.add_argument("--seed", type=int, default=Shape.seed)
    parser.add_argument(
        "--names",
        action="store_true",
        help="run grant_excess (every name materialised) on every dataset, not on 100 of them",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    shape = Shape(seed=args.seed)
    if args.quick:
        shape = shape.scaled(10)
    print(f"python {sys.version.split()[0]}, {'quick' if args.quick else 'full'} run")
    run(shape, args.names)


if __name__ == "__main__":
    main()
