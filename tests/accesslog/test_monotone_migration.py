"""Migration 0020 on an existing log: the head's instant is the newest entry's, but never later
than the migration's clock (an entry a bad clock stamped in the future must not move the
instants checks are decided at), and its downgrade still works."""

import asyncio
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Executable, insert, text

from app import migrate
from app.accesslog.models import AccessLogEntry
from app.config import Settings
from app.db import create_engine
from tests.accesslog.test_partitions import fresh_postgres  # noqa: F401 (a fixture)
from tests.accesslog.test_time_window import _entry
from tests.conftest import BACKENDS

PAST = datetime(2026, 3, 1, tzinfo=UTC)
FUTURE = datetime(2099, 1, 1, tzinfo=UTC)  # a bad clock's


async def _in(url: str, *statements: Executable) -> list[Any]:
    """Each statement's rows (none for a write), in one transaction."""
    engine = create_engine(Settings(database_url=url))
    try:
        async with engine.begin() as conn:
            results = [await conn.execute(s) for s in statements]
            return [list(r.all()) if r.returns_rows else [] for r in results]
    finally:
        await engine.dispose()


@pytest.mark.parametrize("backend", BACKENDS)
def test_0020_starts_the_head_instant_no_later_than_now(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
):
    is_pg = backend == "postgresql"
    url = request.getfixturevalue("fresh_postgres") if is_pg else f"sqlite:///{tmp_path / 'm.db'}"
    config = migrate.alembic_config(url)
    command.upgrade(config, "0019")
    rng = random.Random(20)
    rows = [_entry(1, FUTURE, rng), _entry(2, PAST, rng)]
    written = insert(AccessLogEntry).values(rows)
    asyncio.run(_in(url, written, text("UPDATE access_log_head SET last_id = 2")))
    before = datetime.now(UTC)
    command.upgrade(config, "0020")
    after = datetime.now(UTC)
    (head,) = asyncio.run(_in(url, text("SELECT last_at, monotone_from FROM access_log_head")))
    last_at: Any = head[0][0]
    monotone_from: Any = head[0][1]
    if isinstance(last_at, str):  # SQLite: as SQLAlchemy stores an instant
        last_at = datetime.fromisoformat(last_at)
    last_at = last_at.replace(tzinfo=UTC) if last_at.tzinfo is None else last_at
    assert before.replace(microsecond=0) <= last_at <= after, last_at
    assert monotone_from == 3
    command.downgrade(config, "0019")
    command.upgrade(config, "head")
