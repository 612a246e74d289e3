"""The walk's incremental answers equal a fresh analyser's at every step, on random histories
(nested and cyclic groups, denies, expiries, audience changes, other datasets): no I/O."""

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from app.exposure.analyser import ExposureAnalyser
from app.policy.casbin_model import Rule
from app.reports.walk import READ, Change, Timeline, walk

START = datetime(2026, 1, 1, tzinfo=UTC)
USERS = [f"user:u{i}" for i in range(12)]
GROUPS = [f"group:g{i}" for i in range(6)]
DATASETS = ["d.a", "d.b"]


def _history(rng: random.Random, versions: int) -> list[list[Change]]:
    links: set[tuple[str, str]] = set()
    rules: dict[int, tuple[Rule, ...]] = {}  # a grant: one rule per purpose
    datasets: dict[str, tuple[str, ...]] = {}
    history: list[list[Change]] = []
    for version in range(1, versions + 1):
        changes: list[Change] = []
        kind = rng.random()
        if kind < 0.55:
            link = (rng.choice(USERS + GROUPS), rng.choice(GROUPS))
            if link[0] != link[1]:
                changes.append(Change("membership", link not in links, link, "t"))
                links ^= {link}
        elif kind < 0.85:
            if rules and rng.random() < 0.4:
                gid = rng.choice(sorted(rules))
                changes.append(Change("grant", False, rules.pop(gid), "t"))
            else:
                expiry = ""
                if rng.random() < 0.3:
                    expiry = repr(
                        (START + timedelta(seconds=version + rng.randint(1, 5))).timestamp()
                    )
                fields = (
                    rng.choice(USERS + GROUPS),
                    rng.choice(["d.*", "d.a", "d.b", "e.*"]),
                    rng.choice([READ, READ, "write"]),
                    rng.choice(["allow", "allow", "deny"]),
                    expiry,
                    str(version),
                )
                purposes = rng.choice([("*",), ("*",), ("train",), ("train", "eval")])
                grant = tuple(Rule(*fields, purpose=purpose) for purpose in purposes)
                rules[version] = grant
                changes.append(Change("grant", True, grant, "t"))
        else:
            dataset = rng.choice(DATASETS)
            if dataset in datasets:
                changes.append(Change("dataset", False, (dataset, datasets[dataset]), "t"))
            audience = tuple(rng.sample(USERS + GROUPS, rng.randint(0, 2)))
            datasets[dataset] = audience
            changes.append(Change("dataset", True, (dataset, audience), "t"))
        history.append(changes)
    return history


Audiences = dict[str, tuple[str, ...]]


def _state(
    history: list[list[Change]], upto: int
) -> tuple[list[Rule], list[tuple[str, str]], Audiences]:
    rules: dict[Any, None] = {}
    links: dict[Any, None] = {}
    datasets: Audiences = {}
    for changes in history[:upto]:
        for change in changes:
            table = rules if change.kind == "grant" else links
            if change.kind == "dataset":
                dataset, audience = change.item
                if change.opened:
                    datasets[dataset] = audience
                else:
                    datasets.pop(dataset, None)
            else:
                items = change.item if change.kind == "grant" else (change.item,)
                for item in items:
                    if change.opened:
                        table[item] = None
                    else:
                        table.pop(item, None)
    return list(rules), list(links), datasets


def _excess(history: list[list[Change]], upto: int, dataset: str, at: datetime) -> set[str]:
    rules, links, datasets = _state(history, upto)
    if dataset not in datasets:
        return set()
    analyser = ExposureAnalyser(rules, links)
    intended = analyser.intended_bits(datasets[dataset])
    return set(
        analyser.directory.names(analyser.exposure(dataset, READ, at.timestamp(), intended).excess)
    )


def _expected(history: list[list[Change]], instants: list[tuple[datetime, int]], dataset: str):
    """(windows as (start, end), peak, first instant each principal was beyond the audience)
    from a rebuild at every instant (with the versions up to it)."""
    windows: list[list[datetime | None]] = []
    peak, first = 0, dict[str, datetime]()
    for at, upto in instants:
        excess = _excess(history, upto, dataset, at)
        peak = max(peak, len(excess))
        for name in excess:
            first.setdefault(name, at)
        is_open = bool(windows) and windows[-1][1] is None
        if excess and not is_open:
            windows.append([at, None])
        elif not excess and is_open:
            windows[-1][1] = at
    return [tuple(w) for w in windows], peak, first


def test_every_step_of_random_walks_equals_a_rebuild():
    for seed in range(60):
        rng = random.Random(seed)
        history = _history(rng, 40)
        stop = 40
        until = START + timedelta(seconds=stop, milliseconds=700)
        expiries = sorted(
            (datetime.fromtimestamp(float(c.item[0].exp), UTC), int(c.item[0].id), c.item[0].obj)
            for changes in history
            for c in changes
            if c.kind == "grant"
            and c.opened
            and c.item[0].exp
            and float(c.item[0].exp) <= until.timestamp()
        )
        timelines = [Timeline(d, None) for d in DATASETS]
        walk(
            ExposureAnalyser([], []),
            timelines,
            since=START,
            until=until,
            versions=[(v, START + timedelta(seconds=v), "t") for v in range(1, stop + 1)],
            changes={v: history[v - 1] for v in range(1, stop + 1)},
            expiries=expiries,
        )
        instants = [(START, 0)] + [(START + timedelta(seconds=v), v) for v in range(1, stop + 1)]
        instants += [(at, int((at - START).total_seconds())) for at, _, _ in expiries]
        instants = [*sorted(instants), (until, stop)]
        for timeline in timelines:
            windows, peak, first = _expected(history, instants, timeline.dataset)
            assert [(w.start, w.end) for w in timeline.windows] == windows, (seed, timeline.dataset)
            assert timeline.peak == peak, (seed, timeline.dataset)
            assert timeline.first_exposed == first, (seed, timeline.dataset)
            expected = _excess(history, stop, timeline.dataset, until)
            assert timeline.excess_names == expected and timeline.excess_count == len(expected)
