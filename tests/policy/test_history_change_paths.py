"""Every change path (IdP, plan apply, sweeper, demo) is rebuilt exactly from the history."""

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import demo
from app.db import begin_write
from app.exposure import scan
from app.identity import provisioning
from app.policy.history import repository as history_repository
from app.policy.history import service as history_service
from app.policy.history import timeline
from tests.conftest import Tokens
from tests.identity.test_provisioning import claim, idp
from tests.policy.test_history import _canonical, committed

DATASET = {"owner": "group:eng", "sensitivity": "internal", "intended_audience": ["group:eng"]}


async def test_history_of_idp_paths_plan_apply_demo_and_sweeper(
    app: FastAPI,
    client: httpx.AsyncClient,
    tokens: Tokens,
    sessionmaker: async_sessionmaker[AsyncSession],
):
    admin = tokens["admin"]
    seen = [await committed(sessionmaker)]
    await claim(app, "group:eng")
    await idp(app, provisioning.change_members, group="group:eng", add=["user:u1", "user:u2"])
    seen.append(await committed(sessionmaker))
    assert (await client.put("/v1/datasets/a.b", json=DATASET, headers=admin)).status_code == 201
    grant = {"principal": "group:eng", "resource": "a.*", "action": "read", "effect": "allow"}
    assert (await client.post("/v1/grants", json=grant, headers=admin)).status_code == 201
    seen.append(await committed(sessionmaker))
    await idp(app, provisioning.rename_user, old="user:u1", new="user:u9")
    seen.append(await committed(sessionmaker))
    await idp(app, provisioning.forget_user, principal="user:u2")
    seen.append(await committed(sessionmaker))
    await idp(app, provisioning.release_group, group="group:eng")
    seen.append(await committed(sessionmaker))
    soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    doc = {
        "groups": {"ops": ["user:o1", "user:o2"]},
        "datasets": {"a.c": {**DATASET, "intended_audience": ["group:ops"]}},
        "grants": [
            {"principal": "group:ops", "resource": "a.c", "action": "read", "effect": "allow"},
            {
                "principal": "user:o3",
                "resource": "a.c",
                "action": "read",
                "effect": "allow",
                "expires_at": soon,
            },
        ],
        "prune_grants": True,
    }
    r = await client.post("/v1/policy/apply", json=doc, headers=admin)
    assert r.status_code == 200, r.text
    seen.append(await committed(sessionmaker))
    await asyncio.sleep(1.1)
    async with sessionmaker() as session, session.begin():
        await begin_write(session)
        await scan.record_time_events(session, actor="sweeper")
    seen.append(await committed(sessionmaker))
    async with sessionmaker() as session, session.begin():
        await begin_write(session)
        await demo.load(session, lambda *_: None)
    seen.append(await committed(sessionmaker))
    async with sessionmaker() as session:
        for version, at, rows in seen:
            by_version = timeline.rows_as_of(
                await history_repository.load(session, version=version), version
            )
            assert _canonical(by_version) == _canonical(rows), version
            assert await history_service.version_at(session, at) == version, at
