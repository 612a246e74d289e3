"""Every query of the incident report: the datasets a pattern names over a period, the policy
changes between two versions (as plain rows), the reads of the period by principal, and the
checkpoints around it."""

import asyncio
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.accesslog.models import OUT_OF_AUDIENCE, AccessLogArchive, AccessLogCheckpoint
from app.accesslog.models import AccessLogEntry as Entry
from app.directory.models import MembershipHistory
from app.policy import repository as policy_repository
from app.policy.history.models import DatasetHistory, GrantHistory, HoldHistory
from app.policy_version import PolicyVersionRecord
from app.reports.walk import Change, Changes

_Table = type[GrantHistory] | type[MembershipHistory] | type[DatasetHistory] | type[HoldHistory]


def _like_prefix(pattern: str) -> str | None:
    """The id prefix a pattern selects (None: every id; the pattern itself: one id)."""
    if pattern == "*":
        return None
    return pattern[:-1] if pattern.endswith(".*") else pattern


async def datasets_in(
    session: AsyncSession, pattern: str, since: datetime, until: datetime
) -> list[str]:
    """The datasets matching `pattern` that were registered at some instant of the period."""
    d = DatasetHistory
    query = (
        select(d.dataset_id)
        .distinct()
        .where(d.from_at <= until, or_(d.until_at.is_(None), d.until_at > since))
    )
    prefix = _like_prefix(pattern)
    if prefix is not None and pattern.endswith(".*"):
        query = query.where(d.dataset_id.startswith(prefix, autoescape=True))
    elif prefix is not None:
        query = query.where(d.dataset_id == prefix)
    return sorted(str(row) for row in (await session.execute(query)).scalars())


async def first_history_at(session: AsyncSession) -> datetime | None:
    """The instant of the first recorded policy version (where the history starts)."""
    return await session.scalar(select(func.min(PolicyVersionRecord.at)))


async def versions_between(
    session: AsyncSession, after: int, up_to: int
) -> Sequence[tuple[int, datetime, str | None]]:
    """The recorded versions ``after < version <= up_to``: (version, instant, by)."""
    v = PolicyVersionRecord
    query = (
        select(v.version, v.at, v.by)
        .where(v.version > after, v.version <= up_to)
        .order_by(v.version)
    )
    return [(int(n), at, by) for n, at, by in (await session.execute(query)).all()]


def _moved(table: _Table, after: int, up_to: int) -> ColumnElement[bool]:
    return or_(
        and_(table.from_version > after, table.from_version <= up_to),
        and_(table.until_version > after, table.until_version <= up_to),
    )


def _ends(row: Any, after: int, up_to: int, kind: str, item: Any) -> list[tuple[int, bool, Change]]:
    """A history row's opening and closing that fall in ``(after, up_to]``, as changes."""
    found: list[tuple[int, bool, Change]] = []
    if after < row.from_version <= up_to:
        found.append((row.from_version, True, Change(kind, True, item, row.from_by)))
    closed = row.until_version
    if closed is not None and after < closed <= up_to:
        found.append((closed, False, Change(kind, False, item, row.until_by)))
    return found


async def changes_between(session: AsyncSession, after: int, up_to: int) -> Changes:
    """Every change of versions ``after < v <= up_to`` as the history recorded it, by version
    (each version's closings before its openings, as the change pipeline made them). `after`
    -1 includes the rows of version 0 (a migrated database's policy at the migration). The
    rows are made changes in a thread (hundreds of thousands over a month at scale)."""
    g = GrantHistory
    grants = select(
        g.grant_id, g.principal, g.resource, g.action, g.effect, g.expires_at, g.purposes,
        g.from_version, g.until_version, g.from_by, g.until_by,
    ).where(_moved(g, after, up_to))  # fmt: skip
    m = MembershipHistory
    links = select(
        m.member, m.group_id, m.from_version, m.until_version, m.from_by, m.until_by
    ).where(_moved(m, after, up_to))
    d = DatasetHistory
    datasets = select(
        d.dataset_id, d.audience, d.from_version, d.until_version, d.from_by, d.until_by
    ).where(_moved(d, after, up_to))
    h = HoldHistory
    holds = select(
        h.hold_id, h.principal, h.dataset, h.from_version, h.until_version, h.from_by, h.until_by
    ).where(_moved(h, after, up_to))
    rows = [(await session.execute(query)).all() for query in (grants, links, datasets, holds)]
    return await asyncio.to_thread(_changes, rows, after, up_to)


def _changes(rows: list[Sequence[Any]], after: int, up_to: int) -> Changes:
    by_version: dict[int, list[tuple[bool, Change]]] = {}

    def add(found: list[tuple[int, bool, Change]]) -> None:
        for version, is_open, change in found:
            by_version.setdefault(version, []).append((is_open, change))

    grants, links, datasets, holds = rows
    for row in grants:
        rules = policy_repository.rules_of(
            row.principal,
            row.resource,
            row.action,
            row.effect,
            row.expires_at,
            row.grant_id,
            row.purposes,
        )
        add(_ends(row, after, up_to, "grant", rules))  # a grant's rules: one per purpose
    for link in links:
        add(_ends(link, after, up_to, "membership", (link.member, link.group_id)))
    for facts in datasets:
        add(_ends(facts, after, up_to, "dataset", (facts.dataset_id, tuple(facts.audience))))
    for hold in holds:
        add(_ends(hold, after, up_to, "hold", (hold.hold_id, hold.principal, hold.dataset)))
    return {
        version: [c for is_open, c in found if not is_open] + [c for is_open, c in found if is_open]
        for version, found in sorted(by_version.items())
    }


async def expiries_between(
    session: AsyncSession, since: datetime, until: datetime, up_to: int
) -> Sequence[tuple[datetime, int, str]]:
    """Grants (in force at some version up to `up_to`) whose expiry falls in the period:
    (expiry, grant id, resource)."""
    g = GrantHistory
    query = (
        select(g.expires_at, g.grant_id, g.resource)
        .where(g.expires_at > since, g.expires_at <= until, g.from_version <= up_to)
        .order_by(g.expires_at)
    )
    rows = (await session.execute(query)).all()
    return [(e, int(i), str(r)) for e, i, r in rows if e is not None]


async def reads_by_principal(
    session: AsyncSession, dataset: str, since: datetime, until: datetime
) -> Sequence[tuple[str, int, int, int, datetime, datetime]]:
    """Per principal, the period's checks of `dataset` in the database: (principal, total,
    allowed, out of audience, first, last), by principal."""
    e = Entry
    query = (
        select(
            e.principal,
            func.count(),
            func.count().filter(e.decision == "allow"),
            func.count().filter(OUT_OF_AUDIENCE),
            func.min(e.at),
            func.max(e.at),
        )
        .where(e.dataset == dataset, e.at >= since, e.at <= until)
        .group_by(e.principal)
        .order_by(e.principal)
    )
    rows = (await session.execute(query)).all()
    return [(str(p), int(t), int(a), int(o), f, la) for p, t, a, o, f, la in rows]


async def purposes_by_principal(
    session: AsyncSession, dataset: str, since: datetime, until: datetime
) -> Sequence[tuple[str, str | None, int]]:
    """Per principal and purpose, the period's checks of `dataset` in the database."""
    e = Entry
    query = (
        select(e.principal, e.purpose, func.count())
        .where(e.dataset == dataset, e.at >= since, e.at <= until)
        .group_by(e.principal, e.purpose)
    )
    return [(str(p), u, int(n)) for p, u, n in (await session.execute(query)).all()]


async def entry_range(
    session: AsyncSession, since: datetime, until: datetime
) -> tuple[int | None, int | None]:
    """The first and last entry ids written in the period (of any dataset)."""
    query = select(func.min(Entry.id), func.max(Entry.id)).where(
        Entry.at >= since, Entry.at <= until
    )
    first, last = (await session.execute(query)).one()
    return (None if first is None else int(first)), (None if last is None else int(last))


async def checkpoint_before(session: AsyncSession, entry_id: int) -> AccessLogCheckpoint | None:
    """The newest checkpoint taken before entry `entry_id` (anchors the period's start)."""
    c = AccessLogCheckpoint
    query = select(c).where(c.entry_id < entry_id).order_by(c.entry_id.desc()).limit(1)
    return (await session.execute(query)).scalar()


async def checkpoint_covering(session: AsyncSession, entry_id: int) -> AccessLogCheckpoint | None:
    """The oldest checkpoint covering entry `entry_id` (and so the whole period up to it)."""
    c = AccessLogCheckpoint
    query = select(c).where(c.entry_id >= entry_id).order_by(c.entry_id).limit(1)
    return (await session.execute(query)).scalar()


async def archives_overlapping(
    session: AsyncSession, since: datetime, until: datetime
) -> Sequence[AccessLogArchive]:
    """Archived segments whose entries were written between `since` and `until` (last at or
    after the one, first at or before the other; a segment recorded without its first
    instant may): those that may hold entries of the period, oldest first."""
    a = AccessLogArchive
    query = (
        select(a)
        .where(a.last_at >= since, or_(a.first_at.is_(None), a.first_at <= until))
        .order_by(a.first_id)
    )
    return (await session.execute(query)).scalars().all()
