"""Pure functions over the membership graph (member -> groups it belongs to)."""

from collections import deque
from collections.abc import Iterable, Mapping

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
    best = 0
    stack = [(principal, 0)]
    while stack:
        node, depth = stack.pop()
        best = max(best, depth)
        stack.extend((m, depth + 1) for m in children.get(node, ()))
    return best


def depth_above(parents: Parents, principal: str) -> int:
    """Longest chain of memberships from ``principal`` upwards."""
    best = 0
    stack = [(principal, 0)]
    while stack:
        node, depth = stack.pop()
        best = max(best, depth)
        stack.extend((g, depth + 1) for g in parents.get(node, ()))
    return best
