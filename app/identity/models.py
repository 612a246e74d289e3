"""What the IdP pushed: its users and groups, by their SCIM ids. Memberships are the
directory's (`app.directory.models.Membership`); a user's access ends with `active` false.

The columns are the limits: a string longer than its column is refused as a 400 naming the
SCIM attribute (`info["scim"]`) and its length, when it is set, before anything is written.
"""

import unicodedata
from datetime import datetime
from typing import Any

from scim2_models import InvalidValueException
from sqlalchemy import JSON, Boolean, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column, validates

from app.db import Base, UTCDateTime


def comparison_key(value: str) -> str:
    """What a case-insensitive SCIM string is compared by, as scim2-models compares them
    (`default_comparison_key`): NFC, lower-cased, NFC again. Kept in a column, so SQL compares
    it with `=` (SQLite's lower() is ASCII-only)."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", value).lower())


def _fits(row: Base, key: str, value: str | None) -> str | None:
    """`value` for the column `key` of `row`'s table, or a 400 if it is longer."""
    column = row.__table__.c[key]
    length = getattr(column.type, "length", None)
    if value is not None and length is not None and len(value) > length:
        attribute = column.info["scim"]
        raise InvalidValueException(
            detail=f"{attribute} is too long: at most {length} characters, not {len(value)}"
            + (" (once normalised)" if key.endswith("_key") else "")
        )
    return value


def _scim(attribute: str) -> dict[str, str]:
    return {"scim": attribute}


class ScimUser(Base):
    __tablename__ = "scim_users"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # uuid4, given by us
    principal: Mapped[str] = mapped_column(String(140), unique=True)  # "user:<userName>"
    # as the IdP spelled it (its principal, lower-cased, is what userName is compared by)
    user_name: Mapped[str] = mapped_column(String(256), info=_scim("userName"))
    external_id: Mapped[str | None] = mapped_column(
        String(256), nullable=True, index=True, info=_scim("externalId")
    )
    display_name: Mapped[str | None] = mapped_column(
        String(256), nullable=True, info=_scim("displayName")
    )
    display_name_key: Mapped[str | None] = mapped_column(
        String(256), nullable=True, index=True, info=_scim("displayName")
    )  # comparison_key(display_name), set with it
    active: Mapped[bool] = mapped_column(Boolean)
    # The resource as the IdP last wrote it (without id and meta), returned on reads.
    resource: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    @validates("user_name", "external_id", "display_name_key")
    def _limited(self, key: str, value: str | None) -> str | None:
        return _fits(self, key, value)

    @validates("display_name")
    def _keyed(self, key: str, value: str | None) -> str | None:
        _fits(self, key, value)
        self.display_name_key = None if value is None else comparison_key(value)
        return value


class ScimGroup(Base):
    __tablename__ = "scim_groups"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # uuid4, given by us
    # "group:<id from displayName at creation>": fixed, so grants naming it keep their meaning
    group_id: Mapped[str] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"), unique=True)
    display_name: Mapped[str] = mapped_column(String(256), info=_scim("displayName"))
    # comparison_key(display_name), set with it: two groups never share a displayName, in any
    # case (the IdPs find groups by it)
    display_name_key: Mapped[str] = mapped_column(
        String(256), unique=True, info=_scim("displayName")
    )
    external_id: Mapped[str | None] = mapped_column(
        String(256), nullable=True, index=True, info=_scim("externalId")
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    @validates("external_id", "display_name_key")
    def _limited(self, key: str, value: str | None) -> str | None:
        return _fits(self, key, value)

    @validates("display_name")
    def _keyed(self, key: str, value: str) -> str:
        _fits(self, key, value)
        self.display_name_key = comparison_key(value)
        return value


class ScimMemberDisplay(Base):
    """The `display` the IdP sent with a group member (Okta sends the user's login), returned
    as sent; a member without one shows its current displayName or userName."""

    __tablename__ = "scim_member_displays"

    group_id: Mapped[str] = mapped_column(
        ForeignKey("scim_groups.id", ondelete="CASCADE"), primary_key=True
    )
    member_id: Mapped[str] = mapped_column(String(36), primary_key=True)  # a SCIM id
    display: Mapped[str] = mapped_column(Text)
