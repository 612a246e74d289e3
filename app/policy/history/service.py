"""The policy as it was: rebuilt from the history for the `at=` of the read endpoints.

The policy at an instant is that of the version in force then: the newest one recorded at or
before it (`app.policy_version.version_at`; each version's instant is taken just before its
commit), rebuilt from the history by version. An instant in the future is refused (422 naming
`query.at`): the policy then is not known yet. An instant before the first recorded version (the
database's creation, or its migration to 0012) is before any history: the policy is answered as
empty (version 0: nothing registered, granted or joined), so a dataset is unknown at it. A
migrated database's history starts with its policy at the migration (see migration 0012); what
was revoked or removed before that is not known.

Rebuilt states are kept per database, the `CACHED` most recently used, so asking again for an
instant of the same version rebuilds nothing (their views are kept with them). A version near
a kept state (or this process's newest, whose views every reader uses) is derived from it: the
history rows opened or closed between the two versions (by `from_version` and `until_version`,
both indexed) are the difference its views are carried over, instead of loading every row that
held at the version and building its views anew (seconds at 100k principals). A rebuild, and
a derivation, run in a thread: the event loop serves checks meanwhile.
"""

import asyncio
from collections import OrderedDict
from datetime import datetime
from typing import Any, TypeVar
from weakref import WeakKeyDictionary

from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncSession

from app import policy_version
from app.db import utcnow
from app.errors import InvalidInput
from app.policy import published
from app.policy.history import repository, timeline
from app.policy.state import PolicyRows, PolicyState, ViewKind

T = TypeVar("T")

CACHED = 4  # rebuilt states kept per database (each holds its views: an index, an analyser)
# Most versions between a state and one derived from it (beyond, rebuilt from the history): at
# 100k principals a derivation costs about 0.2 ms a version, a rebuild 2-6 s (bench/history.py).
DERIVE_WITHIN = 20_000

_Built = tuple[PolicyState, PolicyRows | None]  # its rows, when loaded (not derived)
_built: "WeakKeyDictionary[Engine, OrderedDict[int, _Built]]" = WeakKeyDictionary()


def refuse_future(at: datetime) -> None:
    if at > utcnow():
        raise InvalidInput("query.at", "is in the future: the policy then is not known yet")


async def version_at(session: AsyncSession, at: datetime) -> int | None:
    """The policy version in force at `at` (None: before any history). Not in the future."""
    refuse_future(at)
    return await policy_version.version_at(session, at)


async def state_at(
    session: AsyncSession, at: datetime, kind: ViewKind[Any] | None = None
) -> _Built:
    """The policy state at instant `at`, and its rows (to build views from); `kind`: the
    view wanted of it (derived from a state that has it)."""
    version = await version_at(session, at)
    if version is None:
        return PolicyState.of_rows(0, PolicyRows([], [], {})), PolicyRows([], [], {})
    return await state_of(session, version, kind)


async def state_of(
    session: AsyncSession, version: int, kind: ViewKind[Any] | None = None
) -> _Built:
    """The policy state at `version` (cached, derived from the nearest state with views, or
    rebuilt from the history), and its rows when they were loaded (None: derived). Only for a
    version the history covers (`policy_version.is_recorded`)."""
    engine = session.sync_session.get_bind()
    assert isinstance(engine, Engine)
    cache = _built.setdefault(engine, OrderedDict())
    found = cache.get(version)
    if found is None:
        base = _nearest(session, cache, version, kind)
        if base is not None:
            low, high = sorted((base.version, version))
            changed = await repository.load_between(session, after=low, up_to=high)
            derived = await asyncio.to_thread(timeline.state_from, base, changed, version)
            found = cache[version] = (derived, None)
        else:
            history = await repository.load(session, version=version)
            found = cache[version] = await asyncio.to_thread(timeline.state_as_of, history, version)
        while len(cache) > CACHED:
            cache.popitem(last=False)
    cache.move_to_end(version)
    return found


def _nearest(
    session: AsyncSession,
    cache: "OrderedDict[int, _Built]",
    version: int,
    kind: ViewKind[Any] | None = None,
) -> PolicyState | None:
    """The state nearest `version` (a cached one, or this process's newest) that holds views
    to derive its views from (`kind`'s, when given: a state without it, like the newest one
    with only its check index, would leave a rebuild from every row to do), if within
    `DERIVE_WITHIN` versions of it."""
    candidates = [state for state, _ in cache.values()]
    latest = published.states_of(session).latest
    if latest is not None:
        candidates.append(latest)
    near = [
        s
        for s in candidates
        if (s.has_views if kind is None else s.can_view(kind))
        and abs(s.version - version) <= DERIVE_WITHIN
    ]
    return min(near, key=lambda s: abs(s.version - version), default=None)


async def view_at(session: AsyncSession, at: datetime, kind: ViewKind[T]) -> T:
    """`kind`'s view of the policy at instant `at` (built once per cached version)."""
    return await _view(session, await state_at(session, at, kind), kind)


async def view_of(session: AsyncSession, version: int, kind: ViewKind[T]) -> T:
    """`kind`'s view of the policy at `version` (built once per cached version)."""
    return await _view(session, await state_of(session, version, kind), kind)


async def _view(session: AsyncSession, built: _Built, kind: ViewKind[T]) -> T:
    """Derived over the difference from a nearby state's (in a thread: thousands of changes
    may take a while), or built from the rows (loaded again for a derived state)."""
    state, rows = built
    found = await asyncio.to_thread(state.view, kind)
    if found is not None:
        return found
    if rows is None:
        history = await repository.load(session, version=state.version)
        rows = await asyncio.to_thread(timeline.rows_as_of, history, state.version)
    return await state.build(kind, rows)
