"""A membership change's stored findings that stay open, settled from the leaves that moved and
the stored samples, without analysing the excess before the change (part of the findings diff,
`app.exposure.diff`; no I/O)."""

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from app.exposure.analyser import Within
from app.exposure.measure import (
    ACTIONS,
    SAMPLE,
    Key,
    Recounted,
    Rewritten,
    StoredFinding,
    measure,
    recount,
    severity_for,
)
from app.exposure.schemas import FindingStatus
from app.exposure.view import PolicyView
from app.policy.decision_index import Rule

# dataset id -> the allow rules whose findings to bring in line, or every grant (None)
Targets = Mapping[str, tuple[Rule, ...] | None]


@dataclass(frozen=True)
class Settled:
    """The findings settled (`keys`, as `recounted` or `rewritten`), and what is left of the
    targets for the full computation."""

    keys: tuple[Key, ...]
    recounted: tuple[Recounted, ...]
    rewritten: tuple[Rewritten, ...]
    left: dict[str, tuple[Rule, ...] | None]


def settle_within(
    before: PolicyView,
    after: PolicyView,
    targets: Targets,
    active: Mapping[Key, StoredFinding],
    *,
    within: int,
    touched: int,
    repaths: frozenset[Key],
    guarded: bool,
    is_accepting: bool,
    at: float,
) -> Settled:
    """Outside `within` a finding's excess is the same before and after, so its new count is the
    stored one plus the leaves that came minus those that went. Its stored sample is the 20
    lowest leaves of the excess before (all of it when there were at most 20); the new sample
    is the 20 lowest of that sample without the leaves that went, plus those that came, and
    when a sampled leaf went from a larger excess, the next lowest above the stored sample
    (`Directory.lowest_outside`; the excess after the change when they are sparse). New leaves
    are numbered after every known one, so members joining a large excess leave its sample
    alone (a count-only change). Paths
    are redone where the sample changed or names a leaf of `touched` (`repaths`: findings whose
    paths may have moved though their excess did not).
    What is left of `targets` is for the full computation (new, resolved, refused, accepted
    or reopened findings).
    """
    directory = after.analyser.directory
    # (dataset, rule, stored row, new count, leaves that came or went, leaves that came), the
    # leaves relative to `moved_leaves`
    candidates: list[tuple[str, Rule, StoredFinding, int, int, int]] = []
    settled: dict[str, set[int]] = {}
    keys: list[Key] = []
    shared_ids: set[tuple[str, str]] = set()  # (dataset, rule id) of several rules
    moved_leaves = Within(within)
    for dataset_id, rules in targets.items():
        if rules is None or dataset_id not in before.datasets:
            continue
        by_id = {rule.id: rule for rule in rules}
        if len(by_id) < len(rules):
            ids = Counter(rule.id for rule in rules)
            shared_ids.update((dataset_id, rule_id) for rule_id, n in ids.items() if n > 1)
        facts = after.datasets[dataset_id]
        found: dict[str, tuple[int, int]] = {}
        for action in ACTIONS:
            chosen = [rule for rule in rules if rule.act == action]
            if chosen:
                found.update(
                    after.analyser.grant_excess_within(
                        before.analyser,
                        moved_leaves,
                        chosen,
                        dataset_id,
                        action,
                        at,
                        facts.audience,
                        before.datasets[dataset_id].audience,
                    )
                )
        for rule_id, (now_in, then_in) in found.items():
            grant_id = int(rule_id)
            row = active.get((dataset_id, grant_id))
            if row is None:
                continue
            if now_in == then_in and (dataset_id, grant_id) not in repaths:
                keys.append((dataset_id, grant_id))
                settled.setdefault(dataset_id, set()).add(grant_id)
                continue
            count = row.excess_count + now_in.bit_count() - then_in.bit_count()
            widened = bool(now_in & ~then_in)
            if (
                count <= 0
                or (guarded and widened and (facts.guard == "block" or is_accepting))
                or (widened and row.status == FindingStatus.accepted.value)
            ):
                continue  # resolved, refused, accepted or reopened: computed fully
            flipped, gained = now_in ^ then_in, now_in & ~then_in
            candidates.append((dataset_id, by_id[rule_id], row, count, flipped, gained))
    moved = frozenset(directory.names(touched))
    # leaves that came -> their numbers and names; leaves that went -> their names
    newcomers: dict[int, dict[int, str]] = {}
    leavers: dict[int, frozenset[str]] = {}
    drawn: list[tuple[str, Rule, StoredFinding, int, list[str], list[str]]] = []
    analyser = after.analyser
    # (dataset, action, purpose) -> see there
    blockers: dict[tuple[str, str, str], frozenset[str]] = {}
    for dataset_id, rule, row, count, flipped, gained in candidates:
        stored = row.excess_sample
        if len(stored) != min(SAMPLE, row.excess_count):
            continue  # not the sample this process would have drawn: computed fully
        lost = flipped & ~gained
        if lost not in leavers:
            leavers[lost] = frozenset(directory.names_of(moved_leaves.numbers(lost)))
        if gained not in newcomers:
            came = moved_leaves.numbers(gained)
            newcomers[gained] = dict(zip(came, directory.names_of(came), strict=True))
        gone, arrivals = leavers[lost], newcomers[gained]
        if len(stored) == SAMPLE and gone.isdisjoint(stored):
            # The sample is lowest first: it stays unless a newcomer ranks below its last.
            last = directory.leaf_number(stored[-1])
            if last is not None and (not arrivals or min(arrivals) > last):
                drawn.append((dataset_id, rule, row, count, stored, stored))
                continue
        numbered = dict(zip(directory.leaf_numbers(stored), stored, strict=True))
        if None in numbered:
            continue  # not the sample this process would have drawn: computed fully
        kept = {n: name for n, name in numbered.items() if n is not None and name not in gone}
        if len(kept) == len(stored) or row.excess_count <= SAMPLE:
            kept.update(arrivals)
        elif (dataset_id, rule.id) in shared_ids:
            continue  # the grant's excess is that of several rules: computed fully
        else:  # the rest of the sample lies above the highest stored leaf
            highest = max(n for n in numbered if n is not None)
            kept.update((n, name) for n, name in arrivals.items() if n < highest)
            need = min(SAMPLE, count) - len(kept)
            if need > 0:
                key = (dataset_id, rule.act, rule.purpose)
                if key not in blockers:
                    audience = after.datasets[dataset_id].audience
                    blockers[key] = analyser.blockers(
                        dataset_id, rule.act, at, audience, rule.purpose
                    )
                above = directory.lowest_outside(rule.sub, highest, need, blockers[key])
                if above is None or len(above) < need:
                    continue  # sparse there: computed fully
                kept.update(zip(above, directory.names_of(above), strict=True))
        sample = [kept[n] for n in sorted(kept)[:SAMPLE]]
        drawn.append((dataset_id, rule, row, count, stored, sample))
    recounted: list[Recounted] = []
    rewritten: list[Rewritten] = []
    for dataset_id, rule, row, count, stored, sample in drawn:
        if sample == stored and moved.isdisjoint(stored):
            severity = severity_for(after.datasets[dataset_id].sensitivity, count).value
            recounted.append(recount(row, count, severity))
        else:  # a new sample, or a sampled principal whose path may have moved
            grant_id = int(rule.id)
            measured = measure(after, dataset_id, grant_id, (rule.sub,), sample, count)
            rewritten.append(Rewritten(row.id, measured))
        keys.append((dataset_id, int(rule.id)))
        settled.setdefault(dataset_id, set()).add(int(rule.id))
    left: dict[str, tuple[Rule, ...] | None] = {}
    for dataset_id, rules in targets.items():
        done = settled.get(dataset_id)
        if rules is not None and done:
            rules = tuple(r for r in rules if int(r.id) not in done)
            if not rules:
                continue
        left[dataset_id] = rules
    return Settled(tuple(keys), tuple(recounted), tuple(rewritten), left)
