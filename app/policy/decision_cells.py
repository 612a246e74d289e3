"""The rule tables that a `DecisionIndex` looks rules up in, and what a group's search
contributes to a request (`GroupPart`): pure data, built once per change of the rules."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from app.policy.casbin_model import ALLOW, DENY, Rule


@dataclass(frozen=True, slots=True)
class Entry:
    rule: Rule
    expiry: float | None  # None: never expires

    def live(self, now: float) -> bool:
        return self.expiry is None or now < self.expiry


def _liveness_key(entry: Entry) -> tuple[int, float]:
    """Orders entries from 'live at the fewest instants' to 'live at the most'.

    NaN expiry (never live) < finite/infinite expiry by value < no expiry (always live).
    """
    if entry.expiry is None:
        return (2, 0.0)
    if math.isnan(entry.expiry):
        return (0, 0.0)
    return (1, entry.expiry)


# Liveness bounds of a cell (`_live_until`): these two are one shared float object each, so
# checking the common rule (no expiry) reads nothing the cell does not already hold.
FOREVER = math.inf
NEVER = -math.inf


def _live_until(entry: Entry | None) -> float:
    """The instant from which `entry` is dead, for finite instants: ``now < bound`` is its
    liveness (`FOREVER` for no expiry, `NEVER` for none or a NaN expiry)."""
    if entry is None:
        return NEVER
    if entry.expiry is None:
        return FOREVER
    if math.isnan(entry.expiry):
        return NEVER
    return entry.expiry


@dataclass(frozen=True, slots=True)
class Cell:
    """All rules sharing one (sub, act, resource key)."""

    entries: tuple[Entry, ...]
    # Liveness is monotone in the expiry, so one representative per effect answers "is any
    # live?" at a finite `now`: some deny is live iff now < deny_until, and it is `deny`.
    deny: Rule | None
    deny_until: float
    allow: Rule | None
    allow_until: float
    # ... and one answers "is any allow expired?" (None when every allow never expires).
    expired_allow: Entry | None

    @classmethod
    def build(cls, entries: list[Entry]) -> Cell:
        allows = [e for e in entries if e.rule.eft == ALLOW]
        denies = [e for e in entries if e.rule.eft == DENY]
        expiring_allows = [e for e in allows if e.expiry is not None]
        deny = max(denies, key=_liveness_key, default=None)
        allow = max(allows, key=_liveness_key, default=None)
        return cls(
            entries=tuple(entries),
            deny=None if deny is None else deny.rule,
            deny_until=_live_until(deny),
            allow=None if allow is None else allow.rule,
            allow_until=_live_until(allow),
            expired_allow=min(expiring_allows, key=_liveness_key, default=None),
        )


@dataclass(frozen=True, slots=True)
class Bucket:
    """The rules of one (sub, act), by resource."""

    exact: dict[str, Cell]
    prefixes: dict[str, Cell]  # keyed by the text before the pattern's first "*"
    prefix_lengths: tuple[int, ...]  # longest first

    def cells(self, obj: str) -> list[Cell]:
        cell = self.exact.get(obj)
        if not self.prefix_lengths:  # the common case for a user's own grants
            return [] if cell is None else [cell]
        found: list[Cell] = [] if cell is None else [cell]
        size = len(obj)
        for length in self.prefix_lengths:
            if length <= size:
                cell = self.prefixes.get(obj[:length])
                if cell is not None:
                    found.append(cell)
        return found

    def entries(self) -> list[Entry]:
        """Every rule's entry, each cell's in the order they were given."""
        return [
            e for cells in (self.exact, self.prefixes) for c in cells.values() for e in c.entries
        ]


def bucket_of(entries: Iterable[Entry]) -> Bucket:
    """The bucket of one (sub, act)'s entries (allow and deny only), kept in their order."""
    exact: dict[str, list[Entry]] = {}
    prefixes: dict[str, list[Entry]] = {}
    for entry in entries:
        star = entry.rule.obj.find("*")
        if star == -1:
            exact.setdefault(entry.rule.obj, []).append(entry)
        else:
            prefixes.setdefault(entry.rule.obj[:star], []).append(entry)
    return Bucket(
        exact={obj: Cell.build(es) for obj, es in exact.items()},
        prefixes={prefix: Cell.build(es) for prefix, es in prefixes.items()},
        prefix_lengths=tuple(sorted({len(p) for p in prefixes}, reverse=True)),
    )


# Matching cells in Casbin's search order, each with the membership path that reaches its rule
# *after* the requesting principal (so the full path is ``(sub, *rest)``).
Candidates = tuple[tuple["Cell", tuple[str, ...]], ...]


@dataclass(frozen=True, slots=True)
class GroupPart:
    """What a group's search contributes to a member's request: the matching cells and, for any
    instant in [valid_from, valid_until), the first live deny and the first live allow among
    them (with their paths). Outside that window some cell's liveness differs: build it again.
    """

    candidates: Candidates
    deny: tuple[Rule, tuple[str, ...]] | None
    allow: tuple[Rule, tuple[str, ...]] | None
    valid_from: float
    valid_until: float

    @classmethod
    def at(cls, candidates: Candidates, now: float) -> GroupPart:
        """At `now`. (At a NaN or infinite `now` every comparison is false: the part holds
        nothing live and is valid only where every representative is dead, which is right.)"""
        deny: tuple[Rule, tuple[str, ...]] | None = None
        allow: tuple[Rule, tuple[str, ...]] | None = None
        valid_from, valid_until = NEVER, FOREVER
        for cell, rest in candidates:
            # A representative is live before its bound and dead from then on, so the window
            # ends at the earliest live bound and starts at the latest dead one.
            for bound in (cell.deny_until, cell.allow_until):
                if now < bound:
                    valid_until = min(valid_until, bound)
                else:
                    valid_from = max(valid_from, bound)
            if deny is None and now < cell.deny_until:
                deny = (cell.deny, rest)  # type: ignore[assignment]
            if allow is None and now < cell.allow_until:
                allow = (cell.allow, rest)  # type: ignore[assignment]
        return cls(candidates, deny, allow, valid_from, valid_until)
