"""Who can read and who did: a principal's effective access now, and a finding's reads."""

from sqlalchemy.ext.asyncio import AsyncSession

from app.accesslog.schemas import AccessLogEntryRead, AccessLogPage
from app.datasets import repository as datasets_repository
from app.exposure import repository
from app.exposure import service as exposure_service
from app.exposure.schemas import AccessItem, PrincipalAccess
from app.policy.snapshot import PolicySnapshot, now


async def principal_access(
    session: AsyncSession,
    snapshot: PolicySnapshot,
    *,
    principal: str,
    after: str | None,
    limit: int,
) -> PrincipalAccess:
    """The registered datasets `principal` can read under `snapshot` now, in dataset-id order,
    after the dataset `after`; at most `limit`, with the cursor of the next page."""
    at = now()
    items: list[AccessItem] = []
    for dataset in await datasets_repository.list_all(session):
        if after is not None and dataset.id <= after:
            continue
        outcome = snapshot.decide(principal, dataset.id, "read", at)
        if outcome.allowed and outcome.grant_id is not None:
            if len(items) == limit:
                return PrincipalAccess(
                    principal=principal, items=items, next_cursor=items[-1].dataset
                )
            items.append(
                AccessItem(
                    dataset=dataset.id,
                    grant_id=outcome.grant_id,
                    via=list(outcome.via),
                    out_of_audience=outcome.out_of_audience,
                )
            )
    return PrincipalAccess(principal=principal, items=items)


async def finding_reads(
    session: AsyncSession, *, finding_id: int, before_id: int | None, limit: int
) -> AccessLogPage:
    """The allowed reads of the finding's dataset by principals outside its audience, newest
    first (404 for an unknown finding)."""
    finding = await exposure_service.get_finding(session, finding_id)
    rows = await repository.reads_outside(
        session, dataset=finding.dataset, before_id=before_id, limit=limit + 1
    )
    items = [AccessLogEntryRead.model_validate(r) for r in rows[:limit]]
    return AccessLogPage(items=items, next_cursor=str(items[-1].id) if len(rows) > limit else None)
