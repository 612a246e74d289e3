"""`GET /v1/findings?kind=`: every finding so far is an exposure finding (`kind=exposure`),
those of a database migrated to 0015 included; `unused` ones are the sweeper's
(`tests/exposure/test_unused.py`)."""

import asyncio
from pathlib import Path
from typing import Any

import httpx
from alembic import command

from app import migrate
from tests.exposure.test_findings import grant, org
from tests.policy.test_history_backfill import in_app


async def kinds(client: httpx.AsyncClient, admin: Any, kind: str) -> list[tuple[int, str]]:
    r = await client.get("/v1/findings", params={"kind": kind}, headers=admin)
    assert r.status_code == 200, r.text
    return [(f["id"], f["kind"]) for f in r.json()["items"]]


async def test_findings_are_of_kind_exposure_and_filter_by_kind(
    client: httpx.AsyncClient, admin: Any
) -> None:
    await org(client, admin)
    r = await client.post("/v1/grants", json=grant("group:all"), headers=admin)
    [opened] = r.json()["findings_opened"]
    assert opened["kind"] == "exposure"
    assert await kinds(client, admin, "exposure") == [(opened["id"], "exposure")]
    assert await kinds(client, admin, "unused") == []
    r = await client.get("/v1/findings", params={"kind": "stale"}, headers=admin)
    assert r.status_code == 422
    assert [e["field"] for e in r.json()["errors"]] == ["query.kind"]


def test_findings_of_a_database_migrated_to_0015_are_exposure_findings(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    migrate.upgrade(url)

    async def seed(app: Any, client: httpx.AsyncClient, admin: dict[str, str]) -> int:
        await org(client, admin)
        r = await client.post("/v1/grants", json=grant("group:all"), headers=admin)
        return int(r.json()["findings_opened"][0]["id"])

    finding_id = asyncio.run(in_app(url, seed))
    config = migrate.alembic_config(url)
    command.downgrade(config, "0013")
    command.upgrade(config, "head")

    async def ask(app: Any, client: httpx.AsyncClient, admin: dict[str, str]) -> None:
        assert await kinds(client, admin, "exposure") == [(finding_id, "exposure")]

    asyncio.run(in_app(url, ask))
