"""Who can read a dataset, who was meant to, and which grants let the difference in.

Pure set arithmetic over the membership graph and the grants, exactly as Casbin decides them
(see `app.policy.decision_index` for the model and its quirks), but computed per dataset instead of
per principal: pycasbin's way (one `enforce` per subject) takes minutes for 100k users.

For a dataset ``d`` and an action ``a`` at time ``now``:

* A rule covers ``d`` when ``keyMatch(d, rule.obj)`` and ``rule.act == a``; it counts only when
  live (``is_live(rule.exp, now)``) and its effect is ``allow`` or ``deny``.
* A principal ``p`` reaches a rule subject ``s`` (Casbin's ``g(p, s)``) when ``p == s`` or the
  shortest membership path from ``p`` to ``s`` has at most ``CASBIN_MAX_HIERARCHY_LEVEL - 1`` (9)
  links. Equivalently: ``p`` is within 9 levels of a breadth-first search from ``s`` down the
  member edges. Cycles are harmless (the search is bounded by depth).
* effective = leaves (``user:``/``service:``) reaching a live covering allow, minus those reaching
  a live covering deny; intended = leaves reaching any entry of the intended audience;
  excess = effective - intended. `Exposure.by_grant` splits the excess by the allow rule that lets
  each principal in (a principal reached by two allows is under both).

Sets of leaves are Python ints used as bitsets, indexed by a leaf number that the `Directory`
assigns (in depth-first order from the top groups, so a group's leaves tend to be close together).
A union or difference of 100k-member sets is then a few microseconds of C. Names are materialised
only on request (`Directory.names`, `Directory.sample`).

Both classes are mutable (`add_rule`, `remove_rule`, `add_link`, `remove_link`) so that one change
can be re-analysed in milliseconds; the memos they keep are invalidated precisely. They are not
safe to mutate while another thread reads them: mutate a `copy()` and swap the reference, as with
the enforcer. Reads may register a previously unseen leaf (an intended-audience member nobody
grants anything), which only ever adds a bit number and changes no answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from app.policy.decision_index import CASBIN_MAX_HIERARCHY_LEVEL, Rule

__all__ = [
    "LEAF_PREFIXES",
    "MAX_LINKS",
    "Directory",
    "Exposure",
    "ExposureAnalyser",
    "datasets_covered",
    "is_leaf",
]

LEAF_PREFIXES = ("user:", "service:")
# The longest membership path Casbin follows: the requester is level 1 of 10.
MAX_LINKS = CASBIN_MAX_HIERARCHY_LEVEL - 1
# Height marker for a member set that was cut off by the depth limit (any value > MAX_LINKS).
_TRUNCATED = MAX_LINKS + 1

ALLOW = "allow"
DENY = "deny"

Path = tuple[str, ...]


def is_leaf(principal: str) -> bool:
    """Users and services read; groups only hold members."""
    return principal.startswith(LEAF_PREFIXES)


def datasets_covered(resource: str, dataset_ids: Iterable[str]) -> list[str]:
    """The dataset ids that a grant on `resource` covers (Casbin's keyMatch), in input order."""
    star = resource.find("*")
    if star == -1:
        return [d for d in dataset_ids if d == resource]
    prefix = resource[:star]
    return [d for d in dataset_ids if d.startswith(prefix)]


# -- bitsets ------------------------------------------------------------------------------------

_BYTE_BITS: tuple[tuple[int, ...], ...] = tuple(
    tuple(bit for bit in range(8) if value >> bit & 1) for value in range(256)
)


def _indices(bits: int) -> list[int]:
    """The set bit numbers of a non-negative int, ascending."""
    found: list[int] = []
    data = bits.to_bytes((bits.bit_length() + 7) // 8, "little")
    for position, byte in enumerate(data):
        if byte:
            base = position << 3
            found.extend([base + bit for bit in _BYTE_BITS[byte]])
    return found


def _from_indices(indices: list[int]) -> int:
    if len(indices) < 32:
        bits = 0
        for index in indices:
            bits |= 1 << index
        return bits
    buffer = bytearray((max(indices) >> 3) + 1)
    for index in indices:
        buffer[index >> 3] |= 1 << (index & 7)
    return int.from_bytes(buffer, "little")


# -- the membership graph -----------------------------------------------------------------------


class Directory:
    """The g links as a graph, with depth-limited member sets as bitsets.

    `leaf_bits(node)` is every leaf whose shortest path to `node` has at most 9 links (``node``
    itself included when it is a leaf): exactly the leaves that Casbin's ``g(leaf, node)`` admits.
    It is computed by the recursion ``L_k(n) = self(n) | OR(L_{k-1}(c) for c in children(n))``
    (``L_0(n) = self(n)``), which visits a node at depth ``j`` whenever some path of length ``j``
    reaches it, hence exactly the nodes at shortest distance ``<= k``. A result that the depth limit
    did not cut off (the subgraph under ``n`` is acyclic and at most ``h <= k`` deep) equals
    ``L_j(n)`` for every ``j >= h`` and is memoised once per node; cut-off results (deep chains,
    cycles) are memoised per ``(node, k)``.
    """

    def __init__(
        self, links: Iterable[tuple[str, str]] = (), extra_principals: Iterable[str] = ()
    ) -> None:
        self._parents: dict[str, dict[str, None]] = {}
        self._children: dict[str, dict[str, None]] = {}
        self._leaf_names: list[str] = []
        self._leaf_number: dict[str, int] = {}
        # node -> (height, bits): L_k(node) == bits for every k >= height.
        self._full: dict[str, tuple[int, int]] = {}
        # node -> {k: L_k(node)} for results that the depth limit cut off.
        self._partial: dict[str, dict[int, int]] = {}
        # leaf/group -> every principal it reaches with a shortest path (forward search).
        self._ancestor_memo: dict[str, tuple[tuple[str, Path], ...]] = {}

        unique = list(dict.fromkeys(links))
        for member, group in unique:
            self._parents.setdefault(member, {})[group] = None
            self._children.setdefault(group, {})[member] = None
        self._number_leaves(unique)
        for principal in extra_principals:
            self.register(principal)

    def _number_leaves(self, links: list[tuple[str, str]]) -> None:
        """Depth-first from the top groups, so that a group's leaves get nearby numbers."""
        seen: set[str] = set()
        tops = [node for node in self._children if node not in self._parents]
        for top in tops:
            stack = [top]
            while stack:
                node = stack.pop()
                if node in seen:
                    continue
                seen.add(node)
                self.register(node)
                children = self._children.get(node)
                if children:
                    stack.extend(reversed(children))
        for member, group in links:  # leaves only under cycles with no top group
            self.register(member)
            self.register(group)

    # -- leaves ---------------------------------------------------------------------------------

    def register(self, principal: str) -> None:
        """Give a leaf its bit number (idempotent; groups are ignored)."""
        if principal not in self._leaf_number and is_leaf(principal):
            self._leaf_number[principal] = len(self._leaf_names)
            self._leaf_names.append(principal)

    @property
    def leaf_count(self) -> int:
        return len(self._leaf_names)

    def leaves(self) -> frozenset[str]:
        """Every registered leaf: the universe that answers are drawn from."""
        return frozenset(self._leaf_names)

    def bits_of(self, principals: Iterable[str]) -> int:
        """The bitset of the given principals that are registered leaves (others are ignored)."""
        number = self._leaf_number
        return _from_indices([number[p] for p in principals if p in number])

    def names(self, bits: int) -> list[str]:
        """The leaves in a bitset, in bit order."""
        names = self._leaf_names
        return [names[index] for index in _indices(bits)]

    def sample(self, bits: int, limit: int) -> list[str]:
        """Up to `limit` leaves of a bitset (the lowest-numbered), without decoding all of it."""
        found: list[str] = []
        while bits and len(found) < limit:
            lowest = bits & -bits
            found.append(self._leaf_names[lowest.bit_length() - 1])
            bits ^= lowest
        return found

    # -- member sets ----------------------------------------------------------------------------

    def leaf_bits(self, node: str) -> int:
        """Leaves that reach `node` for Casbin (itself included when it is a leaf)."""
        self.register(node)
        return self._bits(node, MAX_LINKS)[0]

    def members(self, node: str) -> frozenset[str]:
        """`leaf_bits` as names."""
        return frozenset(self.names(self.leaf_bits(node)))

    def _bits(self, node: str, depth: int) -> tuple[int, int]:
        """(L_depth(node), height); height is _TRUNCATED when the depth limit cut it off."""
        full = self._full.get(node)
        if full is not None and full[0] <= depth:
            return full[1], full[0]
        number = self._leaf_number.get(node)
        own = 0 if number is None else 1 << number
        children = self._children.get(node)
        if not children:
            return own, 0
        if depth == 0:
            return own, _TRUNCATED
        partial = self._partial.get(node)
        if partial is not None:
            cached = partial.get(depth)
            if cached is not None:
                return cached, _TRUNCATED

        bits = own
        height = 0
        plain: list[int] = []  # leaves without members of their own: collected, then one int
        leaf_number = self._leaf_number
        child_links = self._children
        for child in children:
            if child not in child_links:
                child_number = leaf_number.get(child)
                if child_number is not None:
                    plain.append(child_number)
                height = max(height, 1)
                continue
            child_bits, child_height = self._bits(child, depth - 1)
            bits |= child_bits
            height = max(height, child_height + 1)
        if plain:
            bits |= _from_indices(plain)
        if height <= depth:
            self._full[node] = (height, bits)
            return bits, height
        self._partial.setdefault(node, {})[depth] = bits
        return bits, _TRUNCATED

    # -- ancestors ------------------------------------------------------------------------------

    def ancestors(self, principal: str) -> dict[str, Path]:
        """Every principal `principal` reaches for Casbin's g(), with a shortest path.

        The same breadth-first search as `DecisionIndex.ancestors` (identical answers).
        """
        return dict(self._ancestors(principal))

    def _ancestors(self, principal: str) -> tuple[tuple[str, Path], ...]:
        if principal not in self._parents:
            return ((principal, (principal,)),)
        memo = self._ancestor_memo.get(principal)
        if memo is None:
            paths: dict[str, Path] = {principal: (principal,)}
            frontier = [principal]
            for _level in range(MAX_LINKS):
                next_frontier: list[str] = []
                for member in frontier:
                    for group in self._parents.get(member, ()):
                        if group not in paths:
                            paths[group] = (*paths[member], group)
                            next_frontier.append(group)
                if not next_frontier:
                    break
                frontier = next_frontier
            memo = tuple(paths.items())
            self._ancestor_memo[principal] = memo
        return memo

    # -- changes --------------------------------------------------------------------------------

    def has_link(self, member: str, group: str) -> bool:
        return group in self._parents.get(member, {})

    def add_link(self, member: str, group: str) -> bool:
        """Add a g link; False when it was already there."""
        if self.has_link(member, group):
            return False
        self._invalidate(group)
        self._parents.setdefault(member, {})[group] = None
        self._children.setdefault(group, {})[member] = None
        self.register(member)
        self.register(group)
        return True

    def remove_link(self, member: str, group: str) -> bool:
        """Remove a g link; False when it was not there. Leaves keep their numbers."""
        if not self.has_link(member, group):
            return False
        self._invalidate(group)
        parents = self._parents[member]
        del parents[group]
        if not parents:
            del self._parents[member]
        children = self._children[group]
        del children[member]
        if not children:
            del self._children[group]
        return True

    def _invalidate(self, group: str) -> None:
        """Forget what a change to `group`'s members can alter.

        L_k(a) depends on `group`'s members only if `group` is within k <= 9 links below `a`; the
        set of such `a` (the 9-link forward search from `group`) is the same before and after a
        change of `group`'s own members, since a shortest path never passes `group` twice.
        """
        for node in self._ancestors(group):
            self._full.pop(node[0], None)
            self._partial.pop(node[0], None)
        self._ancestor_memo.clear()  # forward paths of everything below `group` may change

    def copy(self) -> Directory:
        """An independent copy (memos included; the ints in them are immutable and shared)."""
        clone = Directory.__new__(Directory)
        clone._parents = {m: dict(gs) for m, gs in self._parents.items()}
        clone._children = {g: dict(ms) for g, ms in self._children.items()}
        clone._leaf_names = list(self._leaf_names)
        clone._leaf_number = dict(self._leaf_number)
        clone._full = dict(self._full)
        clone._partial = {node: dict(by_depth) for node, by_depth in self._partial.items()}
        clone._ancestor_memo = dict(self._ancestor_memo)
        return clone


# -- the grants ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Grant:
    rule: Rule
    expiry: float | None  # None: never expires
    is_allow: bool

    def is_live(self, now: float) -> bool:
        return self.expiry is None or now < self.expiry


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


class _ActionRules:
    """The rules of one action, by exact resource and by pattern prefix (text before '*')."""

    __slots__ = ("exact", "lengths", "prefix_lengths", "prefixes")

    def __init__(self) -> None:
        self.exact: dict[str, dict[Rule, _Grant]] = {}
        self.prefixes: dict[str, dict[Rule, _Grant]] = {}
        self.prefix_lengths: dict[int, int] = {}  # prefix length -> how many prefixes have it
        self.lengths: tuple[int, ...] = ()  # longest first

    def add(self, grant: _Grant) -> None:
        obj = grant.rule.obj
        star = obj.find("*")
        if star == -1:
            self.exact.setdefault(obj, {})[grant.rule] = grant
            return
        prefix = obj[:star]
        cell = self.prefixes.get(prefix)
        if cell is None:
            cell = self.prefixes[prefix] = {}
            self.prefix_lengths[star] = self.prefix_lengths.get(star, 0) + 1
            self.lengths = tuple(sorted(self.prefix_lengths, reverse=True))
        cell[grant.rule] = grant

    def remove(self, rule: Rule) -> None:
        star = rule.obj.find("*")
        table = self.exact if star == -1 else self.prefixes
        key = rule.obj if star == -1 else rule.obj[:star]
        cell = table[key]
        del cell[rule]
        if cell:
            return
        del table[key]
        if star != -1:
            self.prefix_lengths[star] -= 1
            if not self.prefix_lengths[star]:
                del self.prefix_lengths[star]
            self.lengths = tuple(sorted(self.prefix_lengths, reverse=True))

    def covering(self, obj: str) -> Iterator[_Grant]:
        cell = self.exact.get(obj)
        if cell:
            yield from cell.values()
        size = len(obj)
        prefixes = self.prefixes
        for length in self.lengths:
            if length <= size:
                cell = prefixes.get(obj[:length])
                if cell:
                    yield from cell.values()

    def copy(self) -> _ActionRules:
        clone = _ActionRules()
        clone.exact = {obj: dict(cell) for obj, cell in self.exact.items()}
        clone.prefixes = {prefix: dict(cell) for prefix, cell in self.prefixes.items()}
        clone.prefix_lengths = dict(self.prefix_lengths)
        clone.lengths = self.lengths
        return clone


@dataclass(frozen=True, slots=True)
class Exposure:
    """One dataset's exposure for one action at one instant, as bitsets of `Directory` leaves."""

    dataset: str
    action: str
    allow_rules: tuple[Rule, ...]  # live allows covering the dataset
    deny_rules: tuple[Rule, ...]  # live denies covering the dataset
    effective: int
    intended: int
    excess: int
    # Live allow rule id -> the excess principals it lets in (0 when none).
    by_grant: Mapping[str, int]

    @property
    def effective_count(self) -> int:
        return self.effective.bit_count()

    @property
    def excess_count(self) -> int:
        return self.excess.bit_count()


class ExposureAnalyser:
    """Effective readers, intended audience and per-grant excess of datasets, Casbin-exact."""

    def __init__(
        self,
        rules: Iterable[Rule],
        links: Iterable[tuple[str, str]],
        extra_principals: Iterable[str] = (),
    ) -> None:
        self.directory = Directory(links)
        self._by_action: dict[str, _ActionRules] = {}
        self._by_subject: dict[str, dict[Rule, None]] = {}
        self._rules: dict[Rule, _Grant] = {}
        for rule in rules:
            self.add_rule(rule)
        for principal in extra_principals:
            self.directory.register(principal)

    # -- rules ----------------------------------------------------------------------------------

    def add_rule(self, rule: Rule) -> bool:
        """Add a p rule; False when an identical rule was already there (Casbin keeps a set).

        A rule whose effect is neither allow nor deny matches in Casbin but has no effect, so it
        is not indexed (but still counts as present).
        """
        if rule in self._rules:
            return False
        grant = _Grant(rule, _parse_expiry(rule), rule.eft == ALLOW)
        self._rules[rule] = grant
        self.directory.register(rule.sub)
        if rule.eft in (ALLOW, DENY):
            rules = self._by_action.get(rule.act)
            if rules is None:
                rules = self._by_action[rule.act] = _ActionRules()
            rules.add(grant)
            self._by_subject.setdefault(rule.sub, {})[rule] = None
        return True

    def remove_rule(self, rule: Rule) -> bool:
        """Remove a p rule; False when it was not there."""
        if self._rules.pop(rule, None) is None:
            return False
        if rule.eft in (ALLOW, DENY):
            self._by_action[rule.act].remove(rule)
            subject_rules = self._by_subject[rule.sub]
            del subject_rules[rule]
            if not subject_rules:
                del self._by_subject[rule.sub]
        return True

    def rules(self) -> list[Rule]:
        return list(self._rules)

    def rules_covering(self, dataset: str, action: str) -> list[Rule]:
        """Every allow/deny rule for `action` whose resource covers `dataset`, live or not."""
        return [grant.rule for grant in self._covering(dataset, action)]

    def _covering(self, dataset: str, action: str) -> Iterator[_Grant]:
        rules = self._by_action.get(action)
        return iter(()) if rules is None else rules.covering(dataset)

    # -- memberships ----------------------------------------------------------------------------

    def add_link(self, member: str, group: str) -> bool:
        return self.directory.add_link(member, group)

    def remove_link(self, member: str, group: str) -> bool:
        return self.directory.remove_link(member, group)

    def rules_affected_by_membership(self, group: str) -> list[Rule]:
        """The rules whose reach a change of `group`'s direct members can alter.

        A new or removed link ``(member, group)`` only adds or removes paths through that link,
        so the subjects whose member sets change are `group` and the groups it reaches (within
        Casbin's depth). Valid before and after the change.
        """
        found: list[Rule] = []
        for subject in self.directory.ancestors(group):
            found.extend(self._by_subject.get(subject, ()))
        return found

    def datasets_affected_by_membership(
        self,
        group: str,
        dataset_ids: Iterable[str],
        audiences: Mapping[str, Iterable[str]] | None = None,
    ) -> list[str]:
        """Which of `dataset_ids` may change exposure when `group`'s direct members change.

        Those covered by a rule of `rules_affected_by_membership`, and, given the datasets'
        intended `audiences` (dataset id -> listed principals), those whose audience lists `group`
        or a group it reaches: their intended expansion changes.
        """
        ids = list(dataset_ids)
        hit: dict[str, None] = {}
        for resource in {rule.obj for rule in self.rules_affected_by_membership(group)}:
            hit.update(dict.fromkeys(datasets_covered(resource, ids)))
        if audiences:
            reached = self.directory.ancestors(group)
            for dataset in ids:
                if dataset not in hit and any(p in reached for p in audiences.get(dataset, ())):
                    hit[dataset] = None
        return [d for d in ids if d in hit]

    # -- analysis -------------------------------------------------------------------------------

    @property
    def universe(self) -> frozenset[str]:
        """Every leaf known: link members and groups, rule subjects and extra principals."""
        return self.directory.leaves()

    def intended_bits(self, audience: Iterable[str]) -> int:
        """The expansion of an intended audience: listed leaves and every leaf reaching a listed
        group (with Casbin's depth limit, for consistency with what grants reach)."""
        bits = 0
        for principal in audience:
            bits |= self.directory.leaf_bits(principal)
        return bits

    def intended(self, audience: Iterable[str]) -> frozenset[str]:
        return frozenset(self.directory.names(self.intended_bits(audience)))

    def exposure(self, dataset: str, action: str, now: float, intended: int = 0) -> Exposure:
        """The dataset's effective readers, excess and per-grant excess; `intended` as bits."""
        now = float(now)
        allows: list[Rule] = []
        denies: list[Rule] = []
        for grant in self._covering(dataset, action):
            if grant.is_live(now):
                (allows if grant.is_allow else denies).append(grant.rule)
        leaf_bits = self.directory.leaf_bits
        denied = 0
        for rule in denies:
            denied |= leaf_bits(rule.sub)
        keep = ~(denied | intended)  # negative: & with it clears the denied and intended bits
        reached = 0
        by_grant: dict[str, int] = {}
        for rule in allows:
            bits = leaf_bits(rule.sub)
            reached |= bits
            by_grant[rule.id] = by_grant.get(rule.id, 0) | (bits & keep)
        effective = reached & ~denied
        return Exposure(
            dataset=dataset,
            action=action,
            allow_rules=tuple(allows),
            deny_rules=tuple(denies),
            effective=effective,
            intended=intended,
            excess=effective & ~intended,
            by_grant=MappingProxyType(by_grant),
        )

    def effective(self, dataset: str, action: str, now: float) -> frozenset[str]:
        """Every user and service that Casbin lets do `action` on `dataset` at `now`."""
        return frozenset(self.directory.names(self.exposure(dataset, action, now).effective))

    def grant_excess(
        self, dataset: str, action: str, now: float, intended: frozenset[str]
    ) -> dict[str, frozenset[str]]:
        """Live allow rule id -> the principals outside `intended` (already expanded) that it
        lets in; every live covering allow is a key, with an empty set when it lets none in."""
        exposure = self.exposure(dataset, action, now, self.directory.bits_of(intended))
        names = self.directory.names
        return {rule_id: frozenset(names(bits)) for rule_id, bits in exposure.by_grant.items()}

    def paths_for(
        self, principal: str, dataset: str, action: str, now: float
    ) -> list[tuple[Rule, Path]]:
        """The live allow rules covering `dataset` that `principal` reaches, each with a shortest
        membership path from `principal` to the rule's subject. Denies are not consulted: ask
        `effective` (or `exposure`) whether the principal is let in."""
        now = float(now)
        ancestors = self.directory.ancestors(principal)
        found: list[tuple[Rule, Path]] = []
        for grant in self._covering(dataset, action):
            if grant.is_allow and grant.is_live(now):
                path = ancestors.get(grant.rule.sub)
                if path is not None:
                    found.append((grant.rule, path))
        return found

    def reach(
        self,
        dataset: str,
        action: str,
        now: float,
        principals: Iterable[str] | None = None,
    ) -> dict[str, list[tuple[Rule, Path]]]:
        """Effective principal -> the live allows that reach it, with paths.

        Only for `principals` (those of them that are effective) when given: the full map of a
        dataset readable by 100k principals is large.
        """
        effective = self.exposure(dataset, action, now).effective
        if principals is None:
            chosen = self.directory.names(effective)
        else:
            chosen = self.directory.names(effective & self.directory.bits_of(principals))
        return {p: self.paths_for(p, dataset, action, now) for p in chosen}

    def copy(self) -> ExposureAnalyser:
        """An independent copy to change while readers keep using this one."""
        clone = ExposureAnalyser.__new__(ExposureAnalyser)
        clone.directory = self.directory.copy()
        clone._by_action = {action: rules.copy() for action, rules in self._by_action.items()}
        clone._by_subject = {sub: dict(rules) for sub, rules in self._by_subject.items()}
        clone._rules = dict(self._rules)
        return clone
