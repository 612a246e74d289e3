from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.accesslog.models import AccessLogEntry
from app.exposure.models import Finding


async def active_for(session: AsyncSession, dataset_ids: Sequence[str]) -> Sequence[Finding]:
    """Open and accepted findings of these datasets."""
    query = select(Finding).where(
        Finding.dataset.in_(dataset_ids), Finding.status.in_(("open", "accepted"))
    )
    return (await session.execute(query)).scalars().all()


async def all_active(session: AsyncSession) -> Sequence[Finding]:
    query = select(Finding).where(Finding.status.in_(("open", "accepted")))
    return (await session.execute(query)).scalars().all()


async def get(session: AsyncSession, finding_id: int) -> Finding | None:
    return await session.get(Finding, finding_id)


async def list_page(
    session: AsyncSession,
    *,
    status: str | None,
    severity: str | None,
    dataset: str | None,
    after_id: int | None,
    limit: int,
) -> Sequence[Finding]:
    query = select(Finding).order_by(Finding.id).limit(limit)
    if after_id is not None:
        query = query.where(Finding.id > after_id)
    if status is not None:
        query = query.where(Finding.status == status)
    if severity is not None:
        query = query.where(Finding.severity == severity)
    if dataset is not None:
        query = query.where(Finding.dataset == dataset)
    return (await session.execute(query)).scalars().all()


async def count_open(session: AsyncSession) -> int:
    query = select(func.count()).select_from(Finding).where(Finding.status == "open")
    return int((await session.execute(query)).scalar_one())


async def out_of_audience_reads(session: AsyncSession, dataset: str) -> int:
    query = (
        select(func.count())
        .select_from(AccessLogEntry)
        .where(
            AccessLogEntry.dataset == dataset,
            AccessLogEntry.out_of_audience.is_(True),
        )
    )
    return int((await session.execute(query)).scalar_one())


async def reads_outside(
    session: AsyncSession, *, dataset: str, before_id: int | None, limit: int
) -> Sequence[AccessLogEntry]:
    """Allowed reads of the dataset by principals outside its audience, newest first."""
    query = (
        select(AccessLogEntry)
        .where(
            AccessLogEntry.dataset == dataset,
            AccessLogEntry.out_of_audience.is_(True),
            AccessLogEntry.decision == "allow",
        )
        .order_by(AccessLogEntry.id.desc())
        .limit(limit)
    )
    if before_id is not None:
        query = query.where(AccessLogEntry.id < before_id)
    return (await session.execute(query)).scalars().all()


async def has_lapsed_acceptance(session: AsyncSession, now: datetime) -> bool:
    query = select(Finding.id).where(Finding.status == "accepted", Finding.until <= now).limit(1)
    return (await session.execute(query)).first() is not None


async def count_open_by_severity(session: AsyncSession) -> dict[str, int]:
    query = (
        select(Finding.severity, func.count())
        .where(Finding.status == "open")
        .group_by(Finding.severity)
    )
    return {str(sev): int(n) for sev, n in (await session.execute(query)).all()}


async def count_out_of_audience_reads(session: AsyncSession) -> int:
    query = (
        select(func.count())
        .select_from(AccessLogEntry)
        .where(AccessLogEntry.out_of_audience.is_(True))
    )
    return int((await session.execute(query)).scalar_one())
