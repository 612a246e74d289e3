from datetime import datetime

from sqlalchemy import JSON, Boolean, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime


class Dataset(Base):
    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(512), primary_key=True)
    description: Mapped[str] = mapped_column(Text)
    owner: Mapped[str] = mapped_column(String(140))
    sensitivity: Mapped[str] = mapped_column(String(16))
    intended_audience: Mapped[list[str]] = mapped_column(JSON)
    guard: Mapped[str] = mapped_column(String(8))
    # A check must name a purpose (without one it is denied, `purpose_required`).
    purpose_required: Mapped[bool] = mapped_column(Boolean, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_by: Mapped[str] = mapped_column(String(128))
