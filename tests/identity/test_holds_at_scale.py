"""Holds at scale: releasing the holds of a large IdP group at once (past asyncpg's 32,767
parameters)."""

from datetime import UTC, datetime

import pytest
from sqlalchemy import insert

from app import policy_version
from app.config import Settings
from app.directory.models import Group, Membership
from app.holds.models import Hold
from tests.identity.test_holds_scenarios import dataset
from tests.identity.test_provisioning import holds

N = 33_000  # past the bind-parameter limits: asyncpg 32767, SQLite 32766


@pytest.fixture
def settings(database_url: str) -> Settings:
    """The audience's growth by 33k is what releases the holds here, not what is tested: no
    two-person approval for it (`tests/approvals/test_audience_growth.py` tests that)."""
    return Settings(database_url=database_url, audience_growth_approval=N)


async def test_an_audience_taking_in_33k_held_users_releases_their_holds(app, client, admin):
    """The IdP put group:all (33k people) under a group that may read act.keys: 33k guard holds.
    The owner then makes group:all the audience: every hold is released in one statement."""
    assert (await dataset(client, admin, "act.keys", ["user:r1"])).status_code == 201
    now = datetime.now(UTC)
    users = [f"user:p{i}" for i in range(N)]
    async with app.state.sessionmaker() as session, session.begin():
        await policy_version.advance(session)
        session.add(Group(id="group:all", created_at=now, managed_by="scim"))
        await session.flush()
        await session.execute(
            insert(Membership),
            [
                {"group_id": "group:all", "member": u, "created_at": now, "created_by": "scim"}
                for u in users
            ],
        )
        await session.execute(
            insert(Hold),
            [
                {
                    "kind": "guard",
                    "principal": u,
                    "dataset": "act.keys",
                    "group_id": "group:eng",
                    "created_at": now,
                    "created_by": "scim",
                }
                for u in users
            ],
        )
    r = await dataset(client, admin, "act.keys", ["user:r1", "group:all"])
    assert r.status_code == 200, r.text[:300]
    assert await holds(client, admin) == []
