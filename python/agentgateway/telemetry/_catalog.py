"""``config.modelCatalog``: what a request cost, in USD, from its token counts (OPERATIONS.md section 5).

Prices are USD per 1M tokens. A model is looked up by the id sent upstream (``params.model``), then by the name
the route asked the backend for, then by the client's model; exact names before globs, then config order. A
model found nowhere costs nothing and is reported as unpriced (the caller counts it).

Token accounting follows the OpenAI usage the core writes for every provider: ``prompt_tokens`` includes the
cached (``cached_tokens``) and cache-written input, ``completion_tokens`` includes ``reasoning_tokens``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..config import CatalogEntry
from ..memo import BoundedMemo
from ..names import NamePattern

__all__ = ["Catalog", "Price", "Tokens"]

_PER_TOKEN = 1e-6


@dataclass(frozen=True, slots=True)
class Price:
    """USD per token."""

    input: float
    output: float
    cache_read: float
    cache_write: float
    reasoning: float

    @classmethod
    def of(cls, entry: CatalogEntry) -> Price:
        return cls(
            input=entry.input * _PER_TOKEN,
            output=entry.output * _PER_TOKEN,
            cache_read=(entry.input if entry.cache_read is None else entry.cache_read) * _PER_TOKEN,
            cache_write=(entry.input if entry.cache_write is None else entry.cache_write) * _PER_TOKEN,
            reasoning=(entry.output if entry.reasoning is None else entry.reasoning) * _PER_TOKEN,
        )


@dataclass(slots=True)
class Tokens:
    """One request's tokens; the ``cached``/``cache_write``/``reasoning`` counts are parts of ``input``/``output``."""

    input: int = 0
    output: int = 0
    cached: int = 0
    cache_write: int = 0
    reasoning: int = 0


class Catalog:
    __slots__ = ("_entries", "_memo", "lookup")

    def __init__(self, entries: Sequence[CatalogEntry]) -> None:
        ranked = sorted(enumerate(entries), key=lambda item: (NamePattern(item[1].name).rank, item[0]))
        self._entries = [(NamePattern(entry.name), Price.of(entry)) for _, entry in ranked]
        # Keys include the client's model when a pattern entry forwards it as it is: bounded like the router's.
        self._memo: BoundedMemo[tuple[str | None, ...], Price | None] = BoundedMemo(self._find, 4096)
        #: `price` of a tuple of names, for the per-request path (one call less); None when nothing is priced.
        self.lookup = self._memo.get if self._entries else None

    def __bool__(self) -> bool:
        return bool(self._entries)

    def price(self, *names: str | None) -> Price | None:
        """The price of the first of ``names`` the catalog knows (None: unpriced)."""
        if not self._entries:
            return None
        return self._memo.get(names)

    def _find(self, names: tuple[str | None, ...]) -> Price | None:
        for name in names:
            if not name:
                continue
            for pattern, price in self._entries:
                if pattern.matches(name):
                    return price
        return None

    @staticmethod
    def cost(price: Price, tokens: Tokens) -> float:
        return Catalog.cost_of(price, tokens.input, tokens.output, tokens.cached, tokens.cache_write, tokens.reasoning)

    @staticmethod
    def cost_of(price: Price, input: int, output: int, cached: int, cache_write: int, reasoning: int) -> float:
        """`cost` of plain counts (the per-request path builds no Tokens)."""
        if not (cached or cache_write or reasoning) and input >= 0 <= output:
            # The common case, the same float: each other term is 0 * price, and x + 0.0 is x.
            return input * price.input + output * price.output
        return Catalog._cost_general(price, input, output, cached, cache_write, reasoning)

    @staticmethod
    def _cost_general(price: Price, input: int, output: int, cached: int, cache_write: int, reasoning: int) -> float:
        cached = min(cached, input)
        written = min(cache_write, input - cached)
        reasoning = min(reasoning, output)
        return (
            (input - cached - written) * price.input
            + cached * price.cache_read
            + written * price.cache_write
            + (output - reasoning) * price.output
            + reasoning * price.reasoning
        )
