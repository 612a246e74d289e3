"""The policy's history: one row per validity of a grant, a membership, a dataset's facts or a
hold, from the change that opened it to the change that closed it (open while `until_version`
is NULL). Rows are only ever inserted, and closed once: nothing else is updated or deleted
(but for the instants, stamped with their version's before the change commits).

Validity is by policy version and by instant: a row holds for versions
``from_version <= v < until_version`` and instants ``from_at <= t < until_at``. `from_by` and
`until_by` name who made the change (the caller the trail names), where it is known.
Memberships' history is the directory's (`app.directory.models.MembershipHistory`).
"""

from datetime import datetime

from sqlalchemy import JSON, Boolean, Index, Integer, String, false, text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, Validity


class GrantHistory(Validity, Base):
    """A grant (Casbin ``p`` rule) while it was unrevoked."""

    __tablename__ = "grant_history"
    __table_args__ = (
        Index("ix_grant_history_grant_id", "grant_id"),
        Index("ix_grant_history_from_version", "from_version"),
        Index("ix_grant_history_until_version", "until_version"),
        Index("ix_grant_history_from_at", "from_at"),
        Index("ix_grant_history_until_at", "until_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    grant_id: Mapped[int] = mapped_column(Integer)
    principal: Mapped[str] = mapped_column(String(140))
    resource: Mapped[str] = mapped_column(String(514))
    action: Mapped[str] = mapped_column(String(16))
    effect: Mapped[str] = mapped_column(String(8))
    purposes: Mapped[list[str]] = mapped_column(JSON, server_default=text("'[\"*\"]'"))
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class DatasetHistory(Validity, Base):
    """A dataset's facts the policy knows: sensitivity, intended audience and guard."""

    __tablename__ = "dataset_history"
    __table_args__ = (
        Index("ix_dataset_history_dataset_id", "dataset_id"),
        Index("ix_dataset_history_from_version", "from_version"),
        Index("ix_dataset_history_until_version", "until_version"),
        Index("ix_dataset_history_from_at", "from_at"),
        Index("ix_dataset_history_until_at", "until_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[str] = mapped_column(String(512))
    sensitivity: Mapped[str] = mapped_column(String(16))
    audience: Mapped[list[str]] = mapped_column(JSON)
    guard: Mapped[str] = mapped_column(String(8))
    purpose_required: Mapped[bool] = mapped_column(Boolean, server_default=false())


class HoldHistory(Validity, Base):
    """A hold while it was active (its deny rules: `app.policy.holds`)."""

    __tablename__ = "hold_history"
    __table_args__ = (
        Index("ix_hold_history_hold_id", "hold_id"),
        Index("ix_hold_history_from_version", "from_version"),
        Index("ix_hold_history_until_version", "until_version"),
        Index("ix_hold_history_from_at", "from_at"),
        Index("ix_hold_history_until_at", "until_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    hold_id: Mapped[int] = mapped_column(Integer)
    principal: Mapped[str] = mapped_column(String(140))
    dataset: Mapped[str] = mapped_column(String(514))
