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
safe to mutate while another thread reads them: mutate a `copy()` (cheap: link and rule sets are
copied on write) and swap the reference, as with the enforcer. Reads may register a previously
unseen leaf (an intended-audience member nobody grants anything), which only ever adds a bit
number and changes no answer.

Incremental re-analysis: `reanalysis_for_rule` and `reanalysis_for_membership` say, for one
change, which (dataset, allow rule) pairs' excess can differ (every other grant's excess is
unchanged); `grant_excess_bits` recomputes just those. A membership change touches only the
leaves under the moved member, so only grants reaching them need recomputing;
`datasets_affected_by_membership` is the coarser, member-independent answer.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from itertools import islice
from types import MappingProxyType
from typing import Generic, TypeVar

from app.policy.decision_index import CASBIN_MAX_HIERARCHY_LEVEL, Rule

__all__ = [
    "LEAF_PREFIXES",
    "MAX_LINKS",
    "Directory",
    "Exposure",
    "ExposureAnalyser",
    "GrantExcess",
    "Reanalysis",
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
Ancestry = tuple[tuple[str, Path], ...]  # every principal reached, each with a shortest path


def is_leaf(principal: str) -> bool:
    """Users and services read; groups only hold members."""
    return principal.startswith(LEAF_PREFIXES)


def covers(resource: str, dataset: str) -> bool:
    """Whether a grant on `resource` covers `dataset` (Casbin's keyMatch)."""
    star = resource.find("*")
    return dataset == resource if star == -1 else dataset.startswith(resource[:star])


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


def _highest(bits: int, limit: int, width: int = 0) -> list[int]:
    """Up to `limit` set bit numbers of a non-negative int, highest first (`_descending` from
    the top, its first window `width` bits wide or wide enough to hold `limit` when dense)."""
    start = bits.bit_length()
    return list(islice(_descending(bits, start, max(width, 64 * max(limit, 1))), limit))


def _descending(bits: int, below: int, width: int = 256) -> Iterator[int]:
    """The set bit numbers of a non-negative int under `below`, highest first.

    Works window by window from the top (each next one wider), so that the first few cost
    small-int operations only rather than operations on the whole 100k-bit int.
    """
    while below > 0:
        low = max(0, below - width)
        window = (bits >> low) & ((1 << (below - low)) - 1)
        while window:
            top = window.bit_length() - 1
            yield low + top
            window ^= 1 << top
        below = low
        width *= 4


def _indices(bits: int) -> list[int]:
    """The set bit numbers of a non-negative int, ascending."""
    count = bits.bit_count()
    if count <= 64:  # sparse: skip the zero bytes without looking at them
        return _highest(bits, count)[::-1]
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


def _bit_test(bits: int) -> Callable[[int], bool]:
    """A constant-time membership test for a non-negative int (Python's is O(size)); the int is
    converted to bytes on the first test only."""
    data = b""

    def test(index: int) -> bool:
        nonlocal data
        if not data and bits:
            data = bits.to_bytes((bits.bit_length() + 7) // 8, "little")
        byte = index >> 3
        return byte < len(data) and bool(data[byte] >> (index & 7) & 1)

    return test


_K = TypeVar("_K")
_I = TypeVar("_I")
_W = TypeVar("_W")


class _Nested(Generic[_K, _I, _W]):
    """A ``dict[key, dict[item, value]]`` whose inner dicts are shared with copies until written.

    `copy()` costs one copy of the outer dict; the first write to an inner dict afterwards copies
    that one dict (in whichever of the two tables writes). Reads go straight to `data`.
    """

    __slots__ = ("_owned", "data")

    def __init__(self) -> None:
        self.data: dict[_K, dict[_I, _W]] = {}
        self._owned: set[int] = set()  # ids of the inner dicts this table may change in place

    def put(self, key: _K, item: _I, value: _W) -> None:
        inner = self.data.get(key)
        if inner is None:
            inner = self.data[key] = {}
            self._owned.add(id(inner))
        elif id(inner) not in self._owned:
            inner = self.data[key] = dict(inner)
            self._owned.add(id(inner))
        inner[item] = value

    def remove(self, key: _K, item: _I) -> None:
        """Remove an item that is there; the key goes when its last item does."""
        inner = self.data[key]
        if len(inner) == 1:
            del self.data[key]
            self._owned.discard(id(inner))
            return
        if id(inner) not in self._owned:
            inner = self.data[key] = dict(inner)
            self._owned.add(id(inner))
        del inner[item]

    def copy(self) -> _Nested[_K, _I, _W]:
        clone: _Nested[_K, _I, _W] = _Nested()
        clone.data = dict(self.data)
        self._owned = set()  # every inner dict is now shared
        return clone


# -- the membership graph -----------------------------------------------------------------------


# A copy whose links changed starts a new root of forward searches beyond this many stale ones.
STALE_SEARCHES = 10_000
# Up to this many moved leaves, a membership change lists every principal they reach
# (`Directory.reached_by`) and looks only at those subjects; beyond it, at every subject's leaves.
REACH_LEAVES = 64
# `Directory.highest_outside` gives up after looking at this many leaves.
OUTSIDE_TRIES = 64


class _SearchMemo:
    """Forward searches (principal -> every principal it reaches, with a shortest path), shared
    by a directory and its copies so that a link change does not copy them all.

    `shared` holds searches as they are in the links the first of these directories had (the
    root). A directory whose links changed since lists the principals whose searches may differ
    from the root's (`stale`: those at or below a member whose link changed) and keeps theirs in
    `own`. Any other search is the same in the root and in every such directory, whichever of
    them computed it.
    """

    __slots__ = ("own", "shared", "stale")

    def __init__(self, shared: dict[str, Ancestry] | None = None) -> None:
        self.shared: dict[str, Ancestry] = {} if shared is None else shared
        self.stale: set[str] = set()
        self.own: dict[str, Ancestry] = {}

    def get(self, principal: str) -> Ancestry | None:
        if principal in self.stale:
            return self.own.get(principal)
        return self.shared.get(principal)

    def put(self, principal: str, ancestry: Ancestry) -> None:
        (self.own if principal in self.stale else self.shared)[principal] = ancestry

    def forget(self, principal: str) -> None:
        self.stale.add(principal)
        self.own.pop(principal, None)

    def branch(self) -> _SearchMemo:
        """The memo for a directory about to change its links (this one stays as it is)."""
        if len(self.stale) > STALE_SEARCHES:
            return _SearchMemo()
        branch = _SearchMemo(self.shared)
        branch.stale = set(self.stale)
        branch.own = dict(self.own)
        return branch


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
        # member -> its groups, and group -> its members (insertion-ordered sets).
        self._parent_table: _Nested[str, str, None] = _Nested()
        self._child_table: _Nested[str, str, None] = _Nested()
        self._leaf_names: list[str] = []
        self._leaf_number: dict[str, int] = {}
        # node -> (height, bits): L_k(node) == bits for every k >= height.
        self._full: dict[str, tuple[int, int]] = {}
        # node -> {k: L_k(node)} for results that the depth limit cut off.
        self._partial: dict[str, dict[int, int]] = {}
        self._counts: dict[str, int] = {}  # node -> leaf_bits(node).bit_count()
        # leaf/group -> every principal it reaches with a shortest path (forward search).
        self._searches = _SearchMemo()
        # Whether a copy may share the links (and the memos that follow from them), or the
        # leaf numbering: the first change on either side takes its own (see `copy`).
        self._links_shared = False
        self._leaves_shared = False

        unique = list(dict.fromkeys(links))
        for member, group in unique:
            self._parent_table.put(member, group, None)
            self._child_table.put(group, member, None)
        self._number_leaves(unique)
        for principal in extra_principals:
            self.register(principal)

    @property
    def children_map(self) -> Mapping[str, Iterable[str]]:
        """Group -> its direct members, read-only (the g links as the API stores them)."""
        return MappingProxyType(self._child_table.data)

    @property
    def parents_map(self) -> Mapping[str, Iterable[str]]:
        """Member -> the groups it directly belongs to, read-only."""
        return MappingProxyType(self._parent_table.data)

    @property
    def _parents(self) -> dict[str, dict[str, None]]:
        return self._parent_table.data

    @property
    def _children(self) -> dict[str, dict[str, None]]:
        return self._child_table.data

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
            if self._leaves_shared:
                self._leaf_names = list(self._leaf_names)
                self._leaf_number = dict(self._leaf_number)
                self._leaves_shared = False
            self._leaf_number[principal] = len(self._leaf_names)
            self._leaf_names.append(principal)

    @property
    def size(self) -> int:
        """How many leaves are registered (the bit numbers in use)."""
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

    def names_of(self, numbers: Iterable[int]) -> list[str]:
        """The leaves with these numbers."""
        names = self._leaf_names
        return [names[number] for number in numbers]

    def sample(self, bits: int, limit: int, count: int | None = None) -> list[str]:
        """Up to `limit` leaves of a bitset (the highest-numbered), without decoding all of it.

        `count`, the number of leaves in `bits` when known, saves widening the search for a
        sparse set that has fewer than `limit`.
        """
        width = 0
        if count is not None:
            limit = min(limit, count)
            if count:  # a window expected to hold twice the sample, at this density
                width = 2 * (limit - 1) * bits.bit_length() // count
        names = self._leaf_names
        return [names[index] for index in _highest(bits, limit, width)]

    def highest_outside(
        self, subject: str, below: int, limit: int, blockers: frozenset[str]
    ) -> list[int] | None:
        """Up to `limit` highest numbers under `below` of the leaves that reach `subject` and
        none of `blockers`, highest first: the top of a grant's excess, where `blockers` are the
        dataset's live deny subjects and intended audience. Each leaf is tested on its own
        forward search, so no full-size set is built; None after `OUTSIDE_TRIES` leaves were
        looked at (the excess is sparse there: build it instead)."""
        names = self._leaf_names
        found: list[int] = []
        for tried, number in enumerate(_descending(self.leaf_bits(subject), below)):
            if tried == OUTSIDE_TRIES:
                return None
            if blockers.isdisjoint([p for p, _path in self._ancestors(names[number])]):
                found.append(number)
                if len(found) == limit:
                    break
        return found

    def leaf_number(self, principal: str) -> int | None:
        """The bit number of a registered leaf, else None."""
        return self._leaf_number.get(principal)

    def leaf_numbers(self, principals: Iterable[str]) -> list[int | None]:
        """`leaf_number` of each."""
        return list(map(self._leaf_number.get, principals))

    def plain_leaf_number(self, principal: str) -> int | None:
        """The bit number of a registered leaf that has no members of its own, else None."""
        if principal in self._children:
            return None
        return self._leaf_number.get(principal)

    # -- member sets ----------------------------------------------------------------------------

    def leaf_bits(self, node: str) -> int:
        """Leaves that reach `node` for Casbin (itself included when it is a leaf)."""
        full = self._full.get(node)
        if full is not None:  # a memo that the depth limit did not cut off holds at any depth
            return full[1]
        if node not in self._children:
            number = self._leaf_number.get(node)
            if number is None:
                if not is_leaf(node):
                    return 0
                self.register(node)
                number = self._leaf_number[node]
            return 1 << number
        return self._bits(node, MAX_LINKS)[0]

    def leaf_count(self, node: str) -> int:
        """`leaf_bits(node).bit_count()`, memoised (a popcount of 100k bits is not free)."""
        count = self._counts.get(node)
        if count is None:
            count = self._counts[node] = self.leaf_bits(node).bit_count()
        return count

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

    def path(self, principal: str, target: str) -> Path | None:
        """`ancestors(principal).get(target)` without building the dict: a shortest membership
        path from `principal` to `target` (``(principal,)`` when they are the same), or None."""
        for node, path in self._ancestors(principal):
            if node == target:
                return path
        return None

    def reached_by(self, bits: int) -> frozenset[str] | None:
        """Every principal that the leaves of `bits` reach, or None when they are more than
        `REACH_LEAVES` (listing them would cost more than it saves)."""
        if bits.bit_count() > REACH_LEAVES:
            return None
        return frozenset(p for leaf in self.names(bits) for p, _path in self._ancestors(leaf))

    def _ancestors(self, principal: str) -> Ancestry:
        if principal not in self._parents:
            return ((principal, (principal,)),)
        memo = self._searches.get(principal)
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
            self._searches.put(principal, memo)
        return memo

    # -- changes --------------------------------------------------------------------------------

    def has_link(self, member: str, group: str) -> bool:
        return group in self._parents.get(member, {})

    def add_link(self, member: str, group: str) -> bool:
        """Add a g link; False when it was already there."""
        if self.has_link(member, group):
            return False
        self._own_links()
        self._invalidate(group)
        self._forget_paths_below(member)
        self._parent_table.put(member, group, None)
        self._child_table.put(group, member, None)
        self.register(member)
        self.register(group)
        return True

    def remove_link(self, member: str, group: str) -> bool:
        """Remove a g link; False when it was not there. Leaves keep their numbers."""
        if not self.has_link(member, group):
            return False
        self._own_links()
        self._invalidate(group)
        self._forget_paths_below(member)
        self._parent_table.remove(member, group)
        self._child_table.remove(group, member)
        return True

    def _invalidate(self, group: str) -> None:
        """Forget what a change to `group`'s members can alter.

        L_k(a) depends on `group`'s members only if `group` is within k <= 9 links below `a`; the
        set of such `a` (the 9-link forward search from `group`) is the same before and after a
        change of `group`'s own members, since a shortest path never passes `group` twice.
        """
        for node, _path in self._ancestors(group):
            self._full.pop(node, None)
            self._partial.pop(node, None)
            self._counts.pop(node, None)

    def _forget_paths_below(self, member: str) -> None:
        """Forget the forward searches that a change of the link (`member`, some group) can
        alter: a search from ``x`` follows that link only if it reaches `member`, i.e. for
        `member` and everything below it (cycles included: a superset does no harm)."""
        seen: set[str] = set()
        stack = [member]
        while stack:
            node = stack.pop()
            if node in seen:
                continue
            seen.add(node)
            self._searches.forget(node)
            stack.extend(self._children.get(node, ()))

    def copy(self) -> Directory:
        """An independent copy, in constant time: both sides share everything until one of them
        changes. A link change first takes its own link tables and member-set memos (in time
        linear in the number of principals, not of links: inner link sets stay shared until
        written; forward searches stay shared but for those the change makes stale); a new
        leaf first takes its own numbering. Memos filled meanwhile are valid for both sides,
        whose links are the same."""
        clone = Directory.__new__(Directory)
        clone.__dict__.update(self.__dict__)
        clone._links_shared = clone._leaves_shared = True
        self._links_shared = self._leaves_shared = True
        return clone

    def _own_links(self) -> None:
        if not self._links_shared:
            return
        self._parent_table = self._parent_table.copy()
        self._child_table = self._child_table.copy()
        self._full = dict(self._full)
        self._partial = {}  # cut-off member sets (cycles, deep chains): recomputed on demand
        self._counts = dict(self._counts)
        self._searches = self._searches.branch()
        self._links_shared = False


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
        self.exact: _Nested[str, Rule, _Grant] = _Nested()
        self.prefixes: _Nested[str, Rule, _Grant] = _Nested()
        self.prefix_lengths: dict[int, int] = {}  # prefix length -> how many prefixes have it
        self.lengths: tuple[int, ...] = ()  # longest first

    def add(self, grant: _Grant) -> None:
        obj = grant.rule.obj
        star = obj.find("*")
        if star == -1:
            self.exact.put(obj, grant.rule, grant)
            return
        prefix = obj[:star]
        if prefix not in self.prefixes.data:
            self.prefix_lengths[star] = self.prefix_lengths.get(star, 0) + 1
            self.lengths = tuple(sorted(self.prefix_lengths, reverse=True))
        self.prefixes.put(prefix, grant.rule, grant)

    def remove(self, rule: Rule) -> None:
        star = rule.obj.find("*")
        if star == -1:
            self.exact.remove(rule.obj, rule)
            return
        prefix = rule.obj[:star]
        self.prefixes.remove(prefix, rule)
        if prefix not in self.prefixes.data:
            self.prefix_lengths[star] -= 1
            if not self.prefix_lengths[star]:
                del self.prefix_lengths[star]
            self.lengths = tuple(sorted(self.prefix_lengths, reverse=True))

    def covering(self, obj: str) -> Iterator[_Grant]:
        for cell in self.cells(obj):
            yield from cell.values()

    def cells(self, obj: str) -> list[dict[Rule, _Grant]]:
        """The rule sets covering `obj`: its exact one, then patterns from the longest prefix."""
        found: list[dict[Rule, _Grant]] = []
        cell = self.exact.data.get(obj)
        if cell:
            found.append(cell)
        size = len(obj)
        prefixes = self.prefixes.data
        for length in self.lengths:
            if length <= size:
                cell = prefixes.get(obj[:length])
                if cell:
                    found.append(cell)
        return found

    def copy(self) -> _ActionRules:
        clone = _ActionRules()
        clone.exact = self.exact.copy()
        clone.prefixes = self.prefixes.copy()
        clone.prefix_lengths = dict(self.prefix_lengths)
        clone.lengths = self.lengths
        return clone


@dataclass(frozen=True, slots=True)
class Reanalysis:
    """What one change can alter: on each listed dataset, only the listed allow rules' excess.

    Every other grant's excess is unchanged everywhere, and a dataset that is not listed keeps
    its effective set too. Recompute the listed ones with `ExposureAnalyser.grant_excess_bits`
    (or the datasets whole with `exposure`, which is never wrong, only slower).
    """

    grants: Mapping[str, tuple[Rule, ...]]  # dataset id -> allow rules, datasets in input order

    @property
    def affected(self) -> tuple[str, ...]:
        """The datasets whose exposure may change, in input order."""
        return tuple(self.grants)


class _Catalog:
    """Dataset ids sorted once, so that a prefix's datasets are a range found by bisection."""

    def __init__(self, dataset_ids: Iterable[str]) -> None:
        self.ids = list(dict.fromkeys(dataset_ids))
        self._position = {d: i for i, d in enumerate(self.ids)}
        self._sorted = sorted(self.ids)

    def covered(self, resource: str) -> list[str]:
        """The datasets `resource` covers (keyMatch), sorted."""
        star = resource.find("*")
        prefix = resource if star == -1 else resource[:star]
        ordered = self._sorted
        start = bisect_left(ordered, prefix)
        if star == -1:
            return [prefix] if start < len(ordered) and ordered[start] == prefix else []
        end = start
        while end < len(ordered) and ordered[end].startswith(prefix):
            end += 1
        return ordered[start:end]

    def reanalysis(self, grants: dict[str, dict[Rule, None]]) -> Reanalysis:
        ordered = sorted(grants, key=self._position.__getitem__)
        return Reanalysis(grants=MappingProxyType({d: tuple(grants[d]) for d in ordered}))


@dataclass(frozen=True, slots=True)
class GrantExcess:
    """The excess one grant lets into one dataset, and how many principals that is."""

    bits: int
    count: int


class Within:
    """The leaves a membership change moved, as the `grant_excess_within` calls for that change
    share them: shifted down to the lowest one (`base`), so that every set restricted to them
    is a small int (one moved user: one bit), with each side's (0: after the change, 1: before)
    subject sets and the principals that a moved leaf reaches (None when too many moved to list
    them) memoised."""

    def __init__(self, leaves: int) -> None:
        self.leaves = leaves
        self.base = (leaves & -leaves).bit_length() - 1 if leaves else 0
        self.shifted = leaves >> self.base
        self._bits: dict[tuple[int, str], int] = {}
        self._reach: dict[int, frozenset[str] | None] = {}

    def numbers(self, shifted: int) -> list[int]:
        """The leaf numbers in a set relative to `base`, ascending."""
        return [self.base + index for index in _indices(shifted)]

    def unshifted(self, shifted: int) -> int:
        return shifted << self.base

    def of(self, directory: Directory, subject: str, side: int) -> int:
        """`subject`'s leaves among the moved ones, relative to `base`."""
        key = (side, subject)
        found = self._bits.get(key)
        if found is None:
            found = self._bits[key] = (directory.leaf_bits(subject) >> self.base) & self.shifted
        return found

    def reach(self, directory: Directory, side: int) -> frozenset[str] | None:
        if side not in self._reach:
            self._reach[side] = directory.reached_by(self.leaves)
        return self._reach[side]


@dataclass(frozen=True)
class Exposure:
    """One dataset's exposure for one action at one instant, as bitsets of `Directory` leaves.

    `by_grant` and `excess_counts` are computed up front (they are what findings need); the
    dataset-level sets (`effective`, `excess`) on first use.
    """

    dataset: str
    action: str
    allow_rules: tuple[Rule, ...]  # live allows covering the dataset
    deny_rules: tuple[Rule, ...]  # live denies covering the dataset
    intended: int
    # Live allow rule id -> the excess principals it lets in (0 when none) ...
    by_grant: Mapping[str, int]
    # ... and how many they are (`by_grant[id].bit_count()`, known cheaply here).
    excess_counts: Mapping[str, int]
    reached_parts: tuple[int, ...] = field(repr=False)  # OR them: every leaf an allow reaches
    denied: int = field(repr=False)  # every leaf a live deny reaches

    @cached_property
    def effective(self) -> int:
        reached = 0
        for part in self.reached_parts:
            reached |= part
        return reached ^ (reached & self.denied)

    @cached_property
    def excess(self) -> int:
        return self.effective ^ (self.effective & self.intended)

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
        # action -> its allow rules, and its deny rules (few: looked up on their own).
        self._allows: dict[str, _ActionRules] = {}
        self._denies: dict[str, _ActionRules] = {}
        self._by_subject: _Nested[str, Rule, None] = _Nested()
        self._rules: dict[Rule, _Grant] = {}
        self._rules_shared = False  # with a copy: the first rule change takes its own tables
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
        self._own_rules()
        grant = _Grant(rule, _parse_expiry(rule), rule.eft == ALLOW)
        self._rules[rule] = grant
        self.directory.register(rule.sub)
        if rule.eft in (ALLOW, DENY):
            table = self._allows if grant.is_allow else self._denies
            rules = table.get(rule.act)
            if rules is None:
                rules = table[rule.act] = _ActionRules()
            rules.add(grant)
            self._by_subject.put(rule.sub, rule, None)
        return True

    def remove_rule(self, rule: Rule) -> bool:
        """Remove a p rule; False when it was not there."""
        if rule not in self._rules:
            return False
        self._own_rules()
        del self._rules[rule]
        if rule.eft in (ALLOW, DENY):
            table = self._allows if rule.eft == ALLOW else self._denies
            table[rule.act].remove(rule)
            self._by_subject.remove(rule.sub, rule)
        return True

    def rules(self) -> list[Rule]:
        return list(self._rules)

    def rules_covering(self, dataset: str, action: str) -> list[Rule]:
        """Every allow/deny rule for `action` whose resource covers `dataset`, live or not
        (allows first)."""
        return [
            grant.rule
            for table in (self._allows, self._denies)
            for grant in self._covering(table, dataset, action)
        ]

    @staticmethod
    def _covering(table: dict[str, _ActionRules], dataset: str, action: str) -> Iterator[_Grant]:
        rules = table.get(action)
        return iter(()) if rules is None else rules.covering(dataset)

    def _live(
        self, table: dict[str, _ActionRules], dataset: str, action: str, now: float
    ) -> list[Rule]:
        return [g.rule for g in self._covering(table, dataset, action) if g.is_live(now)]

    def _live_denies(self, dataset: str, action: str, now: float, lasting: bool) -> list[Rule]:
        return [
            g.rule
            for g in self._covering(self._denies, dataset, action)
            if g.is_live(now) and not (lasting and g.expiry is not None)
        ]

    def has_expiring_deny(self, dataset: str, action: str, now: float) -> bool:
        """Whether a live deny covering `dataset` for `action` has an expiry."""
        return any(
            g.is_live(now) and g.expiry is not None
            for g in self._covering(self._denies, dataset, action)
        )

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
            found.extend(self._by_subject.data.get(subject, ()))
        return found

    def datasets_affected_by_membership(
        self,
        group: str,
        dataset_ids: Iterable[str],
        audiences: Mapping[str, Iterable[str]] | None = None,
    ) -> list[str]:
        """Which of `dataset_ids` may change exposure when `group`'s direct members change
        (whichever member): a coarser, member-independent `reanalysis_for_membership`.

        Those covered by a rule of `rules_affected_by_membership`, and, given the datasets'
        intended `audiences` (dataset id -> listed principals), those whose audience lists `group`
        or a group it reaches: their intended expansion changes. Valid before and after the change.
        """
        catalog = _Catalog(dataset_ids)
        hit: dict[str, None] = {}
        for resource in {rule.obj for rule in self.rules_affected_by_membership(group)}:
            hit.update(dict.fromkeys(catalog.covered(resource)))
        if audiences:
            reached = self.directory.ancestors(group)
            for dataset in catalog.ids:
                if any(p in reached for p in audiences.get(dataset, ())):
                    hit[dataset] = None
        return [d for d in catalog.ids if d in hit]

    def reanalysis_for_membership(
        self,
        before: ExposureAnalyser,
        groups: Iterable[str],
        dataset_ids: Iterable[str],
        audiences: Mapping[str, Iterable[str]] | None = None,
        action: str | None = None,
    ) -> Reanalysis:
        """What changing the direct members of `groups` (any number of links) altered, given
        `before`: this analyser as it was before those changes (the same rules).

        Only subjects whose member set actually differs count (a user joining a second team
        under a division already holding them changes nothing there). Only the groups reaching
        a changed group (within Casbin's depth) can have changed member sets, and only in leaves
        of ``diff``, the union of those differences. So: the allow rules on changed subjects, on
        the datasets they cover; and where a deny on a changed subject covers a dataset or its
        intended audience names one, the allow rules there whose subjects reach a leaf of
        ``diff``.
        """
        catalog = _Catalog(dataset_ids)
        candidates: dict[str, None] = {}
        for group in groups:
            candidates.update(dict.fromkeys(before.directory.ancestors(group)))
            candidates.update(dict.fromkeys(self.directory.ancestors(group)))
        changed: set[str] = set()
        diff = 0
        for subject in candidates:
            old, new = before.directory.leaf_bits(subject), self.directory.leaf_bits(subject)
            if old != new:
                changed.add(subject)
                diff |= old ^ new
        grants: dict[str, dict[Rule, None]] = {}
        if not changed:
            return catalog.reanalysis(grants)
        rechecked: set[str] = set()
        for subject in changed:
            for rule in self._by_subject.data.get(subject, ()):
                if action is not None and rule.act != action:
                    continue
                covered = catalog.covered(rule.obj)
                if rule.eft == DENY:
                    rechecked.update(covered)
                else:
                    for dataset in covered:
                        grants.setdefault(dataset, {})[rule] = None
        if audiences:
            for dataset in catalog.ids:
                if any(p in changed for p in audiences.get(dataset, ())):
                    rechecked.add(dataset)
        self._add_allows_meeting(diff, rechecked, action, grants)
        return catalog.reanalysis(grants)

    def reanalysis_for_rule(
        self, rule: Rule, dataset_ids: Iterable[str], action: str | None = None
    ) -> Reanalysis:
        """What adding or removing `rule` can alter (the same before and after the change).

        An allow changes only its own excess, on the datasets it covers. A deny changes the
        excess of the allows there whose subjects reach any leaf the deny's subject reaches.
        """
        catalog = _Catalog(dataset_ids)
        grants: dict[str, dict[Rule, None]] = {}
        if (action is not None and rule.act != action) or rule.eft not in (ALLOW, DENY):
            return catalog.reanalysis(grants)
        covered = catalog.covered(rule.obj)
        if rule.eft == ALLOW:
            return catalog.reanalysis({dataset: {rule: None} for dataset in covered})
        denied = self.directory.leaf_bits(rule.sub)
        self._add_allows_meeting(denied, covered, rule.act, grants)
        return catalog.reanalysis(grants)

    def _add_allows_meeting(
        self,
        bits: int,
        datasets: Iterable[str],
        action: str | None,
        grants: dict[str, dict[Rule, None]],
    ) -> None:
        """Add to `grants` the allow rules covering `datasets` whose subjects reach a leaf in
        `bits` (live or not: a plan holds at any time)."""
        directory = self.directory
        reached = directory.reached_by(bits)
        is_in = _bit_test(bits)
        tables = [rules for act, rules in self._allows.items() if action is None or act == action]
        # A pattern's rule set covers many datasets: look at each set once.
        meeting: dict[int, list[Rule]] = {}
        for dataset in datasets:
            for table in tables:
                for cell in table.cells(dataset):
                    found = meeting.get(id(cell))
                    if found is None:
                        found = meeting[id(cell)] = []
                        for rule in cell:
                            if reached is not None:
                                if rule.sub in reached:
                                    found.append(rule)
                                continue
                            number = directory.plain_leaf_number(rule.sub)
                            if number is not None:
                                if is_in(number):
                                    found.append(rule)
                            elif directory.leaf_bits(rule.sub) & bits:
                                found.append(rule)
                    if found:
                        target = grants.setdefault(dataset, {})
                        for rule in found:
                            target[rule] = None

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

    def blockers(
        self, dataset: str, action: str, now: float, audience: Iterable[str]
    ) -> frozenset[str]:
        """The principals whose leaves are never in a grant's excess on `dataset`: the
        subjects of the live denies covering it, and its intended audience as listed."""
        denies = self._live_denies(dataset, action, float(now), lasting=False)
        return frozenset([*(rule.sub for rule in denies), *audience])

    def intended(self, audience: Iterable[str]) -> frozenset[str]:
        return frozenset(self.directory.names(self.intended_bits(audience)))

    def exposure(
        self, dataset: str, action: str, now: float, intended: int = 0, lasting: bool = False
    ) -> Exposure:
        """The dataset's effective readers, excess and per-grant excess; `intended` as bits.

        `lasting`: count only the denies that never expire (the worst case over time: a deny
        with an expiry hides exposure only until then)."""
        now = float(now)
        allows = self._live(self._allows, dataset, action, now)
        denies = self._live_denies(dataset, action, now, lasting)
        denied = self._union(denies)
        blocked = denied | intended
        is_blocked = _bit_test(blocked)
        directory = self.directory
        parts: list[int] = []
        plain: list[int] = []
        by_grant: dict[str, int] = {}
        counts: dict[str, int] = {}
        for rule in allows:
            number = directory.plain_leaf_number(rule.sub)
            if number is not None:
                plain.append(number)
            else:
                parts.append(directory.leaf_bits(rule.sub))
            excess, count = self._excess(rule.sub, number, blocked, is_blocked)
            previous = by_grant.get(rule.id)
            if previous is not None:  # two rules with one id: one grant
                excess |= previous
                count = excess.bit_count()
            by_grant[rule.id] = excess
            counts[rule.id] = count
        if plain:
            parts.append(_from_indices(plain))
        return Exposure(
            dataset=dataset,
            action=action,
            allow_rules=tuple(allows),
            deny_rules=tuple(denies),
            intended=intended,
            by_grant=MappingProxyType(by_grant),
            excess_counts=MappingProxyType(counts),
            reached_parts=tuple(parts),
            denied=denied,
        )

    def grant_excess_bits(
        self,
        rules: Iterable[Rule],
        dataset: str,
        action: str,
        now: float,
        intended: int = 0,
        lasting: bool = False,
    ) -> dict[str, GrantExcess]:
        """`exposure(...)`'s `by_grant` and `excess_counts`, for `rules` only (as planned by a
        `Reanalysis`), without looking at the dataset's other allows (`lasting` as there).

        Rule id -> its excess on `dataset`, for those of `rules` that are present, live allows
        for `action` and cover the dataset; the others have no entry, as in `by_grant`.
        """
        now = float(now)
        chosen: list[Rule] = []
        for rule in rules:
            grant = self._rules.get(rule)
            if (
                grant is not None
                and grant.is_allow
                and rule.act == action
                and grant.is_live(now)
                and covers(rule.obj, dataset)
            ):
                chosen.append(rule)
        if not chosen:
            return {}
        blocked = self._union(self._live_denies(dataset, action, now, lasting)) | intended
        is_blocked = _bit_test(blocked)
        found: dict[str, GrantExcess] = {}
        for rule in chosen:
            number = self.directory.plain_leaf_number(rule.sub)
            excess = GrantExcess(*self._excess(rule.sub, number, blocked, is_blocked))
            previous = found.get(rule.id)
            if previous is not None:  # two rules with one id: one grant
                bits = previous.bits | excess.bits
                excess = GrantExcess(bits, bits.bit_count())
            found[rule.id] = excess
        return found

    def grant_excess_within(
        self,
        before: ExposureAnalyser,
        within: Within,
        rules: Iterable[Rule],
        dataset: str,
        action: str,
        now: float,
        audience: Iterable[str] = (),
        audience_before: Iterable[str] | None = None,
    ) -> dict[str, tuple[int, int]]:
        """For a membership change, where `before` has the same rules and only the leaves of
        `within` changed what they reach: rule id -> (its excess on `dataset` now, and in
        `before`), each restricted to `within` and relative to its base.

        Outside `within` the two excesses are equal, so these small sets say whether a grant's
        excess changed and by how many, without any full-size set operation. Rules as in
        `grant_excess_bits` (present, live, covering allows for `action`); `audience`: the
        dataset's intended audience as listed (`audience_before`: as it was, default the same).
        """
        now = float(now)
        chosen = [
            rule
            for rule in rules
            if (grant := self._rules.get(rule)) is not None
            and grant.is_allow
            and rule.act == action
            and grant.is_live(now)
            and covers(rule.obj, dataset)
        ]
        if not chosen:
            return {}
        listed = list(audience)
        denies = [d.sub for d in self._live(self._denies, dataset, action, now)]
        found: dict[str, tuple[int, int]] = {}
        sides = ((self, listed), (before, listed if audience_before is None else audience_before))
        blocked = [
            self._within(side.directory, denies + list(names), within, n)
            for n, (side, names) in enumerate(sides)
        ]
        for rule in chosen:
            now_in = within.of(self.directory, rule.sub, 0) & ~blocked[0]
            then_in = within.of(before.directory, rule.sub, 1) & ~blocked[1]
            previous = found.get(rule.id)
            if previous is not None:  # two rules with one id: one grant
                now_in, then_in = now_in | previous[0], then_in | previous[1]
            found[rule.id] = (now_in, then_in)
        return found

    @staticmethod
    def _within(directory: Directory, subjects: Iterable[str], within: Within, side: int) -> int:
        """The moved leaves that reach any of `subjects` (on one side of the change)."""
        reach = within.reach(directory, side)
        if reach is not None:  # only the subjects a moved leaf reaches can contribute
            subjects = reach.intersection(subjects)
        bits = 0
        for subject in subjects:
            bits |= within.of(directory, subject, side)
        return bits

    def _excess(
        self, subject: str, number: int | None, blocked: int, is_blocked: Callable[[int], bool]
    ) -> tuple[int, int]:
        """(leaves reaching `subject` outside `blocked`, how many): without full-size ints for
        a single leaf (most subjects), with a memoised count for a group."""
        if number is not None:
            count = 0 if is_blocked(number) else 1
            return count << number, count
        bits = self.directory.leaf_bits(subject)
        overlap = bits & blocked  # cheap: as long as the shorter operand
        if not overlap:
            return bits, self.directory.leaf_count(subject)
        # bits - blocked, with non-negative ints only
        return bits ^ overlap, self.directory.leaf_count(subject) - overlap.bit_count()

    def _union(self, rules: Iterable[Rule]) -> int:
        bits = 0
        for rule in rules:
            bits |= self.directory.leaf_bits(rule.sub)
        return bits

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
        for rule in self._live(self._allows, dataset, action, now):
            path = ancestors.get(rule.sub)
            if path is not None:
                found.append((rule, path))
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
        """An independent copy to change while readers keep using this one, in constant time:
        rules and directory are shared until either side changes them (copy-on-write)."""
        clone = ExposureAnalyser.__new__(ExposureAnalyser)
        clone.__dict__.update(self.__dict__)
        clone.directory = self.directory.copy()
        clone._rules_shared = self._rules_shared = True
        return clone

    def _own_rules(self) -> None:
        """Before this side's rules change: its own rule tables (linear in the number of rules;
        inner rule sets stay shared until written)."""
        if not self._rules_shared:
            return
        self._allows = {action: rules.copy() for action, rules in self._allows.items()}
        self._denies = {action: rules.copy() for action, rules in self._denies.items()}
        self._by_subject = self._by_subject.copy()
        self._rules = dict(self._rules)
        self._rules_shared = False
