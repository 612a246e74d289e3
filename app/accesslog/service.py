"""Browsing the access log. Nothing here edits it (verifying it: `app.accesslog.integrity`)."""

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app.accesslog import repository
from app.accesslog.models import AccessLogEntry
from app.accesslog.schemas import AccessLogEntryRead, CheckpointPage, CheckpointRead
from app.errors import Gone, NotFound


class Archived(Gone):
    """An entry moved to an archive segment by ``aclaudit log archive``: 410, naming the
    segment (a 404 would say it never existed)."""

    slug = "archived"
    title = "Archived"


async def _archived(session: AsyncSession, entry_id: int, what: str) -> None:
    """Raise `Archived` if entry `entry_id` went to an archive segment."""
    record = await repository.archive_holding(session, entry_id)
    if record is not None:
        raise Archived(
            f"{what} archived: entries {record.first_id} to {record.last_id} are in segment "
            f"{record.segment}, no longer in the database",
            segment=record.segment,
            first_id=record.first_id,
            last_id=record.last_id,
        )


async def find_entry(session: AsyncSession, entry_id: int) -> AccessLogEntry:
    """Entry `entry_id`: `Archived` (410) once archived, `NotFound` (404) if never written."""
    entry = await repository.get_entry(session, entry_id)
    if entry is None:
        await _archived(session, entry_id, f"access-log entry {entry_id} was")
        raise NotFound(f"access-log entry {entry_id} does not exist")
    return entry


async def get_entry(session: AsyncSession, entry_id: int) -> AccessLogEntryRead:
    return AccessLogEntryRead.model_validate(await find_entry(session, entry_id))


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
) -> tuple[list[AccessLogEntryRead], str | None, int | None]:
    """A page, its next cursor, and (on the last page) the archived prefix's last id."""
    if before_id is not None and before_id > 1:
        await _archived(session, before_id - 1, f"the page after cursor {before_id} was")
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
    if len(rows) > limit:
        return page, str(page[-1].id), None
    return page, None, await archived_through(session)  # the last page: older ones may be


async def archived_through(session: AsyncSession) -> int | None:
    """The last id `aclaudit log archive` moved out of the database (None: nothing was): a
    listing's last page says so, so the archived entries are not taken for never written."""
    newest = await repository.newest_archive(session)
    return None if newest is None else newest.last_id


async def list_checkpoints(
    session: AsyncSession, *, before_id: int | None, limit: int
) -> CheckpointPage:
    rows = await repository.list_checkpoints(session, before_id=before_id, limit=limit + 1)
    items = [CheckpointRead.model_validate(r) for r in rows[:limit]]
    return CheckpointPage(
        items=items, next_cursor=str(items[-1].entry_id) if len(rows) > limit else None
    )
