"""Real databases for every test: SQLite always, PostgreSQL when ACLAUDIT_TEST_POSTGRES_URL is set.

Each backend is built once per run by the migrations. Each test then gets a clean database: a
copy of the migrated SQLite file, or the PostgreSQL database with every table truncated. Under
pytest-xdist every worker has its own PostgreSQL database, made fresh next to the given one
(`<database>_gw0`, ...) and dropped at the end, so workers never truncate each other's tables.
"""

import asyncio
import fcntl
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import migrate
from app.auth import service as auth_service
from app.auth.oidc.dev_idp import DevIssuer
from app.auth.scopes import Scope
from app.config import Settings
from app.db import create_engine
from app.main import create_app
from app.models import Base
from tests.oidc import People

POSTGRES_URL = os.environ.get("ACLAUDIT_TEST_POSTGRES_URL")
BACKENDS = ["sqlite"] + (["postgresql"] if POSTGRES_URL else [])


@pytest.fixture(autouse=True)
def machine_share(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """Under pytest-xdist, a test marked `alone` holds the machine to itself: every test holds
    a shared lock on one file while it runs (its fixtures included), an `alone` test the
    exclusive one, so a throughput ratio measures the service, not the other worker."""
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        yield
        return
    lock = tmp_path_factory.getbasetemp().parent / "machine.lock"
    exclusive = request.node.get_closest_marker("alone") is not None
    with open(lock, "a") as file:
        fcntl.flock(file, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(file, fcntl.LOCK_UN)


def pytest_report_header() -> str:
    if POSTGRES_URL:
        return f"aclaudit backends: sqlite, postgresql ({POSTGRES_URL})"
    return "aclaudit backends: sqlite only (set ACLAUDIT_TEST_POSTGRES_URL to add postgresql)"


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    migrate.upgrade(f"sqlite:///{path}")
    return path


async def postgres_admin_execute(statement: str) -> None:
    """Runs `statement` on the test server's `postgres` database (CREATE/DROP DATABASE)."""
    assert POSTGRES_URL
    url = make_url(POSTGRES_URL).set(drivername="postgresql", database="postgres")
    conn = await asyncpg.connect(url.render_as_string(hide_password=False))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def postgres_migrated() -> Iterator[str]:
    assert POSTGRES_URL
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is None:
        migrate.upgrade(POSTGRES_URL)
        yield POSTGRES_URL
        return
    base = make_url(POSTGRES_URL)
    name = f"{base.database}_{worker}"
    asyncio.run(postgres_admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    asyncio.run(postgres_admin_execute(f'CREATE DATABASE "{name}"'))
    url = base.set(database=name).render_as_string(hide_password=False)
    try:
        migrate.upgrade(url)
        yield url
    finally:
        asyncio.run(postgres_admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _truncate(url: str) -> None:
    engine = create_engine(Settings(database_url=url))
    # seeded by the migrations
    singletons = {"policy_state", "access_log_head", "alert_head", "admin_trail_head"}
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables if t.name not in singletons)
    async with engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        await conn.execute(text("UPDATE policy_state SET version = 0"))
        # as the migrations record it: version 0, where the policy's history begins
        await conn.execute(
            text("INSERT INTO policy_versions (version, at, by) VALUES (0, now(), 'migration')")
        )
        # chain heads: recreated, not updated, since a tampering test may have deleted one
        for head in ("access_log_head", "alert_head", "admin_trail_head"):
            await conn.execute(text(f"DELETE FROM {head}"))
            await conn.execute(
                text(
                    f"INSERT INTO {head} (id, last_id, last_hash, signature) "
                    f"VALUES (1, 0, '{'0' * 64}', NULL)"
                )
            )
    await engine.dispose()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        path = tmp_path / "aclaudit.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
    else:
        url = request.getfixturevalue("postgres_migrated")
        asyncio.run(_truncate(url))
        yield url


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
def sessionmaker(app: FastAPI) -> async_sessionmaker[AsyncSession]:
    maker: async_sessionmaker[AsyncSession] = app.state.sessionmaker
    return maker


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://aclaudit.test") as c:
        yield c


class Tokens:
    """Bearer headers for one token per scope."""

    def __init__(self, tokens: dict[str, str]) -> None:
        self._tokens = tokens

    def __getitem__(self, scope: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._tokens[scope]}"}


@pytest.fixture
async def tokens(sessionmaker: async_sessionmaker[AsyncSession]) -> Tokens:
    made: dict[str, str] = {}
    async with sessionmaker() as session, session.begin():
        for scope in Scope:
            name = scope.value.replace(":", "-")
            made[scope.value] = await auth_service.create_token(
                session, name=name, scopes=[scope.value]
            )
    return Tokens(made)


@pytest.fixture
def admin(tokens: Tokens) -> dict[str, str]:
    return tokens["admin"]


@pytest.fixture(scope="session")
def idp() -> Iterator[DevIssuer]:
    """A development OpenID Connect issuer on loopback for the session, with an RS256 and an
    ES256 key (tests that rotate keys or take the IdP down start their own)."""
    issuer = DevIssuer(algorithms=("RS256", "ES256")).start()
    yield issuer
    issuer.stop()


@pytest.fixture
def people(idp: DevIssuer) -> People:
    return People(idp)
