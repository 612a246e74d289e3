from datetime import datetime

from sqlalchemy import or_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from app.operations.models import Lease


async def try_acquire_lease(
    session: AsyncSession, *, name: str, holder: str, now: datetime, until: datetime
) -> bool:
    """Take or renew the lease ``name`` for ``holder`` until ``until``.

    It succeeds when nobody holds it, ``holder`` already does, or the holder's lease lapsed.
    The row is created on first use; on PostgreSQL a concurrent taker waits for the row lock
    and then re-reads it, so two holders never both succeed.
    """
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    await session.execute(
        insert(Lease)
        .values(name=name, holder=holder, expires_at=until)
        .on_conflict_do_nothing(index_elements=["name"])
    )
    result = await session.execute(
        update(Lease)
        .where(Lease.name == name, or_(Lease.holder == holder, Lease.expires_at < now))
        .values(holder=holder, expires_at=until)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def release_lease(session: AsyncSession, *, name: str, holder: str, now: datetime) -> None:
    """Let the next worker take the lease at once (on shutdown)."""
    await session.execute(
        update(Lease).where(Lease.name == name, Lease.holder == holder).values(expires_at=now)
    )
