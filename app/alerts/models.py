from datetime import datetime

from sqlalchemy import Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, LogId, UTCDateTime


class Alert(Base):
    """One event for alerting. ``id`` is assigned under the feed's lock, in commit order."""

    __tablename__ = "alerts"
    __table_args__ = (Index("ix_alerts_type_id", "type", "id"),)

    id: Mapped[int] = mapped_column(LogId, primary_key=True, autoincrement=False)
    type: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(8))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    summary: Mapped[str] = mapped_column(Text)
    dataset: Mapped[str | None] = mapped_column(String(512), nullable=True)
    finding_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    access_log_id: Mapped[int | None] = mapped_column(LogId, nullable=True)
    # The feed's hash chain (`app.chain.ALERT_FIELDS`): a removed or edited alert
    # breaks it.
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class ReadAlertWindow(Base):
    """The reads from outside a dataset's audience by one principal in one alert window
    (``ACLAUDIT_READ_ALERT_WINDOW_SECONDS``) of one kind: the same action, through the same
    grant, at the same severity (a read that differs in any is news and raises its own alert).
    The first read raised ``alert_id``; the rest are counted here. Written only by the
    access-log group commit, under the chain's lock."""

    __tablename__ = "read_alert_windows"

    principal: Mapped[str] = mapped_column(String(140), primary_key=True)
    dataset: Mapped[str] = mapped_column(String(512), primary_key=True)
    action: Mapped[str] = mapped_column(String(16), primary_key=True)
    grant_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    severity: Mapped[str] = mapped_column(String(8), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    window_end: Mapped[datetime] = mapped_column(UTCDateTime())
    alert_id: Mapped[int] = mapped_column(LogId, unique=True)
    reads: Mapped[int] = mapped_column(LogId)
    # verify checks that the log still shows this read: a rollback past it is caught
    last_read_id: Mapped[int] = mapped_column(LogId)


class AlertHead(Base):
    """The feed's newest id and hash (one row; signed when a checkpoint key is set); locked by
    every transaction that adds alerts."""

    __tablename__ = "alert_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_id: Mapped[int] = mapped_column(LogId)
    last_hash: Mapped[str] = mapped_column(String(64))
    signature: Mapped[str | None] = mapped_column(String(64), nullable=True)
