"""What the IdP pushed: its users and groups, by their SCIM ids. Memberships are the
directory's (`app.directory.models.Membership`); a user's access ends with `active` false."""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime


class ScimUser(Base):
    __tablename__ = "scim_users"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # uuid4, given by us
    principal: Mapped[str] = mapped_column(String(140), unique=True)  # "user:<userName>"
    user_name: Mapped[str] = mapped_column(String(256))  # as the IdP spelled it
    external_id: Mapped[str | None] = mapped_column(String(256), nullable=True, index=True)
    display_name: Mapped[str | None] = mapped_column(String(256), nullable=True)
    active: Mapped[bool] = mapped_column(Boolean)
    # The resource as the IdP last wrote it (without id and meta), returned on reads.
    resource: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ScimGroup(Base):
    __tablename__ = "scim_groups"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # uuid4, given by us
    # "group:<id from displayName at creation>": fixed, so grants naming it keep their meaning
    group_id: Mapped[str] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"), unique=True)
    display_name: Mapped[str] = mapped_column(String(256), index=True)
    external_id: Mapped[str | None] = mapped_column(String(256), nullable=True, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ScimMemberDisplay(Base):
    """The `display` the IdP sent with a group member (Okta sends the user's login), returned
    as sent; a member without one shows its current displayName or userName."""

    __tablename__ = "scim_member_displays"

    group_id: Mapped[str] = mapped_column(
        ForeignKey("scim_groups.id", ondelete="CASCADE"), primary_key=True
    )
    member_id: Mapped[str] = mapped_column(String(36), primary_key=True)  # a SCIM id
    display: Mapped[str] = mapped_column(Text)
