"""The alert feed: durable, in the transaction of the event, ids in commit order.

Ids are assigned under a lock on ``alert_head`` held until commit, so an alert with a smaller
id is always committed before one with a larger id: a poller that keeps ``last_id`` can never
skip an alert that becomes visible late, nor see one twice. The same lock orders the feed's
hash chain: every alert names the hash of the one before it, and the head (signed with the
checkpoint key when one is set) the newest, so a removed or edited alert fails verify.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app import chain
from app.alerts import repository
from app.alerts.models import Alert, ReadAlertWindow
from app.alerts.schemas import AlertFeed, AlertRead, AlertType
from app.db import chain_key, utcnow


@dataclass(frozen=True)
class AlertEvent:
    type: AlertType
    severity: str
    summary: str
    dataset: str | None = None
    finding_id: int | None = None
    access_log_id: int | None = None
    # A read's alert: who read, and how (its window is theirs, `app.alerts.windows`).
    principal: str | None = None
    action: str | None = None
    # A read's alert: the grant it went through. The access-log store names that grant's
    # finding (`finding_id`) in the transaction that writes the alert.
    grant_id: int | None = None


@dataclass(frozen=True)
class ChainedAlerts:
    rows: list[dict[str, Any]]  # every Alert column
    head: tuple[int, str]  # the feed's new head (id, hash)
    signature: str | None  # the new head's, with a key
    at: datetime


def chain_alerts(
    events: Sequence[AlertEvent],
    finding_ids: Sequence[int | None],
    head: tuple[int, str],
    at: datetime,
    key: bytes | None,
) -> ChainedAlerts:
    """The alerts as rows chained onto the feed's `head` (pure; the caller holds its lock)."""
    last_id, last_hash = head
    at_text = chain.utc_text(at)
    rows = []
    for event, finding_id in zip(events, finding_ids, strict=True):
        last_id += 1
        row: dict[str, Any] = {
            "id": last_id,
            "type": event.type.value,
            "severity": event.severity,
            "at": at,
            "summary": event.summary,
            "dataset": event.dataset,
            "finding_id": finding_id,
            "access_log_id": event.access_log_id,
            "prev_hash": last_hash,
        }
        last_hash = row["hash"] = chain.record_hash(last_hash, chain.ALERT_FIELDS, row, at_text)
        rows.append(row)
    signature = chain.sign_head(key, chain.ALERTS, last_id, last_hash) if key else None
    return ChainedAlerts(rows, (last_id, last_hash), signature, at)


async def emit(session: AsyncSession, events: list[AlertEvent], at: datetime | None = None) -> None:
    """Append alerts in the caller's transaction (which must be a writer)."""
    if not events:
        return
    chained = chain_alerts(
        events,
        [e.finding_id for e in events],
        await repository.lock_head(session),
        at or utcnow(),
        chain_key(session),
    )
    await repository.insert(session, chained.rows)
    await repository.move_head(session, chained.head, chained.signature)


def _read(alert: Alert, window: ReadAlertWindow | None) -> AlertRead:
    read = AlertRead.model_validate(alert)
    if window is None:
        return read
    return read.model_copy(update={"count": window.reads, "window_end": window.window_end})


async def feed(session: AsyncSession, *, after: int, limit: int) -> AlertFeed:
    rows = await repository.page_after(session, after=after, limit=limit)
    items = [_read(alert, window) for alert, window in rows]
    return AlertFeed(items=items, last_id=items[-1].id if items else after)
