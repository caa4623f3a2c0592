"""A memo for values derived from what clients send (routes and upstream endpoints per model name)."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["BoundedMemo"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BoundedMemo(Generic[K, V]):
    """``make(key)`` computed once per key. Clients choose the keys, so past ``limit`` entries the memo starts over
    rather than grow without bound; ``make`` may raise, and then nothing is remembered."""

    __slots__ = ("_limit", "_make", "_values")

    def __init__(self, make: Callable[[K], V], limit: int) -> None:
        self._make = make
        self._limit = limit
        self._values: dict[K, V] = {}

    def get(self, key: K) -> V:
        try:
            return self._values[key]
        except KeyError:
            pass
        value = self._make(key)
        if len(self._values) >= self._limit:
            self._values.clear()
        self._values[key] = value
        return value
