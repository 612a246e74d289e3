"""The membership graph's pure functions, against a plain enumeration of every path."""

import itertools
import time
from collections.abc import Mapping, Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from app.directory import graph

NODES = [f"group:g{i}" for i in range(8)] + ["user:u0", "user:u1"]


def longest_by_every_path(edges: Mapping[str, Sequence[str]], start: str) -> int:
    """Each path listed on its own (the obvious way; exponential in the graph's width)."""
    best, stack = 0, [(start, 0)]
    while stack:
        node, depth = stack.pop()
        best = max(best, depth)
        stack.extend((after, depth + 1) for after in edges.get(node, ()))
    return best


@st.composite
def acyclic_memberships(draw: st.DrawFn) -> dict[str, list[str]]:
    """Group -> its direct members, acyclic as the directory keeps it (a member comes later in
    `NODES` than its group), with shared members and several paths between two nodes."""
    children: dict[str, list[str]] = {}
    for index, group in enumerate(NODES[:8]):
        later = NODES[index + 1 :]
        members = draw(st.lists(st.sampled_from(later), unique=True, max_size=4)) if later else []
        if members:
            children[group] = members
    return children


def parents_of(children: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    parents: dict[str, list[str]] = {}
    for group, members in children.items():
        for member in members:
            parents.setdefault(member, []).append(group)
    return parents


@settings(max_examples=300, deadline=None)
@given(children=acyclic_memberships(), node=st.sampled_from(NODES))
def test_nesting_depth_is_the_longest_chain_of_memberships(
    children: dict[str, list[str]], node: str
) -> None:
    parents = parents_of(children)
    assert graph.depth_below(children, node) == longest_by_every_path(children, node)
    assert graph.depth_above(parents, node) == longest_by_every_path(parents, node)


def test_nesting_check_in_a_wide_hierarchy_does_not_list_every_path() -> None:
    """Nine levels of 12 groups, each in every group of the level above: as deep as Casbin
    follows, and 12**8 (430 million) paths from the bottom to the top. The depth a membership
    check needs must not cost one step per path (minutes of a held event loop)."""
    levels = [[f"group:l{level}w{n}" for n in range(12)] for level in range(9)]
    children = {group: below for below, above in itertools.pairwise(levels) for group in above}
    parents = parents_of(children)
    started = time.perf_counter()
    assert graph.depth_above(parents, levels[0][0]) == 8
    assert graph.depth_below(children, levels[-1][0]) == 8
    assert time.perf_counter() - started < 1.0
