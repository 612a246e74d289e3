"""Casbin's decisions for aclaudit's model, in time independent of the number of rules.

`policies/model.conf` is the enforcement truth::

    r = sub, obj, act, purpose, now
    p = sub, obj, act, purpose, eft, exp, id
    g = _, _
    e = some(where (p.eft == allow)) && !some(where (p.eft == deny))
    m = g(r.sub, p.sub) && keyMatch(r.obj, p.obj) && r.act == p.act
        && (p.purpose == "*" || r.purpose == p.purpose) && isLive(p.exp, r.now)

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
* `p.purpose == "*" || r.purpose == p.purpose`: rules are indexed by action and purpose (the key
  `rule_key(act, purpose)`: the action alone for "*"). A request looks up the key of its action
  alone (the rules for any purpose) and, when some rule names a purpose, that of its purpose too,
  and combines the two answers as the effect does (a live deny in either wins): two lookups at
  most, whatever the number of purposes. Allows that name a purpose are also indexed under
  `other_purpose_key(act)`, to say why a request is denied (`allow_for_other_purpose`).
* A live matching deny wins; otherwise a live matching allow allows; otherwise deny. A rule whose
  `eft` is neither "allow" nor "deny" matches but has no effect in Casbin, so it is ignored here.

The rules and links are immutable after construction (`with_rules` makes a changed copy, which
shares the memos derived from the links alone); the only mutable state is memos derived
from them (each principal's ancestors, route and own rules; each group's part of a search),
filled idempotently, so concurrent use from asyncio tasks (or threads) is safe.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import NamedTuple

from app.policy.casbin_model import (
    ALLOW,
    ANY_PURPOSE,
    CASBIN_MAX_HIERARCHY_LEVEL,
    DENY,
    MODEL_PATH,
    Rule,
    ancestor_paths,
    casbin_enforcer,
    is_live,
    key_match,
    parse_expiry,
)
from app.policy.decision_cells import (
    FOREVER,
    Bucket,
    Candidates,
    Cell,
    Entry,
    GroupPart,
    bucket_of,
)

__all__ = [
    "CASBIN_MAX_HIERARCHY_LEVEL",
    "MODEL_PATH",
    "Decision",
    "DecisionIndex",
    "Rule",
    "casbin_enforcer",
    "is_live",
    "key_match",
    "other_purpose_key",
    "rule_key",
]


def rule_key(act: str, purpose: str) -> str:
    """The index key of the rules for `act` with `purpose` ("*": the action alone). Purposes and
    actions are identifiers without control characters, so keys never collide."""
    return act if purpose == ANY_PURPOSE else f"{act}\x1f{purpose}"


def other_purpose_key(act: str) -> str:
    """The key under which every allow for `act` that names a purpose is indexed too."""
    return f"{act}\x1e"


def _keys(rule: Rule) -> tuple[str, ...]:
    """The index keys of `rule`."""
    if rule.purpose == ANY_PURPOSE:
        return (rule.act,)
    if rule.eft == ALLOW:
        return (rule_key(rule.act, rule.purpose), other_purpose_key(rule.act))
    return (rule_key(rule.act, rule.purpose),)


class Decision(NamedTuple):
    allowed: bool
    # The deny rule that denied, or an allow rule that allowed; None when nothing matched.
    matched: Rule | None
    # Membership path from the requesting principal to matched.sub; () when matched is None.
    via: tuple[str, ...]


_Ancestors = tuple[tuple[str, tuple[str, ...]], ...]
_NO_MATCH = Decision(False, None, ())


def _has_purposes(by_key: Mapping[str, object]) -> bool:
    """Whether any key is of rules that name a purpose (else one lookup answers a request)."""
    return any("\x1f" in act for act in by_key)


class _Route:
    """`_route` markers (a route is otherwise a group's id)."""


_NO_LINKS = _Route()
# A principal's own rules for one action: exact ones (or None), the whole bucket when it also
# has patterns (or None), its route, and when that is a group, the group's memoised parts for
# the action by resource (looked up without building a key).
_Record = tuple[
    dict[str, "Cell"] | None, "Bucket | None", "str | _Route", "dict[str, GroupPart] | None"
]
_GENERIC = _Route()
# Most (group, obj, act) entries kept before the group memo starts afresh.
GROUP_MEMO_LIMIT = 200_000


class DecisionIndex:
    """Exactly Casbin's decisions for `policies/model.conf`, by lookup instead of scan."""

    def __init__(self, rules: Iterable[Rule], links: Iterable[tuple[str, str]]) -> None:
        unique_rules = list(dict.fromkeys(rules))  # Casbin keeps a set of rules
        grouped: dict[tuple[str, str], list[Entry]] = {}
        ineffective = []
        for rule in unique_rules:
            entry = Entry(rule, parse_expiry(rule))
            if rule.eft in (ALLOW, DENY):
                for key in _keys(rule):
                    grouped.setdefault((rule.sub, key), []).append(entry)
            else:
                ineffective.append(rule)
        # Rules whose effect is neither allow nor deny: they match, but Casbin gives them no
        # effect (kept only so that the index knows it has rules).
        self._ineffective = frozenset(ineffective)
        self._buckets = {key: bucket_of(entries) for key, entries in grouped.items()}
        # key (act, or act and purpose) -> sub -> bucket: the same buckets, looked up without
        # building a tuple key.
        self._by_act: dict[str, dict[str, Bucket]] = {}
        for (sub, act), bucket in self._buckets.items():
            self._by_act.setdefault(act, {})[sub] = bucket
        self._has_purposes = _has_purposes(self._by_act)

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
        self._group_memo: dict[tuple[str, str], dict[str, GroupPart]] = {}  # (group, act)
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
        entries = {rule: Entry(rule, parse_expiry(rule)) for rule in new_rules}  # may raise
        clone = copy.copy(self)
        clone._buckets = dict(self._buckets)
        clone._by_act = dict(self._by_act)
        copied: set[str] = set()  # actions whose sub -> bucket dictionary the clone owns
        touched = {(rule.sub, key) for rule in (*new_rules, *gone) for key in _keys(rule)}
        for sub, act in touched:
            bucket = self._buckets.get((sub, act))
            kept = [] if bucket is None else [e for e in bucket.entries() if e.rule not in gone]
            present = {entry.rule for entry in kept}
            kept += [
                entries[rule]
                for rule in new_rules
                if rule.sub == sub
                and act in _keys(rule)
                and rule.eft in (ALLOW, DENY)
                and rule not in present
            ]
            if act not in copied:
                clone._by_act[act] = dict(self._by_act.get(act, {}))
                copied.add(act)
            subs = clone._by_act[act]
            if kept:
                subs[sub] = clone._buckets[(sub, act)] = bucket_of(kept)
            else:
                clone._buckets.pop((sub, act), None)
                subs.pop(sub, None)
        for act in copied:
            if not clone._by_act[act]:
                del clone._by_act[act]
        clone._has_purposes = _has_purposes(clone._by_act)
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

    def decide(self, sub: str, obj: str, act: str, purpose: str, now: float) -> Decision:
        """Casbin's `enforce(sub, obj, act, purpose, now)`, with the rule that decided."""
        now = float(now)
        found = self._decide(sub, obj, act, now)
        if not self._has_purposes or purpose == ANY_PURPOSE:
            if found.matched is None:
                return self._no_match(sub, obj, act, purpose)
            return found
        if found.matched is not None and not found.allowed:
            return found  # a deny for any purpose
        key = rule_key(act, purpose)
        if key not in self._records:
            return found if found.matched is not None else self._no_match(sub, obj, act, purpose)
        for_purpose = self._decide(sub, obj, key, now)
        if for_purpose.matched is not None and not for_purpose.allowed:
            return for_purpose
        if found.matched is not None:
            return found
        if for_purpose.matched is not None:
            return for_purpose
        return self._no_match(sub, obj, act, purpose)

    def allow_for_other_purpose(self, sub: str, obj: str, act: str, now: float) -> Rule | None:
        """A live allow naming a purpose that matches (sub, obj, act) whatever its purpose (a
        request for another purpose, or none, is denied for want of it)."""
        if not self._has_purposes:
            return None
        found = self._decide(sub, obj, other_purpose_key(act), float(now))
        return found.matched if found.allowed else None

    def _decide(self, sub: str, obj: str, act: str, now: float) -> Decision:
        """The decision of the rules under one key (`act`): matched None when none matches."""
        if not now < FOREVER:  # NaN or +inf: liveness bounds do not apply
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
        if isinstance(shared, GroupPart):
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
        return _NO_MATCH

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
        return _NO_MATCH

    def _no_match(self, sub: str, obj: str, act: str, purpose: str) -> Decision:
        has_rules = self._buckets or self._ineffective
        if not has_rules and obj == act == purpose == "" and self._reaches(sub, ""):
            # pycasbin quirk: with no p rules at all it evaluates the matcher once with every
            # p field "" and allows if that matches, i.e. for obj == act == purpose == "" and a
            # subject that reaches the principal "". Unreachable through validated identifiers.
            return Decision(True, None, ())
        return _NO_MATCH

    def _purpose_keys(self, act: str, purpose: str) -> tuple[str, ...]:
        """The keys whose rules a request for (act, purpose) matches."""
        if not self._has_purposes or purpose == ANY_PURPOSE:
            return (act,)
        return (act, rule_key(act, purpose))

    def expired_allow(self, sub: str, obj: str, act: str, purpose: str, now: float) -> Rule | None:
        """An allow rule that would match if expiry were ignored but is expired at `now`."""
        now = float(now)
        for key in self._purpose_keys(act, purpose):
            for cell, _rest in self._scan(sub, obj, key, now):
                expired = cell.expired_allow
                if expired is not None and not expired.live(now):
                    return expired.rule
        return None

    def rules_for(
        self, sub: str, obj: str, act: str, purpose: str, now: float
    ) -> list[tuple[Rule, tuple[str, ...]]]:
        """Every live rule (allow and deny) that matches the request, with its via path."""
        now = float(now)
        return [
            (entry.rule, (sub, *rest))
            for key in self._purpose_keys(act, purpose)
            for cell, rest in self._scan(sub, obj, key, now)
            for entry in cell.entries
            if entry.live(now)
        ]

    def purposes(self, act: str) -> list[str]:
        """The purposes that rules for `act` name (sorted; "*" is not one)."""
        prefix = f"{act}\x1f"
        return sorted(key[len(prefix) :] for key in self._by_act if key.startswith(prefix))

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

    def _scan(self, sub: str, obj: str, act: str, now: float) -> Candidates:
        own, shared = self._scan_parts(sub, obj, act, now)
        if isinstance(shared, GroupPart):
            shared = shared.candidates
        return tuple((cell, ()) for cell in own) + shared

    def _scan_parts(
        self, sub: str, obj: str, act: str, now: float
    ) -> tuple[list[Cell], Candidates | GroupPart]:
        """Every cell matching the request, in the order Casbin's search reaches them.

        That order is: the principals `sub` reaches, breadth-first (`sub` first); within one,
        the exact resource, then prefixes longest first. A principal with a single parent group
        (most users) is `sub` followed by that group's own search one level shallower, so its
        candidates are its own cells followed by the group's, which are memoised per
        (group, obj, act) together with their outcome at `now` (a `GroupPart`): the work per
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
        own_cells: list[Cell] = []
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
        parts: dict[str, GroupPart],
        stale: GroupPart | None,
        by_sub: dict[str, Bucket],
        now: float,
    ) -> GroupPart:
        """The `GroupPart` of (group, obj) at `now`, memoised in `parts` (group's, for the
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
        part = parts[obj] = GroupPart.at(candidates, now)
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
        """Levels 1..`levels` (`sub` is level 1)."""
        return ancestor_paths(self._parents, sub, levels - 1)
