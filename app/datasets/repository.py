from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.datasets.models import Dataset
from app.identifiers import pattern_covers


async def get(session: AsyncSession, dataset_id: str) -> Dataset | None:
    return await session.get(Dataset, dataset_id)


async def list_page(session: AsyncSession, *, after: str | None, limit: int) -> Sequence[Dataset]:
    query = select(Dataset).order_by(Dataset.id).limit(limit)
    if after is not None:
        query = query.where(Dataset.id > after)
    return (await session.execute(query)).scalars().all()


async def list_all(session: AsyncSession) -> Sequence[Dataset]:
    return (await session.execute(select(Dataset).order_by(Dataset.id))).scalars().all()


async def covered_by(session: AsyncSession, resource: str) -> Sequence[Dataset]:
    """Datasets a grant resource (id, ``prefix.*`` or ``*``) covers."""
    query = select(Dataset).order_by(Dataset.id)
    if resource.endswith(".*"):
        query = query.where(Dataset.id.startswith(resource[:-1], autoescape=True))
    elif resource != "*":
        query = query.where(Dataset.id == resource)
    rows = (await session.execute(query)).scalars().all()
    return [d for d in rows if pattern_covers(resource, d.id)]
