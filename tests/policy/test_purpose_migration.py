"""Migration 0020 (purposes): existing grants and their history are for any purpose; datasets
require a purpose by sensitivity, recorded as a policy change of its own so that entries
decided before it replay exactly; it downgrades. SQLite and PostgreSQL."""

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic import command
from sqlalchemy import select
from sqlalchemy.engine import make_url

from app import migrate
from app.auth import service as auth_service
from app.config import Settings
from app.datasets.models import Dataset
from app.main import create_app
from app.policy.history.models import DatasetHistory, GrantHistory
from app.policy.models import Grant
from tests.conftest import POSTGRES_URL, postgres_admin_execute

GRANT = {"principal": "user:amy", "resource": "a.*", "action": "read", "effect": "allow",
         "justification": "t"}  # fmt: skip


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'x.db'}"
        return
    if not POSTGRES_URL:
        pytest.skip("ACLAUDIT_TEST_POSTGRES_URL is not set")
    base = make_url(POSTGRES_URL)
    name = f"{base.database}_mig_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
    asyncio.run(postgres_admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    asyncio.run(postgres_admin_execute(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(postgres_admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


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


def test_existing_grants_are_for_any_purpose_and_sensitive_datasets_come_to_require_one(url):
    migrate.upgrade(url)

    async def before(app: Any, client: httpx.AsyncClient, admin: dict[str, str]) -> int:
        """The policy as 0021 held it: no purpose required anywhere, grants for any purpose;
        and a check without a purpose, allowed then."""
        for dataset, sensitivity in (("a.conf", "confidential"), ("a.int", "internal")):
            body = {"owner": "user:o", "sensitivity": sensitivity, "purpose_required": False}
            r = await client.put(f"/v1/datasets/{dataset}", json=body, headers=admin)
            assert r.status_code == 201, r.text
        r = await client.post("/v1/grants", json=GRANT, headers=admin)
        assert r.status_code == 201, r.text
        body = {"principal": "user:amy", "dataset": "a.conf", "action": "read"}
        r = await client.post("/v1/check", json=body, headers=admin)
        assert r.json()["decision"] == "allow", r.text
        return int(r.json()["access_log_id"])

    entry = asyncio.run(in_app(url, before))
    config = migrate.alembic_config(url)
    command.downgrade(config, "0021")
    command.upgrade(config, "head")

    async def after(app: Any, client: httpx.AsyncClient, admin: dict[str, str]) -> None:
        async with app.state.sessionmaker() as session:
            grants = (await session.execute(select(Grant))).scalars().all()
            assert [g.purposes for g in grants] == [["*"]]
            history = (await session.execute(select(GrantHistory))).scalars().all()
            assert {tuple(h.purposes) for h in history} == {("*",)}
            datasets = {
                d.id: d.purpose_required for d in (await session.execute(select(Dataset))).scalars()
            }
            assert datasets == {"a.conf": True, "a.int": False}
            rows = (
                (await session.execute(select(DatasetHistory).order_by(DatasetHistory.id)))
                .scalars()
                .all()
            )
        conf = [
            (r.purpose_required, r.until_by, r.from_by) for r in rows if r.dataset_id == "a.conf"
        ]
        assert conf[-2:] == [(False, "migration", conf[-2][2]), (True, None, "migration")]
        assert [r.purpose_required for r in rows if r.dataset_id == "a.int"] == [False]
        # The entry decided before the migration replays as it was decided ...
        r = await client.get(f"/v1/access-log/{entry}/replay", headers=admin)
        assert r.status_code == 200, r.text
        assert r.json()["matches"] is True, r.json()
        # ... and a check without a purpose now is denied.
        body = {"principal": "user:amy", "dataset": "a.conf", "action": "read"}
        r = await client.post("/v1/check", json=body, headers=admin)
        assert r.json()["reason"]["code"] == "purpose_required", r.text
        r = await client.post("/v1/check", json={**body, "purpose": "x"}, headers=admin)
        assert r.json()["decision"] == "allow", r.text

    asyncio.run(in_app(url, after))
