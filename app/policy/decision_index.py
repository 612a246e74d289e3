"""Casbin's decisions for aclaudit's model, in time independent of the number of rules.

`policies/model.conf` is the enforcement truth::

    r = sub, obj, act, now
    p = sub, obj, act, eft, exp, id
    g = _, _
    e = some(where (p.eft == allow)) && !some(where (p.eft == deny))
    m = g(r.sub, p.sub) && keyMatch(r.obj, p.obj) && r.act == p.act && isLive(p.exp, r.now)

pycasbin's `Enforcer.enforce` evaluates that matcher against every p rule on every request. A
`DecisionIndex` gives the same answer by looking rules up instead of scanning them:

* `g(r.sub, p.sub)` with pycasbin's default role manager is a breadth-first search from
  `r.sub` along g links (member -> group) that visits at most `CASBIN_MAX_HIERARCHY_LEVEL`
  levels, the requesting principal itself being level 1. So `p.sub` matches when it is
  `r.sub` itself (even with no links at all) or reachable in at most 9 links. Cycles are
  harmless: the search is bounded by depth, not by a visited set. The index computes each
  principal's reachable set once (with a shortest path to each member of it) and memoises it.
* `keyMatch(r.obj, p.obj)` (`casbin.util.key_match`) compares for equality when `p.obj` has no
  `*`; otherwise only the text before the *first* `*` matters and the match is a raw string
  prefix test: `r.obj.startswith(p.obj[:p.obj.find("*")])`. So `*` matches everything,
  `a.b.*` matches `a.b.c` and also the odd `a.b.`, but not `a.b`; a pattern such as `a.b*` or
  `a.*.c` is just the prefix `a.b` / `a.`. Rules are indexed by that prefix and looked up for
  every prefix length that occurs among the rules of the (sub, act) pair.
* `isLive(exp, now)` is `exp == "" or float(now) < float(exp)`.
* A live matching deny wins; otherwise a live matching allow allows; otherwise deny. A rule whose
  `eft` is neither "allow" nor "deny" matches but has no effect in Casbin, so it is ignored here.

The rules and links are immutable after construction (`with_rules` makes a changed copy, which
shares the memos derived from the links alone); the only mutable state is memos derived
from them (each principal's ancestors, route and own rules; each group's part of a search),
filled idempotently, so concurrent use from asyncio tasks (or threads) is safe.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import NamedTuple

import casbin

__all__ = [
    "CASBIN_MAX_HIERARCHY_LEVEL",
    "MODEL_PATH",
    "Decision",
    "DecisionIndex",
    "Rule",
    "casbin_enforcer",
    "is_live",
    "key_match",
]

MODEL_PATH = Path(__file__).resolve().parents[2] / "policies" / "model.conf"

# pycasbin's default RoleManager(max_hierarchy_level=10): the requesting principal is level 1,
# so a group at most 9 links away is reachable and one 10 links away is not.
CASBIN_MAX_HIERARCHY_LEVEL = 10

ALLOW = "allow"
DENY = "deny"


def is_live(exp: str, now: float) -> bool:
    """The model's `isLive(p.exp, r.now)`: no expiry, or `now` strictly before it."""
    return exp == "" or float(now) < float(exp)


def key_match(key: str, pattern: str) -> bool:
    """Casbin's `keyMatch(r.obj, p.obj)` (a copy of `casbin.util.key_match`)."""
    star = pattern.find("*")
    if star == -1:
        return key == pattern
    if len(key) > star:
        return key[:star] == pattern[:star]
    return key == pattern[:star]


@dataclass(frozen=True)
class Rule:
    """One Casbin p rule: a grant. Hashed once (rules key many dicts and sets)."""

    sub: str
    obj: str
    act: str
    eft: str  # "allow" | "deny"
    exp: str  # "" or unix seconds as a string
    id: str
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        fields = (self.sub, self.obj, self.act, self.eft, self.exp, self.id)
        object.__setattr__(self, "_hash", hash(fields))

    def __hash__(self) -> int:
        return self._hash

    def as_casbin(self) -> list[str]:
        return [self.sub, self.obj, self.act, self.eft, self.exp, self.id]


class Decision(NamedTuple):
    allowed: bool
    # The deny rule that denied, or an allow rule that allowed; None when nothing matched.
    matched: Rule | None
    # Membership path from the requesting principal to matched.sub; () when matched is None.
    via: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Entry:
    rule: Rule
    expiry: float | None  # None: never expires

    def live(self, now: float) -> bool:
        return self.expiry is None or now < self.expiry


def _liveness_key(entry: _Entry) -> tuple[int, float]:
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
_FOREVER = math.inf
_NEVER = -math.inf


def _live_until(entry: _Entry | None) -> float:
    """The instant from which `entry` is dead, for finite instants: ``now < bound`` is its
    liveness (`_FOREVER` for no expiry, `_NEVER` for none or a NaN expiry)."""
    if entry is None:
        return _NEVER
    if entry.expiry is None:
        return _FOREVER
    if math.isnan(entry.expiry):
        return _NEVER
    return entry.expiry


@dataclass(frozen=True, slots=True)
class _Cell:
    """All rules sharing one (sub, act, resource key)."""

    entries: tuple[_Entry, ...]
    # Liveness is monotone in the expiry, so one representative per effect answers "is any
    # live?" at a finite `now`: some deny is live iff now < deny_until, and it is `deny`.
    deny: Rule | None
    deny_until: float
    allow: Rule | None
    allow_until: float
    # ... and one answers "is any allow expired?" (None when every allow never expires).
    expired_allow: _Entry | None

    @classmethod
    def build(cls, entries: list[_Entry]) -> _Cell:
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
class _Bucket:
    """The rules of one (sub, act), by resource."""

    exact: dict[str, _Cell]
    prefixes: dict[str, _Cell]  # keyed by the text before the pattern's first "*"
    prefix_lengths: tuple[int, ...]  # longest first

    def cells(self, obj: str) -> list[_Cell]:
        cell = self.exact.get(obj)
        if not self.prefix_lengths:  # the common case for a user's own grants
            return [] if cell is None else [cell]
        found: list[_Cell] = [] if cell is None else [cell]
        size = len(obj)
        for length in self.prefix_lengths:
            if length <= size:
                cell = self.prefixes.get(obj[:length])
                if cell is not None:
                    found.append(cell)
        return found

    def entries(self) -> list[_Entry]:
        """Every rule's entry, each cell's in the order they were given."""
        return [
            e for cells in (self.exact, self.prefixes) for c in cells.values() for e in c.entries
        ]


def _bucket_of(entries: Iterable[_Entry]) -> _Bucket:
    """The bucket of one (sub, act)'s entries (allow and deny only), kept in their order."""
    exact: dict[str, list[_Entry]] = {}
    prefixes: dict[str, list[_Entry]] = {}
    for entry in entries:
        star = entry.rule.obj.find("*")
        if star == -1:
            exact.setdefault(entry.rule.obj, []).append(entry)
        else:
            prefixes.setdefault(entry.rule.obj[:star], []).append(entry)
    return _Bucket(
        exact={obj: _Cell.build(es) for obj, es in exact.items()},
        prefixes={prefix: _Cell.build(es) for prefix, es in prefixes.items()},
        prefix_lengths=tuple(sorted({len(p) for p in prefixes}, reverse=True)),
    )


def _parse_expiry(rule: Rule) -> float | None:
    if rule.exp == "":
        return None
    try:
        return float(rule.exp)
    except ValueError:
        raise ValueError(
            f"rule {rule.id!r}: expiry {rule.exp!r} is neither empty nor a number "
            "(Casbin's isLive would fail on it)"
        ) from None


_Ancestors = tuple[tuple[str, tuple[str, ...]], ...]
# Matching cells in Casbin's search order, each with the membership path that reaches its rule
# *after* the requesting principal (so the full path is ``(sub, *rest)``).
_Candidates = tuple[tuple["_Cell", tuple[str, ...]], ...]


@dataclass(frozen=True, slots=True)
class _GroupPart:
    """What a group's search contributes to a member's request: the matching cells and, for any
    instant in [valid_from, valid_until), the first live deny and the first live allow among
    them (with their paths). Outside that window some cell's liveness differs: build it again.
    """

    candidates: _Candidates
    deny: tuple[Rule, tuple[str, ...]] | None
    allow: tuple[Rule, tuple[str, ...]] | None
    valid_from: float
    valid_until: float

    @classmethod
    def at(cls, candidates: _Candidates, now: float) -> _GroupPart:
        """At `now`. (At a NaN or infinite `now` every comparison is false: the part holds
        nothing live and is valid only where every representative is dead, which is right.)"""
        deny: tuple[Rule, tuple[str, ...]] | None = None
        allow: tuple[Rule, tuple[str, ...]] | None = None
        valid_from, valid_until = _NEVER, _FOREVER
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


class _Route:
    """`_route` markers (a route is otherwise a group's id)."""


_NO_LINKS = _Route()
# A principal's own rules for one action: exact ones (or None), the whole bucket when it also
# has patterns (or None), its route, and when that is a group, the group's memoised parts for
# the action by resource (looked up without building a key).
_Record = tuple[
    dict[str, "_Cell"] | None, "_Bucket | None", "str | _Route", "dict[str, _GroupPart] | None"
]
_GENERIC = _Route()
# Most (group, obj, act) entries kept before the group memo starts afresh.
GROUP_MEMO_LIMIT = 200_000


class DecisionIndex:
    """Exactly Casbin's decisions for `policies/model.conf`, by lookup instead of scan."""

    def __init__(self, rules: Iterable[Rule], links: Iterable[tuple[str, str]]) -> None:
        unique_rules = list(dict.fromkeys(rules))  # Casbin keeps a set of rules
        grouped: dict[tuple[str, str], list[_Entry]] = {}
        ineffective = []
        for rule in unique_rules:
            entry = _Entry(rule, _parse_expiry(rule))
            if rule.eft in (ALLOW, DENY):
                grouped.setdefault((rule.sub, rule.act), []).append(entry)
            else:
                ineffective.append(rule)
        # Rules whose effect is neither allow nor deny: they match, but Casbin gives them no
        # effect (kept only so that the index knows it has rules).
        self._ineffective = frozenset(ineffective)
        self._buckets = {key: _bucket_of(entries) for key, entries in grouped.items()}
        # act -> sub -> bucket: the same buckets, looked up without building a tuple key.
        self._by_act: dict[str, dict[str, _Bucket]] = {}
        for (sub, act), bucket in self._buckets.items():
            self._by_act.setdefault(act, {})[sub] = bucket

        parents: dict[str, dict[str, None]] = {}
        for member, group in links:
            parents.setdefault(member, {})[group] = None
        self._parents: dict[str, tuple[str, ...]] = {m: tuple(gs) for m, gs in parents.items()}
        # Principal -> reachable principals. Filled only for principals that have links, so it is
        # bounded by the size of the link graph (as are the routes and records below).
        self._ancestor_memo: dict[str, _Ancestors] = {}
        # Members with a single parent group share that group's part of the search: the group's
        # reachable set (one level shallower, as seen from a member) and, per (group, obj, act),
        # the cells it contributes. Both memos are derived from immutable data, filled
        # idempotently, and bounded (see GROUP_MEMO_LIMIT).
        self._closure_memo: dict[str, tuple[_Ancestors, frozenset[str]]] = {}
        self._routes: dict[str, str | _Route] = {}  # principal with links -> see _route
        self._forget_rule_memos()

    def _forget_rule_memos(self) -> None:
        """Start afresh the memos that depend on the rules (those of the links are kept)."""
        self._group_memo: dict[tuple[str, str], dict[str, _GroupPart]] = {}  # (group, act)
        self._group_memo_size = 0
        # act -> principal with links or own rules -> _Record: one lookup finds both.
        self._records: dict[str, dict[str, _Record]] = {act: {} for act in self._by_act}

    def with_rules(self, added: Iterable[Rule] = (), removed: Iterable[Rule] = ()) -> DecisionIndex:
        """A copy with `added` and without `removed` (a set of rules, as Casbin keeps them),
        equal to an index built from this one's rules in order, less `removed`, then `added`.

        It costs the buckets of the (sub, act) pairs changed plus a copy of two dictionaries,
        not a rebuild: everything derived from the links alone is shared (memos filled
        idempotently by either index), and the memos of the rules start afresh in the copy.
        """
        new_rules = list(dict.fromkeys(added))
        gone = set(removed)
        entries = {rule: _Entry(rule, _parse_expiry(rule)) for rule in new_rules}  # may raise
        clone = copy.copy(self)
        clone._buckets = dict(self._buckets)
        clone._by_act = dict(self._by_act)
        copied: set[str] = set()  # actions whose sub -> bucket dictionary the clone owns
        for sub, act in {(rule.sub, rule.act) for rule in (*new_rules, *gone)}:
            bucket = self._buckets.get((sub, act))
            kept = [] if bucket is None else [e for e in bucket.entries() if e.rule not in gone]
            present = {entry.rule for entry in kept}
            kept += [
                entries[rule]
                for rule in new_rules
                if (rule.sub, rule.act) == (sub, act)
                and rule.eft in (ALLOW, DENY)
                and rule not in present
            ]
            if act not in copied:
                clone._by_act[act] = dict(self._by_act.get(act, {}))
                copied.add(act)
            subs = clone._by_act[act]
            if kept:
                subs[sub] = clone._buckets[(sub, act)] = _bucket_of(kept)
            else:
                clone._buckets.pop((sub, act), None)
                subs.pop(sub, None)
        for act in copied:
            if not clone._by_act[act]:
                del clone._by_act[act]
        clone._ineffective = (self._ineffective - gone) | {
            rule for rule in new_rules if rule.eft not in (ALLOW, DENY)
        }
        clone._forget_rule_memos()
        return clone

    def with_links(
        self, added: Iterable[tuple[str, str]] = (), removed: Iterable[tuple[str, str]] = ()
    ) -> DecisionIndex:
        """A copy with these (member, group) links added and removed, equal to an index built
        from this one's links in order, less `removed`, then `added`: the rules are shared, the
        parent table is copied, and every memo starts afresh."""
        new_links = list(dict.fromkeys(added))
        gone = set(removed)
        parents = dict(self._parents)
        for member in {m for m, _g in gone} | {m for m, _g in new_links}:
            groups = [g for g in parents.get(member, ()) if (member, g) not in gone]
            groups += [g for m, g in new_links if m == member and g not in groups]
            if groups:
                parents[member] = tuple(groups)
            else:
                parents.pop(member, None)
        clone = copy.copy(self)
        clone._parents = parents
        clone._ancestor_memo = {}
        clone._closure_memo = {}
        clone._routes = {}
        clone._forget_rule_memos()
        return clone

    # -- public API -------------------------------------------------------------------------

    def decide(self, sub: str, obj: str, act: str, now: float) -> Decision:
        now = float(now)
        if not now < _FOREVER:  # NaN or +inf: liveness bounds do not apply
            return self._decide_by_entries(sub, obj, act, now)
        allow: tuple[Rule | None, tuple[str, ...]] | None = None
        own, shared = self._scan_parts(sub, obj, act, now)
        # In search order: the first live deny decides at once; otherwise the first live allow
        # (a deny anywhere still wins, so the search goes on after finding an allow).
        for cell in own:  # sub's own grants: reached with the path (sub,)
            if now < cell.deny_until:
                return Decision(False, cell.deny, (sub,))
            if allow is None and now < cell.allow_until:
                allow = (cell.allow, ())
        if isinstance(shared, _GroupPart):
            if shared.deny is not None:
                return Decision(False, shared.deny[0], (sub, *shared.deny[1]))
            if allow is None:
                allow = shared.allow
        else:
            for cell, rest in shared:
                if now < cell.deny_until:
                    return Decision(False, cell.deny, (sub, *rest))
                if allow is None and now < cell.allow_until:
                    allow = (cell.allow, rest)
        if allow is not None:
            return Decision(True, allow[0], (sub, *allow[1]))
        return self._no_match(sub, obj, act)

    def _decide_by_entries(self, sub: str, obj: str, act: str, now: float) -> Decision:
        """`decide` for any `now`, from every entry's own liveness."""
        allow: tuple[Rule, tuple[str, ...]] | None = None
        for cell, rest in self._scan(sub, obj, act, now):
            for entry in cell.entries:
                if not entry.live(now):
                    continue
                if entry.rule.eft == DENY:
                    return Decision(False, entry.rule, (sub, *rest))
                if allow is None:
                    allow = (entry.rule, rest)
        if allow is not None:
            return Decision(True, allow[0], (sub, *allow[1]))
        return self._no_match(sub, obj, act)

    def _no_match(self, sub: str, obj: str, act: str) -> Decision:
        has_rules = self._buckets or self._ineffective
        if not has_rules and obj == "" and act == "" and self._reaches(sub, ""):
            # pycasbin quirk: with no p rules at all it evaluates the matcher once with every
            # p field "" and allows if that matches, i.e. for obj == act == "" and a subject
            # that reaches the principal "". Unreachable through validated identifiers.
            return Decision(True, None, ())
        return Decision(False, None, ())

    def expired_allow(self, sub: str, obj: str, act: str, now: float) -> Rule | None:
        """An allow rule that would match if expiry were ignored but is expired at `now`."""
        now = float(now)
        for cell, _rest in self._scan(sub, obj, act, now):
            expired = cell.expired_allow
            if expired is not None and not expired.live(now):
                return expired.rule
        return None

    def rules_for(
        self, sub: str, obj: str, act: str, now: float
    ) -> list[tuple[Rule, tuple[str, ...]]]:
        """Every live rule (allow and deny) that matches the request, with its via path."""
        now = float(now)
        return [
            (entry.rule, (sub, *rest))
            for cell, rest in self._scan(sub, obj, act, now)
            for entry in cell.entries
            if entry.live(now)
        ]

    @property
    def parents(self) -> Mapping[str, tuple[str, ...]]:
        """Member -> the groups it is directly in (the g links), read-only."""
        return MappingProxyType(self._parents)

    def ancestors(self, sub: str) -> dict[str, tuple[str, ...]]:
        """Every principal `sub` reaches for Casbin's g(), with a shortest membership path."""
        return dict(self._ancestors(sub))

    def paths(
        self, sub: str, target: str, limit: int, budget: int = 10_000
    ) -> tuple[list[tuple[str, ...]], bool]:
        """Up to `limit` membership paths along which `sub` reaches `target` for Casbin's g(),
        shortest first (no principal twice, at most ``CASBIN_MAX_HIERARCHY_LEVEL - 1`` links),
        and whether they are all there are (False past `limit`, or once `budget` steps of the
        search are spent)."""
        if sub == target:
            return [(sub,)], True
        found: list[tuple[str, ...]] = []
        frontier: list[tuple[str, ...]] = [(sub,)]
        while frontier and len(found) <= limit and budget > 0:
            extended: list[tuple[str, ...]] = []
            for path in frontier:
                for group in self._parents.get(path[-1], ()):
                    budget -= 1
                    if group == target:
                        found.append((*path, group))
                    elif (
                        group not in path
                        and len(path) + 1 < CASBIN_MAX_HIERARCHY_LEVEL
                        # what a group reaches as a parent: as far as any path may still go
                        and target in self._closure(group)[1]
                    ):
                        extended.append((*path, group))
            frontier = extended
        return found[:limit], not frontier and len(found) <= limit

    # -- internals --------------------------------------------------------------------------

    def _scan(self, sub: str, obj: str, act: str, now: float) -> _Candidates:
        own, shared = self._scan_parts(sub, obj, act, now)
        if isinstance(shared, _GroupPart):
            shared = shared.candidates
        return tuple((cell, ()) for cell in own) + shared

    def _scan_parts(
        self, sub: str, obj: str, act: str, now: float
    ) -> tuple[list[_Cell], _Candidates | _GroupPart]:
        """Every cell matching the request, in the order Casbin's search reaches them.

        That order is: the principals `sub` reaches, breadth-first (`sub` first); within one,
        the exact resource, then prefixes longest first. A principal with a single parent group
        (most users) is `sub` followed by that group's own search one level shallower, so its
        candidates are its own cells followed by the group's, which are memoised per
        (group, obj, act) together with their outcome at `now` (a `_GroupPart`): the work per
        check then does not grow with the rules its groups hold.
        """
        records = self._records.get(act)
        if records is None:
            return [], ()
        by_sub = self._by_act[act]
        record = records.get(sub)
        if record is None:
            record = self._record(sub, act)
        exact, prefixed, route, parts = record
        own_cells: list[_Cell] = []
        if prefixed is not None:
            own_cells = prefixed.cells(obj)
        elif exact is not None:  # the common case for a user's own grants: exact datasets only
            cell = exact.get(obj)
            if cell is not None:
                own_cells = [cell]
        if parts is not None:
            part = parts.get(obj)
            if part is None or not part.valid_from <= now < part.valid_until:
                part = self._group_part(route, obj, parts, part, by_sub, now)  # type: ignore[arg-type]
            return own_cells, part
        if route is _NO_LINKS:  # g(x, x) holds for any x, linked or not
            return own_cells, ()
        return [], tuple(
            (cell, via[1:])
            for principal, via in self._ancestors(sub)
            if (bucket := by_sub.get(principal)) is not None
            for cell in bucket.cells(obj)
        )

    def _record(self, sub: str, act: str) -> _Record:
        """`sub`'s own rules for `act` and its route, memoised when it has either."""
        own = self._by_act[act].get(sub)
        route = self._routes.get(sub)
        if route is None:
            route = self._route(sub)
        parts = None
        if isinstance(route, str):
            parts = self._group_memo.setdefault((route, act), {})
        record: _Record = (None, None, route, parts)
        if own is not None:
            record = (own.exact, own if own.prefix_lengths else None, route, parts)
        if own is not None or route is not _NO_LINKS:
            self._records[act][sub] = record
        return record

    def _route(self, sub: str) -> str | _Route:
        """How `sub`'s search goes: its single parent group (shared), or a marker."""
        parents = self._parents.get(sub)
        if parents is None:
            return _NO_LINKS
        route: str | _Route = _GENERIC
        if len(parents) == 1:
            _closure, members = self._closure(parents[0])
            if sub not in members:  # no cycle back to sub: the group's search is sub's
                route = parents[0]
        self._routes[sub] = route
        return route

    def _group_part(
        self,
        group: str,
        obj: str,
        parts: dict[str, _GroupPart],
        stale: _GroupPart | None,
        by_sub: dict[str, _Bucket],
        now: float,
    ) -> _GroupPart:
        """The `_GroupPart` of (group, obj) at `now`, memoised in `parts` (group's, for the
        action whose buckets are `by_sub`)."""
        if stale is not None:
            candidates = stale.candidates
        else:
            candidates = tuple(
                (cell, via)
                for principal, via in self._closure(group)[0]
                if (bucket := by_sub.get(principal)) is not None
                for cell in bucket.cells(obj)
            )
            if self._group_memo_size >= GROUP_MEMO_LIMIT:
                # Emptied, not dropped (records point at them); listed first, in one step, so
                # that a thread adding a group meanwhile cannot break the loop.
                for memo in list(self._group_memo.values()):
                    memo.clear()
                self._group_memo_size = 0
            self._group_memo_size += 1
        part = parts[obj] = _GroupPart.at(candidates, now)
        return part

    def _closure(self, group: str) -> tuple[_Ancestors, frozenset[str]]:
        """What `group` reaches as the parent of a member: one level less than from itself."""
        memo = self._closure_memo.get(group)
        if memo is None:
            paths = self._search(group, CASBIN_MAX_HIERARCHY_LEVEL - 1)
            memo = (paths, frozenset(principal for principal, _via in paths))
            self._closure_memo[group] = memo
        return memo

    def _reaches(self, sub: str, target: str) -> bool:
        return any(principal == target for principal, _via in self._ancestors(sub))

    def _ancestors(self, sub: str) -> _Ancestors:
        if sub not in self._parents:
            return ((sub, (sub,)),)  # g(x, x) holds for any x, linked or not
        memo = self._ancestor_memo.get(sub)
        if memo is None:
            memo = self._search(sub, CASBIN_MAX_HIERARCHY_LEVEL)
            self._ancestor_memo[sub] = memo
        return memo

    def _search(self, sub: str, levels: int) -> _Ancestors:
        """Breadth-first, like RoleManager._has_link: levels 1..`levels` (`sub` is level 1)."""
        paths: dict[str, tuple[str, ...]] = {sub: (sub,)}
        frontier = [sub]
        for _level in range(levels - 1):
            next_frontier: list[str] = []
            for member in frontier:
                for group in self._parents.get(member, ()):
                    if group not in paths:
                        paths[group] = (*paths[member], group)
                        next_frontier.append(group)
            if not next_frontier:
                break
            frontier = next_frontier
        return tuple(paths.items())


def casbin_enforcer(rules: Iterable[Rule], links: Iterable[tuple[str, str]]) -> casbin.Enforcer:
    """A plain pycasbin Enforcer over the same rules and links: the reference for the index."""
    enforcer = casbin.Enforcer(str(MODEL_PATH))
    enforcer.add_function("isLive", is_live)
    policies = list(dict.fromkeys(tuple(rule.as_casbin()) for rule in rules))
    if policies:
        enforcer.add_policies([list(p) for p in policies])
    groupings = list(dict.fromkeys((member, group) for member, group in links))
    if groupings:
        enforcer.add_grouping_policies([list(g) for g in groupings])
    return enforcer
