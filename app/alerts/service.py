"""The alert feed: durable, in the transaction of the event, ids in commit order.

Ids are assigned under a lock on ``alert_head`` held until commit, so an alert with a smaller
id is always committed before one with a larger id: a poller that keeps ``last_id`` can never
skip an alert that becomes visible late, nor see one twice.
"""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.alerts.models import Alert, AlertHead
from app.alerts.schemas import AlertFeed, AlertRead, AlertType
from app.db import insert_columns, utcnow


@dataclass(frozen=True)
class AlertEvent:
    type: AlertType
    severity: str
    summary: str
    dataset: str | None = None
    finding_id: int | None = None
    access_log_id: int | None = None
    # A read's alert: the grant it went through. The access-log store names that grant's
    # finding (`finding_id`) in the transaction that writes the alert.
    grant_id: int | None = None


async def emit(session: AsyncSession, events: list[AlertEvent], at: datetime | None = None) -> None:
    """Append alerts in the caller's transaction (which must be a writer)."""
    if not events:
        return
    query = select(AlertHead.last_id).where(AlertHead.id == 1).with_for_update()
    last = int((await session.execute(query)).scalar_one())
    stamp = at or utcnow()
    values = {
        "id": range(last + 1, last + 1 + len(events)),
        "type": [e.type.value for e in events],
        "severity": [e.severity for e in events],
        "at": [stamp] * len(events),
        "summary": [e.summary for e in events],
        "dataset": [e.dataset for e in events],
        "finding_id": [e.finding_id for e in events],
        "access_log_id": [e.access_log_id for e in events],
    }
    await insert_columns(session, Alert.__table__, values)  # type: ignore[arg-type]
    await session.execute(
        update(AlertHead).where(AlertHead.id == 1).values(last_id=last + len(events))
    )


async def emit_once(session: AsyncSession, event: AlertEvent, at: datetime | None = None) -> bool:
    """Emit ``event`` unless an alert of its type about the same log entry exists already.

    The feed's lock is taken first, so two workers cannot both decide to emit it.
    """
    await session.execute(select(AlertHead.id).where(AlertHead.id == 1).with_for_update())
    query = select(Alert.id).where(
        Alert.type == event.type.value, Alert.access_log_id == event.access_log_id
    )
    if (await session.execute(query.limit(1))).first() is not None:
        return False
    await emit(session, [event], at)
    return True


async def feed(session: AsyncSession, *, after: int, limit: int) -> AlertFeed:
    query = select(Alert).where(Alert.id > after).order_by(Alert.id).limit(limit)
    items = [AlertRead.model_validate(a) for a in (await session.execute(query)).scalars()]
    return AlertFeed(items=items, last_id=items[-1].id if items else after)


async def head(session: AsyncSession) -> int:
    query = select(AlertHead.last_id).where(AlertHead.id == 1)
    return int((await session.execute(query)).scalar_one())


async def count_of_type(session: AsyncSession, kind: AlertType) -> int:
    query = select(func.count()).select_from(Alert).where(Alert.type == kind.value)
    return int((await session.execute(query)).scalar_one())
