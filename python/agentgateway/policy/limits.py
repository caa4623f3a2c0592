"""Rate limits: admission takes from every bucket that applies to a request, settlement trues up token limits.

A request is admitted when each of its buckets (the gateway-wide ``llm.policies.localRateLimit`` and its caller's
``keys[].localRateLimit``) holds what it costs -- one request, or for a ``tokens`` limit an estimate (input bytes
/ 4, plus ``max_tokens`` / ``max_completion_tokens`` when given, capped at the bucket's size) -- and then all are
taken at once, or none. When the request settles (also after an abort or a failure mid-stream) a token limit gets
back its estimate minus the tokens the upstream reported, so N requests in flight overshoot a limit by no more than
their estimates fell short. No usage reported: an answer that started keeps its estimate; a request no upstream
answered gets it back.

The counts live in a store: shared memory for the workers of one machine (shm.py), or Redis across replicas
(redis_store.py). Each bucket is keyed by the limit's identity -- whom it applies to and its numbers -- so a reload
that keeps a limit keeps its count.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import GatewayError
from .shm import Bucket, SharedTable, wait_ns

if TYPE_CHECKING:
    from ..config import RateLimit
    from ..exchange import Exchange
    from ..providers import ChatRequest

__all__ = [
    "Limit",
    "LocalStore",
    "Reservation",
    "Store",
    "Taken",
    "compile_limits",
    "estimate_tokens",
    "limit_headers",
    "rate_limited",
]

Headers = list[tuple[bytes, bytes]]


class Limit:
    """One compiled ``localRateLimit`` entry."""

    __slots__ = ("bucket", "key", "kind", "label", "limit_header", "metric", "slot")

    def __init__(self, kind: str, bucket: Bucket, key: bytes, label: str, scope: str = "global") -> None:
        self.kind = kind  # requests | tokens
        #: the bounded name metrics count its rejections under: ``global:requests``, ``key:tokens``, ...
        self.metric = f"{'global' if scope == 'global' else 'key'}:{kind}"
        self.bucket = bucket
        #: 16 bytes naming the bucket in the store: whom the limit applies to and its numbers, not its list index.
        self.key = key
        #: how a 429 names it, e.g. ``llm.policies.localRateLimit[0] (600 requests, 10 more every 1s)``.
        self.label = label
        self.limit_header = str(bucket.max_tokens).encode()
        #: the offset of its bucket in the shared-memory table (LocalStore), -1 elsewhere.
        self.slot = -1


def _format_seconds(seconds: float) -> str:
    return f"{seconds:g}s"


def compile_limits(entries: Sequence[RateLimit], scope: str, where: str) -> tuple[Limit, ...]:
    """``scope`` names whom the limits apply to (``global``, or a key's digest: never a secret); ``where`` is the
    config path of the list, for messages."""
    limits = []
    seen: dict[tuple[Any, ...], int] = {}
    for index, entry in enumerate(entries):
        bucket = Bucket(entry.max_tokens, entry.tokens_per_fill, max(1, round(entry.fill_interval * 1e9)))
        numbers = (entry.type, bucket.max_tokens, bucket.tokens_per_fill, bucket.interval_ns)
        # The same numbers twice in one list are two buckets (both take): count which one this is.
        occurrence = seen[numbers] = seen.get(numbers, -1) + 1
        identity = f"{scope}|{'|'.join(map(str, numbers))}|{occurrence}".encode()
        label = (
            f"{where}[{index}] ({entry.max_tokens} {entry.type}, {entry.tokens_per_fill} more every "
            f"{_format_seconds(entry.fill_interval)})"
        )
        limits.append(Limit(entry.type, bucket, hashlib.blake2b(identity, digest_size=16).digest(), label, scope))
    return tuple(limits)


def estimate_tokens(request: ChatRequest, tokenize: str | None = None) -> int:
    """What a request may cost before it is answered: its input bytes / 4 (or, with ``tokenize``, its input tokens
    counted with that model's vocabulary: tokenize.py), plus the output it allows."""
    if tokenize is not None:
        from ..tokenize import count_input_tokens  # only configs with params.tokenize load the vocabularies

        estimate = count_input_tokens(tokenize, request.body)
    else:
        estimate = len(request.raw) // 4 if request.raw else 0
        if not estimate:
            estimate = len(str(request.body.get("messages", ""))) // 4
    body = request.body
    limit = body.get("max_completion_tokens")
    if not isinstance(limit, int):
        limit = body.get("max_tokens")
    if isinstance(limit, int) and limit > 0:
        estimate += limit
    return max(1, estimate)


#: ``(ok, now_ns, [(tokens, last_fill_ns)] per item)``: after the take, or as found when refused.
Taken = tuple[bool, int, list[tuple[int, int]]]


class Store(Protocol):
    async def take(self, items: Sequence[tuple[Limit, int]]) -> Taken | None:
        """None: the store could not count and its failure mode admits the request."""
        ...

    def give(self, limit: Limit, amount: int) -> None: ...


class LocalStore:
    """The buckets of this machine's gateway, in shared memory."""

    def __init__(self, table: SharedTable, limits: Sequence[Limit]) -> None:
        self.table = table
        # Slots are made when the config loads (the table's lock is taken once per limit, not per request).
        for limit in limits:
            limit.slot = table.slot(limit.key, limit.bucket)

    async def take(self, items: Sequence[tuple[Limit, int]]) -> Taken | None:
        return self.take_now(items)

    def take_now(self, items: Sequence[tuple[Limit, int]]) -> Taken:
        """``take`` without a coroutine: shared memory answers at once (admission calls this one, issue 22)."""
        return self.table.take([(limit.slot, limit.bucket, cost) for limit, cost in items])

    def give(self, limit: Limit, amount: int) -> None:
        self.table.give(limit.slot, limit.bucket, amount)


class Reservation:
    """What admission took from the token limits of one request, given back (less what was used) at settle."""

    __slots__ = ("store", "tokens")

    def __init__(self, store: Store, tokens: list[tuple[Limit, int]]) -> None:
        self.store = store
        self.tokens = tokens

    def settle(self, exchange: Exchange) -> None:
        if not self.tokens:
            return
        usage = exchange.facts.usage
        if usage is not None:
            used = usage[2] or usage[0] + usage[1]
        elif any(attempt.outcome in ("ok", "aborted") for attempt in exchange.attempts):
            return  # an answer started but reported no usage: the estimate stands
        else:
            used = 0  # no upstream answered: nothing was generated
        for limit, reserved in self.tokens:
            if used != reserved:
                self.store.give(limit, reserved - used)
        self.tokens = []


def _seconds(ns: int) -> int:
    return math.ceil(ns / 1e9) if ns > 0 else 0


def limit_headers(items: Sequence[tuple[Limit, int]], taken: Taken) -> Headers:
    """``x-ratelimit-limit`` / ``-remaining`` / ``-reset`` (seconds until full again) of the most constrained
    limit: the one with the least of its bucket left."""
    _ok, now, found = taken
    best = 0
    if len(items) > 1:
        best = min(range(len(items)), key=lambda i: found[i][0] / items[i][0].bucket.max_tokens)
    limit = items[best][0]
    tokens, last = found[best]
    reset = wait_ns(tokens, limit.bucket.max_tokens, last, now, limit.bucket)
    return [
        (b"x-ratelimit-limit", limit.limit_header),
        (b"x-ratelimit-remaining", str(tokens if tokens > 0 else 0).encode()),
        (b"x-ratelimit-reset", str(_seconds(reset)).encode()),
    ]


def rate_limited(items: Sequence[tuple[Limit, int]], taken: Taken) -> tuple[GatewayError, Limit]:
    """The 429 for a refused request, and the limit it names: the one that keeps it waiting longest (its wait
    goes into ``Retry-After``)."""
    _ok, now, found = taken
    waits = [
        wait_ns(tokens, cost, last, now, limit.bucket)
        for (limit, cost), (tokens, last) in zip(items, found, strict=True)
    ]
    refused = max(range(len(items)), key=waits.__getitem__)
    limit, cost = items[refused]
    retry = max(1, _seconds(waits[refused]))
    asked = f"; this request needs {cost}" if limit.kind == "tokens" else ""
    headers = [(b"retry-after", str(retry).encode()), *limit_headers(items, taken)]
    error = GatewayError(
        f"Rate limit exceeded: {limit.label}{asked}. Retry after {retry} s.",
        status=429,
        type_="rate_limit_error",
        code="rate_limit_exceeded",
        headers=headers,
    )
    return error, limit
