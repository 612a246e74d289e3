"""In-process decision latency: ``app.policy.decision_index.DecisionIndex.decide`` against plain
pycasbin ``Enforcer.enforce``, on the benchmark policy at several sizes.

Skipped with a message when ``app.policy.decision_index`` is not importable.
"""

from __future__ import annotations

import importlib
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from bench.workload import ACTION, Shape, build

SIZES = (100, 10_000, 100_000)
CASBIN_SIZES = (100, 10_000)


@dataclass(frozen=True)
class Timing:
    engine: str
    grants: int
    calls: int
    p50_us: float
    p99_us: float
    build_s: float
    mismatches: int  # answers that differ from the benchmark's reference decision


def _load() -> ModuleType | None:
    try:
        return importlib.import_module("app.policy.decision_index")
    except ImportError as exc:
        print(f"\nenforce timings skipped: app.policy.decision_index not importable ({exc})")
        return None


def _percentile(samples: list[int], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000


def _time(
    decide: Callable[[str, str, str, float], bool],
    requests: list[tuple[str, str, bool]],
    budget_s: float,
) -> tuple[list[int], int]:
    """Times single calls; stops early when the time budget is spent. Returns (ns, mismatches)."""
    now = time.time()
    samples: list[int] = []
    mismatches = 0
    deadline = time.monotonic() + budget_s
    clock = time.perf_counter_ns
    for principal, dataset, expected in requests:
        start = clock()
        allowed = decide(principal, dataset, ACTION, now)
        samples.append(clock() - start)
        mismatches += allowed != expected
        if time.monotonic() > deadline:
            break
    return samples, mismatches


def run(
    requests_per_size: int = 3000, budget_s: float = 10.0, seed: int = 1, rounds: int = 9
) -> list[Timing]:
    """Index timings for every size, interleaved: each round times every size once, so all
    sizes share the machine's noise; p50 is the median of the rounds' medians. Casbin's
    timings (far slower) follow, one size at a time."""
    module = _load()
    if module is None:
        return []
    setups = []
    for size in SIZES:
        workload = build(Shape(grants=size, seed=seed), checks=requests_per_size)
        rules = [
            module.Rule(g.principal, g.resource, ACTION, g.effect, "", str(n))
            for n, g in enumerate(workload.grants)
        ]
        links = workload.org.links()
        requests = [(c.principal, c.dataset, c.allowed) for c in workload.checks]
        random.Random(seed).shuffle(requests)
        started = time.perf_counter()
        index = module.DecisionIndex(rules, links)
        built = time.perf_counter() - started
        setups.append((size, rules, links, requests, _index_decider(index), built))

    medians: dict[int, list[float]] = {size: [] for size in SIZES}
    pooled: dict[int, list[int]] = {size: [] for size in SIZES}
    wrong: dict[int, int] = dict.fromkeys(SIZES, 0)
    for round_ in range(rounds + 1):
        for size, _rules, _links, requests, index_decide, _built in setups:
            samples, mismatches = _time(index_decide, requests, budget_s / rounds)
            if round_ == 0:
                continue  # warm: memoised group expansion, caches
            medians[size].append(statistics.median(samples) / 1000)
            pooled[size].extend(samples)
            wrong[size] += mismatches
    timings = [
        Timing(
            engine="DecisionIndex.decide",
            grants=size,
            calls=len(pooled[size]),
            p50_us=statistics.median(medians[size]),
            p99_us=_percentile(pooled[size], 0.99),
            build_s=built,
            mismatches=wrong[size],
        )
        for size, _rules, _links, _requests, _decide, built in setups
    ]

    factory = getattr(module, "casbin_enforcer", None)
    if factory is None:
        print("  (no casbin_enforcer in app.policy.decision_index: casbin timing skipped)")
        return timings
    for size, rules, links, requests, _decide, _built in setups:
        if size not in CASBIN_SIZES:
            continue
        started = time.perf_counter()
        enforcer = factory(rules, links)
        built = time.perf_counter() - started
        casbin_decide = _casbin_decider(enforcer)
        _time(casbin_decide, requests[:50], budget_s / 10)  # warm
        samples, mismatches = _time(casbin_decide, requests, budget_s)
        timings.append(_timing("casbin Enforcer.enforce", size, samples, built, mismatches))
    return timings


Decide = Callable[[str, str, str, float], bool]


def _index_decider(index: Any) -> Decide:
    def decide(sub: str, obj: str, act: str, now: float) -> bool:
        return bool(index.decide(sub, obj, act, "", now).allowed)

    return decide


def _casbin_decider(enforcer: Any) -> Decide:
    def decide(sub: str, obj: str, act: str, now: float) -> bool:
        return bool(enforcer.enforce(sub, obj, act, "", now))

    return decide


def _timing(engine: str, size: int, samples: list[int], built: float, mismatches: int) -> Timing:
    return Timing(
        engine=engine,
        grants=size,
        calls=len(samples),
        p50_us=statistics.median(samples) / 1000,
        p99_us=_percentile(samples, 0.99),
        build_s=built,
        mismatches=mismatches,
    )


def table(timings: list[Timing]) -> str:
    lines = [
        f"{'engine':<24} {'grants':>8} {'calls':>6} {'p50 us':>10} {'p99 us':>10} "
        f"{'build s':>8} {'wrong':>6}"
    ]
    for t in timings:
        lines.append(
            f"{t.engine:<24} {t.grants:>8,} {t.calls:>6} {t.p50_us:>10.2f} {t.p99_us:>10.2f} "
            f"{t.build_s:>8.2f} {t.mismatches:>6}"
        )
    return "\n".join(lines)
