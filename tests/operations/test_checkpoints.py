"""SQLite's WAL is checkpointed by a task of the service's own, never inside a request's commit."""

import sqlite3

from sqlalchemy import text

from app.config import Settings


async def test_requests_leave_the_wal_to_the_background_checkpointer(app, client, admin, settings):
    checkpointer = app.state.wal_checkpointer
    if not settings.is_sqlite:  # PostgreSQL checkpoints by itself
        assert checkpointer is None
        return
    async with app.state.sessionmaker() as session:
        assert (await session.execute(text("PRAGMA wal_autocheckpoint"))).scalar() == 0
    for i in range(5):
        r = await client.put(
            f"/v1/groups/g{i}/members", json={"members": ["user:a", "user:b"]}, headers=admin
        )
        assert r.status_code == 200, r.text

    busy, frames, copied = await checkpointer.checkpoint()
    assert busy == 0 and frames > 0 and copied == frames  # every committed page copied
    with sqlite3.connect(settings.sqlite_file) as conn:  # and what it copied is readable
        rows = conn.execute("SELECT count(*) FROM memberships WHERE group_id LIKE 'group:g%'")
        assert rows.fetchone()[0] == 10


def test_an_in_memory_or_postgresql_database_has_no_file_to_checkpoint():
    assert Settings(database_url="sqlite+aiosqlite:///:memory:").sqlite_file is None
    assert Settings(database_url="postgresql://u@h/db").sqlite_file is None
    assert Settings(database_url="sqlite:////tmp/x/aclaudit.db").sqlite_file == "/tmp/x/aclaudit.db"
