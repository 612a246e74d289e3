import hashlib
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth import service as auth_service
from app.auth.models import ApiToken
from app.errors import Conflict, InvalidInput, NotFound


async def _token_rows(sessionmaker: async_sessionmaker[AsyncSession]) -> list[dict[str, Any]]:
    async with sessionmaker() as session:
        table = ApiToken.__table__
        return [dict(row._mapping) for row in (await session.execute(select(table))).all()]


async def _create(
    sessionmaker: async_sessionmaker[AsyncSession], name: str, scopes: list[str]
) -> str:
    async with sessionmaker() as session, session.begin():
        return await auth_service.create_token(session, name=name, scopes=scopes)


async def test_only_the_sha256_of_a_token_is_stored(sessionmaker: async_sessionmaker[AsyncSession]):
    token = await _create(sessionmaker, "pipeline", ["check", "audit:read"])
    secret = token.removeprefix(auth_service.TOKEN_PREFIX)
    rows = [r for r in await _token_rows(sessionmaker) if r["name"] == "pipeline"]
    assert len(rows) == 1
    row = rows[0]
    assert row["token_hash"] == hashlib.sha256(token.encode()).hexdigest()
    for column, value in row.items():
        assert secret not in str(value), column
    assert sorted(row["scopes"]) == ["audit:read", "check"]


async def test_created_token_authenticates_with_its_scopes(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
):
    token = await _create(sessionmaker, "reader", ["audit:read"])
    headers = {"Authorization": f"Bearer {token}"}
    assert (await client.get("/v1/groups", headers=headers)).status_code == 200
    r = await client.put("/v1/groups/eng/members", json={"members": []}, headers=headers)
    assert r.status_code == 403


async def test_bearer_scheme_is_case_insensitive(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
):
    token = await _create(sessionmaker, "reader", ["audit:read"])
    r = await client.get("/v1/groups", headers={"Authorization": f"bearer {token}"})
    assert r.status_code == 200


async def test_revoked_token_is_refused_with_401(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
):
    token = await _create(sessionmaker, "leaver", ["admin"])
    headers = {"Authorization": f"Bearer {token}"}
    assert (await client.get("/v1/groups", headers=headers)).status_code == 200
    async with sessionmaker() as session, session.begin():
        await auth_service.revoke_token(session, name="leaver")
    r = await client.get("/v1/groups", headers=headers)
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["www-authenticate"] == "Bearer"
    r = await client.put("/v1/groups/eng/members", json={"members": []}, headers=headers)
    assert r.status_code == 401


async def test_revoking_one_token_leaves_others_working(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], admin
):
    await _create(sessionmaker, "leaver", ["admin"])
    async with sessionmaker() as session, session.begin():
        await auth_service.revoke_token(session, name="leaver")
    assert (await client.get("/v1/groups", headers=admin)).status_code == 200


async def test_revoking_an_unknown_or_revoked_token_is_not_found(
    sessionmaker: async_sessionmaker[AsyncSession],
):
    await _create(sessionmaker, "leaver", ["check"])
    async with sessionmaker() as session, session.begin():
        await auth_service.revoke_token(session, name="leaver")
    for name in ("leaver", "nobody"):
        async with sessionmaker() as session, session.begin():
            with pytest.raises(NotFound):
                await auth_service.revoke_token(session, name=name)


@pytest.mark.parametrize(
    "scopes", [["superuser"], ["check", "write"], ["ADMIN"], ["audit"], []], ids=str
)
async def test_create_token_refuses_unknown_scopes(
    sessionmaker: async_sessionmaker[AsyncSession], scopes: list[str]
):
    before = await _token_rows(sessionmaker)
    async with sessionmaker() as session, session.begin():
        with pytest.raises(InvalidInput) as caught:
            await auth_service.create_token(session, name="bad", scopes=scopes)
    assert "audit:read" in caught.value.detail  # says which scopes exist
    assert await _token_rows(sessionmaker) == before


@pytest.mark.parametrize("name", ["", "has space", "-leading-dash", "x" * 129, "name\n", "naïve"])
async def test_create_token_refuses_malformed_names(
    sessionmaker: async_sessionmaker[AsyncSession], name: str
):
    async with sessionmaker() as session, session.begin():
        with pytest.raises(InvalidInput):
            await auth_service.create_token(session, name=name, scopes=["check"])


async def test_token_names_are_unique(sessionmaker: async_sessionmaker[AsyncSession]):
    await _create(sessionmaker, "pipeline", ["check"])
    async with sessionmaker() as session, session.begin():
        with pytest.raises(Conflict):
            await auth_service.create_token(session, name="pipeline", scopes=["admin"])
