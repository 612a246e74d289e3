"""The policy version: one row, advanced in the same transaction as every policy change (by
every domain that changes the policy, so it lives outside them all).

Checks compare it with the version of their in-memory enforcer, so a change committed by any
worker is seen by every check that starts after it. Advancing it first also serialises policy
writers (a row lock on PostgreSQL, the write lock on SQLite).

Every version a transaction commits is recorded in `policy_versions` with its instant, taken as
late as possible: by the transaction's last statement, run just before its commit and still
under the policy lock (so versions and instants grow together). Until that instant the service
decides with the version before it; from it on, with this one. `at=` reads it back: the version
in force at an instant is the newest recorded at or before it (`version_at`).
"""

import weakref
from collections.abc import Callable
from datetime import datetime
from typing import cast

from sqlalchemy import Index, Integer, String, event, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, Session, SessionTransaction, mapped_column

from app.db import Base, UTCDateTime, utcnow

TAKEN = "policy_version_taken"
_ROLLED_BACK = "policy_version_rolled_back"  # Session.info: savepoints rolled back (weak set)
_RECORDING = "policy_version_recording"  # Session.info: the before-commit hook is listening
_BY = "policy_version_by"  # Session.info: (transaction, who made the change)
_STAMPS = "policy_version_stamps"  # Session.info: (transaction, [stamp])

# Called with the session, the version and its instant just before the version is recorded
# (history rows take the instant of their version: `app.policy.published`).
Stamp = Callable[[Session, int, datetime], None]


class PolicyVersion(Base):
    __tablename__ = "policy_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class PolicyVersionRecord(Base):
    """A committed policy version, the instant it took effect and who made it (None: not
    known). Versions with no row: taken before migration 0012, or never committed."""

    __tablename__ = "policy_versions"
    __table_args__ = (Index("ix_policy_versions_at", "at"),)

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    by: Mapped[str | None] = mapped_column(String(160), nullable=True)


async def advance(session: AsyncSession) -> int:
    """Take the policy write lock and return the new version (once per transaction, unless the
    savepoint it was taken in was rolled back since: that undid the advance; a savepoint
    released keeps it, as the group commit's pushes do)."""
    sync = session.sync_session
    taken = session.info.get(TAKEN)
    if taken is not None and taken[0] is sync.get_transaction() and _kept(sync, taken[2]):
        return int(taken[1])
    result = await session.execute(
        update(PolicyVersion)
        .where(PolicyVersion.id == 1)
        .values(version=PolicyVersion.version + 1, updated_at=utcnow())
        .returning(PolicyVersion.version)
    )
    version = int(result.scalar_one())
    taken_in = sync.get_nested_transaction() or sync.get_transaction()
    if taken_in is not None and taken_in.nested and _ROLLED_BACK not in sync.info:
        sync.info[_ROLLED_BACK] = weakref.WeakSet()
        event.listen(sync, "after_soft_rollback", _remember_rollback)
    session.info[TAKEN] = (sync.get_transaction(), version, taken_in)
    if _RECORDING not in sync.info:
        sync.info[_RECORDING] = True
        event.listen(sync, "before_commit", _record)
    return version


def made_by(session: AsyncSession, actor: str | None) -> None:
    """Name who makes this transaction's change (the version's `by`; the last one named)."""
    session.info[_BY] = (session.sync_session.get_transaction(), actor)


def on_record(session: AsyncSession, stamp: Stamp) -> None:
    """Call `stamp` with this transaction's version and instant just before recording them."""
    transaction = session.sync_session.get_transaction()
    stamps = session.info.get(_STAMPS)
    if stamps is None or stamps[0] is not transaction:
        stamps = session.info[_STAMPS] = (transaction, list[Stamp]())
    stamps[1].append(stamp)


def _of(session: Session, key: str) -> object:
    found = session.info.get(key)
    return found[1] if found is not None and found[0] is session.get_transaction() else None


def _record(session: Session) -> None:
    """Before the commit of a transaction that advanced the version: its instant, taken now,
    on its history rows (the stamps) and in `policy_versions`, the transaction's last write."""
    if session.in_nested_transaction():  # (a savepoint's release is no commit)
        return
    taken = session.info.get(TAKEN)
    if taken is None or taken[0] is not session.get_transaction() or not _kept(session, taken[2]):
        return
    session.flush()  # what the change added: its rows go before the instant
    version, at = int(taken[1]), utcnow()
    for stamp in cast("list[Stamp]", _of(session, _STAMPS) or []):
        stamp(session, version, at)
    by = cast("str | None", _of(session, _BY))
    session.execute(insert(PolicyVersionRecord).values(version=version, at=at, by=by))


def _remember_rollback(session: Session, transaction: SessionTransaction) -> None:
    if transaction.nested:
        session.info[_ROLLED_BACK].add(transaction)


def _kept(session: Session, transaction: SessionTransaction | None) -> bool:
    """Whether what `transaction` did is still part of the session's transaction: it is active,
    or it and the savepoints it was released into were not rolled back."""
    rolled_back = session.info.get(_ROLLED_BACK, ())
    while transaction is not None:
        if transaction in rolled_back:
            return False
        if transaction.is_active:
            return True
        transaction = transaction.parent
    return False


async def hold(session: AsyncSession) -> None:
    """Take the policy write lock without advancing the version, for a write that depends on
    the policy but does not change it (accepting a finding): it waits for, and then excludes,
    the policy writers that re-analyse findings. SQLite's write transactions already take
    turns (``BEGIN IMMEDIATE``)."""
    query = select(PolicyVersion.version).where(PolicyVersion.id == 1)
    await session.execute(query.with_for_update())


async def version_at(session: AsyncSession, at: datetime) -> int | None:
    """The version in force at instant `at`: the newest recorded at or before it (None: `at`
    is before the first recorded, at the migration to 0012 or the database's creation)."""
    query = (
        select(PolicyVersionRecord.version)
        .where(PolicyVersionRecord.at <= at)
        .order_by(PolicyVersionRecord.at.desc(), PolicyVersionRecord.version.desc())
        .limit(1)
    )
    return (await session.execute(query)).scalar()


async def is_recorded(session: AsyncSession, version: int) -> bool:
    """Whether `version` was recorded: committed since the history began (migration 0012 or
    the database's creation), so the history holds the policy as it was at it."""
    return await session.get(PolicyVersionRecord, version) is not None


async def current(session: AsyncSession) -> int:
    result = await session.execute(select(PolicyVersion.version).where(PolicyVersion.id == 1))
    return int(result.scalar_one())
