"""Pure functions over the membership graph (member -> groups it belongs to)."""

from collections import deque
from collections.abc import Iterable, Iterator, Mapping

Parents = Mapping[str, Iterable[str]]  # member -> groups
Children = Mapping[str, Iterable[str]]  # group -> direct members


def ancestors(parents: Parents, principal: str) -> set[str]:
    """Every group the principal belongs to, directly or through nesting."""
    seen: set[str] = set()
    queue = deque(parents.get(principal, ()))
    while queue:
        group = queue.popleft()
        if group in seen:
            continue
        seen.add(group)
        queue.extend(parents.get(group, ()))
    return seen


def descendants(children: Children, group: str) -> set[str]:
    """Every member of the group, at any depth (groups included)."""
    seen: set[str] = set()
    queue = deque(children.get(group, ()))
    while queue:
        member = queue.popleft()
        if member in seen:
            continue
        seen.add(member)
        if member.startswith("group:"):
            queue.extend(children.get(member, ()))
    return seen


def leaves(members: Iterable[str]) -> set[str]:
    return {m for m in members if not m.startswith("group:")}


def would_cycle(children: Children, group: str, member: str) -> bool:
    """Whether adding ``member`` to ``group`` closes a membership loop."""
    if not member.startswith("group:"):
        return False
    return member == group or group in descendants(children, member)


def depth_below(children: Children, principal: str) -> int:
    """Longest chain of membership links under ``principal``, down to a leaf or an empty group
    (0 for a leaf or an empty group; 1 for a group of users)."""
    return _longest_chain(children, principal)


def depth_above(parents: Parents, principal: str) -> int:
    """Longest chain of memberships from ``principal`` upwards."""
    return _longest_chain(parents, principal)


def _longest_chain(edges: Mapping[str, Iterable[str]], start: str) -> int:
    """The most links on a path from `start` along `edges`, each node's answer found once: a
    depth-first search with memo, linear in the links reachable (listing every path instead is
    exponential in the width of a nesting that is only 9 deep). A link back to a node on the
    current path (a cycle, which memberships refuse) ends that path."""
    done: dict[str, int] = {}
    best = {start: 0}  # the nodes on the current path -> their longest chain found so far
    stack: list[tuple[str, Iterator[str]]] = [(start, iter(edges.get(start, ())))]
    while stack:
        node, following = stack[-1]
        for after in following:
            if after in done:
                best[node] = max(best[node], done[after] + 1)
            elif after not in best:
                best[after] = 0
                stack.append((after, iter(edges.get(after, ()))))
                break
        else:
            stack.pop()
            done[node] = best.pop(node)
            if stack:
                above = stack[-1][0]
                best[above] = max(best[above], done[node] + 1)
    return done[start]
