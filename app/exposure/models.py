from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime

UNUSED_ACTIVE = "kind = 'unused' AND status IN ('open', 'accepted')"


class Finding(Base):
    """One (dataset, grant) pair that lets principals outside the intended audience read."""

    __tablename__ = "findings"
    __table_args__ = (
        Index("ix_findings_dataset_grant", "dataset", "grant_id"),
        Index("ix_findings_status_severity", "status", "severity"),
        # One active `unused` finding per grant, whichever worker opens it.
        Index(
            "uq_findings_unused_grant",
            "grant_id",
            unique=True,
            postgresql_where=text(UNUSED_ACTIVE),
            sqlite_where=text(UNUSED_ACTIVE),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # `exposure`, or `unused`: an allow grant no read went through for
    # ACLAUDIT_UNUSED_AFTER_DAYS (`app.exposure.unused`); its `dataset` is the grant's resource
    kind: Mapped[str] = mapped_column(String(16), server_default="exposure")
    dataset: Mapped[str] = mapped_column(String(514))  # a grant's resource: `unused`
    grant_id: Mapped[int] = mapped_column(ForeignKey("grants.id"), index=True)
    principal: Mapped[str] = mapped_column(String(140))
    excess_count: Mapped[int] = mapped_column(Integer)
    excess_sample: Mapped[list[str]] = mapped_column(JSON)
    paths: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    severity: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(8))
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    accepted_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True, index=True)
    # `unused` findings: the last allowed read through the grant (None: never used)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
