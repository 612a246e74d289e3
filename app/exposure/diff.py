"""The findings diff: what a change (or a scan) does to the stored findings.

A pure function of the policy before and after (`PolicyView`s), the stored active findings,
the change's acceptance, whether the block guard applies, and the instant: no session, no I/O.
Grants, memberships, datasets, plans, the sweeper and scans write its `FindingDiff`
(`app.exposure.reconcile`); `simulate` reports it.

A change (`before` is not `after`) trusts that the stored findings are `before`'s (what every
change maintains and a scan verifies): a finding whose excess is the same in both is left alone,
one whose sample is the same gets its count and severity only. A scan (`before` is `after`)
compares everything with what is stored instead.
"""

from collections.abc import Generator, Mapping
from dataclasses import dataclass, field, replace

from app.exposure.measure import (
    ACTIONS,
    SAMPLE,
    Acceptance,
    Key,
    Opened,
    Recounted,
    Refused,
    Rewritten,
    StoredFinding,
    excess_of,
    measure,
    recount,
    sample_paths,
    severity_for,
)
from app.exposure.schemas import FindingStatus
from app.exposure.view import PolicyView
from app.exposure.within import Targets, settle_within


@dataclass(frozen=True)
class Accepting:
    """The exposure a change accepts knowingly: all it widens (`every`, the change's
    `accept_exposure`), or the findings of some grants each (`by_grant`: simulate's proposals)."""

    every: Acceptance | None = None
    by_grant: Mapping[int, Acceptance] = field(default_factory=dict)

    def of(self, grant_id: int, guard: str) -> Acceptance | None:
        """The acceptance of a grant's findings on a dataset of `guard`: on `block` only an
        approved one."""
        found = self.by_grant.get(grant_id, self.every)
        if found is not None and guard == "block" and not found.is_approved:
            return None
        return found

    @property
    def is_unapproved(self) -> bool:
        """An acceptance was given that does not count on `block` datasets."""
        return any(not a.is_approved for a in (self.every, *self.by_grant.values()) if a)


@dataclass(frozen=True)
class FindingDiff:
    """What a change does to the findings. A diff that refuses anything is not written: its
    `opened` then lists what would open (the refused new findings too)."""

    opened: tuple[Opened, ...] = ()
    rewritten: tuple[Rewritten, ...] = ()  # status unchanged
    recounted: tuple[Recounted, ...] = ()
    reopened: tuple[Rewritten, ...] = ()
    accepted: tuple[Rewritten, ...] = ()  # stored ones, widened, accepted by the change
    resolved: tuple[StoredFinding, ...] = ()
    refused_now: tuple[Refused, ...] = ()  # widened as the policy stands
    refused_later: tuple[Refused, ...] = ()  # widened once the denies that expire have

    @property
    def refused(self) -> tuple[Refused, ...]:
        """Every refusal, once per finding: the worst case over time first."""
        later = {r.key for r in self.refused_later}
        return (*self.refused_later, *(r for r in self.refused_now if r.key not in later))

    @property
    def updated(self) -> int:
        """Stored findings still active that change."""
        return len(self.rewritten) + len(self.recounted) + len(self.reopened) + len(self.accepted)


def _still_a_sample(
    view: PolicyView, subjects: tuple[str, ...], row: StoredFinding, sample: list[str]
) -> bool:
    """Whether a stored finding's sample and paths are what a scan would write, but for order.

    Which principals a sample lists first, and so which get paths, follows the order in which
    a process's view numbered them (the order they arrived in, or a fresh load's), so processes
    may store the same sample differently; a scan leaves such a sample as it is.
    """
    stored = row.excess_sample
    return sorted(stored) == sorted(sample) and row.paths == sample_paths(view, subjects, stored)


def widened_past_expiring_denies(
    before: PolicyView, after: PolicyView, targets: Targets, at: float
) -> list[Refused]:
    """The would-be findings of a change on block-guarded datasets that widen access once the
    denies with an expiry are not counted.

    A deny that expires contains exposure only until then: an allow it hides now lets people
    in later (the sweeper then opens the finding), so the guard judges the worst case over time.
    Stored findings stay those of the policy as it is now.
    """
    found: list[Refused] = []
    for dataset_id, rules in targets.items():
        if after.datasets[dataset_id].guard != "block":
            continue
        views = [after] + ([before] if dataset_id in before.datasets else [])
        if not any(
            view.analyser.has_expiring_deny(dataset_id, action, at)
            for view in views
            for action in ACTIONS
        ):
            continue  # the worst case is the present: the usual test judges it
        worst = excess_of(after, dataset_id, rules, at, lasting=True)
        was: dict[int, tuple[int, int]] = {}
        if dataset_id in before.datasets:
            was = excess_of(before, dataset_id, rules, at, lasting=True).bits
        for grant_id, (bits, count) in worst.bits.items():
            if not bits & ~was.get(grant_id, (0, 0))[0]:
                continue
            sample = after.analyser.directory.sample(bits, SAMPLE, count)
            subjects = worst.subjects[grant_id]
            found.append(
                Refused(None, measure(after, dataset_id, grant_id, subjects, sample, count))
            )
    return found


@dataclass
class _Lists:
    """The diff as it is built, dataset by dataset."""

    opened: list[Opened] = field(default_factory=list)
    rewritten: list[Rewritten] = field(default_factory=list)
    recounted: list[Recounted] = field(default_factory=list)
    reopened: list[Rewritten] = field(default_factory=list)
    accepted: list[Rewritten] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)


def diff(
    before: PolicyView,
    after: PolicyView,
    targets: Targets,
    stored: Mapping[Key, StoredFinding],
    *,
    accepting: Accepting,
    guarded: bool,
    at: float,
    touched: int = 0,
    within: int = 0,
    repaths: frozenset[Key] = frozenset(),
) -> Generator[None, None, FindingDiff]:
    """Bring the findings of `targets` in line with `after`: for each dataset, those of the
    listed grants, or of every grant (None). Only what differs is in the diff.

    `stored`: the active findings (at least those of `targets`). `touched` are the leaves whose
    membership paths may have changed (their sampled paths are recomputed); `within`, the
    leaves that moved in a membership change, lets most stored findings be settled from their
    stored count and sample (`settle_within`); `repaths`, findings whose paths may have moved
    though their excess did not. `guarded`: on block-guarded datasets, what opens or widens
    without an acceptance (`accepting`) is refused; an acceptance covers the exposure as it
    was, so a widened finding is accepted anew by the change's, or else open again.

    A generator that pauses (yields) before each dataset and each grant with an excess,
    so that a caller sharing the event loop with checks can let them run (`simulate`); its
    return value is the diff (`Stepped`; `run_through` when nothing else should run).
    """
    is_change = before is not after
    partial = {d: {int(r.id) for r in rules} for d, rules in targets.items() if rules is not None}
    active = {
        key: row
        for key, row in stored.items()
        if key[0] in targets and (key[0] not in partial or key[1] in partial[key[0]])
    }
    out = _Lists()
    sample_of = after.analyser.directory.sample
    later: list[Refused] = []
    if guarded and is_change and (accepting.every is None or not accepting.every.is_approved):
        # Before the cheap membership cases settle anything: the worst case over time.
        later = widened_past_expiring_denies(before, after, targets, at)
        later = [r for r in later if accepting.of(r.measured.grant_id, "block") is None]
    if within and is_change:
        settled = settle_within(
            before,
            after,
            targets,
            active,
            within=within,
            touched=touched,
            repaths=repaths,
            guarded=guarded,
            is_accepting=accepting.every is not None,
            at=at,
        )
        for key in settled.keys:
            del active[key]
        out.recounted.extend(settled.recounted)
        out.rewritten.extend(settled.rewritten)
        targets = settled.left
    for dataset_id, rules in targets.items():
        yield
        facts = after.datasets[dataset_id]
        now_excess = excess_of(after, dataset_id, rules, at)
        previous: dict[int, tuple[int, int]] = {}
        if is_change and dataset_id in before.datasets:
            previous = excess_of(before, dataset_id, rules, at).bits
        # Severity follows the sensitivity: a re-classified dataset rewrites its findings.
        is_reclassified = (
            dataset_id in before.datasets
            and before.datasets[dataset_id].sensitivity != facts.sensitivity
        )
        for grant_id, (bits, count) in now_excess.bits.items():
            yield
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
            acceptance = accepting.of(grant_id, facts.guard)
            # An acceptance covers the exposure as it was: letting more in needs a new one.
            is_refused = guarded and widened and facts.guard == "block" and acceptance is None
            if is_refused:
                measured = measure(after, dataset_id, grant_id, subjects, sample, count)
                out.refused.append(Refused(row.id if row else None, measured))
            if row is None:
                principal = after.grant_subjects.get(grant_id, subjects[0])
                if is_refused:  # measured above
                    measured = replace(measured, principal=principal)
                else:
                    measured = measure(
                        after, dataset_id, grant_id, subjects, sample, count, principal
                    )
                out.opened.append(Opened(measured, acceptance))
                continue
            if is_refused:
                continue
            is_accepting = guarded and widened and acceptance is not None
            # An acceptance covers the exposure as it was: widened without a new one, the
            # finding is open again (whatever the guard).
            reopening = widened and not is_accepting and row.status == FindingStatus.accepted.value
            if is_change and before_bits and not is_accepting and not reopening:
                # Stored: before's sample and paths. Unless the sample moved, or a sampled
                # principal's paths may have, only the count (and severity) changed.
                before_sample = sample_of(before_bits, SAMPLE, before_count)
                if before_sample == sample and not (touched and _any_in(after, sample, touched)):
                    out.recounted.append(recount(row, count, severity))
                    continue
            if (
                not is_change
                and row.excess_count == count
                and row.severity == severity
                and _still_a_sample(after, subjects, row, sample)
            ):
                continue
            # The stored finding keeps its subject; only what a finding measures is rewritten.
            measured = measure(after, dataset_id, grant_id, subjects, sample, count)
            if is_accepting:
                accepted = Rewritten(row.id, measured, FindingStatus.accepted, acceptance)
                out.accepted.append(accepted)
            elif reopening:
                out.reopened.append(Rewritten(row.id, measured, FindingStatus.open))
            else:
                out.rewritten.append(Rewritten(row.id, measured))
    return FindingDiff(
        opened=tuple(out.opened),
        rewritten=tuple(out.rewritten),
        recounted=tuple(out.recounted),
        reopened=tuple(out.reopened),
        accepted=tuple(out.accepted),
        resolved=tuple(active.values()),
        refused_now=tuple(out.refused),
        refused_later=tuple(later),
    )


def _any_in(view: PolicyView, principals: list[str], bits: int) -> bool:
    return bool(view.analyser.directory.bits_of(principals) & bits)


class Stepped:
    """A `diffing` to iterate (pausing between its steps as the caller likes); `result` once
    the iteration ends."""

    def __init__(self, steps: Generator[None, None, FindingDiff]) -> None:
        self._steps = steps
        self._result: FindingDiff | None = None

    def __iter__(self) -> Generator[None, None, None]:
        self._result = yield from self._steps

    @property
    def result(self) -> FindingDiff:
        assert self._result is not None, "iterate the steps first"
        return self._result


def run_through(steps: Generator[None, None, FindingDiff]) -> FindingDiff:
    """A diff's steps at once: the diff."""
    stepped = Stepped(steps)
    for _ in stepped:
        pass
    return stepped.result
