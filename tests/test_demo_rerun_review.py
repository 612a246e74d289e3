"""Review of the demo's history (issue #20): running `aclaudit demo` again after the user did
what the demo invites (revoke the over-broad grant) is documented as changing nothing."""

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import demo, demo_story
from app.config import Settings
from app.db import begin_write
from tests.conftest import Tokens


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, sweeper_enabled=False)


def _noop(*_: object) -> None:
    return None


async def test_running_the_demo_again_after_the_revoke_changes_nothing(
    client: httpx.AsyncClient, tokens: Tokens, sessionmaker: async_sessionmaker[AsyncSession]
):
    """README: "Run again, or on a database with history, it re-asserts the organisation at the
    present: no grant, member or dataset changes." After the revoke the re-run recreates the
    over-broad grant on the block-guarded datasets: the guard refuses it (the demo fails) or,
    were it let through, the revoked exposure would be back."""
    assert await demo_story.tell(sessionmaker, _noop) is not None
    r = await client.get("/v1/findings", params={"status": "open"}, headers=tokens["audit:read"])
    [grant_id] = {f["grant_id"] for f in r.json()["items"]}
    revoked = await client.delete(f"/v1/grants/{grant_id}", headers=tokens["admin"])
    assert revoked.status_code == 200, revoked.text

    async with sessionmaker() as session, session.begin():
        await begin_write(session)
        counts = await demo.load(session, _noop)
    assert counts["grants_created"] == 0
    r = await client.get("/v1/findings", params={"status": "open"}, headers=tokens["audit:read"])
    assert r.json()["items"] == []
