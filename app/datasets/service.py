from sqlalchemy.ext.asyncio import AsyncSession

from app import policy_version
from app.datasets import repository
from app.datasets.models import Dataset
from app.datasets.schemas import SENSITIVE, DatasetRead, DatasetWrite, Guard, Sensitivity
from app.db import utcnow
from app.errors import NotFound


def default_guard(sensitivity: Sensitivity) -> Guard:
    return Guard.block if sensitivity is Sensitivity.restricted else Guard.alert


def guard_for(stored: Dataset | None, body: DatasetWrite) -> Guard:
    """The guard a write asks for: an omitted one keeps the stored guard (re-classifying a
    dataset never moves it silently); a new dataset takes the default."""
    if body.guard is not None:
        return body.guard
    return Guard(stored.guard) if stored is not None else default_guard(body.sensitivity)


def purpose_required_for(stored: Dataset | None, body: DatasetWrite) -> bool:
    """Whether checks must name a purpose after a write: as it says; omitted, what the
    sensitivity requires (confidential, restricted), or what was stored (never dropped
    silently)."""
    if body.purpose_required is not None:
        return body.purpose_required
    required = body.sensitivity in SENSITIVE
    return required or (stored is not None and stored.purpose_required)


async def put_dataset(
    session: AsyncSession, *, dataset_id: str, body: DatasetWrite, actor: str
) -> tuple[DatasetRead, bool]:
    """Create or replace a dataset; returns it and whether it was created."""
    await policy_version.advance(session)
    now = utcnow()
    audience = sorted(set(body.intended_audience))
    dataset = await repository.get(session, dataset_id)
    guard = guard_for(dataset, body).value
    purpose_required = purpose_required_for(dataset, body)
    created = dataset is None
    if dataset is None:
        dataset = Dataset(id=dataset_id, created_at=now)
        session.add(dataset)
    dataset.description = body.description
    dataset.owner = body.owner
    dataset.sensitivity = body.sensitivity.value
    dataset.intended_audience = audience
    dataset.guard = guard
    dataset.purpose_required = purpose_required
    dataset.updated_at = now
    dataset.updated_by = actor
    await session.flush()
    return DatasetRead.model_validate(dataset), created


async def get_dataset(session: AsyncSession, dataset_id: str) -> DatasetRead:
    dataset = await repository.get(session, dataset_id)
    if dataset is None:
        raise NotFound(f"dataset {dataset_id} is not registered")
    return DatasetRead.model_validate(dataset)


async def list_datasets(
    session: AsyncSession, *, after: str | None, limit: int
) -> tuple[list[DatasetRead], str | None]:
    rows = await repository.list_page(session, after=after, limit=limit + 1)
    page = [DatasetRead.model_validate(d) for d in rows[:limit]]
    return page, (page[-1].id if len(rows) > limit else None)
