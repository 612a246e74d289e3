"""The membership graph (the g links) as the analyser needs it: depth-limited member sets as
bitsets, forward searches with shortest paths, and cheap copies that change independently."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from app.exposure.analyser._bits import ascending, from_indices, indices, lowest
from app.exposure.analyser._cow import Nested
from app.policy.casbin_model import MAX_LINKS, ancestor_paths

LEAF_PREFIXES = ("user:", "service:")
# Height marker for a member set that was cut off by the depth limit (any value > MAX_LINKS).
_TRUNCATED = MAX_LINKS + 1

Path = tuple[str, ...]
Ancestry = tuple[tuple[str, Path], ...]  # every principal reached, each with a shortest path


def is_leaf(principal: str) -> bool:
    """Users and services read; groups only hold members."""
    return principal.startswith(LEAF_PREFIXES)


# A copy whose links changed starts a new root of forward searches beyond this many stale ones.
STALE_SEARCHES = 10_000
# Up to this many moved leaves, a membership change lists every principal they reach
# (`Directory.reached_by`) and looks only at those subjects; beyond it, at every subject's leaves.
REACH_LEAVES = 64
# `Directory.lowest_outside` gives up after looking at this many leaves.
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
        self._parent_table: Nested[str, str, None] = Nested()
        self._child_table: Nested[str, str, None] = Nested()
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
        return from_indices([number[p] for p in principals if p in number])

    def names(self, bits: int) -> list[str]:
        """The leaves in a bitset, in bit order."""
        names = self._leaf_names
        return [names[index] for index in indices(bits)]

    def names_of(self, numbers: Iterable[int]) -> list[str]:
        """The leaves with these numbers."""
        names = self._leaf_names
        return [names[number] for number in numbers]

    def sample(self, bits: int, limit: int, count: int | None = None) -> list[str]:
        """Up to `limit` leaves of a bitset (the lowest-numbered: those the directory knew
        first, so a sample stays put while members join), without decoding all of it.

        `count`, the number of leaves in `bits` when known, saves widening the search for a
        sparse set that has fewer than `limit`.
        """
        width = 0
        if count is not None:
            limit = min(limit, count)
            if count:  # a window expected to hold twice the sample, at this density
                width = 2 * (limit - 1) * bits.bit_length() // count
        names = self._leaf_names
        return [names[index] for index in lowest(bits, limit, width)]

    def lowest_outside(
        self, subject: str, above: int, limit: int, blockers: frozenset[str]
    ) -> list[int] | None:
        """Up to `limit` lowest numbers above `above` of the leaves that reach `subject` and
        none of `blockers`, lowest first: the next of a grant's excess, where `blockers` are the
        dataset's live deny subjects and intended audience. Each leaf is tested on its own
        forward search, so no full-size set is built; None after `OUTSIDE_TRIES` leaves were
        looked at (the excess is sparse there: build it instead)."""
        names = self._leaf_names
        found: list[int] = []
        for tried, number in enumerate(ascending(self.leaf_bits(subject), above + 1)):
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
            bits |= from_indices(plain)
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
            memo = ancestor_paths(self._parents, principal, MAX_LINKS)
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
