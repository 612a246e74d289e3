"""Review of the incident report (issue #20): its rebuild of the policy at `since` must not hold
the event loop (checks of every other caller wait behind it), as the check index's rebuild
does not (built in a thread)."""

import asyncio
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.directory.models import MembershipHistory
from app.policy.history.models import DatasetHistory, GrantHistory
from app.policy_version import PolicyVersionRecord
from tests.conftest import Tokens

# it times the event loop: no other test may compete for the cores meanwhile
pytestmark = pytest.mark.alone

USERS, GROUPS, GRANTS = 40_000, 400, 8_000
STALL_SECONDS = 0.25  # a check's budget is a few milliseconds


async def _history(maker: async_sessionmaker[AsyncSession], at: datetime) -> None:
    """A company's policy as the history holds it at version 1 (as `aclaudit demo` or years
    of changes would leave it), written directly: only the history is read by the rebuild."""
    opened = {"from_version": 1, "from_at": at, "from_by": "review"}
    links = [
        {"group_id": f"group:g{(i * k) % GROUPS}", "member": f"user:u{i}", **opened}
        for i in range(USERS)
        for k in (1, 7)
    ]
    links = list({(r["group_id"], r["member"]): r for r in links}.values())
    grants = [
        {
            "grant_id": n + 1,
            "principal": f"group:g{n % GROUPS}",
            "resource": f"d{n % 100}.*",
            "action": "read",
            "effect": "allow",
            "expires_at": None,
            **opened,
        }
        for n in range(GRANTS)
    ]
    dataset = {
        "dataset_id": "d1.x",
        "sensitivity": "internal",
        "audience": ["group:g1"],
        "guard": "alert",
        **opened,
    }
    async with maker() as session, session.begin():
        for start in range(0, len(links), 5000):
            await session.execute(insert(MembershipHistory), links[start : start + 5000])
        await session.execute(insert(GrantHistory), grants)
        await session.execute(insert(DatasetHistory), [dataset])
        await session.execute(insert(PolicyVersionRecord), [{"version": 1, "at": at, "by": "r"}])


async def test_a_report_does_not_stall_the_event_loop_while_it_rebuilds_the_policy(
    client: httpx.AsyncClient, tokens: Tokens, sessionmaker: async_sessionmaker[AsyncSession]
):
    # FastAPI builds its routes and their dependencies on the first requests a fresh app
    # serves (0.1-0.5 s on a busy machine, once per process): not the rebuild measured here.
    # A report on the empty policy first (nothing to rebuild).
    warm = await client.get(
        "/v1/reports/exposure", params={"dataset": "d1.x"}, headers=tokens["audit:read"]
    )
    assert warm.status_code == 200, warm.text
    at = datetime.now(UTC) - timedelta(days=1)
    await _history(sessionmaker, at)
    longest = 0.0
    done = False

    async def ticker() -> None:
        nonlocal longest
        while not done:
            before = time.perf_counter()
            await asyncio.sleep(0.002)
            longest = max(longest, time.perf_counter() - before)

    ticking = asyncio.create_task(ticker())
    params = {"dataset": "d1.x", "since": (at + timedelta(seconds=1)).isoformat()}
    r = await client.get("/v1/reports/exposure", params=params, headers=tokens["audit:read"])
    done = True
    await ticking
    assert r.status_code == 200, r.text
    assert r.json()["datasets"][0]["who_could"]["excess_at_until"] > 0
    assert longest < STALL_SECONDS, f"the event loop stalled {longest:.2f} s"
