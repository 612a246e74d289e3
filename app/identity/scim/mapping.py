"""From the IdP's names to principals (pure): `user:<userName>` and `group:<id from
displayName>`, or a 400 `invalidValue` naming the value that cannot be mapped."""

import re

from scim2_models import InvalidValueException

from app.identifiers import GROUP_NAME_RE

_OUTSIDE = re.compile(r"[^a-z0-9._@+-]+")
_ID_RULE = "[a-z0-9][a-z0-9._@+-]{0,127}"
MAX_GROUP_ID = 128  # characters after "group:"


def ascii_lower(value: str) -> str:
    # ASCII only, as app.identifiers does: Unicode case mapping would turn the Kelvin sign
    # into "k", mapping a non-ASCII spelling onto another user's principal.
    return "".join(c.lower() if c.isascii() else c for c in value)


def user_principal(user_name: str) -> str:
    """`user:<userName>`, lower-cased; the userName must already be a valid id."""
    name = ascii_lower(user_name)
    if not GROUP_NAME_RE.match(name):
        raise InvalidValueException(
            detail=f"userName {user_name!r} cannot be a principal: lower-cased it must match "
            f"{_ID_RULE}"
        )
    return f"user:{name}"


def group_principal(display_name: str) -> str:
    """`group:<id>`: the displayName lower-cased, each run of characters outside
    `[a-z0-9._@+-]` made one `-`, and `-` trimmed from both ends."""
    name = _OUTSIDE.sub("-", ascii_lower(display_name)).strip("-")
    if not GROUP_NAME_RE.match(name):
        raise InvalidValueException(
            detail=f"displayName {display_name!r} cannot name a group: its id {name!r} must "
            f"match {_ID_RULE}"
        )
    return f"group:{name}"
