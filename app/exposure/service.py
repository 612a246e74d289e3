"""Findings: open, refresh and resolve them from the analyser, before a change is answered.

Every mutation loads the committed policy once (a `PolicyView`), applies its change to a copy
of the analyser, and reconciles the findings of the datasets the change can affect. On
``guard: block`` datasets a change that lets anyone new in beyond the audience is refused (409,
rolled back) unless the caller accepts the exposure.
"""

import time
from bisect import bisect_right
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app import policy_version
from app.acceptance import AcceptExposure
from app.alerts import service as alerts_service
from app.alerts.schemas import AlertType
from app.alerts.service import AlertEvent
from app.db import utcnow
from app.errors import Conflict, InvalidInput, NotFound
from app.exposure import repository
from app.exposure.analyser import Within, datasets_covered
from app.exposure.models import Finding
from app.exposure.schemas import (
    ExcessPath,
    ExcessPrincipal,
    ExposureRead,
    FindingChanges,
    FindingRead,
    FindingStatus,
    ScanResult,
    Severity,
    SimulateRequest,
    SimulateResult,
)
from app.exposure.view import (
    PolicyView,
    current_view,
    publish_on_commit,
    view_before_change,
)
from app.fairness import Pacer
from app.policy import repository as policy_repository
from app.policy.decision_index import Rule
from app.policy.schemas import GrantRead, GrantStatus
from app.policy.snapshot import READ_ACTIONS, to_rule

READ = "read"
# Findings are analysed for every action that reads a dataset (the check path treats them all
# as reads). A grant has one action, so a grant's finding is that of its own action.
ACTIONS = tuple(sorted(READ_ACTIONS))
SAMPLE = 20
PATHS = 5


class ExposureRefused(Conflict):
    slug = "exposure-refused"
    title = "Change would expose a guarded dataset"

    def without_grants(self, grant_ids: Collection[int]) -> "ExposureRefused":
        """The refusal with ``grant_id: null`` on the would-be findings of these grants: grants
        the refused change itself created, whose ids are rolled back with it (and given to
        the next grant made), as `simulate` shows its proposals."""
        findings = [
            {**f, "grant_id": None} if f["grant_id"] in grant_ids else f
            for f in self.extra["findings"]
        ]
        return type(self)(self.detail, **{**self.extra, "findings": findings})


def severity_for(sensitivity: str, reach: int) -> Severity:
    """A restricted dataset readable by more than a handful outside its audience is critical."""
    if sensitivity == "restricted":
        return Severity.critical if reach >= 10 else Severity.high
    if sensitivity == "confidential":
        return Severity.high if reach >= 50 else Severity.medium
    if sensitivity == "internal":
        return Severity.medium if reach >= 500 else Severity.low
    return Severity.low


def to_read(finding: Finding) -> FindingRead:
    return FindingRead.model_validate(finding)


def _paths(
    view: PolicyView, dataset: str, grant_id: int, sample: list[str], now: float
) -> list[ExcessPath]:
    out = []
    for principal in sample[:PATHS]:
        reach = [
            found
            for action in ACTIONS
            for found in view.analyser.paths_for(principal, dataset, action, now)
        ]
        for rule, via in reach:
            if rule.id == str(grant_id):
                out.append(ExcessPath(principal=principal, via=list(via)))
                break
    return out


def _sample_paths(
    view: PolicyView, subjects: tuple[str, ...], sample: list[str]
) -> list[dict[str, Any]]:
    """A shortest path from each of the first sampled principals to the grant's subject: what
    `_paths` finds, by looking the subject up instead of scanning the dataset's allows."""
    directory = view.analyser.directory
    out: list[dict[str, Any]] = []
    for principal in sample[:PATHS]:
        for subject in subjects:
            via = directory.path(principal, subject)
            if via is not None:
                out.append({"principal": principal, "via": list(via)})
                break
    return out


def _still_a_sample(
    view: PolicyView, subjects: tuple[str, ...], row: Mapping[str, Any], sample: list[str]
) -> bool:
    """Whether a stored finding's sample and paths are what a scan would write, but for order.

    Which principals a sample lists first, and so which get paths, follows the order in which
    a process's view numbered them (the order they arrived in, or a fresh load's), so processes
    may store the same sample differently; a scan leaves such a sample as it is.
    """
    stored: list[str] = row["excess_sample"]
    return sorted(stored) == sorted(sample) and row["paths"] == _sample_paths(
        view, subjects, stored
    )


def affected_by_resource(view: PolicyView, resource: str) -> list[str]:
    return datasets_covered(resource, view.datasets)


def affected_by_membership(views: Iterable[PolicyView], group: str) -> list[str]:
    """Datasets whose exposure may change with `group`'s members: those its grants reach, and
    those whose intended audience it is part of (joining or leaving it moves people in or out)."""
    found: dict[str, None] = {}
    for view in views:
        audiences = {id: facts.audience for id, facts in view.datasets.items()}
        found.update(
            dict.fromkeys(
                view.analyser.datasets_affected_by_membership(group, view.datasets, audiences)
            )
        )
    return sorted(found)


Plan = Mapping[str, Iterable[Rule]]  # dataset id -> the allow rules whose excess may change


def _merge(plans: Iterable[Plan]) -> dict[str, tuple[Rule, ...]]:
    merged: dict[str, dict[Rule, None]] = {}
    for plan in plans:
        for dataset, rules in plan.items():
            merged.setdefault(dataset, {}).update(dict.fromkeys(rules))
    return {dataset: tuple(rules) for dataset, rules in merged.items()}


@dataclass(frozen=True)
class _Excess:
    """Per grant id: (excess bits, count) where non-empty, and the grant's subjects."""

    bits: dict[int, tuple[int, int]]
    subjects: dict[int, tuple[str, ...]]


def _excess_of(
    view: PolicyView,
    dataset: str,
    rules: tuple[Rule, ...] | None,
    at: float,
    lasting: bool = False,
) -> _Excess:
    """The dataset's per-grant excess, for every reading action: for every live allow (`rules`
    None), or for `rules` only. `lasting`: not counting the denies that expire (worst case)."""
    analyser = view.analyser
    intended = analyser.intended_bits(view.datasets[dataset].audience)
    subjects: dict[int, tuple[str, ...]] = {}
    bits: dict[int, tuple[int, int]] = {}
    for action in ACTIONS:
        if rules is None:
            exposure = analyser.exposure(dataset, action, at, intended, lasting)
            for rule in exposure.allow_rules:
                subjects[int(rule.id)] = (*subjects.get(int(rule.id), ()), rule.sub)
            for rule_id, excess in exposure.by_grant.items():
                if excess:
                    bits[int(rule_id)] = (excess, exposure.excess_counts[rule_id])
        else:
            chosen = [rule for rule in rules if rule.act == action]
            if not chosen:
                continue
            for rule in chosen:
                subjects[int(rule.id)] = (*subjects.get(int(rule.id), ()), rule.sub)
            for rule_id, found in analyser.grant_excess_bits(
                chosen, dataset, action, at, intended, lasting
            ).items():
                if found.bits:
                    bits[int(rule_id)] = (found.bits, found.count)
    return _Excess(bits, subjects)


@dataclass
class _Outcome:
    opened: list[dict[str, Any]] = field(default_factory=list)
    resolved: list[dict[str, Any]] = field(default_factory=list)
    reopened: list[dict[str, Any]] = field(default_factory=list)
    accepted: list[dict[str, Any]] = field(default_factory=list)  # stored ones, widened
    updated: int = 0


def _alert(row: Mapping[str, Any], kind: AlertType) -> AlertEvent:
    verb = {
        AlertType.finding_opened: "opened",
        AlertType.finding_resolved: "resolved",
        AlertType.finding_accepted: "accepted",
        AlertType.finding_reopened: "reopened",
    }[kind]
    severity = str(row["severity"])
    return AlertEvent(
        type=kind,
        severity=severity,
        summary=f"{severity} finding {verb}: {row['principal']} (grant "
        f"{row['grant_id']}) lets {row['excess_count']} principals outside the audience read "
        f"{row['dataset']}",
        dataset=row["dataset"],
        finding_id=row["id"],
    )


def _accepting(row: dict[str, Any], accept: AcceptExposure, actor: str) -> None:
    row.update(
        status=FindingStatus.accepted.value,
        accepted_by=actor,
        reason=accept.reason,
        until=accept.until,
    )


async def _reconcile(
    session: AsyncSession,
    *,
    before: PolicyView,
    after: PolicyView,
    targets: Mapping[str, tuple[Rule, ...] | None],
    actor: str,
    accept: AcceptExposure | None,
    guarded: bool,
    at: float,
    every_dataset: bool = False,
    touched: int = 0,
    within: int = 0,
    repaths: frozenset[tuple[str, int]] = frozenset(),
) -> _Outcome:
    """Bring the findings of `targets` in line with `after`: for each dataset, those of the
    listed grants, or of every grant (None). Only what differs is written.

    A change (`before` is not `after`) trusts that the stored findings are `before`'s (what
    every mutation maintains and a scan verifies): a finding whose excess is the same in both
    is left alone, one whose sample is the same gets its count and severity only. `touched` are
    the leaves whose membership paths may have changed (their sampled paths are recomputed).
    A scan (`before` is `after`) compares everything with what is stored instead.
    """
    stamp = datetime.fromtimestamp(at, UTC)
    is_change = before is not after
    partial = {d: {int(r.id) for r in rules} for d, rules in targets.items() if rules is not None}
    if every_dataset:
        rows = await repository.active_rows(session, None)
    elif len(partial) < len(targets):  # some datasets whole
        rows = await repository.active_rows(session, list(targets), None, brief=is_change)
    else:
        pairs = [(d, g) for d, ids in partial.items() for g in ids]
        rows = await repository.active_pairs(session, pairs, brief=is_change)
    active: dict[tuple[str, int], dict[str, Any]] = {}
    for loaded in rows:
        key = (loaded["dataset"], loaded["grant_id"])
        if key[0] in targets and (key[0] not in partial or key[1] in partial[key[0]]):
            active[key] = loaded

    outcome = _Outcome()
    new_rows: list[dict[str, Any]] = []
    full_updates: list[dict[str, Any]] = []
    count_updates: list[dict[str, Any]] = []
    refused: list[FindingRead] = []
    sample_of = after.analyser.directory.sample
    if guarded and is_change and accept is None:
        # Before the cheap membership cases settle anything: the worst case over time.
        refused.extend(_widened_past_expiring_denies(before, after, targets, at))
    refused_keys = {(f.dataset, f.grant_id) for f in refused}
    reopened: list[dict[str, Any]] = []
    accepted: list[dict[str, Any]] = []
    restatused: list[dict[str, Any]] = []  # updated, and accepted or reopened
    if within and is_change:
        targets = await _settle_within(
            session,
            before=before,
            after=after,
            targets=targets,
            active=active,
            count_updates=count_updates,
            full_updates=full_updates,
            within=within,
            touched=touched,
            repaths=repaths,
            guarded=guarded,
            accept=accept,
            at=at,
        )
    for dataset_id, rules in targets.items():
        facts = after.datasets[dataset_id]
        now_excess = _excess_of(after, dataset_id, rules, at)
        previous: dict[int, tuple[int, int]] = {}
        if is_change and dataset_id in before.datasets:
            previous = _excess_of(before, dataset_id, rules, at).bits
        # Severity follows the sensitivity: a re-classified dataset rewrites its findings.
        is_reclassified = (
            dataset_id in before.datasets
            and before.datasets[dataset_id].sensitivity != facts.sensitivity
        )
        for grant_id, (bits, count) in now_excess.bits.items():
            row = active.pop((dataset_id, grant_id), None)
            before_bits, before_count = previous.get(grant_id, (0, 0))
            sample = sample_of(bits, SAMPLE, count)
            if (
                row is not None
                and is_change
                and bits == before_bits
                and not is_reclassified
                and not (touched and bits & touched and _any_in(after, sample, touched))
            ):
                continue  # nothing about this finding changed
            severity = severity_for(facts.sensitivity, count).value
            subjects = now_excess.subjects[grant_id]
            widened = is_change and bool(bits & ~before_bits)
            # An acceptance covers the exposure as it was: letting more in needs a new one.
            if guarded and widened and facts.guard == "block" and accept is None:
                if (dataset_id, grant_id) in refused_keys:
                    continue
                refused.append(
                    FindingRead.model_validate(
                        {
                            "id": row["id"] if row else None,
                            "dataset": dataset_id,
                            "grant_id": grant_id,
                            "principal": subjects[0],
                            "excess_count": count,
                            "excess_sample": sample,
                            "paths": _sample_paths(after, subjects, sample),
                            "severity": severity,
                            "status": FindingStatus.open.value,
                            "opened_at": None,
                        }
                    )
                )
                continue
            if row is None:
                row = {
                    "dataset": dataset_id,
                    "grant_id": grant_id,
                    "principal": after.grant_subjects.get(grant_id, subjects[0]),
                    "excess_count": count,
                    "excess_sample": sample,
                    "paths": _sample_paths(after, subjects, sample),
                    "severity": severity,
                    "status": FindingStatus.open.value,
                    "opened_at": stamp,
                    "updated_at": stamp,
                    "resolved_at": None,
                    "accepted_by": None,
                    "reason": None,
                    "until": None,
                }
                if accept is not None:
                    _accepting(row, accept, actor)
                new_rows.append(row)
                continue
            accepting = guarded and widened and accept is not None
            # An acceptance covers the exposure as it was: widened without a new one, the
            # finding is open again (whatever the guard).
            reopening = widened and not accepting and row["status"] == FindingStatus.accepted.value
            if is_change and before_bits and not accepting and not reopening:
                # Stored: before's sample and paths. Unless the sample moved, or a sampled
                # principal's paths may have, only the count (and severity) changed.
                before_sample = sample_of(before_bits, SAMPLE, before_count)
                if before_sample == sample and not (touched and _any_in(after, sample, touched)):
                    count_updates.append(_count_update(row, count, severity))
                    continue
            if (
                not is_change
                and row["excess_count"] == count
                and row["severity"] == severity
                and _still_a_sample(after, subjects, row, sample)
            ):
                continue
            paths = _sample_paths(after, subjects, sample)
            row.update(excess_count=count, excess_sample=sample, paths=paths, severity=severity)
            if accepting:
                _accepting(row, accept, actor)  # type: ignore[arg-type]
                accepted.append(row)
                restatused.append(row)
            elif reopening:
                row.update(status=FindingStatus.open.value)
                reopened.append(row)
                restatused.append(row)
            else:
                full_updates.append(row)
    if refused:
        raise ExposureRefused(
            f"this change would open or widen {len(refused)} finding(s) on block-guarded datasets "
            f"({', '.join(sorted({f.dataset for f in refused})[:5])}): principals outside the "
            "intended audience could read them. Narrow the change, or send accept_exposure "
            "{reason, until} to accept the exposure knowingly",
            findings=[f.model_dump(mode="json") for f in refused],
        )

    resolved = list(active.values())
    if is_change and (resolved or reopened or accepted):  # loaded brief: the answer needs all
        restated = (*resolved, *reopened, *accepted)
        stored = await repository.by_id(session, [row["id"] for row in restated])
        for row in restated:
            row.update({**stored[row["id"]], **row})
    # Stored grant by grant (ids follow the insertion order): a membership change rewrites
    # the findings of a few grants on many datasets, which then share pages instead of
    # touching a page each all over the table.
    ordered = sorted(new_rows, key=lambda row: (row["grant_id"], row["dataset"]))
    ids = await repository.insert_rows(session, ordered)
    for row, finding_id in zip(ordered, ids, strict=True):
        row["id"] = finding_id
    columns: tuple[str, ...] = ("id", *repository.RESAMPLED)
    await repository.update_rows(
        session, [{c: row[c] for c in columns} for row in full_updates], stamp
    )
    columns += ("status", "accepted_by", "reason", "until")
    await repository.update_rows(
        session, [{c: row[c] for c in columns} for row in restatused], stamp
    )
    await repository.update_counts(session, count_updates, stamp)
    await repository.resolve(session, [row["id"] for row in resolved], stamp)
    for row in resolved:
        row.update(status=FindingStatus.resolved.value, resolved_at=stamp, updated_at=stamp)
    outcome.opened, outcome.resolved, outcome.reopened = new_rows, resolved, reopened
    outcome.accepted = accepted
    outcome.updated = len(full_updates) + len(restatused) + len(count_updates)
    await alerts_service.emit(
        session,
        [
            _alert(
                row,
                AlertType.finding_accepted
                if row["status"] == FindingStatus.accepted
                else AlertType.finding_opened,
            )
            for row in new_rows
        ]
        + [_alert(row, AlertType.finding_reopened) for row in reopened]
        + [_alert(row, AlertType.finding_accepted) for row in accepted]
        + [_alert(row, AlertType.finding_resolved) for row in resolved],
        stamp,
    )
    return outcome


def _widened_past_expiring_denies(
    before: PolicyView,
    after: PolicyView,
    targets: Mapping[str, tuple[Rule, ...] | None],
    at: float,
) -> list[FindingRead]:
    """The would-be findings of a change on block-guarded datasets that widen access once the
    denies with an expiry are not counted.

    A deny that expires contains exposure only until then: an allow it hides now lets people
    in later (the sweeper then opens the finding), so the guard judges the worst case over time.
    Stored findings stay those of the policy as it is now.
    """
    found: list[FindingRead] = []
    for dataset_id, rules in targets.items():
        facts = after.datasets[dataset_id]
        if facts.guard != "block":
            continue
        views = [after] + ([before] if dataset_id in before.datasets else [])
        if not any(
            view.analyser.has_expiring_deny(dataset_id, action, at)
            for view in views
            for action in ACTIONS
        ):
            continue  # the worst case is the present: the usual test judges it
        worst = _excess_of(after, dataset_id, rules, at, lasting=True)
        was: dict[int, tuple[int, int]] = {}
        if dataset_id in before.datasets:
            was = _excess_of(before, dataset_id, rules, at, lasting=True).bits
        for grant_id, (bits, count) in worst.bits.items():
            if not bits & ~was.get(grant_id, (0, 0))[0]:
                continue
            subjects = worst.subjects[grant_id]
            sample = after.analyser.directory.sample(bits, SAMPLE, count)
            found.append(
                FindingRead.model_validate(
                    {
                        "id": None,
                        "dataset": dataset_id,
                        "grant_id": grant_id,
                        "principal": subjects[0],
                        "excess_count": count,
                        "excess_sample": sample,
                        "paths": _sample_paths(after, subjects, sample),
                        "severity": severity_for(facts.sensitivity, count).value,
                        "status": FindingStatus.open.value,
                        "opened_at": None,
                    }
                )
            )
    return found


async def _settle_within(
    session: AsyncSession,
    *,
    before: PolicyView,
    after: PolicyView,
    targets: Mapping[str, tuple[Rule, ...] | None],
    active: dict[tuple[str, int], dict[str, Any]],
    count_updates: list[dict[str, Any]],
    full_updates: list[dict[str, Any]],
    within: int,
    touched: int,
    repaths: frozenset[tuple[str, int]],
    guarded: bool,
    accept: AcceptExposure | None,
    at: float,
) -> dict[str, tuple[Rule, ...] | None]:
    """A membership change's stored findings that stay open, from the leaves that moved
    (`within`) and the stored samples, without analysing the excess before the change.

    Outside `within` a finding's excess is the same before and after, so its new count is the
    stored one plus the leaves that came minus those that went. Its stored sample is the 20
    highest leaves of the excess before (all of it when there were at most 20); the new sample
    is the 20 highest of that sample without the leaves that went, plus those that came, and
    when a sampled leaf went from a larger excess, the next highest below the stored sample
    (`Directory.highest_outside`; the excess after the change when they are sparse). Paths
    are redone where the sample changed or names a leaf of `touched` (`repaths`: findings whose
    paths may have moved though their excess did not).
    These are settled here (taken off `active`, rows added to `count_updates` or
    `full_updates`); what is left of `targets` is returned for the full computation (new,
    resolved, refused, accepted or reopened findings).
    """
    directory = after.analyser.directory
    # (dataset, rule, stored row, new count, leaves that came or went, leaves that came), the
    # leaves relative to `moved_leaves`
    candidates: list[tuple[str, Rule, dict[str, Any], int, int, int]] = []
    settled: dict[str, set[int]] = {}
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
                del active[(dataset_id, grant_id)]
                settled.setdefault(dataset_id, set()).add(grant_id)
                continue
            count = row["excess_count"] + now_in.bit_count() - then_in.bit_count()
            widened = bool(now_in & ~then_in)
            if (
                count <= 0
                or (guarded and widened and (facts.guard == "block" or accept))
                or (widened and row["status"] == FindingStatus.accepted.value)
            ):
                continue  # resolved, refused, accepted or reopened: computed fully
            flipped, gained = now_in ^ then_in, now_in & ~then_in
            candidates.append((dataset_id, by_id[rule_id], row, count, flipped, gained))
    moved = frozenset(directory.names(touched))
    # leaves that came -> their numbers and names; leaves that went -> their names
    newcomers: dict[int, dict[int, str]] = {}
    leavers: dict[int, frozenset[str]] = {}
    drawn: list[tuple[str, Rule, dict[str, Any], int, list[str], list[str]]] = []
    analyser = after.analyser
    blockers: dict[tuple[str, str], frozenset[str]] = {}  # (dataset, action) -> see there
    for dataset_id, rule, row, count, flipped, gained in candidates:
        stored = row["excess_sample"]
        if len(stored) != min(SAMPLE, row["excess_count"]):
            continue  # not the sample this process would have drawn: computed fully
        lost = flipped & ~gained
        if lost not in leavers:
            leavers[lost] = frozenset(directory.names_of(moved_leaves.numbers(lost)))
        if gained not in newcomers:
            came = moved_leaves.numbers(gained)
            newcomers[gained] = dict(zip(came, directory.names_of(came), strict=True))
        gone, arrivals = leavers[lost], newcomers[gained]
        if len(stored) == SAMPLE and gone.isdisjoint(stored):
            # The sample is highest first: it stays unless a newcomer outranks its last.
            lowest = directory.leaf_number(stored[-1])
            if lowest is not None and (not arrivals or max(arrivals) < lowest):
                drawn.append((dataset_id, rule, row, count, stored, stored))
                continue
        numbered = dict(zip(directory.leaf_numbers(stored), stored, strict=True))
        if None in numbered:
            continue  # not the sample this process would have drawn: computed fully
        kept = {n: name for n, name in numbered.items() if n is not None and name not in gone}
        if len(kept) == len(stored) or row["excess_count"] <= SAMPLE:
            kept.update(arrivals)
        elif (dataset_id, rule.id) in shared_ids:
            continue  # the grant's excess is that of several rules: computed fully
        else:  # the rest of the sample lies below the lowest stored leaf
            lowest = min(n for n in numbered if n is not None)
            kept.update((n, name) for n, name in arrivals.items() if n > lowest)
            need = min(SAMPLE, count) - len(kept)
            if need > 0:
                key = (dataset_id, rule.act)
                if key not in blockers:
                    audience = after.datasets[dataset_id].audience
                    blockers[key] = analyser.blockers(dataset_id, rule.act, at, audience)
                below = directory.highest_outside(rule.sub, lowest, need, blockers[key])
                if below is None or len(below) < need:
                    continue  # sparse there: computed fully
                kept.update(zip(below, directory.names_of(below), strict=True))
        sample = [kept[n] for n in sorted(kept, reverse=True)[:SAMPLE]]
        drawn.append((dataset_id, rule, row, count, stored, sample))
    for dataset_id, rule, row, count, stored, sample in drawn:
        severity = severity_for(after.datasets[dataset_id].sensitivity, count).value
        if sample == stored and moved.isdisjoint(stored):
            count_updates.append(_count_update(row, count, severity))
        else:  # a new sample, or a sampled principal whose path may have moved
            row.update(
                excess_count=count,
                excess_sample=sample,
                paths=_sample_paths(after, (rule.sub,), sample),
                severity=severity,
            )
            full_updates.append(row)
        del active[(dataset_id, int(rule.id))]
        settled.setdefault(dataset_id, set()).add(int(rule.id))
    left: dict[str, tuple[Rule, ...] | None] = {}
    for dataset_id, rules in targets.items():
        done = settled.get(dataset_id)
        if rules is not None and done:
            rules = tuple(r for r in rules if int(r.id) not in done)
            if not rules:
                continue
        left[dataset_id] = rules
    return left


def _count_update(row: Mapping[str, Any], count: int, severity: str) -> dict[str, Any]:
    """The row for `repository.update_counts`: the severity only where it changes (an indexed
    column: writing it costs as much as the count)."""
    if row["severity"] == severity:
        return {"id": row["id"], "excess_count": count}
    return {"id": row["id"], "excess_count": count, "severity": severity}


def _any_in(view: PolicyView, principals: list[str], bits: int) -> bool:
    return bool(view.analyser.directory.bits_of(principals) & bits)


async def reconcile(
    session: AsyncSession,
    *,
    before: PolicyView,
    after: PolicyView,
    dataset_ids: Iterable[str] = (),
    actor: str,
    accept: AcceptExposure | None = None,
    guarded: bool = True,
    now: float | None = None,
    plan: Plan | None = None,
    touched: int = 0,
    within: int = 0,
    repaths: Iterable[tuple[str, int]] = (),
) -> FindingChanges:
    """Bring the findings of ``dataset_ids`` (every grant on them) and of ``plan`` (only the
    listed grants: a `Reanalysis`' ``grants``) in line with ``after``.

    ``before`` must be the committed state ``after`` was derived from (same leaf numbering), so
    a finding that gains principals is recognised as widened.
    """
    at = time.time() if now is None else now
    targets: dict[str, tuple[Rule, ...] | None] = {}
    if plan is not None:
        targets.update(_merge([plan]))
    targets.update(dict.fromkeys(dataset_ids))
    targets = {d: rules for d, rules in sorted(targets.items()) if d in after.datasets}
    outcome = await _reconcile(
        session,
        before=before,
        after=after,
        targets=targets,
        actor=actor,
        accept=accept,
        guarded=guarded,
        at=at,
        touched=touched,
        within=within,
        repaths=frozenset(repaths),
    )
    return _changes(outcome)


def _changes(outcome: _Outcome) -> FindingChanges:
    """Opened: new findings, and stored ones the change widened (open again, or accepted
    anew by the change's own acceptance)."""
    return FindingChanges(
        findings_opened=[
            FindingRead.model_validate(row)
            for row in (*outcome.opened, *outcome.reopened, *outcome.accepted)
        ],
        findings_resolved=[FindingRead.model_validate(row) for row in outcome.resolved],
    )


def finding_alert(finding: FindingRead, kind: AlertType) -> AlertEvent:
    return _alert(
        {
            "severity": finding.severity.value,
            "principal": finding.principal,
            "grant_id": finding.grant_id,
            "excess_count": finding.excess_count,
            "dataset": finding.dataset,
            "id": finding.id,
        },
        kind,
    )


async def accept_finding(
    session: AsyncSession, *, finding_id: int, body: AcceptExposure, actor: str
) -> FindingRead:
    # After any policy change re-analysing this finding has committed, and before the next:
    # otherwise a revoke resolving it meanwhile would be overwritten by this acceptance.
    await policy_version.hold(session)
    finding = await repository.get(session, finding_id)
    if finding is None:
        raise NotFound(f"finding {finding_id} does not exist")
    if finding.status == FindingStatus.resolved:
        raise Conflict(f"finding {finding_id} is resolved; there is nothing to accept")
    finding.status = FindingStatus.accepted.value
    finding.accepted_by, finding.reason, finding.until = actor, body.reason, body.until
    finding.updated_at = utcnow()
    await session.flush()
    accepted = to_read(finding)
    await alerts_service.emit(session, [finding_alert(accepted, AlertType.finding_accepted)])
    return accepted


async def reopen_expired_acceptances(session: AsyncSession) -> list[FindingRead]:
    """Accepted findings whose ``until`` has passed are open again."""
    now = utcnow()
    reopened = list(await repository.lapsed_acceptances(session, now))
    for finding in reopened:
        finding.status = FindingStatus.open.value
        finding.updated_at = now
    await session.flush()
    reads = [to_read(f) for f in reopened]
    await alerts_service.emit(
        session, [finding_alert(f, AlertType.finding_reopened) for f in reads]
    )
    return reads


@dataclass(frozen=True)
class TimeEvents:
    """What the passage of time changed: recorded expiries, reopened acceptances, findings."""

    expired_grants: list[int]
    reopened: list[FindingRead]
    changes: FindingChanges


async def record_time_events(session: AsyncSession, *, actor: str) -> TimeEvents:
    """Record grants whose ``expires_at`` passed and reopen acceptances whose ``until`` passed.

    Runs under the policy write lock, so concurrent sweepers (and policy writers) take turns
    and each event is recorded once. An expired grant already never allows; here it becomes a
    ``grant.expired`` alert and the datasets it covered are re-analysed, which resolves the
    findings it caused.
    """
    view = await view_before_change(session)
    stamp = utcnow()
    reopened = await reopen_expired_acceptances(session)
    lapsed = await policy_repository.list_lapsed(session, stamp)
    touched: dict[str, None] = {}
    events = []
    for grant in lapsed:
        grant.expired_at = stamp
        covered = affected_by_resource(view, grant.resource)
        touched.update(dict.fromkeys(covered))
        events.append(
            AlertEvent(
                type=AlertType.grant_expired,
                severity="low",
                summary=f"grant {grant.id} ({grant.effect} {grant.principal} {grant.action} "
                f"{grant.resource}) expired at {grant.expires_at:%Y-%m-%dT%H:%M:%SZ}",
                dataset=covered[0] if len(covered) == 1 else None,
            )
        )
    await session.flush()
    await alerts_service.emit(session, events, stamp)
    changes = await reconcile(
        session,
        before=view,
        after=view,
        dataset_ids=touched,
        actor=actor,
        guarded=False,
        now=stamp.timestamp(),
    )
    publish_on_commit(session, view)
    return TimeEvents([g.id for g in lapsed], reopened, changes)


async def scan(session: AsyncSession, *, actor: str) -> ScanResult:
    """Full re-analysis of every dataset (also expires lapsed acceptances).

    Recomputes every finding from the committed policy; writes only those that differ, so
    ``opened``, ``resolved`` and ``updated`` are all 0 when the incremental re-analyses of the
    mutations left the findings exactly as a full scan would.
    """
    started = time.perf_counter()
    # The policy lock first, as every writer of findings takes it: reopening rows before it
    # deadlocked with a policy change resolving the same findings.
    view = await view_before_change(session)
    await reopen_expired_acceptances(session)
    outcome = await _reconcile(
        session,
        before=view,
        after=view,
        targets=dict.fromkeys(sorted(view.datasets)),
        actor=actor,
        accept=None,
        guarded=False,
        at=time.time(),
        every_dataset=True,
    )
    publish_on_commit(session, view)
    return ScanResult(
        datasets=len(view.datasets),
        opened=len(outcome.opened),
        resolved=len(outcome.resolved),
        updated=outcome.updated,
        open_findings=await repository.count_open(session),
        duration_ms=round((time.perf_counter() - started) * 1000, 1),
    )


async def simulate(session: AsyncSession, *, body: SimulateRequest) -> SimulateResult:
    """What adding and removing grants would open and resolve. Changes nothing."""
    before = await current_view(session)
    after = before.changed()
    touched: set[str] = set()
    accepted: dict[int, AcceptExposure] = {}  # proposed id -> its accept_exposure
    now = utcnow()
    pacer = Pacer()  # seconds of work for a large proposal: checks must not wait for it
    for index, proposal in enumerate(body.add):
        await pacer.pause()
        proposed_id = -(index + 1)
        if proposal.expires_at is not None and proposal.expires_at <= now:
            raise InvalidInput(f"body.add.{index}.expires_at", "must be in the future")
        if proposal.accept_exposure is not None:
            accepted[proposed_id] = proposal.accept_exposure
        grant = GrantRead(
            id=proposed_id,
            principal=proposal.principal,
            resource=proposal.resource,
            action=proposal.action,
            effect=proposal.effect,
            expires_at=proposal.expires_at,
            justification=None,
            created_by="simulate",
            created_at=utcnow(),
            revoked_at=None,
            revoked_by=None,
            status=GrantStatus.active,
        )
        after.analyser.add_rule(to_rule(grant))
        after.grant_subjects[proposed_id] = proposal.principal
        touched.update(affected_by_resource(after, proposal.resource))
    for position, grant_id in enumerate(body.remove):
        row = await policy_repository.get(session, grant_id)
        if row is None or row.revoked_at is not None:
            raise InvalidInput(f"body.remove.{position}", f"grant {grant_id} is not active")
        after.analyser.remove_rule(to_rule(row))
        touched.update(affected_by_resource(after, row.resource))
    at = time.time()
    ids = sorted(touched)
    active = {(f.dataset, f.grant_id): f for f in await repository.active_for(session, ids)}
    would_open: list[FindingRead] = []
    would_refuse: dict[tuple[str, int], FindingRead] = {}
    still: set[tuple[str, int]] = set()
    for dataset_id in ids:
        facts = after.datasets[dataset_id]
        by_grant = _by_grant(after, dataset_id, at)
        was = _by_grant(before, dataset_id, at) if dataset_id in before.datasets else {}
        for rule_id, bits in by_grant.items():
            if not bits:
                continue
            await pacer.pause()
            key = (dataset_id, int(rule_id))
            still.add(key)
            widened = bool(bits & ~was.get(rule_id, 0))
            if key in active and not (widened and facts.guard == "block"):
                continue
            sample = after.analyser.directory.sample(bits, SAMPLE)
            count = bits.bit_count()
            finding = FindingRead(
                id=active[key].id if key in active else None,
                dataset=dataset_id,
                grant_id=key[1] if key[1] > 0 else None,
                principal=after.grant_subjects.get(key[1], ""),
                excess_count=count,
                excess_sample=sample,
                paths=_paths(after, dataset_id, key[1], sample, at),
                severity=severity_for(facts.sensitivity, count),
                status=FindingStatus.open,
                opened_at=None,
            )
            acceptance = accepted.get(key[1])
            if acceptance is not None:
                finding = finding.model_copy(
                    update={
                        "status": FindingStatus.accepted,
                        "reason": acceptance.reason,
                        "until": acceptance.until,
                    }
                )
            if key not in active:
                would_open.append(finding)
            if widened and facts.guard == "block" and acceptance is None:
                would_refuse[key] = finding
    for finding in _widened_past_expiring_denies(before, after, dict.fromkeys(ids), at):
        if (finding.grant_id or 0) in accepted:
            continue
        proposed = (finding.grant_id or 0) < 0  # proposals have no id yet
        would_refuse.setdefault(
            (finding.dataset, finding.grant_id or 0),
            finding.model_copy(update={"grant_id": None}) if proposed else finding,
        )
    would_resolve = [to_read(f) for key, f in sorted(active.items()) if key not in still]
    return SimulateResult(
        would_open=would_open,
        would_resolve=would_resolve,
        would_refuse=[would_refuse[key] for key in sorted(would_refuse)],
    )


def _by_grant(view: PolicyView, dataset_id: str, at: float) -> dict[str, int]:
    """Each allow rule's excess on the dataset, over every action that reads."""
    facts = view.datasets[dataset_id]
    intended = view.analyser.intended_bits(facts.audience)
    return {
        rule_id: bits
        for action in ACTIONS
        for rule_id, bits in view.analyser.exposure(
            dataset_id, action, at, intended
        ).by_grant.items()
    }


# -- reads ---------------------------------------------------------------------------------------


async def get_finding(session: AsyncSession, finding_id: int) -> FindingRead:
    finding = await repository.get(session, finding_id)
    if finding is None:
        raise NotFound(f"finding {finding_id} does not exist")
    return to_read(finding)


async def list_findings(
    session: AsyncSession,
    *,
    status: str | None,
    severity: str | None,
    dataset: str | None,
    after_id: int | None,
    limit: int,
) -> tuple[list[FindingRead], str | None]:
    rows = await repository.list_page(
        session,
        status=status,
        severity=severity,
        dataset=dataset,
        after_id=after_id,
        limit=limit + 1,
    )
    page = [to_read(f) for f in rows[:limit]]
    return page, (str(page[-1].id) if len(rows) > limit and page[-1].id else None)


async def dataset_exposure(
    session: AsyncSession, *, dataset_id: str, after: str | None, limit: int
) -> ExposureRead:
    """Who could read it beyond its audience (a page), and how many such reads were recorded.

    For the action `read`, as the contract defines it; findings also cover `export` grants."""
    view = await current_view(session)
    facts = view.datasets.get(dataset_id)
    if facts is None:
        raise NotFound(f"dataset {dataset_id} is not registered")
    at = time.time()
    analyser = view.analyser
    intended = analyser.intended_bits(facts.audience)
    exposure = analyser.exposure(dataset_id, READ, at, intended)
    excess = sorted(analyser.directory.names(exposure.excess))
    start = 0 if after is None else bisect_right(excess, after)
    page = excess[start : start + limit]
    items = []
    for principal in page:
        reach = analyser.paths_for(principal, dataset_id, READ, at)
        rule, via = min(reach, key=lambda r: len(r[1]))
        items.append(ExcessPrincipal(principal=principal, grant_id=int(rule.id), via=list(via)))
    return ExposureRead(
        dataset=dataset_id,
        sensitivity=facts.sensitivity,
        guard=facts.guard,
        intended_count=intended.bit_count(),
        effective_count=exposure.effective_count,
        excess_count=exposure.excess_count,
        items=items,
        next_cursor=page[-1] if start + limit < len(excess) and page else None,
        out_of_audience_reads=await repository.out_of_audience_reads(session, dataset_id),
    )
