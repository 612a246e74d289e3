"""Browsing the access log. Nothing here edits it (verifying it: `app.accesslog.integrity`)."""

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app.accesslog import repository
from app.accesslog.schemas import AccessLogEntryRead, CheckpointPage, CheckpointRead
from app.errors import NotFound


async def get_entry(session: AsyncSession, entry_id: int) -> AccessLogEntryRead:
    entry = await repository.get_entry(session, entry_id)
    if entry is None:
        raise NotFound(f"access-log entry {entry_id} does not exist")
    return AccessLogEntryRead.model_validate(entry)


async def list_entries(
    session: AsyncSession,
    *,
    principal: str | None,
    dataset: str | None,
    decision: str | None,
    out_of_audience: bool | None,
    data_subject: str | None,
    since: datetime | None,
    until: datetime | None,
    before_id: int | None,
    limit: int,
) -> tuple[list[AccessLogEntryRead], str | None]:
    rows = await repository.list_entries(
        session,
        principal=principal,
        dataset=dataset,
        decision=decision,
        out_of_audience=out_of_audience,
        data_subject=data_subject,
        since=since,
        until=until,
        before_id=before_id,
        limit=limit + 1,
    )
    page = [AccessLogEntryRead.model_validate(r) for r in rows[:limit]]
    return page, (str(page[-1].id) if len(rows) > limit else None)


async def list_checkpoints(
    session: AsyncSession, *, before_id: int | None, limit: int
) -> CheckpointPage:
    rows = await repository.list_checkpoints(session, before_id=before_id, limit=limit + 1)
    items = [CheckpointRead.model_validate(r) for r in rows[:limit]]
    return CheckpointPage(
        items=items, next_cursor=str(items[-1].entry_id) if len(rows) > limit else None
    )
