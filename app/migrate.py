"""Apply Alembic migrations from code (the CLI and tests use this). The migrations ship inside
the package (`app/migrations`), so an installed wheel finds them; the repository's alembic.ini
points there too (`alembic upgrade head`)."""

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

MIGRATIONS = Path(__file__).resolve().with_name("migrations")


def alembic_config(database_url: str) -> Config:
    """Alembic's configuration, without an ini file (a wheel has none)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str) -> None:
    """Bring the database to the newest schema (a no-op when it already is: decided by a plain
    read, so starting a replica of a current database never waits for a lock)."""
    config = alembic_config(database_url)
    if asyncio.run(_current_heads(database_url)) == set(
        ScriptDirectory.from_config(config).get_heads()
    ):
        return
    command.upgrade(config, "head")


async def _current_heads(database_url: str) -> set[str]:
    from app.config import Settings
    from app.db import create_engine

    engine = create_engine(Settings(database_url=database_url))
    try:
        async with engine.connect() as connection:
            heads = await connection.run_sync(
                lambda sync: MigrationContext.configure(sync).get_current_heads()
            )
            return set(heads)
    finally:
        await engine.dispose()
