"""The policy as the analyser sees it (a `PolicyView`), and this process's cache of the newest
committed one, per database."""

from dataclasses import dataclass, replace
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncSession

from app.datasets import repository as datasets_repository
from app.directory import repository as directory_repository
from app.exposure.analyser import ExposureAnalyser
from app.policy import repository as policy_repository
from app.policy import version as policy_version


@dataclass(frozen=True)
class DatasetFacts:
    id: str
    sensitivity: str
    audience: tuple[str, ...]
    guard: str


@dataclass(frozen=True)
class PolicyView:
    """The policy as the analyser sees it, plus the datasets' audiences."""

    analyser: ExposureAnalyser
    datasets: dict[str, DatasetFacts]
    grant_subjects: dict[int, str]

    def changed(self) -> "PolicyView":
        """A copy whose analyser may be changed without touching this one."""
        return replace(
            self,
            analyser=self.analyser.copy(),
            datasets=dict(self.datasets),
            grant_subjects=dict(self.grant_subjects),
        )


async def load_view(session: AsyncSession) -> PolicyView:
    rules = await policy_repository.unrevoked_rules(session)
    edges = await directory_repository.all_edges(session)
    datasets = await datasets_repository.list_all(session)
    facts = {
        d.id: DatasetFacts(d.id, d.sensitivity, tuple(d.intended_audience), d.guard)
        for d in datasets
    }
    audience = [p for d in facts.values() for p in d.audience]
    analyser = ExposureAnalyser(rules, edges, audience)
    return PolicyView(analyser, facts, {int(rule.id): rule.sub for rule in rules})


class _ViewCache:
    """The newest committed view this process knows, and its policy version."""

    def __init__(self) -> None:
        self.version = -1
        self.view: PolicyView | None = None


# One cache per engine (per database), so tests and tools with several databases never mix.
_caches: "WeakKeyDictionary[Engine, _ViewCache]" = WeakKeyDictionary()


def _cache(session: AsyncSession) -> _ViewCache:
    engine = session.sync_session.get_bind()
    assert isinstance(engine, Engine)
    cache = _caches.get(engine)
    if cache is None:
        cache = _caches[engine] = _ViewCache()
    return cache


async def current_view(session: AsyncSession) -> PolicyView:
    """The committed policy for readers; reloaded only when the version moved."""
    cache = _cache(session)
    version = await policy_version.current(session)
    if cache.view is None or cache.version != version:
        view = await load_view(session)
        cache.version, cache.view = version, view
        return view
    return cache.view


async def view_before_change(session: AsyncSession) -> PolicyView:
    """Take the policy write lock; the view of the state this transaction starts from.

    The cached view is reused when it is exactly the last committed version; otherwise (another
    worker wrote, or this transaction already changed something) it is loaded.
    """
    cache = _cache(session)
    version = await policy_version.advance(session)
    dirty = session.info.get(_DIRTY) is session.sync_session.get_transaction()
    if cache.view is not None and cache.version == version - 1 and not dirty:
        return cache.view
    return await load_view(session)


def publish_on_commit(session: AsyncSession, view: PolicyView) -> None:
    """Once this transaction commits, ``view`` is the committed policy at its version."""
    cache = _cache(session)
    version = int(session.info[policy_version.TAKEN][1])
    session.info[_DIRTY] = session.sync_session.get_transaction()
    # Emptied once used: the session outlives the request (it is freed with its reference
    # cycles, by the garbage collector), and must not keep the view, or the one it replaces,
    # alive that long.
    pending = {"view": view}

    def publish(_: Any) -> None:
        if "view" in pending:
            cache.version, cache.view = version, pending.pop("view")

    def discard(_: Any) -> None:
        pending.clear()

    event.listen(session.sync_session, "after_commit", publish, once=True)
    event.listen(session.sync_session, "after_rollback", discard, once=True)


_DIRTY = "exposure_view_dirty"
