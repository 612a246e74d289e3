"""The IdP's group PATCHes that queue in one worker commit together (`app.identity.group_commit`):
each is applied, answered and trailed as if alone, one that fails is rolled back alone, and the
findings and holds of the batch are those a full scan and the guard give."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import text

from app.db import begin_write, take_policy_turn
from tests.conftest import Tokens
from tests.identity.support import Scim, patch_body
from tests.identity.test_holds_scenarios import clean_scan, dataset, decision, grant


@asynccontextmanager
async def writers_held(app: FastAPI) -> AsyncIterator[None]:
    """This worker's writers wait (a policy change is under way) until the block ends."""
    async with app.state.sessionmaker() as session, session.begin():
        await begin_write(session)
        await take_policy_turn(session)
        yield


async def queued(app: FastAPI, count: int) -> None:
    for _ in range(500):
        if app.state.group_commit.queued >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{app.state.group_commit.queued} pushes queued, not {count}")


async def policy_version(app: FastAPI) -> int:
    async with app.state.sessionmaker() as session:
        return int((await session.execute(text("SELECT version FROM policy_state"))).scalar_one())


async def members(client: httpx.AsyncClient, admin: dict[str, str], gid: str) -> set[str]:
    r = await client.get(f"/v1/groups/{gid}", headers=admin)
    assert r.status_code == 200, r.text
    return set(r.json()["members"])


async def batch_metrics(client: httpx.AsyncClient, admin: dict[str, str]) -> tuple[int, int]:
    """(commits, pushes) of `aclaudit_scim_pushes_per_commit`."""
    text = (await client.get("/metrics", headers=admin)).text
    found = dict(
        line.split(" ") for line in text.splitlines() if line.startswith("aclaudit_scim_pushes")
    )
    return (
        int(float(found["aclaudit_scim_pushes_per_commit_count"])),
        int(float(found["aclaudit_scim_pushes_per_commit_sum"])),
    )


def add(*ids: str) -> dict[str, Any]:
    return patch_body({"op": "add", "path": "members", "value": [{"value": i} for i in ids]})


async def test_queued_pushes_commit_as_one_policy_change_with_holds_findings_and_trail(
    app: FastAPI, scim: Scim, client: httpx.AsyncClient, admin: dict[str, str], tokens: Tokens
):
    users = [await scim.create_user(f"u{i}") for i in range(12)]
    company = await scim.create_group("company")
    teams = [await scim.create_group(f"team{i}") for i in range(4)]
    r = await scim.patch(f"Groups/{company['id']}", add(*[t["id"] for t in teams]))
    assert r.status_code == 204, r.text
    # act.keys is for the audience alone; everyone in the company may read act.notes
    assert (await dataset(client, admin, "act.keys", ["user:u0"])).status_code == 201
    assert (await grant(client, admin, "group:team0", "act.keys")).status_code == 201
    notes = await dataset(client, admin, "act.notes", ["user:u0"], sensitivity="internal")
    assert notes.status_code == 201, notes.text
    assert (await grant(client, admin, "group:company", "act.notes")).status_code == 201
    version = await policy_version(app)
    commits, pushed = await batch_metrics(client, admin)

    async with writers_held(app):
        pushes = [
            asyncio.create_task(
                scim.patch(
                    f"Groups/{team['id']}", add(*[u["id"] for u in users[3 * i : 3 * i + 3]])
                )
            )
            for i, team in enumerate(teams)
        ]
        await queued(app, len(pushes))
    answers = await asyncio.gather(*pushes)

    assert [r.status_code for r in answers] == [204] * 4, [r.text for r in answers]
    assert await policy_version(app) == version + 1  # one change for the four pushes
    assert await batch_metrics(client, admin) == (commits + 1, pushed + 4)
    for i in range(4):
        assert await members(client, admin, f"team{i}") == {f"user:u{3 * i + j}" for j in range(3)}
    # team0's newcomers outside the audience are held on the block-guarded dataset
    assert await decision(client, tokens, "user:u1", "act.keys") == ("deny", "held_by_guard")
    assert await decision(client, tokens, "user:u0", "act.keys") == ("allow", "granted")
    assert await decision(client, tokens, "user:u11", "act.notes") == ("allow", "granted")
    r = await client.get("/v1/findings", params={"dataset": "act.notes"}, headers=admin)
    [finding] = r.json()["items"]
    assert finding["excess_count"] == 11
    await clean_scan(client, admin)
    r = await client.get("/v1/admin/trail?limit=100", headers=admin)
    patched = [e for e in r.json()["items"] if e["method"] == "PATCH"]
    paths = sorted(e["path"] for e in patched if e["path"] != f"/scim/v2/Groups/{company['id']}")
    assert paths == sorted(f"/scim/v2/Groups/{t['id']}" for t in teams)
    assert {e["status"] for e in patched} == {204}


async def test_a_push_that_fails_in_a_batch_is_rolled_back_alone(
    app: FastAPI, scim: Scim, client: httpx.AsyncClient, admin: dict[str, str]
):
    amy, bob = await scim.create_user("amy"), await scim.create_user("bob")
    outer = await scim.create_group("outer")
    inner = await scim.create_group("inner")
    assert (await scim.patch(f"Groups/{outer['id']}", add(inner["id"]))).status_code == 204

    async with writers_held(app):
        pushes = [
            asyncio.create_task(scim.patch(f"Groups/{inner['id']}", add(amy["id"]))),
            # a cycle: outer holds inner
            asyncio.create_task(scim.patch(f"Groups/{inner['id']}", add(outer["id"], bob["id"]))),
            asyncio.create_task(
                scim.patch(f"Groups/{inner['id']}", patch_body({"op": "jump", "path": "members"}))
            ),
            asyncio.create_task(scim.patch(f"Groups/{outer['id']}", add(bob["id"]))),
        ]
        await queued(app, len(pushes))
    good, cycle, malformed, last = await asyncio.gather(*pushes)

    assert (good.status_code, last.status_code) == (204, 204), (good.text, last.text)
    assert cycle.status_code == 409, cycle.text
    assert malformed.status_code == 400, malformed.text
    assert await members(client, admin, "inner") == {"user:amy"}
    assert await members(client, admin, "outer") == {"group:inner", "user:bob"}
    await clean_scan(client, admin)
    r = await client.get("/v1/admin/trail?limit=100", headers=admin)
    statuses = sorted(e["status"] for e in r.json()["items"] if e["method"] == "PATCH")
    assert statuses == [204, 204, 204, 400, 409]
