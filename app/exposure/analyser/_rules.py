"""The grants as the analyser indexes them (per action, by exact resource and by pattern
prefix, with their expiry), which datasets a grant covers, and what one change can alter
(`Reanalysis`)."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from app.exposure.analyser._cow import Nested
from app.policy.casbin_model import Rule


def covers(resource: str, dataset: str) -> bool:
    """Whether a grant on `resource` covers `dataset` (Casbin's keyMatch)."""
    star = resource.find("*")
    return dataset == resource if star == -1 else dataset.startswith(resource[:star])


def datasets_covered(resource: str, dataset_ids: Iterable[str]) -> list[str]:
    """The dataset ids that a grant on `resource` covers (Casbin's keyMatch), in input order."""
    star = resource.find("*")
    if star == -1:
        return [d for d in dataset_ids if d == resource]
    prefix = resource[:star]
    return [d for d in dataset_ids if d.startswith(prefix)]


@dataclass(frozen=True, slots=True)
class Grant:
    rule: Rule
    expiry: float | None  # None: never expires
    is_allow: bool

    def is_live(self, now: float) -> bool:
        return self.expiry is None or now < self.expiry


class ActionRules:
    """The rules of one action, by exact resource and by pattern prefix (text before '*')."""

    __slots__ = ("exact", "lengths", "prefix_lengths", "prefixes")

    def __init__(self) -> None:
        self.exact: Nested[str, Rule, Grant] = Nested()
        self.prefixes: Nested[str, Rule, Grant] = Nested()
        self.prefix_lengths: dict[int, int] = {}  # prefix length -> how many prefixes have it
        self.lengths: tuple[int, ...] = ()  # longest first

    def add(self, grant: Grant) -> None:
        obj = grant.rule.obj
        star = obj.find("*")
        if star == -1:
            self.exact.put(obj, grant.rule, grant)
            return
        prefix = obj[:star]
        if prefix not in self.prefixes.data:
            self.prefix_lengths[star] = self.prefix_lengths.get(star, 0) + 1
            self.lengths = tuple(sorted(self.prefix_lengths, reverse=True))
        self.prefixes.put(prefix, grant.rule, grant)

    def remove(self, rule: Rule) -> None:
        star = rule.obj.find("*")
        if star == -1:
            self.exact.remove(rule.obj, rule)
            return
        prefix = rule.obj[:star]
        self.prefixes.remove(prefix, rule)
        if prefix not in self.prefixes.data:
            self.prefix_lengths[star] -= 1
            if not self.prefix_lengths[star]:
                del self.prefix_lengths[star]
            self.lengths = tuple(sorted(self.prefix_lengths, reverse=True))

    def covering(self, obj: str) -> Iterator[Grant]:
        for cell in self.cells(obj):
            yield from cell.values()

    def cells(self, obj: str) -> list[dict[Rule, Grant]]:
        """The rule sets covering `obj`: its exact one, then patterns from the longest prefix."""
        found: list[dict[Rule, Grant]] = []
        cell = self.exact.data.get(obj)
        if cell:
            found.append(cell)
        size = len(obj)
        prefixes = self.prefixes.data
        for length in self.lengths:
            if length <= size:
                cell = prefixes.get(obj[:length])
                if cell:
                    found.append(cell)
        return found

    def copy(self) -> ActionRules:
        clone = ActionRules()
        clone.exact = self.exact.copy()
        clone.prefixes = self.prefixes.copy()
        clone.prefix_lengths = dict(self.prefix_lengths)
        clone.lengths = self.lengths
        return clone


@dataclass(frozen=True, slots=True)
class Reanalysis:
    """What one change can alter: on each listed dataset, only the listed allow rules' excess.

    Every other grant's excess is unchanged everywhere, and a dataset that is not listed keeps
    its effective set too. Recompute the listed ones with `ExposureAnalyser.grant_excess_bits`
    (or the datasets whole with `exposure`, which is never wrong, only slower).
    """

    grants: Mapping[str, tuple[Rule, ...]]  # dataset id -> allow rules, datasets in input order

    @property
    def affected(self) -> tuple[str, ...]:
        """The datasets whose exposure may change, in input order."""
        return tuple(self.grants)


class Catalog:
    """Dataset ids sorted once, so that a prefix's datasets are a range found by bisection."""

    def __init__(self, dataset_ids: Iterable[str]) -> None:
        self.ids = list(dict.fromkeys(dataset_ids))
        self._position = {d: i for i, d in enumerate(self.ids)}
        self._sorted = sorted(self.ids)

    def covered(self, resource: str) -> list[str]:
        """The datasets `resource` covers (keyMatch), sorted."""
        star = resource.find("*")
        prefix = resource if star == -1 else resource[:star]
        ordered = self._sorted
        start = bisect_left(ordered, prefix)
        if star == -1:
            return [prefix] if start < len(ordered) and ordered[start] == prefix else []
        end = start
        while end < len(ordered) and ordered[end].startswith(prefix):
            end += 1
        return ordered[start:end]

    def reanalysis(self, grants: dict[str, dict[Rule, None]]) -> Reanalysis:
        ordered = sorted(grants, key=self._position.__getitem__)
        return Reanalysis(grants=MappingProxyType({d: tuple(grants[d]) for d in ordered}))
