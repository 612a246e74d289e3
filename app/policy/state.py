"""One immutable policy state per version, and the views derived from it.

A `PolicyState` is the committed policy at one version: its datasets, and the views that
domains derive from its rules (grants) and links (memberships): the check index (`snapshot`),
the exposure analyser (`app.exposure.view`). A view kind says how it is built from the loaded
rows and how it is carried over a `PolicyChange`; the state knows nothing else about it (so the
policy domain never imports the domains that derive views from it).

A change that a transaction makes hands its successor the views it computed anyway (the
analyser, to diff findings); every other view the predecessor had is derived lazily, on first
use, from the predecessor's view and the changes since (a few milliseconds) instead of being
rebuilt from the database (seconds at 100k grants). A state keeps no reference to its
predecessor: only to the views it will derive from, with at most `FOLLOW_LIMIT` changes.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar, cast

from sqlalchemy.ext.asyncio import AsyncSession

from app.datasets import repository as datasets_repository
from app.directory import repository as directory_repository
from app.holds import repository as holds_repository
from app.policy import holds
from app.policy import repository as policy_repository
from app.policy.casbin_model import Rule

T = TypeVar("T")

# Most changes a view is carried over lazily (beyond, it is rebuilt: just as fast by then).
FOLLOW_LIMIT = 64


@dataclass(frozen=True)
class DatasetFacts:
    """What the policy knows of a dataset: its sensitivity, intended audience, guard, and
    whether a check must name a purpose."""

    id: str
    sensitivity: str
    audience: tuple[str, ...]
    guard: str
    purpose_required: bool = False


Link = tuple[str, str]  # (member, group): Casbin's ``g`` rule


@dataclass(frozen=True)
class PolicyChange:
    """What one transaction did to the policy: rules (grants) and links (memberships) added
    and removed, and datasets registered or re-scoped (their new facts)."""

    added: tuple[Rule, ...] = ()
    removed: tuple[Rule, ...] = ()
    links_added: tuple[Link, ...] = ()
    links_removed: tuple[Link, ...] = ()
    datasets: tuple[DatasetFacts, ...] = ()

    def then(self, other: "PolicyChange") -> "PolicyChange":
        """This change followed by `other` (as one change: they touch different rows)."""
        return PolicyChange(
            self.added + other.added,
            self.removed + other.removed,
            self.links_added + other.links_added,
            self.links_removed + other.links_removed,
            self.datasets + other.datasets,
        )


@dataclass(frozen=True)
class PolicyRows:
    """The committed policy as loaded: every unrevoked rule (grants, then active holds), every
    link, every dataset."""

    rules: list[Rule]
    links: list[Link]
    datasets: dict[str, DatasetFacts]


async def load_rows(session: AsyncSession) -> PolicyRows:
    rules = await policy_repository.unrevoked_rules(session)
    rules += holds.rules_of(await holds_repository.active_triples(session))
    links = await directory_repository.all_edges(session)
    datasets = {
        d.id: DatasetFacts(
            d.id, d.sensitivity, tuple(d.intended_audience), d.guard, d.purpose_required
        )
        for d in await datasets_repository.list_all(session)
    }
    return PolicyRows(rules, links, datasets)


class ViewKind(Protocol, Generic[T]):
    """A kind of view derived from a policy state (the instance is its key in the state)."""

    async def build(self, rows: PolicyRows, state: "PolicyState") -> T:
        """The view of `state`, whose rows are `rows`."""
        ...

    def carry(self, view: T, change: PolicyChange, state: "PolicyState") -> T:
        """`view` (of an earlier state) with `change` made, towards `state`: called for each
        change since, in order, and always with the newest state. Never changes `view`."""
        ...


class PolicyState:
    """The committed policy at `version`. Immutable: its views are derived once, on demand,
    and never change after."""

    def __init__(self, version: int, datasets: Mapping[str, DatasetFacts]) -> None:
        self.version = version
        self.datasets = datasets
        self._views: dict[ViewKind[Any], Any] = {}
        # kind -> (the view of an earlier state, the changes since), to derive it on demand
        self._pending: dict[ViewKind[Any], tuple[Any, tuple[PolicyChange, ...]]] = {}

    @classmethod
    def of_rows(cls, version: int, rows: PolicyRows) -> "PolicyState":
        return cls(version, rows.datasets)

    def view(self, kind: ViewKind[T]) -> T | None:
        """`kind`'s view if this state has it or can derive it without the database."""
        found = self._views.get(kind)
        if found is None and (pending := self._pending.pop(kind, None)) is not None:
            found, changes = pending
            for change in changes:
                found = kind.carry(found, change, self)
            self._views[kind] = found
        return cast("T | None", found)

    async def load(self, kind: ViewKind[T], session: AsyncSession) -> T:
        """`kind`'s view, built from the database if need be. Only for the state the session
        reads (the newest committed one, or the one a policy change starts from)."""
        found = self.view(kind)
        if found is None:
            found = await self.build(kind, await load_rows(session))
        return found

    async def build(self, kind: ViewKind[T], rows: PolicyRows) -> T:
        """`kind`'s view built from this state's `rows`, and kept."""
        built = await kind.build(rows, self)
        self._views[kind] = built
        return built

    def can_view(self, kind: ViewKind[Any]) -> bool:
        """Whether it holds `kind`'s view, or can derive it without the database."""
        return kind in self._views or kind in self._pending

    @property
    def has_views(self) -> bool:
        """Whether it holds a view, or can derive one without the database."""
        return bool(self._views or self._pending)

    def successor(
        self,
        version: int,
        change: PolicyChange,
        views: Mapping[ViewKind[Any], Any],
        datasets: Mapping[str, DatasetFacts] | None = None,
    ) -> "PolicyState":
        """The state of `version`, which differs from this one by `change` only; `views` are
        its views already computed, the others follow from this state's on demand. `datasets`:
        its datasets, when `change` does not name them all (one was unregistered)."""
        if datasets is None:
            datasets = self.datasets
            if change.datasets:
                datasets = {**datasets, **{facts.id: facts for facts in change.datasets}}
        state = PolicyState(version, datasets)
        state._views.update(views)
        for kind, view in self._views.items():
            if kind not in views:
                state._pending[kind] = (view, (change,))
        for kind, (base, changes) in self._pending.items():
            if kind not in views and len(changes) < FOLLOW_LIMIT:
                state._pending[kind] = (base, (*changes, change))
        return state
