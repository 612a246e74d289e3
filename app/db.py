"""Engine, sessions and the declarative base.

One session per request, committed by :func:`get_session` *before* the response is sent
(``scope="function"``) and rolled back on error. Services never commit.
"""

import asyncio
import contextlib
import json
import weakref
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import Depends, Request, Response
from sqlalchemy import JSON, BigInteger, DateTime, Integer, MetaData, String, Table, event, text
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, SessionTransaction, mapped_column
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


class Validity:
    """The columns of a history row (`app.policy.history`): it held from (`from_version`,
    `from_at`) until (`until_version`, `until_at`), open while those are NULL, with who made
    the change at either end where known."""

    from_version: Mapped[int] = mapped_column(Integer)
    from_at: Mapped[datetime] = mapped_column(UTCDateTime())
    from_by: Mapped[str | None] = mapped_column(String(160), nullable=True)
    until_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    until_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    until_by: Mapped[str | None] = mapped_column(String(160), nullable=True)


# Access-log and alert ids: BIGINT on PostgreSQL; SQLite's INTEGER is already 64-bit (and only
# an INTEGER primary key is the rowid).
LogId = BigInteger().with_variant(Integer(), "sqlite")


class _Dated:
    """A clock that starts at a past instant and moves 1 ms at each reading."""

    def __init__(self, start: datetime) -> None:
        self._at = start

    def read(self) -> datetime:
        self._at += timedelta(milliseconds=1)
        return self._at


# Set only by the demo loader (`dated`), in its own task: never while serving a request.
_dated: ContextVar[_Dated | None] = ContextVar("aclaudit_dated", default=None)


def utcnow() -> datetime:
    """The current instant: the real time, or within `dated` the instant it tells."""
    clock = _dated.get()
    return datetime.now(UTC) if clock is None else clock.read()


def epoch() -> float:
    """`utcnow` in seconds since the epoch (the instants the policy analyser takes)."""
    return utcnow().timestamp()


@contextlib.contextmanager
def dated(start: datetime) -> Iterator[None]:
    """Within it, `utcnow` answers `start`, then 1 ms later at each reading, so the changes
    made within are recorded at that past instant (their versions and instants growing
    together). For the demo loader's story on a fresh database only: it is never entered while
    serving, and a past instant on a database with later history would break its order."""
    if start >= datetime.now(UTC):
        raise ValueError("a dated story is told in the past")
    token = _dated.set(_Dated(start))
    try:
        yield
    finally:
        _dated.reset(token)


def sqlite_datetime(value: datetime) -> str:
    """SQLAlchemy's SQLite storage format for a (UTC) datetime, for statements sent to the
    driver directly."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


# Rows per statement of `insert_columns` on PostgreSQL.
BULK_CHUNK = 20_000


async def insert_columns(
    session: AsyncSession, table: Table, values: Mapping[str, Sequence[Any]]
) -> None:
    """Insert rows given as one list per column (every column of `table`).

    For bulk writes (a full scan inserts hundreds of thousands of findings and alerts), where
    SQLAlchemy's bind processing of every value costs more than the database's own work:
    PostgreSQL gets one ``INSERT ... SELECT FROM unnest(...)`` per chunk, the lists as arrays;
    SQLite the driver's executemany. Values are written in the columns' storage formats (JSON as
    text, times as `UTCDateTime` stores them).
    """
    columns = list(table.c)
    names = ", ".join(f'"{column.name}"' for column in columns)
    count = len(values[columns[0].name])
    dialect = session.get_bind().dialect
    if dialect.name == "postgresql":
        arrays, selected = [], []
        for n, column in enumerate(columns):
            is_json = isinstance(column.type, JSON)
            kind = "TEXT" if is_json else column.type.compile(dialect=dialect)
            arrays.append(f"CAST(:c{n} AS {kind}[])")
            selected.append(f"CAST(w.c{n} AS JSON)" if is_json else f"w.c{n}")
        statement = text(
            f'INSERT INTO "{table.name}" ({names}) SELECT {", ".join(selected)} FROM unnest('
            f"{', '.join(arrays)}) AS w ({', '.join(f'c{n}' for n in range(len(columns)))})"
        )
        for start in range(0, count, BULK_CHUNK):
            end = start + BULK_CHUNK
            await session.execute(
                statement,
                {
                    f"c{n}": _stored(column, values[column.name][start:end], sqlite=False)
                    for n, column in enumerate(columns)
                },
            )
        return
    stored = [_stored(column, values[column.name], sqlite=True) for column in columns]
    connection = await session.connection()
    await connection.exec_driver_sql(
        f'INSERT INTO "{table.name}" ({names}) VALUES ({", ".join("?" * len(columns))})',
        list(zip(*stored, strict=True)),
    )


def _stored(column: Any, values: Sequence[Any], *, sqlite: bool) -> list[Any]:
    if isinstance(column.type, JSON):
        return [json.dumps(value) for value in values]
    if sqlite and isinstance(column.type, UTCDateTime):
        return [None if value is None else sqlite_datetime(value) for value in values]
    return list(values)


def create_engine(settings: Settings, *, background_checkpoints: bool = False) -> AsyncEngine:
    """`background_checkpoints`: SQLite connections leave WAL checkpoints to a task of their
    own (`app.operations.checkpoints`), instead of running one inside an unlucky commit."""
    if settings.is_sqlite:
        engine = create_async_engine(
            settings.database_url,
            connect_args={"timeout": settings.database_timeout},
        )
        _configure_sqlite(engine, autocheckpoint=not background_checkpoints)
        _WRITER_TURNS[engine.sync_engine] = _WriterTurns(settings.database_timeout)
        return engine
    engine = create_async_engine(
        settings.database_url,
        pool_size=10,
        max_overflow=10,
        # No ping before each use (a round trip on every request, ~1 in 8 of a SCIM write's):
        # a connection the server dropped fails its one request (503), and the pool then
        # replaces every connection older than the failure.
        pool_pre_ping=False,
        pool_timeout=settings.database_timeout,
        connect_args={
            "timeout": settings.database_timeout,
            # waiting for a lock is bounded like waiting for a connection (SQLite: busy timeout)
            "server_settings": {"lock_timeout": str(int(settings.database_timeout * 1000))},
        },
    )
    _POLICY_TURNS[engine.sync_engine] = _WriterTurns(settings.database_timeout)
    return engine


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
# Request scope state: the request's admin-trail entry is in its transaction (`app.auth.trail`)
TRAIL_RECORDED = "admin_trail_recorded"


class _WriterTurns:
    """SQLite's writers of one engine take turns in arrival order (PostgreSQL's lock waits
    queue already). SQLite's own busy handler retries after sleeps of up to 100 ms, so with a
    few writers back to back (an IdP's parallel requests) a waiter could miss every gap and
    fail with "database is locked" after the busy timeout while others went on. A turn is
    held from ``BEGIN IMMEDIATE`` to the end of the transaction. A writer waits for its turn
    as long as the writers ahead of it keep finishing; when none has for `timeout` (the busy
    timeout: one transaction holding the lock that long), it goes on without a turn, to fail
    on SQLite's busy timeout as before."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.handoffs = 0  # turns ended so far
        self._locks: dict[int, asyncio.Lock] = {}  # per event loop

    def _lock(self) -> asyncio.Lock:
        loop = id(asyncio.get_running_loop())
        lock = self._locks.get(loop)
        if lock is None:
            self._locks.clear()  # (an engine serves one loop at a time)
            lock = self._locks[loop] = asyncio.Lock()
        return lock

    async def take(self) -> asyncio.Lock | None:
        """This writer's turn (the lock to release), or None when the line stopped moving."""
        lock = self._lock()
        waiting = asyncio.ensure_future(lock.acquire())
        try:
            while True:
                seen = self.handoffs
                done, _ = await asyncio.wait({waiting}, timeout=self.timeout)
                if done:
                    return lock
                if self.handoffs == seen:  # nobody finished meanwhile
                    waiting.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await waiting
                    return lock if waiting.done() and not waiting.cancelled() else None
        except BaseException:
            if waiting.done() and not waiting.cancelled() and waiting.exception() is None:
                lock.release()
            else:
                waiting.cancel()
            raise

    def end(self, lock: asyncio.Lock) -> None:
        self.handoffs += 1
        if lock.locked():
            lock.release()


_WRITER_TURNS: "weakref.WeakKeyDictionary[Engine, _WriterTurns]" = weakref.WeakKeyDictionary()
_TURN = "aclaudit_writer_turn"  # Session.info: (turns, lock) this session's transaction holds
# PostgreSQL: a process's policy changes take turns too (`take_policy_turn`); SQLite's writers
# all do already.
_POLICY_TURNS: "weakref.WeakKeyDictionary[Engine, _WriterTurns]" = weakref.WeakKeyDictionary()
_POLICY_TURN = "aclaudit_policy_turn"


@event.listens_for(Session, "after_transaction_end")
def _end_turn(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        _release_turn(session)


def _release_turn(session: Session) -> None:
    for key in (_TURN, _POLICY_TURN):
        held = session.info.pop(key, None)
        if held is not None:
            turns, lock = held
            turns.end(lock)


async def take_policy_turn(session: AsyncSession) -> None:
    """Before taking the policy lock (PostgreSQL): wait for this process's policy changes ahead
    to end, in arrival order, and as long as they keep ending. A change then never waits on the
    version row for another of its process (whose wait is bounded by the lock timeout however
    fast the line moves), and starts only once the one before it has published its state (the
    turn ends after the commit's hooks). No-op on SQLite, whose writers take turns already."""
    turns = _POLICY_TURNS.get(session.sync_session.get_bind())  # type: ignore[arg-type]
    if turns is not None and _POLICY_TURN not in session.info:
        lock = await turns.take()
        if lock is not None:
            session.info[_POLICY_TURN] = (turns, lock)


async def read_only(session: AsyncSession) -> None:
    """A session that only reads one row (authentication): on PostgreSQL, its statement runs
    without a transaction of its own (no BEGIN and ROLLBACK: two round trips of a request's
    dozen). SQLite's reads cost no round trip."""
    if session.get_bind().dialect.name == "postgresql":
        await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})


async def read_snapshot(session: AsyncSession) -> None:
    """A session whose reads all see one committed state (PostgreSQL: REPEATABLE READ; a SQLite
    read transaction in WAL mode already does). Call before the first statement."""
    if session.get_bind().dialect.name == "postgresql":
        await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})


async def begin_write(session: AsyncSession) -> None:
    """Start the session's transaction as a writer (SQLite: ``BEGIN IMMEDIATE``, in turn with
    this process's other writers).

    Call before the first statement; PostgreSQL ignores the option.
    """
    turns = _WRITER_TURNS.get(session.sync_session.get_bind())  # type: ignore[arg-type]
    if turns is not None and _TURN not in session.info:
        lock = await turns.take()
        if lock is not None:
            session.info[_TURN] = (turns, lock)
    try:
        await session.connection(execution_options={WRITE_OPTION: True})
    except BaseException:
        _release_turn(session.sync_session)
        raise


# Session.info key of the checkpoint key, which signs the heads of the admin trail's and the
# alert feed's hash chains wherever a session appends to them.
CHAIN_KEY = "aclaudit_chain_key"


def create_sessionmaker(
    engine: AsyncEngine, *, chain_key: bytes | None
) -> async_sessionmaker[AsyncSession]:
    """`chain_key`: the settings' `checkpoint_key_bytes` (each session signs the chain heads it
    moves with it)."""
    return async_sessionmaker(
        engine, expire_on_commit=False, autoflush=False, info={CHAIN_KEY: chain_key}
    )


def chain_key(session: AsyncSession) -> bytes | None:
    key = session.info.get(CHAIN_KEY)
    return key if isinstance(key, bytes) else None


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
                if not session.in_transaction():
                    # the handler rolled its work back (a plan): the trail entry is written
                    # alone, and as a writer, or SQLite refuses its read-then-write at once
                    await begin_write(session)
                await hook(request, response, session)
        except BaseException:
            await session.rollback()
            raise
        try:
            await session.commit()
        except BaseException:
            # the trail entry went with the rest: the middleware records the failure instead
            request.scope.get("state", {}).pop(TRAIL_RECORDED, None)
            raise


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
