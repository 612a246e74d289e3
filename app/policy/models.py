from datetime import datetime

from sqlalchemy import JSON, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime


class Grant(Base):
    """An allow or deny rule: Casbin's ``p`` rule plus who made it, when, and why."""

    __tablename__ = "grants"
    __table_args__ = (Index("ix_grants_principal_resource", "principal", "resource"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    principal: Mapped[str] = mapped_column(String(140))
    resource: Mapped[str] = mapped_column(String(514), index=True)
    action: Mapped[str] = mapped_column(String(16))
    effect: Mapped[str] = mapped_column(String(8))
    # The purposes it is for (Casbin: one p rule each); ["*"]: any purpose.
    purposes: Mapped[list[str]] = mapped_column(JSON, server_default=text("'[\"*\"]'"))
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    justification: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True, index=True)
    revoked_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    # Set by the sweeper once it has recorded the expiry (alert, re-analysis); the enforcer
    # already ignores the grant from ``expires_at`` on.
    expired_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
