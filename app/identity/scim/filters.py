"""A SCIM filter (the syntax tree scim2-models parsed and checked against the schema) as a
SQLAlchemy WHERE clause: `eq` on the attributes kept in columns, `and`, `or`, `not`, and on
groups `members[value eq "<id>"]`. Anything else is a 400 `invalidFilter`.

A case-insensitive attribute (displayName) is compared by its key column, computed in Python
(`comparison_key`): SQL's lower() is ASCII-only on SQLite. userName is compared by the
principal (its ASCII lower-casing, unique); a value that is no id matches nothing.
"""

from typing import Any

from scim2_models import InvalidFilterException, ScimFilter
from scim2_models.path import (
    CompareOperator,
    Comparison,
    FilterVisitor,
    LogicalExpr,
    LogicalOperator,
    Not,
    Present,
    ValuePath,
)
from sqlalchemy import ColumnElement, and_, false, not_, or_, select, true

from app.directory.models import Membership
from app.identity.models import ScimGroup, ScimUser, comparison_key
from app.identity.scim.mapping import ascii_lower
from app.identity.scim.repository import is_scim_id

Clause = ColumnElement[bool]


def _member_principals(scim_id: str) -> Any:
    """The principal of the user or group with SCIM id `scim_id` (none if unknown)."""
    return (
        select(ScimUser.principal)
        .where(ScimUser.id == scim_id)
        .union_all(select(ScimGroup.group_id).where(ScimGroup.id == scim_id))
    )


def _has_member(scim_id: str) -> Clause:
    if not is_scim_id(scim_id):
        return false()
    members = select(Membership.group_id).where(Membership.member.in_(_member_principals(scim_id)))
    return ScimGroup.group_id.in_(members)


def _id(column: Any, value: str) -> Clause:
    return column == value if is_scim_id(value) else false()


def _boolean(value: Any) -> bool:
    """A boolean as sent: true/false, or the strings "true"/"false" in any case (Entra ID)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise InvalidFilterException(detail=f"active is compared with true or false, not {value!r}")


def _user_clause(field: str, value: Any) -> Clause | None:
    if field == "user_name":  # stored lower-cased in the principal, which is unique
        return ScimUser.principal == f"user:{ascii_lower(str(value))}"
    if field == "external_id":
        return ScimUser.external_id == str(value)
    if field == "display_name":
        return ScimUser.display_name_key == comparison_key(str(value))
    if field == "id":
        return _id(ScimUser.id, str(value))
    if field == "active":
        return ScimUser.active == _boolean(value)
    return None


def _group_clause(field: str, value: Any) -> Clause | None:
    if field == "display_name":
        return ScimGroup.display_name_key == comparison_key(str(value))
    if field == "external_id":
        return ScimGroup.external_id == str(value)
    if field == "id":
        return _id(ScimGroup.id, str(value))
    if field == "members":  # members eq "<id>", members.value eq "<id>"
        return _has_member(str(value))
    return None


class ToSQL(FilterVisitor[Clause]):
    def __init__(self, scim_filter: ScimFilter[Any], *, groups: bool) -> None:
        self.filter = scim_filter
        self.groups = groups

    def visit_comparison(self, node: Comparison) -> Clause:
        if node.op != CompareOperator.eq:
            raise InvalidFilterException(
                detail=f"only 'eq' is supported in filters, not {node.op.value!r}"
            )
        binding = self.filter.resolve_comparison(node.attr_path)
        if binding is None:
            raise InvalidFilterException(detail=f"unknown attribute {node.attr_path}")
        field = binding.field_name
        if binding.sub_field_name is not None and not (
            field == "members" and binding.sub_field_name == "value"
        ):
            field = f"{field}.{binding.sub_field_name}"
        if node.value is None:
            return false()
        clause = (_group_clause if self.groups else _user_clause)(field, node.value)
        if clause is None:
            raise InvalidFilterException(
                detail=f"filtering on {node.attr_path} is not supported (userName, externalId, "
                "displayName, id, active on Users; displayName, externalId, id, members on "
                "Groups)"
            )
        return clause

    def visit_logical_expr(self, node: LogicalExpr) -> Clause:
        parts = [self.visit(term) for term in node.terms]
        return and_(*parts) if node.op == LogicalOperator.and_ else or_(*parts)

    def visit_not(self, node: Not) -> Clause:
        return not_(self.visit(node.expr))

    def visit_present(self, node: Present) -> Clause:
        raise InvalidFilterException(detail="'pr' is not supported in filters")

    def visit_value_path(self, node: ValuePath) -> Clause:
        inner = node.val_filter
        if (
            self.groups
            and node.attr_path.attr.lower() == "members"
            and isinstance(inner, Comparison)
            and inner.attr_path.attr.lower() == "value"
            and inner.op == CompareOperator.eq
        ):
            return _has_member(str(inner.value))
        raise InvalidFilterException(
            detail=f'unsupported value filter {node}: only members[value eq "<id>"]'
        )


def where(scim_filter: ScimFilter[Any] | None, *, groups: bool) -> Clause:
    if scim_filter is None:
        return true()
    return ToSQL(scim_filter, groups=groups).visit(scim_filter.ast)
