"""Alembic environment: one URL (ACLAUDIT_DATABASE_URL) for the app and its migrations."""

import asyncio
import sys
import time
from collections.abc import Callable

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection

from app.accesslog import partitions
from app.config import Settings
from app.db import WRITE_OPTION, create_engine
from app.models import Base

config = context.config
target_metadata = Base.metadata


def _settings() -> Settings:
    url = config.attributes.get("database_url")
    return Settings(database_url=url) if url else Settings()


# Replicas of `aclaudit serve` started together each migrate first: on PostgreSQL they take
# turns on this advisory lock (held until the migrations' transaction ends), so the second
# reads the schema the first left instead of racing it to create the same tables.
MIGRATION_LOCK = 0x61636C6D  # "aclm"
MIGRATION_LOCK_WAIT_SECONDS = 900.0


def _take_migration_lock(connection: Connection) -> None:
    """Wait (polling: lock_timeout would end a plain wait after seconds) until no other
    process is migrating this PostgreSQL database."""
    if connection.dialect.name != "postgresql":
        return  # SQLite: the transaction began IMMEDIATE (see _run_online)
    deadline = time.monotonic() + MIGRATION_LOCK_WAIT_SECONDS
    said = False
    query = text("SELECT pg_try_advisory_xact_lock(:key)")
    while not connection.execute(query, {"key": MIGRATION_LOCK}).scalar_one():
        if time.monotonic() > deadline:
            raise RuntimeError(
                "another process has been migrating this database for "
                f"{MIGRATION_LOCK_WAIT_SECONDS:.0f} s; check it (pg_stat_activity) and retry"
            )
        if not said:
            print("waiting for another process's migrations to finish...", file=sys.stderr)
            said = True
        time.sleep(0.2)


def _include_name(name: str | None, type_: str, parent_names: object) -> bool:
    """The access log's partitions (PostgreSQL) are made at run time, not by the model."""
    return not (type_ == "table" and name is not None and partitions.is_partition_name(name))


def _include_object(
    dialect: str,
) -> Callable[[object, str | None, str, bool, object | None], bool]:
    def include(
        obj: object, name: str | None, type_: str, reflected: bool, compare_to: object | None
    ) -> bool:
        # On PostgreSQL the partitioned log cannot hold these (see app.accesslog.partitions)
        return dialect != "postgresql" or name not in partitions.SQLITE_ONLY_CONSTRAINTS

    return include


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_name=_include_name,
        include_object=_include_object(connection.dialect.name),
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        # SQLite too runs every migration in one transaction (our connections emit BEGIN
        # themselves, so its DDL is transactional): alembic would otherwise commit after each
        # one, and a second process could read the schema half-migrated
        transactional_ddl=True,
    )
    with context.begin_transaction():
        _take_migration_lock(connection)
        context.run_migrations()


async def _write_locked(connection: AsyncConnection) -> None:
    """SQLite: begin with BEGIN IMMEDIATE, so a second process waits for the write lock before
    it reads the schema version instead of racing the first; past each busy timeout it says so
    and tries again, for up to MIGRATION_LOCK_WAIT_SECONDS."""
    await connection.execution_options(**{WRITE_OPTION: True})
    if connection.dialect.name != "sqlite":
        return
    deadline = time.monotonic() + MIGRATION_LOCK_WAIT_SECONDS
    while True:
        try:
            await connection.execute(text("SELECT 1"))  # (begins the transaction)
            return
        except OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            await connection.rollback()
            print("waiting for the database's write lock to migrate it...", file=sys.stderr)


async def _run_online() -> None:
    engine = create_engine(_settings())
    try:
        async with engine.connect() as connection:
            await _write_locked(connection)
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_settings().database_url, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()
else:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
    else:
        asyncio.run(_run_online())
