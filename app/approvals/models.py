"""Two-person control and break-glass: their tables."""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime


class Approval(Base):
    """A change requested by one principal, applied when another approves it.

    `status` is stored as `pending`, `approved` or `rejected`; a pending request past
    `expires_at` reads as `expired` (nothing needs to run for it to expire). A request whose
    change no longer applies when approved (the world moved: a cycle, a gone finding) stays
    pending: the approval answers with the change's own error and may be retried or rejected.
    """

    __tablename__ = "approvals"
    __table_args__ = (Index("ix_approvals_status_id", "status", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(32))
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(String(1100))
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    reason: Mapped[str] = mapped_column(Text)
    until: Mapped[datetime] = mapped_column(UTCDateTime())
    requested_by: Mapped[str] = mapped_column(String(128))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    would_open: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    decided_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    decision_note: Mapped[str | None] = mapped_column(Text, nullable=True)
    # what the approved change answered (its own endpoint's response document)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class BreakGlass(Base):
    """Time-boxed access given at once by one principal (`used_by`), reviewed by another."""

    __tablename__ = "break_glass"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    principal: Mapped[str] = mapped_column(String(140), index=True)
    dataset: Mapped[str] = mapped_column(String(514))
    purpose: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(Text)
    minutes: Mapped[int] = mapped_column(Integer)
    used_by: Mapped[str] = mapped_column(String(128))
    used_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    grant_id: Mapped[int] = mapped_column(ForeignKey("grants.id"))
    finding_id: Mapped[int] = mapped_column(ForeignKey("findings.id"))
    # the guard hold set aside for the window (its deny would win over the grant), and the one
    # that takes its place when the window closes
    hold_id: Mapped[int | None] = mapped_column(ForeignKey("holds.id"), nullable=True)
    restored_hold_id: Mapped[int | None] = mapped_column(ForeignKey("holds.id"), nullable=True)
    reviewed_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    review_note: Mapped[str | None] = mapped_column(Text, nullable=True)
