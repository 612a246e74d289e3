from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, Validity


class Group(Base):
    __tablename__ = "groups"

    id: Mapped[str] = mapped_column(String(140), primary_key=True)  # "group:<id>"
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # "scim" when the IdP owns the group: its members change only through SCIM.
    managed_by: Mapped[str | None] = mapped_column(String(16), nullable=True)


class Membership(Base):
    """``member`` (a user, service or group) belongs to ``group_id``: Casbin's ``g`` rule."""

    __tablename__ = "memberships"

    group_id: Mapped[str] = mapped_column(
        ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True
    )
    member: Mapped[str] = mapped_column(String(140), primary_key=True, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(128))


class MembershipHistory(Validity, Base):
    """`member` in `group_id` (Casbin ``g`` rule)."""

    __tablename__ = "membership_history"
    __table_args__ = (
        Index("ix_membership_history_group_member", "group_id", "member"),
        Index("ix_membership_history_from_version", "from_version"),
        Index("ix_membership_history_until_version", "until_version"),
        Index("ix_membership_history_from_at", "from_at"),
        Index("ix_membership_history_until_at", "until_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    group_id: Mapped[str] = mapped_column(String(140))
    member: Mapped[str] = mapped_column(String(140))
