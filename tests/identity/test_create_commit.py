"""The IdP's creates of users and groups that queue in one worker commit together
(`app.identity.group_commit`, `policy=False`): each is answered and trailed as if alone, one
refused (a taken userName or displayName) is refused alone, none moves the policy version, and
a batch that cannot commit answers every create 503 and keeps none of them."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from app.auth import repository as auth_repository
from app.auth import trail
from app.db import begin_write
from tests.conftest import Tokens
from tests.identity.support import Scim, group_body, user_body
from tests.identity.test_group_commit import policy_version
from tests.identity.test_holds_scenarios import clean_scan, dataset, decision, grant


@asynccontextmanager
async def trail_held(app: FastAPI) -> AsyncIterator[None]:
    """Another transaction holds the admin trail's head (SQLite: the write lock) until the
    block ends: this worker's creates queue behind the batch waiting for it."""
    async with app.state.sessionmaker() as session, session.begin():
        await begin_write(session)
        await auth_repository.lock_trail_head(session)
        yield


async def queued(app: FastAPI, count: int) -> None:
    for _ in range(500):
        if app.state.create_commit.queued >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{app.state.create_commit.queued} creates queued, not {count}")


async def create_metrics(client: httpx.AsyncClient, admin: dict[str, str]) -> tuple[int, int]:
    """(commits, creates) of `aclaudit_scim_creates_per_commit`."""
    text = (await client.get("/metrics", headers=admin)).text
    found = dict(
        line.split(" ") for line in text.splitlines() if line.startswith("aclaudit_scim_creates")
    )
    return (
        int(float(found["aclaudit_scim_creates_per_commit_count"])),
        int(float(found["aclaudit_scim_creates_per_commit_sum"])),
    )


async def trail_of(client: httpx.AsyncClient, admin: dict[str, str], path: str) -> list[int]:
    r = await client.get("/v1/admin/trail?limit=200", headers=admin)
    return sorted(e["status"] for e in r.json()["items"] if e["path"] == path)


async def user_names(scim: Scim) -> set[str]:
    return {u["userName"] for u in (await scim.listed("Users", count=200))["Resources"]}


async def test_queued_creates_commit_together_and_a_taken_name_is_refused_alone(
    app: FastAPI, scim: Scim, client: httpx.AsyncClient, admin: dict[str, str]
):
    await scim.create_user("taken")
    await scim.create_group("Taken Team")
    version = await policy_version(app)
    commits, created = await create_metrics(client, admin)

    async with trail_held(app):
        first = asyncio.create_task(scim.post("Users", user_body("first")))
        await asyncio.sleep(0.2)  # its batch waits for the trail head (SQLite: the lock)
        later = [
            asyncio.create_task(scim.post("Users", user_body("amy"))),
            asyncio.create_task(scim.post("Users", user_body("TAKEN"))),  # userName: any case
            asyncio.create_task(scim.post("Groups", group_body("Team A"))),
            asyncio.create_task(scim.post("Groups", group_body("taken team"))),
            asyncio.create_task(scim.post("Users", user_body("bob", active=False))),
        ]
        await queued(app, len(later))
    answers = [await first, *await asyncio.gather(*later)]

    assert [r.status_code for r in answers] == [201, 201, 409, 201, 409, 201], [
        r.text for r in answers
    ]
    assert "taken" in answers[2].json()["detail"], answers[2].text
    assert answers[1].json()["userName"] == "amy" and answers[1].json()["active"] is True
    assert answers[5].json()["active"] is False
    assert answers[3].json()["displayName"] == "Team A" and "members" not in answers[3].json()
    for r in (answers[1], answers[3]):  # each created resource is what a read shows
        got = await scim.get(r.headers["Location"].split("/scim/v2/", 1)[1])
        assert got.json() == r.json(), (got.json(), r.json())
    assert await user_names(scim) == {"taken", "first", "amy", "bob"}
    # the later five in one commit (on PostgreSQL the first alone, before them; on SQLite,
    # whose batch waited for the lock before taking any, with them)
    after, created_after = await create_metrics(client, admin)
    assert created_after - created == 6 and after - commits in (1, 2), (after, created_after)
    # one policy change: bob's `inactive` hold, taken inside the batch; the others change none
    assert await policy_version(app) == version + 1
    assert await trail_of(client, admin, "/scim/v2/Users") == [201, 201, 201, 201, 409]
    assert await trail_of(client, admin, "/scim/v2/Groups") == [201, 201, 409]


async def test_a_batch_that_cannot_commit_answers_every_create_503_and_keeps_none(
    app: FastAPI, scim: Scim, client: httpx.AsyncClient, admin: dict[str, str], monkeypatch
):
    """The database fails mid-batch (here: writing the second create's trail entry, after the
    first create's rows and entry were written): every create of the batch is answered 503,
    none of them is kept, and each 503 is in the trail."""
    await scim.create_user("warm")  # (a first request is slower: the batches below need it fast)
    add_entry = trail._add_entry
    calls = 0

    async def failing_once(session, scope, status):
        nonlocal calls
        calls += 1
        if calls == 2:
            raise ConnectionResetError("the database went away")
        await add_entry(session, scope, status)

    async with trail_held(app):
        first = asyncio.create_task(scim.post("Users", user_body("zed")))
        await asyncio.sleep(0.2)
        later = [asyncio.create_task(scim.post("Users", user_body(name))) for name in ("cy", "di")]
        await queued(app, len(later))
        monkeypatch.setattr(trail, "_add_entry", failing_once)
    answers = [await first, *await asyncio.gather(*later)]
    monkeypatch.undo()

    statuses = [r.status_code for r in answers]
    if app.state.settings.is_sqlite:  # the first waited for the lock in the same batch
        assert statuses == [503, 503, 503], [r.text for r in answers]
        failed = {"zed", "cy", "di"}
    else:  # the first committed alone, before the others' batch failed
        assert statuses == [201, 503, 503], [r.text for r in answers]
        failed = {"cy", "di"}
    assert all(r.json()["status"] == "503" for r in answers if r.status_code == 503)
    assert await user_names(scim) == {"warm", "zed", "cy", "di"} - failed
    assert (await trail_of(client, admin, "/scim/v2/Users")).count(503) == len(failed)
    # nothing was left half-written: the same creates succeed now
    for name in sorted(failed):
        assert (await scim.post("Users", user_body(name))).status_code == 201


async def test_a_batch_recreating_a_deleted_users_name_lifts_its_hold_alone(
    app: FastAPI, scim: Scim, client: httpx.AsyncClient, admin: dict[str, str], tokens: Tokens
):
    """The `inactive` holds of a batch's new users are looked up once, after their rows: the
    one whose name a deleted user left held gets access again, the others change no policy."""
    assert (
        await dataset(client, admin, "hr.notes", ["user:zz"], sensitivity="internal")
    ).is_success
    for name in ("ann", "ben"):
        assert (await grant(client, admin, f"user:{name}", "hr.notes")).status_code == 201
    ann = await scim.create_user("ann")
    assert (await scim.delete(f"Users/{ann['id']}")).status_code == 204
    assert await decision(client, tokens, "user:ann", "hr.notes") == ("deny", "principal_inactive")
    version = await policy_version(app)

    async with trail_held(app):
        first = asyncio.create_task(scim.post("Users", user_body("cat")))
        await asyncio.sleep(0.2)
        later = [asyncio.create_task(scim.post("Users", user_body(n))) for n in ("ann", "ben")]
        await queued(app, len(later))
    answers = [await first, *await asyncio.gather(*later)]

    assert [r.status_code for r in answers] == [201, 201, 201], [r.text for r in answers]
    assert await decision(client, tokens, "user:ann", "hr.notes") == ("allow", "granted")
    assert await decision(client, tokens, "user:ben", "hr.notes") == ("allow", "granted")
    assert await policy_version(app) == version + 1  # ann's hold lifted; nothing else
    await clean_scan(client, admin)
