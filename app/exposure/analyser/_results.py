"""What the analyser answers with: a dataset's `Exposure`, one grant's `GrantExcess`, and the
leaves a membership change moved (`Within`), as bitsets of `Directory` leaves."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

from app.exposure.analyser._bits import indices
from app.exposure.analyser._directory import Directory
from app.policy.casbin_model import Rule


@dataclass(frozen=True, slots=True)
class GrantExcess:
    """The excess one grant lets into one dataset, and how many principals that is."""

    bits: int
    count: int


class Within:
    """The leaves a membership change moved, as the `grant_excess_within` calls for that change
    share them: shifted down to the lowest one (`base`), so that every set restricted to them
    is a small int (one moved user: one bit), with each side's (0: after the change, 1: before)
    subject sets and the principals that a moved leaf reaches (None when too many moved to list
    them) memoised."""

    def __init__(self, leaves: int) -> None:
        self.leaves = leaves
        self.base = (leaves & -leaves).bit_length() - 1 if leaves else 0
        self.shifted = leaves >> self.base
        self._bits: dict[tuple[int, str], int] = {}
        self._reach: dict[int, frozenset[str] | None] = {}

    def numbers(self, shifted: int) -> list[int]:
        """The leaf numbers in a set relative to `base`, ascending."""
        return [self.base + index for index in indices(shifted)]

    def unshifted(self, shifted: int) -> int:
        return shifted << self.base

    def of(self, directory: Directory, subject: str, side: int) -> int:
        """`subject`'s leaves among the moved ones, relative to `base`."""
        key = (side, subject)
        found = self._bits.get(key)
        if found is None:
            found = self._bits[key] = (directory.leaf_bits(subject) >> self.base) & self.shifted
        return found

    def reach(self, directory: Directory, side: int) -> frozenset[str] | None:
        if side not in self._reach:
            self._reach[side] = directory.reached_by(self.leaves)
        return self._reach[side]


@dataclass(frozen=True)
class Exposure:
    """One dataset's exposure for one action at one instant, as bitsets of `Directory` leaves.

    `by_grant` and `excess_counts` are computed up front (they are what findings need); the
    dataset-level sets (`effective`, `excess`) on first use.
    """

    dataset: str
    action: str
    allow_rules: tuple[Rule, ...]  # live allows covering the dataset
    deny_rules: tuple[Rule, ...]  # live denies covering the dataset
    intended: int
    # Live allow rule id -> the excess principals it lets in (0 when none) ...
    by_grant: Mapping[str, int]
    # ... and how many they are (`by_grant[id].bit_count()`, known cheaply here).
    excess_counts: Mapping[str, int]
    # OR them: every leaf an allow for any purpose reaches ...
    reached_parts: tuple[int, ...] = field(repr=False)
    denied: int = field(repr=False)  # ... and every leaf a live deny for any purpose reaches
    # For each purpose that allows name: every leaf they reach, and every leaf a live deny for
    # any purpose or for that one reaches.
    purpose_parts: tuple[tuple[int, int], ...] = field(default=(), repr=False)

    @cached_property
    def effective(self) -> int:
        """Every leaf the enforcer lets in for some purpose: for any purpose that no rule names
        (a check naming none among them), the allows for any purpose less the denies for any
        purpose; for a purpose that allows name, also its own allows less its denies (the
        denies for it alone matter only there)."""
        reached = 0
        for part in self.reached_parts:
            reached |= part
        found = reached ^ (reached & self.denied)
        for reached_for, denied_for in self.purpose_parts:
            found |= reached_for ^ (reached_for & denied_for)
        return found

    @cached_property
    def excess(self) -> int:
        return self.effective ^ (self.effective & self.intended)

    @property
    def effective_count(self) -> int:
        return self.effective.bit_count()

    @property
    def excess_count(self) -> int:
        return self.excess.bit_count()
