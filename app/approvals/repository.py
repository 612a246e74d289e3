from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.approvals.models import Approval, BreakGlass


async def add(session: AsyncSession, row: Approval | BreakGlass) -> None:
    session.add(row)
    await session.flush()


async def get(
    session: AsyncSession, approval_id: int, *, for_update: bool = False
) -> Approval | None:
    """`for_update`: locked until the transaction ends (two approvers decide one at a time)."""
    query = select(Approval).where(Approval.id == approval_id)
    if for_update:
        query = query.with_for_update()
    return (await session.execute(query)).scalar_one_or_none()


async def list_page(
    session: AsyncSession,
    *,
    status: str | None,
    expired_before: datetime | None,
    after_id: int | None,
    limit: int,
) -> Sequence[Approval]:
    """By id, of `status` as stored (None: any); `expired_before`: only those whose expiry
    is at or before that instant (with `status` pending: the expired requests)."""
    query = select(Approval).order_by(Approval.id).limit(limit)
    if after_id is not None:
        query = query.where(Approval.id > after_id)
    if status is not None:
        query = query.where(Approval.status == status)
    if expired_before is not None:
        query = query.where(Approval.expires_at <= expired_before)
    return (await session.execute(query)).scalars().all()


async def list_live(
    session: AsyncSession, *, now: datetime, after_id: int | None, limit: int
) -> Sequence[Approval]:
    """Pending requests not yet expired, by id."""
    query = (
        select(Approval)
        .where(Approval.status == "pending", Approval.expires_at > now)
        .order_by(Approval.id)
        .limit(limit)
    )
    if after_id is not None:
        query = query.where(Approval.id > after_id)
    return (await session.execute(query)).scalars().all()


async def get_break_glass(
    session: AsyncSession, break_glass_id: int, *, for_update: bool = False
) -> BreakGlass | None:
    query = select(BreakGlass).where(BreakGlass.id == break_glass_id)
    if for_update:
        query = query.with_for_update()
    return (await session.execute(query)).scalar_one_or_none()


async def list_break_glass(
    session: AsyncSession, *, after_id: int | None, limit: int
) -> Sequence[BreakGlass]:
    query = select(BreakGlass).order_by(BreakGlass.id).limit(limit)
    if after_id is not None:
        query = query.where(BreakGlass.id > after_id)
    return (await session.execute(query)).scalars().all()


async def closing_holds(session: AsyncSession, *, by: datetime) -> Sequence[BreakGlass]:
    """Break-glass windows that set a guard hold aside, closing by `by`, not yet restored."""
    query = (
        select(BreakGlass)
        .where(
            BreakGlass.hold_id.is_not(None),
            BreakGlass.restored_hold_id.is_(None),
            BreakGlass.expires_at <= by,
        )
        .order_by(BreakGlass.id)
    )
    return (await session.execute(query)).scalars().all()
