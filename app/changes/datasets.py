"""Registering or re-scoping a dataset: its findings re-analysed, its guard change judged."""

from sqlalchemy.ext.asyncio import AsyncSession

from app.changes import audience
from app.changes import guard as guard_change
from app.changes import holds as holds_change
from app.changes.schemas import GuardChangeRead
from app.datasets import repository as datasets_repository
from app.datasets import service as datasets_service
from app.datasets.schemas import DatasetRead, DatasetWrite
from app.db import epoch
from app.exposure.reconcile import reconcile
from app.exposure.schemas import FindingChanges
from app.exposure.view import publish_on_commit, view_before_change
from app.policy.state import DatasetFacts, PolicyChange


async def put_dataset(
    session: AsyncSession,
    *,
    dataset_id: str,
    body: DatasetWrite,
    actor: str,
    guarded: bool = True,
    growth_limit: int | None = None,
) -> tuple[DatasetRead, bool, FindingChanges, GuardChangeRead | None]:
    """Registering or re-scoping a dataset reports its exposure; on a block-guarded dataset,
    one that lets anyone new in beyond its audience is refused unless `accept_exposure`, and so
    is a guard change that needs it (`guard_change`). `guarded` False (the demo loader only)
    records the findings without refusing. Growing a block dataset's audience is judged by
    `app.changes.audience` (refused beyond `growth_limit` unless approved; None: alerted)."""
    accept = body.accept_exposure
    before = await view_before_change(session)
    stored = await datasets_repository.get(session, dataset_id)
    moves = {}
    if stored is not None:
        moves[dataset_id] = (stored.guard, datasets_service.guard_for(stored, body))
    pending = await guard_change.prepare(session, moves)
    dataset, created = await datasets_service.put_dataset(
        session, dataset_id=dataset_id, body=body, actor=actor
    )
    facts = DatasetFacts(
        dataset.id,
        dataset.sensitivity.value,
        tuple(dataset.intended_audience),
        dataset.guard.value,
        dataset.purpose_required,
    )
    after = before.changed(PolicyChange(datasets=(facts,)))
    await audience.judge(
        session,
        audience.grown(before, after, [dataset.id]),
        actor=actor,
        accept=accept,
        limit=growth_limit,
    )
    # Holds whose principals the new audience takes in are released.
    after, _ = await holds_change.settle(
        session,
        before=before,
        after=after,
        datasets=[dataset.id],
        actor=actor,
        holding=False,
        at=epoch(),
    )
    changes = await reconcile(
        session,
        before=before,
        after=after,
        dataset_ids=[dataset.id],
        actor=actor,
        accept=accept,
        guarded=guarded,
    )
    moved = await guard_change.settle(session, pending, accept=accept, actor=actor, refuse=guarded)
    await publish_on_commit(session, after, actor=actor)
    return dataset, created, changes, (moved[0] if moved else None)
