"""Copy-on-write nested tables, so that an analyser's copy costs one dict copy, not all."""

from __future__ import annotations

from typing import Generic, TypeVar

_K = TypeVar("_K")
_I = TypeVar("_I")
_W = TypeVar("_W")


class Nested(Generic[_K, _I, _W]):
    """A ``dict[key, dict[item, value]]`` whose inner dicts are shared with copies until written.

    `copy()` costs one copy of the outer dict; the first write to an inner dict afterwards copies
    that one dict (in whichever of the two tables writes). Reads go straight to `data`.
    """

    __slots__ = ("_owned", "data")

    def __init__(self) -> None:
        self.data: dict[_K, dict[_I, _W]] = {}
        self._owned: set[int] = set()  # ids of the inner dicts this table may change in place

    def put(self, key: _K, item: _I, value: _W) -> None:
        inner = self.data.get(key)
        if inner is None:
            inner = self.data[key] = {}
            self._owned.add(id(inner))
        elif id(inner) not in self._owned:
            inner = self.data[key] = dict(inner)
            self._owned.add(id(inner))
        inner[item] = value

    def remove(self, key: _K, item: _I) -> None:
        """Remove an item that is there; the key goes when its last item does."""
        inner = self.data[key]
        if len(inner) == 1:
            del self.data[key]
            self._owned.discard(id(inner))
            return
        if id(inner) not in self._owned:
            inner = self.data[key] = dict(inner)
            self._owned.add(id(inner))
        del inner[item]

    def copy(self) -> Nested[_K, _I, _W]:
        clone: Nested[_K, _I, _W] = Nested()
        clone.data = dict(self.data)
        self._owned = set()  # every inner dict is now shared
        return clone
