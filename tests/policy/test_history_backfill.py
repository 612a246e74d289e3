"""Migration 0012's backfill: the history it starts, and `at=` before and after it."""

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from alembic import command
from sqlalchemy import select

from app import migrate
from app.auth import service as auth_service
from app.config import Settings
from app.main import create_app
from app.policy.history import repository as history_repository
from app.policy.history import timeline
from app.policy.history.models import GrantHistory

DATASET = {"owner": "group:eng", "sensitivity": "internal", "intended_audience": ["group:eng"]}
GRANT = {"principal": "user:amy", "resource": "a.*", "action": "read", "effect": "allow"}


async def in_app(url: str, work: Any) -> Any:
    app = create_app(Settings(database_url=url))
    async with app.router.lifespan_context(app):
        async with app.state.sessionmaker() as session, session.begin():
            token = await auth_service.create_token(
                session, name=f"t{time.monotonic_ns()}", scopes=["admin"]
            )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await work(app, client, {"Authorization": f"Bearer {token}"})


def test_backfill_starts_the_history_at_the_migration_and_before_it_is_before_any_history(
    tmp_path: Path,
):
    """The backfill opens the policy it finds at version 0, by 'migration', and records the
    current version at the migration's instant: an instant before it is before any history
    (an empty policy, version 0), never the current version with a policy of the past rows'
    own instants (access-log entries of that instant logged version 1)."""
    url = f"sqlite:///{tmp_path / 'x.db'}"
    migrate.upgrade(url)

    async def seed(app: Any, client: httpx.AsyncClient, admin: dict[str, str]) -> datetime:
        assert (await client.put("/v1/datasets/a.b", json=DATASET, headers=admin)).is_success
        await asyncio.sleep(0.01)
        between = datetime.now(UTC)  # version 1: a.b registered, no grant yet
        await asyncio.sleep(0.01)
        assert (await client.post("/v1/grants", json=GRANT, headers=admin)).is_success
        assert (await client.post("/v1/grants", json=GRANT, headers=admin)).is_success
        return between

    between = asyncio.run(in_app(url, seed))
    config = migrate.alembic_config(url)
    command.downgrade(config, "0011")  # a database from before the history
    command.upgrade(config, "head")
    migrated = datetime.now(UTC)

    async def ask(app: Any, client: httpx.AsyncClient, admin: dict[str, str]) -> None:
        params = {"principal": "user:amy", "dataset": "a.b", "at": between.isoformat()}
        r = await client.get("/v1/explain", params=params, headers=admin)
        assert r.status_code == 200, r.text
        assert r.json()["policy_version"] == 0, r.json()
        assert r.json()["reason"]["code"] == "unknown_dataset", r.json()
        r = await client.get(
            "/v1/explain", params={**params, "at": migrated.isoformat()}, headers=admin
        )
        assert (r.json()["policy_version"], r.json()["decision"]) == (3, "allow"), r.json()
        async with app.state.sessionmaker() as session:
            rows = timeline.rows_as_of(await history_repository.load(session, version=0), 0)
            history = (await session.execute(select(GrantHistory))).scalars().all()
        assert list(rows.datasets) == ["a.b"] and len(rows.rules) == 2
        assert {(h.from_version, h.from_by) for h in history} == {(0, "migration")}

    asyncio.run(in_app(url, ask))
