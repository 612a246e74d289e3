"""Engine, sessions and the declarative base.

One session per request, committed by :func:`get_session` *before* the response is sent
(``scope="function"``) and rolled back on error. Services never commit.
"""

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, Request, Response
from sqlalchemy import DateTime, MetaData, event
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

from app.config import Settings

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on every backend (SQLite drops the offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def sqlite_datetime(value: datetime) -> str:
    """SQLAlchemy's SQLite storage format for a (UTC) datetime, for statements sent to the
    driver directly."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def create_engine(settings: Settings, *, background_checkpoints: bool = False) -> AsyncEngine:
    """`background_checkpoints`: SQLite connections leave WAL checkpoints to a task of their
    own (`app.operations.checkpoints`), instead of running one inside an unlucky commit."""
    if settings.is_sqlite:
        engine = create_async_engine(
            settings.database_url,
            connect_args={"timeout": settings.database_timeout},
        )
        _configure_sqlite(engine, autocheckpoint=not background_checkpoints)
        return engine
    return create_async_engine(
        settings.database_url,
        pool_size=10,
        max_overflow=10,
        pool_pre_ping=True,
        pool_timeout=settings.database_timeout,
        connect_args={"timeout": settings.database_timeout},
    )


def _configure_sqlite(engine: AsyncEngine, *, autocheckpoint: bool) -> None:
    """WAL, foreign keys, and ``BEGIN IMMEDIATE`` for write sessions (see :func:`begin_write`).

    A deferred transaction that reads and then writes cannot wait for the write lock (SQLite
    answers "database is locked" at once), so writers take the lock up front; readers don't.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # let us emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
        if not autocheckpoint:
            cursor.execute("PRAGMA wal_autocheckpoint=0")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get(WRITE_OPTION)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


WRITE_OPTION = "aclaudit_write"
# Page cache per SQLite connection (the default is 2 MiB): a membership change rewrites a
# thousand findings on as many pages, which spilled to the WAL mid-transaction and took twice
# as long to write.
SQLITE_CACHE_KIB = 16_384
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def begin_write(session: AsyncSession) -> None:
    """Start the session's transaction as a writer (SQLite: ``BEGIN IMMEDIATE``).

    Call before the first statement; PostgreSQL ignores the option.
    """
    await session.connection(execution_options={WRITE_OPTION: True})


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


async def get_session(request: Request, response: Response) -> AsyncIterator[AsyncSession]:
    """The request's session; a write (non-GET) one runs the app's ``before_write_commit``
    hook (the admin trail) in the same transaction, then commits."""
    maker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    writes = request.method not in READ_METHODS
    async with maker() as session:
        if writes:
            await begin_write(session)
        try:
            yield session
            hook = getattr(request.app.state, "before_write_commit", None)
            if writes and hook is not None:
                await hook(request, response, session)
        except BaseException:
            await session.rollback()
            raise
        else:
            await session.commit()


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


async def get_read_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A session that only reads, whatever the method (a POST that computes, like simulate):
    it never takes SQLite's write lock, and anything it did is rolled back."""
    maker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with maker() as session:
        try:
            yield session
        finally:
            await session.rollback()


ReadSessionDep = Annotated[AsyncSession, Depends(get_read_session, scope="function")]
