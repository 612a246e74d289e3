"""The exposure windows of a period, by walking the policy's history forward: no I/O.

`walk` starts from the analyser of the policy at the period's start (one rebuild from the
history) and replays every change recorded up to its end on that one analyser, in version
order (the analyser's `add_link`/`remove_link`/`add_rule`/`remove_rule` invalidate only what
they touch). After each version, only the datasets the version touched are measured again:

* a grant or hold for ``read`` whose resource covers the dataset, or the dataset's own facts
  (its intended audience);
* a membership ``(member, group)`` where `group` reaches (within Casbin's depth) the subject
  of a read rule covering the dataset, or an entry of its audience: only those subjects'
  member sets can change (`ExposureAnalyser.datasets_affected_by_membership`'s reasoning).

A grant's (or a deny's) expiry changes exposure without a version: each expiry in the period
is a step of its own, measured at that instant.

Complexity, for C changes in the period, R of them relevant to a dataset and P principals: one
rebuild at the start (O(policy size), as one `at=`), then O(C) link/rule updates, each costing
the ancestors of the changed group (memoised) plus, for a link, forgetting the searches below
its member (one node for a user); and O(R) measurements, each a union of the covering allows'
leaf bitsets (O(P / 64) machine words per covering grant, the group member sets recomputed only
where a change invalidated them). So a report is one rebuild plus time linear in the changes,
not one rebuild per version.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app.exposure.analyser import ExposureAnalyser, is_leaf
from app.identifiers import pattern_covers
from app.policy import holds
from app.policy.casbin_model import ALLOW, ANY_PURPOSE, DENY, Rule, is_live

READ = "read"


@dataclass(frozen=True)
class Change:
    """One history row opened (`opened`) or closed by a version: `kind` grant (item: its
    rule), membership ((member, group)), dataset ((id, audience)) or hold ((id, principal,
    dataset)); `by` who made it, where the history knows."""

    kind: str
    opened: bool
    item: Any
    by: str | None


Changes = Mapping[int, list[Change]]  # version -> its changes, closings first


@dataclass(frozen=True)
class Step:
    """Where a dataset's exposure may have moved: a version (with the dataset's changes in
    it) or a grant's expiry (`expired`, no version)."""

    at: datetime
    version: int | None
    by: str | None
    changes: tuple[Change, ...] = ()
    expired: int | None = None


@dataclass
class Window:
    """A span in which the dataset was readable beyond its audience (`end` None: still open at
    the period's end; `from_start`: already open when the period began)."""

    start: datetime
    opened: Step | None
    peak: int
    peak_at: datetime
    end: datetime | None = None
    closed: Step | None = None

    @property
    def from_start(self) -> bool:
        return self.opened is None


@dataclass
class Timeline:
    """One dataset over the period: its windows and who was beyond its audience when, and its
    sets (bits of the analyser's `Directory` leaves) at the last measurement."""

    dataset: str
    audience: tuple[str, ...] | None  # None: not registered (at that moment)
    windows: list[Window] = field(default_factory=list)
    peak: int = 0
    peak_at: datetime | None = None
    first_exposed: dict[str, datetime] = field(default_factory=dict)  # principal -> instant
    seen: int = 0  # every leaf ever in the excess
    effective: int = 0
    intended: int = 0
    excess: int = 0
    excess_count: int = 0
    measurements: int = 0
    excess_names: frozenset[str] = frozenset()  # the excess at `until`, by name
    _subjects: frozenset[str] | None = None

    @property
    def effective_count(self) -> int:
        return self.effective.bit_count()

    @property
    def intended_count(self) -> int:
        return self.intended.bit_count()

    def subjects(self, analyser: ExposureAnalyser) -> frozenset[str]:
        """The principals whose member sets the dataset's exposure depends on."""
        if self._subjects is None:
            rules = analyser.rules_covering(self.dataset, READ)
            self._subjects = frozenset([*(r.sub for r in rules), *(self.audience or ())])
        return self._subjects

    def forget_subjects(self) -> None:
        self._subjects = None


@dataclass
class _Touched:
    """What a version changed for one dataset: its changes, and whether only the memberships
    of leaves (`leaves`) moved (then only their bits are recomputed) or more (`full`)."""

    changes: list[Change] = field(default_factory=list)
    leaves: set[str] = field(default_factory=set)
    full: bool = False


def _touches_rule(rule: Rule, dataset: str) -> bool:
    return rule.act == READ and rule.eft in (ALLOW, DENY) and pattern_covers(rule.obj, dataset)


def _rules(change: Change) -> list[Rule]:
    if change.kind == "grant":
        return list(change.item)  # one rule per purpose
    if change.kind == "hold":
        return list(holds.hold_rules(*change.item))
    return []


def _apply(
    analyser: ExposureAnalyser,
    change: Change,
    timelines: Iterable[Timeline],
    touched: dict[str, _Touched],
) -> None:
    """Make `change` on the analyser (and the timelines' audiences); note whom it touched."""

    def note(timeline: Timeline, leaf: str | None = None) -> None:
        found = touched.setdefault(timeline.dataset, _Touched())
        found.changes.append(change)
        if leaf is None:
            found.full = True
        else:
            found.leaves.add(leaf)

    if change.kind == "membership":
        member, group = change.item
        reached = analyser.directory.ancestors(group).keys()
        for timeline in timelines:
            if not reached.isdisjoint(timeline.subjects(analyser)):
                note(timeline, member if is_leaf(member) else None)
        if change.opened:
            analyser.add_link(member, group)
        else:
            analyser.remove_link(member, group)
    elif change.kind == "dataset":
        dataset, audience = change.item
        for timeline in timelines:
            if timeline.dataset == dataset:
                timeline.audience = audience if change.opened else None
                timeline.forget_subjects()
                note(timeline)
    else:
        for rule in _rules(change):
            for timeline in timelines:
                if _touches_rule(rule, timeline.dataset):
                    timeline.forget_subjects()
                    if not any(
                        c is change for c in touched.get(timeline.dataset, _Touched()).changes
                    ):
                        note(timeline)
            if change.opened:
                analyser.add_rule(rule)
            else:
                analyser.remove_rule(rule)


def measure(
    analyser: ExposureAnalyser, timeline: Timeline, at: datetime, step: Step | None
) -> None:
    """The dataset's whole exposure at `at`, after `step` (None: the period's start or end)."""
    if timeline.audience is None:  # not registered: nothing to be beyond
        timeline.effective = timeline.intended = 0
    else:
        timeline.intended = analyser.intended_bits(timeline.audience)
        exposure = analyser.exposure(timeline.dataset, READ, at.timestamp(), timeline.intended)
        timeline.effective = exposure.effective
    timeline.excess = excess = timeline.effective & ~timeline.intended
    timeline.excess_count = excess.bit_count()
    new = excess & ~timeline.seen
    if new:
        for name in analyser.directory.names(new):
            timeline.first_exposed[name] = at
        timeline.seen |= new
    _record(timeline, at, step)


def remeasure_leaves(
    analyser: ExposureAnalyser, timeline: Timeline, leaves: Iterable[str], at: datetime, step: Step
) -> None:
    """After changes of leaves' memberships only: just those leaves' excess bits, from the
    groups each reaches (what Casbin's g() follows, within its depth), as `measure` would find
    them. A few operations on the excess per leaf (`effective` and `intended` are left as the
    last `measure` found them: the one at `until` sets them again)."""
    if timeline.audience is not None:
        now = at.timestamp()
        # purpose ("*": any) -> the subjects of the live allows / denies for it
        allows: dict[str, set[str]] = {}
        denies: dict[str, set[str]] = {}
        for rule in analyser.rules_covering(timeline.dataset, READ):
            if is_live(rule.exp, now):
                table = allows if rule.eft == ALLOW else denies
                table.setdefault(rule.purpose, set()).add(rule.sub)
        denied_any = denies.get(ANY_PURPOSE, set())
        audience = frozenset(timeline.audience)
        directory = analyser.directory
        for leaf in leaves:
            number = directory.leaf_number(leaf)
            if number is None:
                continue
            reach = directory.ancestors(leaf).keys()
            # let in for some purpose (as the analyser's `effective`), and not intended
            beyond = reach.isdisjoint(audience) and any(
                not reach.isdisjoint(subjects)
                and reach.isdisjoint(denied_any)
                and reach.isdisjoint(denies.get(purpose, ()))
                for purpose, subjects in allows.items()
            )
            if beyond == bool(timeline.excess >> number & 1):
                continue
            timeline.excess ^= 1 << number
            timeline.excess_count += 1 if beyond else -1
            if beyond and not timeline.seen >> number & 1:
                timeline.seen |= 1 << number
                timeline.first_exposed[leaf] = at
    _record(timeline, at, step)


def _record(timeline: Timeline, at: datetime, step: Step | None) -> None:
    """The peak, and the window the excess at `at` opens, widens or closes."""
    timeline.measurements += 1
    count = timeline.excess_count
    if count > timeline.peak:
        timeline.peak, timeline.peak_at = count, at
    current = timeline.windows[-1] if timeline.windows else None
    if current is not None and current.end is not None:
        current = None
    if count and current is None:
        timeline.windows.append(Window(start=at, opened=step, peak=count, peak_at=at))
    elif count and current is not None and count > current.peak:
        current.peak, current.peak_at = count, at
    elif not count and current is not None and step is not None:
        current.end, current.closed = at, step


def walk(
    analyser: ExposureAnalyser,
    timelines: list[Timeline],
    *,
    since: datetime,
    until: datetime,
    versions: Iterable[tuple[int, datetime, str | None]],
    changes: Changes,
    expiries: Iterable[tuple[datetime, int, str]],
    progress: Any = None,
) -> None:
    """Measure `timelines` at `since` (on `analyser`, the policy then), after each version in
    `versions` that touches them, at each expiry in `expiries` and at `until`. `analyser` is
    changed: pass a copy. `progress(done, total)` is told how far the walk is."""
    for timeline in timelines:
        measure(analyser, timeline, since, None)
    steps: list[tuple[datetime, int, Any]] = [(at, 0, (v, by)) for v, at, by in versions]
    steps += [(at, 1, (gid, resource)) for at, gid, resource in expiries]
    steps.sort(key=lambda s: (s[0], s[1]))
    for done, (at, is_expiry, payload) in enumerate(steps, 1):
        if progress is not None and (done % 1000 == 0 or done == len(steps)):
            progress(done, len(steps))
        if is_expiry:
            gid, resource = payload
            step = Step(at=at, version=None, by=None, expired=gid)
            for timeline in timelines:
                if pattern_covers(resource, timeline.dataset):
                    measure(analyser, timeline, at, step)
            continue
        version, by = payload
        touched: dict[str, _Touched] = {}
        for change in changes.get(version, ()):
            _apply(analyser, change, timelines, touched)
        for timeline in timelines:
            found = touched.get(timeline.dataset)
            if found is None:
                continue
            step = Step(at, version, by, tuple(found.changes))
            if found.full:
                measure(analyser, timeline, at, step)
            else:
                remeasure_leaves(analyser, timeline, found.leaves, at, step)
    for timeline in timelines:
        measure(analyser, timeline, until, None)
        timeline.excess_names = frozenset(analyser.directory.names(timeline.excess))
