"""This process's newest committed policy state, per database, and how a change publishes its
successor (once its transaction commits: one after-commit hook, called by the change pipeline).

Every reader compares the database's policy version (one cheap query) with the state it holds,
so a change committed by any worker is seen by every reader that starts after it.
"""

import asyncio
from collections.abc import Mapping
from datetime import datetime
from typing import Any, TypeVar
from weakref import WeakKeyDictionary

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Session

from app import policy_version
from app.db import take_policy_turn, utcnow
from app.policy.history import repository as history_repository
from app.policy.history import timeline as history_timeline
from app.policy.state import PolicyChange, PolicyState, ViewKind, load_rows

T = TypeVar("T")

# session.info keys: (transaction, the state it started from), (transaction, {"state": next})
_BASE = "policy_state_base"
_PUBLISHING = "policy_state_publishing"
_LISTENING = "policy_state_listening"
_INSTANT = "policy_history_instant"  # (transaction, its rows' provisional instant, stamped)


class PolicyStates:
    """The newest committed policy state this process knows (replaced, never changed)."""

    def __init__(self) -> None:
        self.latest: PolicyState | None = None
        # one build per view kind at a time: a reader of another kind never waits for it
        self._locks: dict[ViewKind[Any], asyncio.Lock] = {}

    async def current(self, session: AsyncSession, kind: ViewKind[T]) -> T:
        """`kind`'s view of the newest committed version (one cheap query when unchanged)."""
        version = await policy_version.current(session)
        found = self._view_at(version, kind)
        if found is not None:
            return found
        async with self._locks.setdefault(kind, asyncio.Lock()):
            found = self._view_at(version, kind)
            if found is not None:
                return found
            state = self.latest
            if state is not None and state.version == version:
                return await state.load(kind, session)
            rows = await load_rows(session)
            state = PolicyState.of_rows(version, rows)
            built = await state.build(kind, rows)
            if self.latest is None or self.latest.version < version:
                self.latest = state
            return built

    def loaded(self, kind: ViewKind[T]) -> T | None:
        """`kind`'s view of the newest state, if it needs no database (it may be stale)."""
        return None if self.latest is None else self.latest.view(kind)

    def _view_at(self, version: int, kind: ViewKind[T]) -> T | None:
        state = self.latest
        return state.view(kind) if state is not None and state.version >= version else None

    async def before_change(self, session: AsyncSession, kind: ViewKind[T]) -> T:
        """Take the policy write lock; `kind`'s view of the state this transaction starts from.

        The newest state is used when it is exactly the last committed version; otherwise
        (another worker wrote, or this transaction already changed something) it is loaded.
        """
        taken = session.info.get(policy_version.TAKEN)
        if taken is None or taken[0] is not session.sync_session.get_transaction():
            # (a transaction already holding the policy lock must not wait for a turn: the
            # changes waiting for the lock hold the turns)
            await take_policy_turn(session)
        version = await policy_version.advance(session)
        transaction = session.sync_session.get_transaction()
        publishing = session.info.get(_PUBLISHING)
        dirty = publishing is not None and publishing[0] is transaction
        state = self.latest
        if state is None or state.version != version - 1 or dirty:
            rows = await load_rows(session)
            state = PolicyState.of_rows(version if dirty else version - 1, rows)
            view = await state.build(kind, rows)
        else:
            view = await state.load(kind, session)
        if _LISTENING not in session.info:
            self._publish_on_end(session)
        session.info[_BASE] = (transaction, state)
        return view

    async def publish_on_commit(
        self,
        session: AsyncSession,
        change: PolicyChange,
        views: Mapping[ViewKind[Any], Any],
        *,
        actor: str | None,
    ) -> None:
        """Once this transaction commits, its version's state is the one it started from
        (`before_change`) with `change` made; `views` are views of it already computed.

        The change's history rows are written now, in the change's transaction (and in its
        savepoint, if any: rolled back with it), by `actor` (None: not known)."""
        transaction = session.sync_session.get_transaction()
        started, base = session.info[_BASE]
        assert started is transaction, "publish_on_commit without before_change"
        version = int(session.info[policy_version.TAKEN][1])
        policy_version.made_by(session, actor)
        rows = history_timeline.diff(base.datasets, change)
        if not rows.is_empty:
            at, stamped = _instant(session)
            await history_repository.record(
                session, rows, version=version, at=at, actor=actor, stamped=stamped
            )
        publishing = session.info.get(_PUBLISHING)
        if publishing is None or publishing[0] is not transaction:
            pending: dict[str, PolicyState] = {}
            publishing = session.info[_PUBLISHING] = (transaction, pending)
        publishing[1]["state"] = base.successor(version, change, views)

    def _publish_on_end(self, session: AsyncSession) -> None:
        """When a transaction of `session` ends, publish its state if it committed, and let the
        session (which outlives the request until the garbage collector frees it) keep no
        state: a replaced one must be freed at once (at 100k principals, collections walking
        dozens of them took 140 ms). A savepoint's end is no end, but one rolled back takes the
        state published so far with it: the transaction then publishes only what it changes
        afterwards (from a fresh load), or nothing, and readers load what it committed."""
        session.info[_LISTENING] = True

        def end(committed: bool) -> None:
            if session.sync_session.in_nested_transaction():
                publishing = session.info.get(_PUBLISHING)
                if not committed and publishing is not None:
                    publishing[1].clear()
                return
            publishing = session.info.pop(_PUBLISHING, None)
            session.info.pop(_BASE, None)
            if committed and publishing is not None and "state" in publishing[1]:
                state = publishing[1].pop("state")
                if self.latest is None or self.latest.version <= state.version:
                    self.latest = state

        event.listen(session.sync_session, "after_commit", lambda _: end(True))
        event.listen(session.sync_session, "after_rollback", lambda _: end(False))


def _instant(session: AsyncSession) -> tuple[datetime, history_repository.Stamped]:
    """One provisional instant per transaction for its history rows, replaced by the instant
    its version is recorded with just before the commit (`policy_version.on_record`), in the
    tables the transaction wrote rows to (collected in the set returned with it)."""
    transaction = session.sync_session.get_transaction()
    taken = session.info.get(_INSTANT)
    if taken is None or taken[0] is not transaction:
        provisional = utcnow()
        stamped: history_repository.Stamped = set()
        taken = session.info[_INSTANT] = (transaction, provisional, stamped)

        def stamp(sync: Session, version: int, at: datetime) -> None:
            history_repository.stamp(
                sync, version=version, provisional=provisional, at=at, stamped=stamped
            )

        policy_version.on_record(session, stamp)
    return taken[1], taken[2]


# One holder per engine (per database), so tests and tools with several databases never mix.
_holders: "WeakKeyDictionary[Engine, PolicyStates]" = WeakKeyDictionary()


def states_for(engine: AsyncEngine | Engine) -> PolicyStates:
    sync = engine.sync_engine if isinstance(engine, AsyncEngine) else engine
    holder = _holders.get(sync)
    if holder is None:
        holder = _holders[sync] = PolicyStates()
    return holder


def states_of(session: AsyncSession) -> PolicyStates:
    engine = session.sync_session.get_bind()
    assert isinstance(engine, Engine)
    return states_for(engine)
