"""The log stores' SQL, built from the models' tables and compiled once, when a store is made.

A group commit runs on the driver directly (``sqlite3``, asyncpg; see `app.checks.group_commit`),
so its statements are compiled here to the driver's text: SQLite's with ``?`` placeholders,
PostgreSQL's as SQLAlchemy's asyncpg dialect renders them (``$n``). Constants are inlined; the
values a commit passes are positional, in the order `prepare` checks against the compiled
statement, so that the row builders below and the tables cannot drift apart.

The rows are what the ORM would write for the models of ``app.accesslog.models`` and
``app.alerts.models``, so every reader keeps using the ORM: JSON as text, and an instant as the
store's `Statements.instant` gives it (SQLite: SQLAlchemy's ``YYYY-MM-DD HH:MM:SS.ffffff`` UTC
text; PostgreSQL: the datetime itself).
"""

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Text, any_, bindparam, case, func, insert, literal, select, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.postgresql import ARRAY, asyncpg
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import BindParameter

from app.accesslog.models import (
    AccessLogCheckpoint,
    AccessLogEntry,
    AccessLogHead,
    AccessLogSubject,
)
from app.alerts.models import Alert, AlertHead, ReadAlertWindow
from app.auth.models import ApiToken
from app.chain import ALERT_FIELDS, CHAINED_FIELDS
from app.db import sqlite_datetime
from app.exposure.models import Finding
from app.policy_version import PolicyVersion

# The order in which `entry_rows` and `alert_rows` give a row's values.
ENTRY_COLUMNS = (*CHAINED_FIELDS, "prev_hash", "hash")
ALERT_COLUMNS = (*ALERT_FIELDS, "prev_hash", "hash")
# A read alert window's key (`app.alerts.windows.Key`), and every column in `insert_windows`.
WINDOW_KEY = ("principal", "dataset", "action", "grant_id", "severity")
WINDOW_COLUMNS = (*WINDOW_KEY, "window_start", "window_end", "alert_id", "reads", "last_read_id")
# A finding an out-of-audience read's alert names: its pair's newest, if open or accepted.
LIVE_FINDING = ("open", "accepted")


@dataclass(frozen=True)
class Statements:
    """One dialect's statements of a group commit, as driver text."""

    # () -> (policy version, head id, head hash, head instant); locked on PostgreSQL
    read_head: str
    live_tokens: str  # (text_list(hashes),) -> the hashes of tokens not revoked
    insert_entries: str  # entry_rows
    insert_subjects: str  # (subject, entry id)
    move_head: str  # (id, hash, signature, instant as `instant` gives it)
    restart_monotone: str  # (first id) -> the head's monotone_from (after a clock step)
    insert_checkpoint: str  # (entry id, head hash, instant, signature)
    find_finding: str  # (dataset, grant id) -> the pair's live finding's id, or NULL
    read_alert_head: str  # () -> (id, hash); locked on PostgreSQL
    insert_alerts: str  # alert_rows
    move_alert_head: str  # (id, hash, signature)
    # (window start, text_list(principals)) -> the keys of their windows open then
    read_windows: str
    insert_windows: str  # WINDOW_COLUMNS
    add_to_windows: str  # (reads, last read id, *key, window start)
    text_list: Callable[[list[str]], Any]  # a list of strings as `live_tokens` takes it
    instant: Callable[[datetime], Any] | None  # an instant as the driver stores it; None: as is
    # an instant as the driver reads it back, as an aware UTC datetime (None stays None)
    read_instant: Callable[[Any], datetime | None]


def prepare(statement: ClauseElement, dialect: Dialect, params: Sequence[str] = ()) -> str:
    """`statement` as `dialect`'s driver text; its placeholders must take exactly `params`,
    in that order."""
    compiled = statement.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
    assert isinstance(compiled, SQLCompiler)
    found = tuple(compiled.positiontup or ())
    if found != tuple(params):
        raise ValueError(f"{statement} takes {found}, not {tuple(params)}")
    return str(compiled)


def _value(name: str) -> BindParameter[Any]:
    """A value passed at execution (positionally)."""
    return bindparam(name, required=False)


# The id of the one row of a head or state table, inline.
SINGLETON = literal(1, literal_execute=True)
SQLITE = sqlite.dialect(paramstyle="qmark")
POSTGRES = asyncpg.dialect()  # type: ignore[no-untyped-call]


def _head_move(head: type[AlertHead]) -> ClauseElement:
    return (
        update(head)
        .where(head.id == SINGLETON)
        .values(
            last_id=_value("last_id"),
            last_hash=_value("last_hash"),
            signature=_value("signature"),
        )
    )


def _compile(
    dialect: Dialect,
    is_locking: bool,
    in_list: Callable[[Any, str], Any],
    text_list: Callable[[list[str]], Any],
    instant: Callable[[datetime], Any] | None,
    read_instant: Callable[[Any], datetime | None],
) -> Statements:
    """`is_locking`: the heads are read ``FOR UPDATE`` (SQLite's write lock is already held);
    `in_list(column, name)`: the column is one of the list passed as `name` (`text_list`)."""
    live_tokens = select(ApiToken.token_hash).where(
        ApiToken.revoked_at.is_(None), in_list(ApiToken.token_hash, "hashes")
    )
    head = AccessLogHead
    read_head = select(PolicyVersion.version, head.last_id, head.last_hash, head.last_at).where(
        PolicyVersion.id == SINGLETON, head.id == SINGLETON
    )
    move_head = (
        update(head)
        .where(head.id == SINGLETON)
        .values(
            last_id=_value("last_id"),
            last_hash=_value("last_hash"),
            signature=_value("signature"),
            last_at=_value("last_at"),
        )
    )
    restart_monotone = (
        update(head).where(head.id == SINGLETON).values(monotone_from=_value("monotone_from"))
    )
    read_alert_head = select(AlertHead.last_id, AlertHead.last_hash).where(
        AlertHead.id == SINGLETON
    )
    if is_locking:
        read_head = read_head.with_for_update(of=AccessLogHead)
        read_alert_head = read_alert_head.with_for_update()
    live = Finding.status.in_(bindparam("live", LIVE_FINDING, expanding=True, literal_execute=True))
    find_finding = (
        select(case((live, Finding.id)))
        .where(
            Finding.dataset == _value("dataset"),
            Finding.grant_id == _value("grant_id"),
            Finding.kind == literal("exposure", literal_execute=True),  # not `unused`
        )
        .order_by(Finding.id.desc())
        .limit(SINGLETON)
        .offset(literal(0, literal_execute=True))  # SQLite would bind an OFFSET of its own
    )
    window = ReadAlertWindow
    open_windows = select(*[window.__table__.c[name] for name in WINDOW_KEY]).where(
        window.window_start == _value("window_start"), in_list(window.principal, "principals")
    )
    add_to_window = (
        update(window)
        .where(*[window.__table__.c[name] == _value(name) for name in WINDOW_KEY])
        .where(window.window_start == _value("window_start"))
        .values(reads=window.reads + _value("reads"), last_read_id=_value("last_read_id"))
    )
    head_columns = ("last_id", "last_hash", "signature")
    checkpoint_columns = ("entry_id", "head_hash", "at", "signature")
    return Statements(
        read_head=prepare(read_head, dialect),
        live_tokens=prepare(live_tokens, dialect, ("hashes",)),
        insert_entries=prepare(insert(AccessLogEntry), dialect, ENTRY_COLUMNS),
        insert_subjects=prepare(insert(AccessLogSubject), dialect, ("subject", "entry_id")),
        move_head=prepare(move_head, dialect, (*head_columns, "last_at")),
        restart_monotone=prepare(restart_monotone, dialect, ("monotone_from",)),
        insert_checkpoint=prepare(insert(AccessLogCheckpoint), dialect, checkpoint_columns),
        find_finding=prepare(find_finding, dialect, ("dataset", "grant_id")),
        read_alert_head=prepare(read_alert_head, dialect),
        insert_alerts=prepare(insert(Alert), dialect, ALERT_COLUMNS),
        move_alert_head=prepare(_head_move(AlertHead), dialect, head_columns),
        read_windows=prepare(open_windows, dialect, ("window_start", "principals")),
        insert_windows=prepare(insert(window), dialect, WINDOW_COLUMNS),
        add_to_windows=prepare(
            add_to_window, dialect, ("reads", "last_read_id", *WINDOW_KEY, "window_start")
        ),
        text_list=text_list,
        instant=instant,
        read_instant=read_instant,
    )


def _sqlite_instant(value: str | None) -> datetime | None:
    """`sqlite_datetime`'s text (as SQLAlchemy stores a UTC instant on SQLite) read back."""
    return None if value is None else datetime.fromisoformat(value).replace(tzinfo=UTC)


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC)


def for_sqlite() -> Statements:
    """For the stdlib ``sqlite3`` driver; a list of strings goes in as one JSON array."""

    def in_list(column: Any, name: str) -> Any:
        return column.in_(select(func.json_each(_value(name)).table_valued("value").c.value))

    return _compile(SQLITE, False, in_list, json.dumps, sqlite_datetime, _sqlite_instant)


def for_postgres() -> Statements:
    """For asyncpg; a list of strings goes in as a ``text[]``."""

    def in_list(column: Any, name: str) -> Any:
        return column == any_(bindparam(name, type_=ARRAY(Text), required=False))

    return _compile(POSTGRES, True, in_list, list, None, _utc)


def entry_rows(entries: list[dict[str, Any]], at: Any) -> list[tuple[Any, ...]]:
    """The entries as `insert_entries` takes them; `at` (one instant per batch) as stored."""
    dumps = json.dumps
    return [
        (
            e["id"],
            e["decision_id"],
            at,
            e["principal"],
            e["dataset"],
            e["action"],
            e["purpose"],
            e["decision"],
            dumps(e["reason"]),
            e["out_of_audience"],
            dumps(e["data_subjects"]),
            e["request_id"],
            e["caller"],
            e["policy_version"],
            e["prev_hash"],
            e["hash"],
        )
        for e in entries
    ]


def alert_rows(rows: list[dict[str, Any]], at: Any) -> list[tuple[Any, ...]]:
    """Chained alerts (`app.alerts.service.chain_alerts`) as `insert_alerts` takes them."""
    return [
        (
            r["id"],
            r["type"],
            r["severity"],
            at,
            r["summary"],
            r["dataset"],
            r["finding_id"],
            r["access_log_id"],
            r["prev_hash"],
            r["hash"],
        )
        for r in rows
    ]
