"""Every query on the alert feed: its head (locked by writers), its rows, its counts."""

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.alerts.models import Alert, AlertHead, ReadAlertWindow
from app.alerts.schemas import AlertType
from app.db import insert_columns


async def lock_head(session: AsyncSession) -> tuple[int, str]:
    """The feed's newest id and hash, locked until the caller's transaction ends."""
    query = select(AlertHead.last_id, AlertHead.last_hash).where(AlertHead.id == 1)
    last_id, last_hash = (await session.execute(query.with_for_update())).one()
    return int(last_id), str(last_hash)


async def insert(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    columns = [c.name for c in Alert.__table__.columns]
    values = {name: [row[name] for row in rows] for name in columns}
    await insert_columns(session, Alert.__table__, values)  # type: ignore[arg-type]


async def move_head(session: AsyncSession, head: tuple[int, str], signature: str | None) -> None:
    last_id, last_hash = head
    await session.execute(
        update(AlertHead)
        .where(AlertHead.id == 1)
        .values(last_id=last_id, last_hash=last_hash, signature=signature)
    )


async def page_after(
    session: AsyncSession, *, after: int, limit: int
) -> Sequence[tuple[Alert, ReadAlertWindow | None]]:
    """The alerts after `after`, each with its read window if it opened one."""
    query = (
        select(Alert, ReadAlertWindow)
        .outerjoin(ReadAlertWindow, ReadAlertWindow.alert_id == Alert.id)
        .where(Alert.id > after)
        .order_by(Alert.id)
        .limit(limit)
    )
    return [(alert, window) for alert, window in (await session.execute(query)).all()]


async def head(session: AsyncSession) -> int:
    query = select(AlertHead.last_id).where(AlertHead.id == 1)
    return int((await session.execute(query)).scalar_one())


async def count_of_type(session: AsyncSession, kind: AlertType) -> int:
    query = select(func.count()).select_from(Alert).where(Alert.type == kind.value)
    return int((await session.execute(query)).scalar_one())
