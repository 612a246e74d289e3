"""A Group PATCH (validated by scim2-models) as one membership delta and the attribute changes
(pure). The members are never materialised: applying `PatchOp.patch` to a group is O(members),
seconds at 70k members, where the IdP sends a few adds and removes.

The operations are applied in order to the delta: Okta sends a remove and an add in one
request; a `replace` of the members (or a `remove` of them all) resets it.
"""

from dataclasses import dataclass, field
from typing import Any

from scim2_models import (
    Group,
    GroupMember,
    InvalidFilterException,
    InvalidValueException,
    MutabilityException,
    NoTargetException,
    PatchOp,
)
from scim2_models.path import (
    AttrPath,
    CompareOperator,
    Comparison,
    FilterNode,
    LogicalExpr,
    LogicalOperator,
    ValuePath,
)

from app.identity.scim.protocol import POLICY

UNCHANGED = object()


@dataclass
class GroupDelta:
    """Members by SCIM id: `replace` sets them all (then `add` and `remove` are empty)."""

    add: dict[str, None] = field(default_factory=dict)  # an ordered set
    remove: dict[str, None] = field(default_factory=dict)
    replace: dict[str, None] | None = None
    displays: dict[str, str] = field(default_factory=dict)  # as sent with added members
    display_name: str | None = None  # None: unchanged
    external_id: Any = UNCHANGED  # a string, None (removed) or UNCHANGED

    @property
    def changes_members(self) -> bool:
        return self.replace is not None or bool(self.add) or bool(self.remove)

    def added(self, members: dict[str, str | None]) -> None:
        self._displays(members)
        for member in members:
            if self.replace is not None:
                self.replace[member] = None
            else:
                self.remove.pop(member, None)
                self.add[member] = None

    def removed(self, ids: list[str]) -> None:
        for member in ids:
            self.displays.pop(member, None)
            if self.replace is not None:
                self.replace.pop(member, None)
            else:
                self.add.pop(member, None)
                self.remove[member] = None

    def replaced(self, members: dict[str, str | None]) -> None:
        self.add, self.remove, self.replace, self.displays = {}, {}, dict.fromkeys(members), {}
        self._displays(members)

    def _displays(self, members: dict[str, str | None]) -> None:
        for member, display in members.items():
            if display is None:
                self.displays.pop(member, None)
            else:
                self.displays[member] = display


def members(value: Any) -> dict[str, str | None]:
    """The members of a `members` value (one member or a list of them): their SCIM ids, with
    the display sent for each."""
    items = value if isinstance(value, list) else [value]
    found: dict[str, str | None] = {}
    for item in items:
        try:
            member = GroupMember.model_validate(item, scim_policy=POLICY)
        except ValueError:
            raise InvalidValueException(detail=f"not a group member: {item!r}") from None
        if not member.value:
            raise InvalidValueException(detail=f"a group member without a value: {item!r}")
        found[member.value] = member.display
    return found


def _filter_ids(node: FilterNode) -> list[str]:
    """`value eq "a"` (or several joined by `or`) in `members[...]`."""
    if (
        isinstance(node, Comparison)
        and node.attr_path.attr.lower() == "value"
        and node.attr_path.sub_attr is None
        and node.op == CompareOperator.eq
        and isinstance(node.value, str)
    ):
        return [node.value]
    if isinstance(node, LogicalExpr) and node.op == LogicalOperator.or_:
        return [member for term in node.terms for member in _filter_ids(term)]
    raise InvalidFilterException(
        detail=f'unsupported members filter {node}: use members[value eq "<id>"]'
    )


def _display_name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidValueException(detail="displayName must be a non-empty string")
    return value


def _external_id(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise InvalidValueException(detail="externalId must be a string")
    return value


def _attribute(delta: GroupDelta, name: str, kind: str, value: Any) -> bool:
    """Apply an operation on a single-valued attribute; False if `name` is not one."""
    name = name.lower()
    if name == "displayname":
        if kind == "remove":
            raise MutabilityException(detail="displayName is required and cannot be removed")
        delta.display_name = _display_name(value)
        return True
    if name == "externalid":
        delta.external_id = None if kind == "remove" else _external_id(value)
        return True
    return False


def _members(delta: GroupDelta, kind: str, value: Any) -> None:
    if kind == "add":
        delta.added(members(value))
    elif kind == "replace":
        delta.replaced(members(value) if value is not None else {})
    elif value:  # Entra's legacy removal: {"op": "Remove", "path": "members", "value": [...]}
        delta.removed(list(members(value)))
    else:  # remove every member
        delta.replaced({})


def delta(patch: PatchOp[Group]) -> GroupDelta:
    out = GroupDelta()
    for operation in patch.operations or []:
        kind = operation.op.value
        ast = operation.path.ast if operation.path is not None else None
        if ast is None:  # no path: the value is a partial resource
            if not isinstance(operation.value, dict):
                raise InvalidValueException(detail="an operation without a path takes an object")
            for name, value in operation.value.items():
                if name.lower() == "members":
                    _members(out, kind, value)
                elif name.lower() in ("id", "schemas", "meta"):
                    continue  # Okta sends the id along with a rename
                elif not _attribute(out, name, kind, value):
                    raise NoTargetException(detail=f"{name!r} is not an attribute of a Group")
        elif isinstance(ast, ValuePath) and ast.attr_path.attr.lower() == "members":
            if kind != "remove" or ast.sub_attr is not None:
                raise InvalidFilterException(
                    detail="a members[...] path is only supported to remove members"
                )
            out.removed(_filter_ids(ast.val_filter))
        elif isinstance(ast, AttrPath) and ast.attr.lower() == "members" and not ast.sub_attr:
            _members(out, kind, operation.value)
        elif not (
            isinstance(ast, AttrPath)
            and not ast.sub_attr
            and _attribute(out, ast.attr, kind, operation.value)
        ):
            raise NoTargetException(detail=f"PATCH of {operation.path} is not supported")
    return out
