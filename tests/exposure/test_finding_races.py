"""Writers of findings that race a policy change: each waits for the change, never undoes it,
and none deadlocks with it (PostgreSQL's row locks; SQLite's writers take turns anyway)."""

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from app import policy_version
from app.changes import grants as grant_changes
from app.db import begin_write
from tests.exposure.test_findings import LATER, grant, org

WAIT = 0.5  # long enough for the racing request to reach its lock


async def exposed(client, admin) -> tuple[int, int]:
    """(grant id, its open finding's id)."""
    await org(client, admin)
    r = await client.post("/v1/grants", json=grant("group:all"), headers=admin)
    assert r.status_code == 201, r.text
    return r.json()["id"], r.json()["findings_opened"][0]["id"]


async def status_of(client, admin, finding_id: int) -> str:
    r = await client.get(f"/v1/findings/{finding_id}", headers=admin)
    return str(r.json()["status"])


async def test_an_acceptance_racing_the_revoke_that_resolves_its_finding_is_refused(
    client, admin, sessionmaker
):
    grant_id, finding_id = await exposed(client, admin)
    async with sessionmaker() as revoking:
        await begin_write(revoking)
        await grant_changes.revoke_grant(revoking, grant_id=grant_id, actor="t", accept=None)
        accept = asyncio.create_task(
            client.post(
                f"/v1/findings/{finding_id}/accept",
                json={"reason": "known", "until": LATER},
                headers=admin,
            )
        )
        await asyncio.sleep(WAIT)
        assert not accept.done()  # it waits for the revoke
        await revoking.commit()
    r = await accept
    assert r.status_code == 409, r.text
    assert await status_of(client, admin, finding_id) == "resolved"


async def test_a_scan_reopening_a_lapsed_acceptance_waits_for_a_revoke_instead_of_deadlocking(
    client, admin, sessionmaker
):
    grant_id, finding_id = await exposed(client, admin)
    r = await client.post(
        f"/v1/findings/{finding_id}/accept",
        json={"reason": "known", "until": LATER},
        headers=admin,
    )
    assert r.status_code == 200, r.text
    async with sessionmaker() as session, session.begin():
        lapsed = datetime.now(UTC) - timedelta(seconds=1)
        await session.execute(text("UPDATE findings SET until = :t"), {"t": lapsed})

    async with sessionmaker() as revoking:
        await begin_write(revoking)
        await policy_version.advance(revoking)  # a policy change under way holds the lock
        scan = asyncio.create_task(client.post("/v1/scan", headers=admin))
        await asyncio.sleep(WAIT)
        # ... and now resolves the finding the scan would reopen
        await grant_changes.revoke_grant(revoking, grant_id=grant_id, actor="t", accept=None)
        await revoking.commit()
    r = await scan
    assert r.status_code == 200, r.text
    assert r.json()["open_findings"] == 0
    assert await status_of(client, admin, finding_id) == "resolved"
