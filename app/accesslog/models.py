from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    false,
    text,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, LogId, UTCDateTime


class AccessLogEntry(Base):
    """One decision. Append-only; ``id`` is assigned by the chain writer, gap-free.

    On PostgreSQL (migration 0018) the table is partitioned by RANGE of ``id`` and
    ``decision_id`` is not unique-constrained (see `app.accesslog.partitions`); the
    partitions are made at run time, so the model does not declare them."""

    __tablename__ = "access_log"
    __table_args__ = (
        Index("ix_access_log_principal_id", "principal", "id"),
        Index("ix_access_log_dataset_id", "dataset", "id"),
        Index("ix_access_log_decision_id_order", "decision", "id"),
        # Only out-of-audience reads are looked up by the flag: they alone are indexed (an
        # entry for every check cost ~10 % of SQLite's check throughput). Queries must say
        # `OUT_OF_AUDIENCE` for the planner to see that the index applies.
        Index(
            "ix_access_log_out_of_audience",
            "id",
            sqlite_where=text("out_of_audience = 1"),
            postgresql_where=text("out_of_audience"),
        ),
        # instants to ids (`repository.id_bounds`): ORDER BY at, id LIMIT 1 is one descent
        Index("ix_access_log_at_id", "at", "id"),
    )

    id: Mapped[int] = mapped_column(LogId, primary_key=True, autoincrement=False)
    decision_id: Mapped[str] = mapped_column(String(36), unique=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    principal: Mapped[str] = mapped_column(String(140))
    dataset: Mapped[str] = mapped_column(String(512))
    action: Mapped[str] = mapped_column(String(16))
    purpose: Mapped[str | None] = mapped_column(String(200), nullable=True)
    decision: Mapped[str] = mapped_column(String(8))
    reason: Mapped[dict[str, Any]] = mapped_column(JSON)
    out_of_audience: Mapped[bool] = mapped_column(Boolean)
    data_subjects: Mapped[list[str]] = mapped_column(JSON)
    request_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    caller: Mapped[str] = mapped_column(String(128))
    policy_version: Mapped[int] = mapped_column(Integer)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AccessLogSubject(Base):
    """Whose records an entry read: lets ``?data_subject=`` use an index. On PostgreSQL
    partitioned by ``entry_id`` like the log, without the foreign key."""

    __tablename__ = "access_log_subjects"
    # the foreign key's own index: archiving's cascade and verify read the rows by entry
    __table_args__ = (Index("ix_access_log_subjects_entry_id", "entry_id"),)

    subject: Mapped[str] = mapped_column(String(140), primary_key=True)
    entry_id: Mapped[int] = mapped_column(
        LogId, ForeignKey("access_log.id", ondelete="CASCADE"), primary_key=True
    )


class AccessLogHead(Base):
    """The chain's head (one row): the lock every writer takes, and the newest id and hash,
    HMAC-signed by every group commit when ``ACLAUDIT_CHECKPOINT_KEY`` is set.

    ``last_at`` is the newest entry's instant: a group commit (under this row's lock) waits
    until its clock reaches ``last_at`` when that is at most 100 ms ahead, so from entry
    ``monotone_from`` on ``at`` never decreases with the id and an instant is an id bound
    (`repository.time_window`). A ``last_at`` further ahead (a clock stepped back) is not
    waited for: the batch is stamped at its clock and its first id becomes ``monotone_from``.
    Entries before ``monotone_from`` (written before migration 0020, or before such a step)
    may be out of order; they are filtered by ``at`` itself. Neither is signed: they speed
    browsing up, the chain does not depend on them."""

    __tablename__ = "access_log_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_id: Mapped[int] = mapped_column(LogId)
    last_hash: Mapped[str] = mapped_column(String(64))
    signature: Mapped[str | None] = mapped_column(String(64), nullable=True)
    last_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    monotone_from: Mapped[int] = mapped_column(LogId, server_default=text("1"))


class AccessLogCheckpoint(Base):
    """Head hash and count at an interval; signed when ``ACLAUDIT_CHECKPOINT_KEY`` is set."""

    __tablename__ = "access_log_checkpoints"

    entry_id: Mapped[int] = mapped_column(LogId, primary_key=True, autoincrement=False)
    head_hash: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    signature: Mapped[str | None] = mapped_column(Text, nullable=True)


# The filters on the flag, as the partial index's planner test needs them (`= 1` / `= true`).
OUT_OF_AUDIENCE = AccessLogEntry.out_of_audience == true()
IN_AUDIENCE = AccessLogEntry.out_of_audience == false()


class AccessLogArchive(Base):
    """A sealed segment of entries ``first_id..last_id`` moved out of the database by
    ``aclaudit log archive``: its manifest, as written next to it. Recorded in the transaction
    that drops the entries, so a recorded segment's entries are gone and an unrecorded one's
    are still here. The segments are contiguous from entry 1; the newest one's `last_hash` is
    where the database's chain resumes."""

    __tablename__ = "access_log_archives"

    first_id: Mapped[int] = mapped_column(LogId, primary_key=True, autoincrement=False)
    last_id: Mapped[int] = mapped_column(LogId, unique=True)
    segment: Mapped[str] = mapped_column(String(200), unique=True)
    prev_hash: Mapped[str] = mapped_column(String(64))
    last_hash: Mapped[str] = mapped_column(String(64))
    checkpoint_signature: Mapped[str | None] = mapped_column(Text, nullable=True)
    entries: Mapped[int] = mapped_column(LogId)
    sha256: Mapped[str] = mapped_column(String(64))
    # when the segment's first entry was written (null: recorded before 0017)
    first_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # when the segment's last entry was written
    last_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # the segment's out-of-audience reads by dataset: reports add them to the database's
    out_of_audience_reads: Mapped[dict[str, int]] = mapped_column(JSON)
    archived_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # `chain.sign_archive` of the row when ACLAUDIT_CHECKPOINT_KEY is set: verify refuses an
    # unsigned or badly signed record then (without a key, records are as trustworthy as the
    # database, like unsigned checkpoints)
    signature: Mapped[str | None] = mapped_column(String(64), nullable=True)


class GrantLastUse(Base):
    """When an allowed read last went through a grant (the grant its reason names), folded
    from the log by `app.accesslog.usage`; kept when the entries are archived."""

    __tablename__ = "grant_last_use"

    grant_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_used_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_entry_id: Mapped[int] = mapped_column(LogId)


class UseScan(Base):
    """How far `app.accesslog.usage` has folded the log into ``grant_last_use`` (one row,
    created on first use): every entry up to ``through_id`` is counted."""

    __tablename__ = "grant_use_scan"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    through_id: Mapped[int] = mapped_column(LogId)
