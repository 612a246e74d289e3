"""The benchmark's bulk-generated access log (`bench.log_generate`) is one the service accepts:
`aclaudit log verify` and GET /v1/access-log/verify say ok, browsing finds its entries, and the
tables' keys and indexes are as the migrations made them. PostgreSQL only (the generator COPYs)."""

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from app import migrate
from app.auth import service as auth_service
from app.config import Settings
from app.main import create_app
from bench import log_generate
from tests.conftest import postgres_admin_execute

POSTGRES_URL = os.environ.get("ACLAUDIT_TEST_POSTGRES_URL")
pytestmark = pytest.mark.skipif(POSTGRES_URL is None, reason="needs ACLAUDIT_TEST_POSTGRES_URL")
ACLAUDIT = Path(sys.executable).with_name("aclaudit")
KEY = "generated-log-key"
SCHEMA = """
SELECT tablename, indexdef FROM pg_indexes
WHERE tablename IN ('access_log', 'access_log_subjects') ORDER BY indexname
"""
# Each partition of the log tables has every index its table has, and all are valid.
PARTITION_INDEXES = """
SELECT c.relname, count(i.indexrelid), bool_and(i.indisvalid) FROM pg_class c
JOIN pg_inherits h ON h.inhrelid = c.oid
LEFT JOIN pg_index i ON i.indrelid = c.oid
WHERE h.inhparent IN ('access_log'::regclass, 'access_log_subjects'::regclass)
GROUP BY c.relname, h.inhparent
HAVING count(i.indexrelid) <> (SELECT count(*) FROM pg_index p WHERE p.indrelid = h.inhparent)
    OR NOT bool_and(i.indisvalid)
UNION ALL
SELECT indexrelid::regclass::text, 0, false FROM pg_index
WHERE indrelid IN ('access_log'::regclass, 'access_log_subjects'::regclass) AND NOT indisvalid
"""
FOREIGN_KEYS = """
SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint
WHERE contype = 'f' AND confrelid = 'access_log'::regclass ORDER BY conname
"""


async def _fetch(url: str, sql: str) -> list[tuple[object, ...]]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return [tuple(r) for r in await conn.fetch(sql)]
    finally:
        await conn.close()


@pytest.fixture
def fresh_url() -> Iterator[str]:
    """A database of its own: the generator drops the log's keys while it loads."""
    assert POSTGRES_URL
    name = f"{make_url(POSTGRES_URL).database}_loggen"
    asyncio.run(postgres_admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    asyncio.run(postgres_admin_execute(f'CREATE DATABASE "{name}"'))
    url = make_url(POSTGRES_URL).set(database=name).render_as_string(False)
    migrate.upgrade(url)
    yield url
    asyncio.run(postgres_admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def shape(entries: int) -> log_generate.LogShape:
    return log_generate.LogShape(
        entries=entries,
        principals=[f"user:u{i}" for i in range(50)],
        datasets=[f"d{i}.t0" for i in range(20)],
        end=log_generate.newest_instant(),
        checkpoint_every=100,
        checkpoint_key=KEY.encode(),
        chunk=1000,
    )


def env(url: str) -> dict[str, str]:
    kept = {k: v for k, v in os.environ.items() if not k.startswith("ACLAUDIT_")}
    return {
        **kept,
        "ACLAUDIT_DATABASE_URL": url,
        "ACLAUDIT_CHECKPOINT_EVERY": "100",
        "ACLAUDIT_CHECKPOINT_KEY": KEY,
    }


async def test_a_generated_log_verifies_and_browses(fresh_url):
    schema = await _fetch(fresh_url, SCHEMA)
    foreign_keys = await _fetch(fresh_url, FOREIGN_KEYS)
    # more than one chunk, ending between two checkpoints
    entries = 2345
    made = await log_generate.generate(fresh_url, shape(entries))
    assert made.entries == entries and made.subjects > entries // 10
    assert await _fetch(fresh_url, SCHEMA) == schema
    assert await _fetch(fresh_url, FOREIGN_KEYS) == foreign_keys
    assert await _fetch(fresh_url, PARTITION_INDEXES) == []
    # written in order from entry 1: the head says so, with the newest instant
    head = "SELECT last_at = (SELECT max(at) FROM access_log), monotone_from FROM access_log_head"
    assert await _fetch(fresh_url, head) == [(True, 1)]

    verified = await asyncio.to_thread(
        subprocess.run,
        [str(ACLAUDIT), "log", "verify"],
        env=env(fresh_url),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.startswith(f"ok: {entries} entries")
    assert f"{entries // 100} checkpoints" in verified.stdout

    settings = Settings(database_url=fresh_url, checkpoint_every=100, checkpoint_key=KEY)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with app.state.sessionmaker() as session, session.begin():
            token = await auth_service.create_token(session, name="reader", scopes=["audit:read"])
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://aclaudit.test", headers=headers
        ) as client:
            result = (await client.get("/v1/access-log/verify")).json()
            assert result["ok"] is True, result
            assert result["entries"] == entries and result["signed_checkpoints"] is True
            page = (await client.get("/v1/access-log", params={"limit": 5})).json()
            assert [e["id"] for e in page["items"]] == list(range(entries, entries - 5, -1))
            outside = (
                await client.get("/v1/access-log", params={"out_of_audience": "true"})
            ).json()
            assert outside["items"] and all(e["out_of_audience"] for e in outside["items"])
            named = next(e for e in page["items"] + outside["items"] if e["data_subjects"])
            found = (
                await client.get(
                    "/v1/access-log", params={"data_subject": named["data_subjects"][0]}
                )
            ).json()
            assert named["id"] in [e["id"] for e in found["items"]]
