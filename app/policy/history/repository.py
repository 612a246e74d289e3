"""Every query of the policy's history: `record` a change's rows (and `stamp` them with their
version's instant), `load` those of a version, `load_between` those two versions differ by."""

import asyncio
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, insert, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from app.directory.models import MembershipHistory
from app.policy import repository as policy_repository
from app.policy.casbin_model import Rule
from app.policy.history.models import DatasetHistory, GrantHistory, HoldHistory
from app.policy.history.timeline import History, HistoryDiff, Span
from app.policy.models import Grant
from app.policy.state import DatasetFacts

_CHUNK = 500  # keys per statement (SQLite's bound-parameter limit, PostgreSQL's plan size)
_ROWS = 2000  # history rows read at a time by `load`

_Table = type[GrantHistory] | type[MembershipHistory] | type[DatasetHistory] | type[HoldHistory]


def _chunks(values: Sequence[Any]) -> list[Sequence[Any]]:
    return [values[i : i + _CHUNK] for i in range(0, len(values), _CHUNK)]


async def _expiries(session: AsyncSession, rules: Sequence[Rule]) -> dict[int, datetime | None]:
    """The opened grants' own `expires_at` (a rule's float seconds do not round-trip: past
    ~2255 they lose microseconds, and 9999-12-31T23:59:59.999999Z rounds to year 10000)."""
    found: dict[int, datetime | None] = {}
    for chunk in _chunks([int(r.id) for r in rules]):
        query = select(Grant.id, Grant.expires_at).where(Grant.id.in_(chunk))
        found.update((i, e) for i, e in (await session.execute(query)).all())
    return found


Stamped = set[tuple[_Table, str]]  # (table, "from_at" or "until_at") a change wrote rows with


async def record(
    session: AsyncSession,
    diff: HistoryDiff,
    *,
    version: int,
    at: datetime,
    actor: str | None,
    stamped: Stamped,
) -> None:
    """Close the rows `diff` closes and open those it opens, at `version` and instant `at`;
    add to `stamped` the tables and instant columns it wrote (what `stamp` must restamp)."""
    closing = {"until_version": version, "until_at": at, "until_by": actor}
    opening = {"from_version": version, "from_at": at, "from_by": actor}
    await _close(session, GrantHistory, GrantHistory.grant_id, diff.grants_closed, closing)
    await _close(session, HoldHistory, HoldHistory.hold_id, diff.holds_closed, closing)
    await _close(session, DatasetHistory, DatasetHistory.dataset_id, diff.datasets_closed, closing)
    expiries = await _expiries(session, diff.grants_opened)
    opened: dict[int, tuple[Rule, list[str]]] = {}  # grant id -> a rule of it, its purposes
    for r in diff.grants_opened:
        opened.setdefault(int(r.id), (r, []))[1].append(r.purpose)
    key = tuple_(MembershipHistory.member, MembershipHistory.group_id)
    await _close(session, MembershipHistory, key, diff.links_closed, closing)
    rows: list[tuple[_Table, list[dict[str, Any]]]] = [
        (
            GrantHistory,
            [
                {
                    "grant_id": grant_id,
                    "principal": r.sub,
                    "resource": r.obj,
                    "action": r.act,
                    "effect": r.eft,
                    "purposes": purposes,
                    "expires_at": expiries[grant_id],
                    **opening,
                }
                for grant_id, (r, purposes) in opened.items()
            ],
        ),
        (
            MembershipHistory,
            [{"member": m, "group_id": g, **opening} for m, g in diff.links_opened],
        ),
        (
            DatasetHistory,
            [
                {
                    "dataset_id": f.id,
                    "sensitivity": f.sensitivity,
                    "audience": list(f.audience),
                    "guard": f.guard,
                    "purpose_required": f.purpose_required,
                    **opening,
                }
                for f in diff.datasets_opened
            ],
        ),
        (
            HoldHistory,
            [
                {"hold_id": h, "principal": p, "dataset": d, **opening}
                for h, p, d in diff.holds_opened
            ],
        ),
    ]
    for table, values in rows:
        if values:
            stamped.add((table, "from_at"))
        for chunk in _chunks(values):
            await session.execute(insert(table), list(chunk))
    closed = (
        (GrantHistory, diff.grants_closed),
        (HoldHistory, diff.holds_closed),
        (DatasetHistory, diff.datasets_closed),
        (MembershipHistory, diff.links_closed),
    )
    stamped.update((table, "until_at") for table, keys in closed if keys)


async def _close(
    session: AsyncSession,
    table: _Table,
    key: Any,
    keys: Sequence[Any],
    closing: dict[str, Any],
) -> None:
    for chunk in _chunks(keys):
        await session.execute(
            update(table)
            .where(key.in_(chunk), table.until_version.is_(None))
            .values(**closing)
            .execution_options(synchronize_session=False)
        )


def stamp(
    session: Session, *, version: int, provisional: datetime, at: datetime, stamped: Stamped
) -> None:
    """Give the rows `version` opened and closed (at the `provisional` instant) the instant
    the version is recorded with (`app.policy_version`: just before its commit), in the
    tables `record` wrote them to only (a change touches one or two of the four)."""
    for table, column in sorted(stamped, key=lambda s: (s[0].__tablename__, s[1])):
        if column == "from_at":
            where = and_(table.from_version == version, table.from_at == provisional)
        else:
            where = and_(table.until_at == provisional, table.until_version == version)
        session.execute(
            update(table)
            .where(where)
            .values(**{column: at})
            .execution_options(synchronize_session=False)
        )


def _span(row: Any) -> Span:
    return Span(row.from_version, row.from_at, row.until_version, row.until_at)


_SPAN = ("from_version", "from_at", "until_version", "until_at")


def _history(
    grants: Sequence[Any], links: Sequence[Any], datasets: Sequence[Any], holds: Sequence[Any]
) -> History:
    """The loaded rows as a `History` (tens of thousands at scale: run in a thread)."""
    return History(
        grants=[
            (_span(g), rule)
            for g in grants
            for rule in policy_repository.rules_of(
                g.principal, g.resource, g.action, g.effect, g.expires_at, g.grant_id, g.purposes
            )
        ],
        links=[(_span(m), (m.member, m.group_id)) for m in links],
        datasets=[
            (
                _span(d),
                DatasetFacts(
                    d.dataset_id,
                    d.sensitivity,
                    tuple(d.audience),
                    d.guard,
                    d.purpose_required,
                ),
            )
            for d in datasets
        ],
        holds=[(_span(h), (h.hold_id, h.principal, h.dataset)) for h in holds],
    )


async def _read(session: AsyncSession, where: Callable[[_Table], ColumnElement[bool]]) -> History:
    """The history rows `where` selects, read as plain rows `_ROWS` at a time, made a
    `History` in a thread (no ORM objects: tens of thousands at once would hold the event
    loop, and so every check waiting on it)."""

    async def rows_of(table: _Table, *columns: str) -> Sequence[Any]:
        query = select(*(getattr(table, c) for c in (*columns, *_SPAN))).where(where(table))
        rows: list[Any] = []
        result = await (await session.connection()).stream(query)
        async for part in result.partitions(_ROWS):  # the loop serves others between them
            rows.extend(part)
        return rows

    grants = await rows_of(
        GrantHistory,
        "grant_id",
        "principal",
        "resource",
        "action",
        "effect",
        "expires_at",
        "purposes",
    )
    links = await rows_of(MembershipHistory, "member", "group_id")
    datasets = await rows_of(
        DatasetHistory, "dataset_id", "sensitivity", "audience", "guard", "purpose_required"
    )
    holds = await rows_of(HoldHistory, "hold_id", "principal", "dataset")
    return await asyncio.to_thread(_history, grants, links, datasets, holds)


async def load(session: AsyncSession, *, version: int) -> History:
    """The history rows that held at `version`."""

    def held(table: _Table) -> ColumnElement[bool]:
        return and_(
            table.from_version <= version,
            or_(table.until_version.is_(None), table.until_version > version),
        )

    return await _read(session, held)


async def load_between(session: AsyncSession, *, after: int, up_to: int) -> History:
    """The history rows opened or closed by a version after `after` up to `up_to`: what
    differs between the policy at the one and at the other."""

    def moved(table: _Table) -> ColumnElement[bool]:
        return or_(
            and_(table.from_version > after, table.from_version <= up_to),
            and_(table.until_version > after, table.until_version <= up_to),
        )

    return await _read(session, moved)
