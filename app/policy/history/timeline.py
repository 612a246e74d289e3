"""Pure functions over the policy's history: what a change opens and closes (`diff`), the
policy as it was at a version (`state_as_of`; an instant's version: `app.policy_version`), and
from the state at one version the state at another (`state_from`). No I/O."""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from app.policy import holds
from app.policy.casbin_model import Rule
from app.policy.state import DatasetFacts, Link, PolicyChange, PolicyRows, PolicyState

Hold = tuple[int, str, str]  # (hold id, principal, dataset)
T = TypeVar("T")


@dataclass(frozen=True)
class HistoryDiff:
    """The history rows a change closes and opens (closed first: a row reopened with other
    facts, like a re-scoped dataset, is closed and opened in the same change)."""

    grants_closed: tuple[int, ...] = ()
    grants_opened: tuple[Rule, ...] = ()
    links_closed: tuple[Link, ...] = ()
    links_opened: tuple[Link, ...] = ()
    datasets_closed: tuple[str, ...] = ()
    datasets_opened: tuple[DatasetFacts, ...] = ()
    holds_closed: tuple[int, ...] = ()
    holds_opened: tuple[Hold, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not any(
            (
                self.grants_closed,
                self.grants_opened,
                self.links_closed,
                self.links_opened,
                self.datasets_closed,
                self.datasets_opened,
                self.holds_closed,
                self.holds_opened,
            )
        )


def _net(added: Iterable[T], removed: Iterable[T]) -> tuple[list[T], list[T]]:
    plus, minus = dict.fromkeys(added), dict.fromkeys(removed)
    return [x for x in plus if x not in minus], [x for x in minus if x not in plus]


def diff(before: Mapping[str, DatasetFacts], change: PolicyChange) -> HistoryDiff:
    """The history rows of `change`, made to a policy whose datasets were `before`. A rule or
    link both added and removed by the change (a hold opened then released in one
    transaction) leaves no row; a dataset whose facts did not change neither."""
    added, removed = _net(change.added, change.removed)
    opened_rules, closed_rules = added, removed
    links_added, links_removed = _net(change.links_added, change.links_removed)
    latest = {facts.id: facts for facts in change.datasets}
    moved = [facts for facts in latest.values() if before.get(facts.id) != facts]
    return HistoryDiff(
        # a grant is one row, whatever the number of its purposes (rules)
        grants_closed=tuple(dict.fromkeys(int(r.id) for r in closed_rules if not holds.is_hold(r))),
        grants_opened=tuple(r for r in opened_rules if not holds.is_hold(r)),
        links_closed=tuple(links_removed),
        links_opened=tuple(links_added),
        datasets_closed=tuple(f.id for f in moved if f.id in before),
        datasets_opened=tuple(moved),
        holds_closed=tuple(
            dict.fromkeys(holds.hold_id(r) for r in closed_rules if holds.is_hold(r))
        ),
        holds_opened=tuple(
            dict.fromkeys(
                (holds.hold_id(r), r.sub, r.obj) for r in opened_rules if holds.is_hold(r)
            )
        ),
    )


@dataclass(frozen=True)
class Span:
    """When a history row held: versions [from_version, until_version), instants
    [from_at, until_at); open-ended while the until fields are None."""

    from_version: int
    from_at: datetime
    until_version: int | None = None
    until_at: datetime | None = None

    def holds_in(self, version: int) -> bool:
        return self.from_version <= version and (
            self.until_version is None or version < self.until_version
        )


@dataclass(frozen=True)
class History:
    """History rows (all of them, or at least those that held at the version asked)."""

    grants: list[tuple[Span, Rule]] = field(default_factory=list)
    links: list[tuple[Span, Link]] = field(default_factory=list)
    datasets: list[tuple[Span, DatasetFacts]] = field(default_factory=list)
    holds: list[tuple[Span, Hold]] = field(default_factory=list)


def rows_as_of(history: History, version: int) -> PolicyRows:
    """The policy's rows as they were at `version`."""
    rules = sorted(
        (rule for span, rule in history.grants if span.holds_in(version)), key=lambda r: int(r.id)
    )
    rules += holds.rules_of(sorted(hold for span, hold in history.holds if span.holds_in(version)))
    links = sorted({link for span, link in history.links if span.holds_in(version)})
    datasets = {facts.id: facts for span, facts in history.datasets if span.holds_in(version)}
    return PolicyRows(rules, links, dict(sorted(datasets.items())))


def state_as_of(history: History, version: int) -> tuple[PolicyState, PolicyRows]:
    """The policy state as it was at `version`, and its rows (to build its views from:
    `PolicyState.build`)."""
    rows = rows_as_of(history, version)
    return PolicyState.of_rows(version, rows), rows


def _moved(rows: list[tuple[Span, T]], base: int, version: int) -> tuple[list[T], list[T]]:
    """Of `rows`, those held at `version` but not at `base`, and those held at `base` only."""
    came = [item for span, item in rows if span.holds_in(version) and not span.holds_in(base)]
    gone = [item for span, item in rows if span.holds_in(base) and not span.holds_in(version)]
    return came, gone


def state_from(base: PolicyState, changed: History, version: int) -> PolicyState:
    """The state at `version` from `base` (at another version) and the history rows opened
    or closed between the two (`changed`), earlier or later: its views follow from `base`'s
    over the difference, on demand (`PolicyState.successor`)."""
    rules_in, rules_out = _moved(changed.grants, base.version, version)
    holds_in, holds_out = _moved(changed.holds, base.version, version)
    links_in, links_out = _moved(changed.links, base.version, version)
    facts_in, facts_out = _moved(changed.datasets, base.version, version)
    datasets = dict(base.datasets)
    for facts in facts_out:
        datasets.pop(facts.id, None)
    datasets.update((facts.id, facts) for facts in facts_in)
    change = PolicyChange(
        added=(*rules_in, *holds.rules_of(sorted(holds_in))),
        removed=(*rules_out, *holds.rules_of(sorted(holds_out))),
        links_added=tuple(links_in),
        links_removed=tuple(links_out),
        datasets=tuple(facts_in),
    )
    return base.successor(version, change, {}, dict(sorted(datasets.items())))
