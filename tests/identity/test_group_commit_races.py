"""The group commit against other workers' changes and its own failures (found by review):
members read under the policy lock, the version lock before the trail's head as every change
takes them, and each push answered 503 by a failed batch still in the admin trail."""

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app import policy_version
from app.auth import service as auth_service
from app.identity import provisioning
from app.main import create_app
from tests.identity.support import Scim, patch_body
from tests.identity.test_group_commit import add, members, queued, writers_held
from tests.identity.test_holds_scenarios import clean_scan, dataset, grant


async def trail_statuses(client, admin, path: str) -> list[int]:
    r = await client.get("/v1/admin/trail?limit=200", headers=admin)
    return sorted(e["status"] for e in r.json()["items"] if e["path"] == path)


async def test_pushes_answered_503_by_a_failed_batch_have_trail_entries(
    app: FastAPI, scim: Scim, client: httpx.AsyncClient, admin: dict[str, str], monkeypatch
):
    """A batch that fails after its pushes ran (settle or commit) answers each 503: each
    answer must still be in the admin trail (the middleware records every answered request)."""
    amy, bob = await scim.create_user("amy"), await scim.create_user("bob")
    team = await scim.create_group("team")

    async def failing(session, deferred):
        raise RuntimeError("settle failed (stands for any failure up to the commit)")

    monkeypatch.setattr(provisioning, "settle_deferred", failing)
    async with writers_held(app):
        pushes = [
            asyncio.create_task(scim.patch(f"Groups/{team['id']}", add(u["id"])))
            for u in (amy, bob)
        ]
        await queued(app, 2)
    answers = await asyncio.gather(*pushes)
    assert [r.status_code for r in answers] == [503, 503]
    monkeypatch.undo()
    assert await trail_statuses(client, admin, f"/scim/v2/Groups/{team['id']}") == [503, 503]


async def test_a_batch_opening_with_a_noop_push_takes_the_version_lock_before_the_trails(
    app: FastAPI, scim: Scim, client: httpx.AsyncClient, admin: dict[str, str]
):
    """PostgreSQL, two workers. Every change locks the version row, then (last) the trail
    head. A batch whose first push changes no policy (a repeated add, a rename) locks the trail
    head first, then the version row at its next push: against another worker's change that
    is the reverse order, a deadlock that PostgreSQL breaks by failing one of them."""
    if app.state.settings.is_sqlite:
        pytest.skip("SQLite serialises every writer")
    amy, bob = await scim.create_user("amy"), await scim.create_user("bob")
    team = await scim.create_group("team")
    assert (await scim.patch(f"Groups/{team['id']}", add(amy["id"]))).status_code == 204

    other = app.state.sessionmaker()  # stands for another worker's policy change
    await other.begin()
    async with writers_held(app):
        pushes = [asyncio.create_task(scim.patch(f"Groups/{team['id']}", add(amy["id"])))]
        await queued(app, 1)  # the no-op push first in the batch
        pushes.append(asyncio.create_task(scim.patch(f"Groups/{team['id']}", add(bob["id"]))))
        await queued(app, 2)
        await policy_version.advance(other)  # the other worker's change holds the version row
    await asyncio.sleep(0.5)  # the batch: no-op push trailed (trail head), then waits on version
    other_error = None
    try:
        await auth_service.record_trail(  # the other change's last write: its trail entry
            other,
            token_name="x",
            token_id=None,
            method="POST",
            path="/v1/grants",
            query="",
            status=201,
            request_id=None,
        )
        await other.commit()
    except Exception as exc:
        other_error = exc
        await other.rollback()
    finally:
        await other.close()
    answers = await asyncio.gather(*pushes)
    assert other_error is None and [r.status_code for r in answers] == [204, 204], (
        repr(other_error),
        [r.text for r in answers],
    )


async def push_during_other_workers_change(
    app: FastAPI, scim: Scim, group: str, body: dict[str, Any], **change: Any
) -> httpx.Response:
    """The answer to a SCIM PATCH of `group` sent while another worker's membership change of
    `group:team` (`change`: add= or remove=) holds the version row, then commits."""
    worker2 = create_app(app.state.settings)
    async with worker2.router.lifespan_context(worker2):
        other = worker2.state.sessionmaker()
        await other.begin()
        await provisioning.change_members(other, group="group:team", actor="scim:other", **change)
        push = asyncio.create_task(scim.patch(f"Groups/{group}", body))
        await asyncio.sleep(1.0)  # the push read the members, then waits for the version row
        await other.commit()
        await other.close()
        return await push


async def test_a_batch_reads_the_members_it_changes_under_the_policy_lock(
    app: FastAPI, scim: Scim, client: httpx.AsyncClient, admin: dict[str, str]
):
    """PostgreSQL, two workers. A push's `wanted()` reads the group's members before the policy
    lock; alone, `change_members` reads them again once it holds it (`_relinked(..., {group:
    await wanted()})`). Deferred, the first push of a batch keeps the read from before the lock:
    another worker's change committed meanwhile is undone in the findings (here: amy, removed
    by the other worker, is removed again; the finding's count drops twice)."""
    if app.state.settings.is_sqlite:
        pytest.skip("SQLite serialises every writer: no other worker commits meanwhile")
    team = await scim.create_group("team")
    users = [await scim.create_user(n) for n in ("amy", "bob", "cy")]
    r = await scim.patch(f"Groups/{team['id']}", add(*[u["id"] for u in users]))
    assert r.status_code == 204, r.text
    assert (
        await dataset(client, admin, "rev.notes", ["user:zz"], sensitivity="internal")
    ).status_code == 201
    assert (await grant(client, admin, "group:team", "rev.notes")).status_code == 201

    # the other worker's change: amy leaves team
    body = patch_body({"op": "remove", "path": f'members[value eq "{users[0]["id"]}"]'})
    answer = await push_during_other_workers_change(
        app, scim, team["id"], body, remove=["user:amy"]
    )
    assert answer.status_code == 204, answer.text
    r = await client.get("/v1/findings", params={"dataset": "rev.notes"}, headers=admin)
    [finding] = r.json()["items"]
    assert finding["excess_count"] == 2, finding
    await clean_scan(client, admin)


async def test_a_batch_adding_a_member_another_worker_just_added(
    app: FastAPI, scim: Scim, client: httpx.AsyncClient, admin: dict[str, str]
):
    """PostgreSQL, two workers: the other worker adds dan to team while the push adding dan
    waits for the version row. Alone the push re-reads under the lock and is a no-op (204);
    deferred, it inserts dan's membership again."""
    if app.state.settings.is_sqlite:
        pytest.skip("SQLite serialises every writer: no other worker commits meanwhile")
    team = await scim.create_group("team")
    dan = await scim.create_user("dan")
    answer = await push_during_other_workers_change(
        app, scim, team["id"], add(dan["id"]), add=["user:dan"]
    )
    assert answer.status_code == 204, answer.text


async def test_a_batched_replace_removes_a_member_another_worker_just_added(
    app: FastAPI, scim: Scim, client: httpx.AsyncClient, admin: dict[str, str]
):
    """PostgreSQL, two workers: while another worker's change adding dan to team holds the
    version row, the IdP replaces team's members with [amy, bob]. Alone, the push re-reads
    the members under the lock and removes dan; deferred, it keeps the read from before the
    lock and dan stays in the group (and keeps the group's access) though the IdP said not."""
    if app.state.settings.is_sqlite:
        pytest.skip("SQLite serialises every writer: no other worker commits meanwhile")
    amy, bob = await scim.create_user("amy"), await scim.create_user("bob")
    await scim.create_user("dan")
    team = await scim.create_group("team")
    assert (await scim.patch(f"Groups/{team['id']}", add(amy["id"]))).status_code == 204
    body = patch_body(
        {"op": "replace", "path": "members", "value": [{"value": u["id"]} for u in (amy, bob)]}
    )
    answer = await push_during_other_workers_change(app, scim, team["id"], body, add=["user:dan"])
    assert answer.status_code == 204, answer.text
    assert await members(client, admin, "team") == {"user:amy", "user:bob"}
