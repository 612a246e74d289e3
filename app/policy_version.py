"""The policy version: one row, advanced in the same transaction as every policy change (by
every domain that changes the policy, so it lives outside them all).

Checks compare it with the version of their in-memory enforcer, so a change committed by any
worker is seen by every check that starts after it. Advancing it first also serialises policy
writers (a row lock on PostgreSQL, the write lock on SQLite).
"""

import weakref
from datetime import datetime

from sqlalchemy import Integer, event, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, Session, SessionTransaction, mapped_column

from app.db import Base, UTCDateTime, utcnow

TAKEN = "policy_version_taken"
_ROLLED_BACK = "policy_version_rolled_back"  # Session.info: savepoints rolled back (weak set)


class PolicyVersion(Base):
    __tablename__ = "policy_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


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
    return version


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


async def current(session: AsyncSession) -> int:
    result = await session.execute(select(PolicyVersion.version).where(PolicyVersion.id == 1))
    return int(result.scalar_one())
