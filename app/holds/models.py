from datetime import datetime

from sqlalchemy import Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime


class Hold(Base):
    """An automatic deny: `principal` may not touch `dataset` (`*`: every dataset, for an
    `inactive` hold) from `created_at` until `released_at`."""

    __tablename__ = "holds"
    __table_args__ = (
        Index(
            "uq_holds_active",
            "kind",
            "principal",
            "dataset",
            unique=True,
            sqlite_where=text("released_at IS NULL"),
            postgresql_where=text("released_at IS NULL"),
        ),
        Index("ix_holds_dataset_principal", "dataset", "principal"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # "guard" | "inactive"
    principal: Mapped[str] = mapped_column(String(140), index=True)
    dataset: Mapped[str] = mapped_column(String(514))
    group_id: Mapped[str | None] = mapped_column(String(140), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(128))
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True, index=True)
    released_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    release_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
