"""An incident, made over HTTP: a research group meant to read `ea.*`, an over-broad grant to
everyone made later by a named admin, reads through it, and its revoke."""

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth import service as auth_service
from tests.conftest import Tokens

XSS_PURPOSE = '<script>alert("x")</script>&<b>'
DATASET = {
    "owner": "group:research",
    "sensitivity": "restricted",
    "intended_audience": ["group:research"],
    "guard": "alert",
}


@dataclass
class Incident:
    before: datetime  # before the over-broad grant
    during: datetime  # while it was open
    grant_id: int


async def _tick() -> datetime:
    await asyncio.sleep(0.02)
    now = datetime.now(UTC)
    await asyncio.sleep(0.02)
    return now


async def make_incident(
    client: httpx.AsyncClient,
    tokens: Tokens,
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    revoke: bool = True,
) -> Incident:
    admin = tokens["admin"]
    async with sessionmaker() as session, session.begin():
        named = await auth_service.create_token(session, name="mallory-admin", scopes=["admin"])
    mallory = {"Authorization": f"Bearer {named}"}
    members = {"members": ["user:rita", "user:raj"]}
    assert (await client.put("/v1/groups/research/members", json=members, headers=admin)).is_success
    everyone = {"members": ["group:research", "user:eve", "user:ed", "user:emma"]}
    assert (await client.put("/v1/groups/all/members", json=everyone, headers=admin)).is_success
    for name in ("transcripts", "keystrokes"):
        r = await client.put(f"/v1/datasets/ea.{name}", json=DATASET, headers=admin)
        assert r.status_code == 201, r.text
    meant = {
        "principal": "group:research",
        "resource": "ea.*",
        "action": "read",
        "effect": "allow",
        "justification": "the research programme",
    }
    r = await client.post("/v1/grants", json=meant, headers=admin)
    assert r.status_code == 201, r.text
    before = await _tick()
    broad = {**meant, "principal": "group:all"}
    r = await client.post("/v1/grants", json=broad, headers=mallory)
    assert r.status_code == 201, r.text
    grant_id = r.json()["id"]
    checker = tokens["check"]
    reads = [("user:eve", "training"), ("user:eve", XSS_PURPOSE), ("user:ed", "training")]
    reads += [("user:rita", "research")]
    for principal, purpose in reads:
        body = {
            "principal": principal,
            "dataset": "ea.transcripts",
            "action": "read",
            "purpose": purpose,
        }
        r = await client.post("/v1/check", json=body, headers=checker)
        assert r.json()["decision"] == "allow", r.text
    during = await _tick()
    if revoke:
        assert (await client.delete(f"/v1/grants/{grant_id}", headers=admin)).is_success
        await _tick()
    return Incident(before=before, during=during, grant_id=grant_id)
