"""Backend health for in-request failover: eviction, EWMA health and latency, and upstream back-off hints.

Pure, synchronous and clock-injected: nothing here sleeps, schedules or does I/O. One :class:`BackendHealth` per
backend per worker process (state is never shared between workers); every update is O(1) and allocation-free, so
the attempt loop can consult it on every request.

Semantics follow agentgateway's ``health`` policy (``crates/agentgateway/src/http/health.rs``, ``Policy::
eviction_decision``) and its endpoint bookkeeping (``crates/agentgateway/src/types/loadbalancer.rs``,
``EndpointInfo`` / ``ActiveHandle::finish_request``)::

    health:
      unhealthyExpression: <CEL>          # evaluated by the caller; we only get record_failure / record_success
      eviction: {duration, consecutiveFailures, healthThreshold, restoreHealth}

- ``health`` is an EWMA (alpha 0.3) of outcomes, 1.0 for a success and 0.0 for a failure, starting at 1.0.
- A failure evicts when ``consecutiveFailures`` is reached (counting this failure) **or** when ``health`` was
  already below ``healthThreshold`` before this failure; with neither set, every failure evicts. A
  ``consecutiveFailures`` of 0 never triggers.
- The eviction lasts ``duration`` if set, else the upstream's ``Retry-After`` (see :func:`retry_after_seconds`),
  else 3 s; times ``evictions + 1``, where ``evictions`` counts the evictions since the last success (a linear
  multiplicative back-off, as Envoy's outlier detection). agentgateway does not cap it; ``max_duration`` does.
- A failure while already evicted does not extend the eviction nor count as another one.
- A success records the latency EWMA and resets both the consecutive-failure count and the eviction count; it
  does not lift a running eviction (a request that began before the eviction may still finish well).
- When an eviction ends, ``health`` is set to ``restoreHealth`` if given, else left as it was. The
  consecutive-failure count is *not* reset then, so with ``consecutiveFailures`` the first failure after an
  eviction evicts again (with a longer duration).

Where we differ from agentgateway: its default failure (no ``unhealthyExpression``) is a connection failure or a
5xx; ours (:func:`is_failure_status`) adds 429, as the failover loop moves on 429. Its load balancer picks by
power-of-two-choices over ``health / (1 + latency * (1 + 0.1 * pending))``; we order a priority group by
``health / (1 + latency)`` (no pending count), best first, see :func:`order_by_health`.
"""

from __future__ import annotations

import calendar
import email.utils
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TypeVar

__all__ = [
    "DEFAULT_EVICTION",
    "MAX_RETRY_AFTER",
    "BackendHealth",
    "Clock",
    "EvictionPolicy",
    "is_failure_status",
    "order_by_health",
    "parse_duration",
    "retry_after_seconds",
]

Clock = Callable[[], float]
"""Monotonic seconds; ``time.monotonic`` unless a test injects its own."""

T = TypeVar("T")

DEFAULT_EVICTION = 3.0
"""Seconds a backend is evicted for when neither the policy nor the upstream says how long (agentgateway's 3 s)."""

MAX_RETRY_AFTER = 3600.0
"""Upstream back-off hints are capped here: a bad clock or an epoch read as seconds must not evict for years."""

DEFAULT_FAILOVER_MAX = 300.0
"""The growth cap of :meth:`EvictionPolicy.default_failover`."""

_UTC = timezone.utc
_ALPHA = 0.3  # agentgateway's EWMA weight of the newest sample (types/loadbalancer.rs, ALPHA)
_KEEP = 1.0 - _ALPHA

# Go's time.ParseDuration, which agentgateway's durations use (crates/core/src/durfmt.rs: go_parse_duration,
# negative values refused): one or more <decimal><unit>, no spaces, a bare "0" allowed.
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_COMPONENT = r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)"
_DURATION_RE = re.compile(rf"[+-]?(?:{_COMPONENT})+", re.ASCII)
_COMPONENT_RE = re.compile(_COMPONENT, re.ASCII)
_NUMBER_RE = re.compile(r"\d+(?:\.\d+)?", re.ASCII)
_RFC3339_RE = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(\.\d+)?(?:([Zz])|([+-])(\d\d):(\d\d))", re.ASCII
)

# x-ratelimit-reset magnitudes: below 1e9 a delta in seconds (1e9 s is 31 years), below 1e12 Unix seconds
# (1e9 is 2001-09-09), above that Unix milliseconds.
_EPOCH_SECONDS = 1e9
_EPOCH_MILLIS = 1e12

# Reset hints, by the limit they belong to (the matching "remaining" header says whether that limit is exhausted).
_RESET_HEADERS = {
    b"x-ratelimit-reset-requests": b"requests",
    b"x-ratelimit-reset-tokens": b"tokens",
    b"x-ratelimit-reset": b"",
    b"anthropic-ratelimit-requests-reset": b"a-requests",
    b"anthropic-ratelimit-tokens-reset": b"a-tokens",
    b"anthropic-ratelimit-input-tokens-reset": b"a-input-tokens",
    b"anthropic-ratelimit-output-tokens-reset": b"a-output-tokens",
}
_REMAINING_HEADERS = {
    b"x-ratelimit-remaining-requests": b"requests",
    b"x-ratelimit-remaining-tokens": b"tokens",
    b"x-ratelimit-remaining": b"",
    b"anthropic-ratelimit-requests-remaining": b"a-requests",
    b"anthropic-ratelimit-tokens-remaining": b"a-tokens",
    b"anthropic-ratelimit-input-tokens-remaining": b"a-input-tokens",
    b"anthropic-ratelimit-output-tokens-remaining": b"a-output-tokens",
}


def parse_duration(text: str) -> float:
    """``"30s"``, ``"500ms"``, ``"1m"``, ``"1h"``, ``"1.5s"``, ``"1h2m3.5s"`` -> seconds.

    Go's ``time.ParseDuration`` grammar, as agentgateway reads durations (units ``ns``, ``us``/``µs``, ``ms``,
    ``s``, ``m``, ``h``; every number needs a unit except a bare ``0``). Negative durations, spaces and a bare
    number such as ``"30"`` raise :class:`ValueError`.
    """
    if text in ("0", "+0", "-0"):
        return 0.0
    if not _DURATION_RE.fullmatch(text):
        raise ValueError(f"invalid duration {text!r}: expected e.g. '30s', '500ms', '1m', '1h2m3.5s'")
    seconds = math.fsum(float(number) * _UNITS[unit] for number, unit in _COMPONENT_RE.findall(text))
    if text.startswith("-") and seconds != 0.0:
        raise ValueError(f"invalid duration {text!r}: must not be negative")
    if not math.isfinite(seconds):
        raise ValueError(f"invalid duration {text!r}: too large")
    return seconds


def _seconds(value: str) -> float | None:
    """A non-negative decimal number (``"12"``, ``"1.5"``), strictly: no sign, exponent, ``nan`` or ``_``."""
    if not _NUMBER_RE.fullmatch(value):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _http_date(value: str, now: float) -> float | None:
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000" or no zone: HTTP dates are GMT
        return calendar.timegm(when.timetuple()) - now
    return when.timestamp() - now


def _rfc3339(value: str, now: float) -> float | None:
    match = _RFC3339_RE.fullmatch(value)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = match.groups()
    try:  # a leap second (60) is read as 59.999...: close enough for a back-off
        when = datetime(int(year), int(month), int(day), int(hour), int(minute), min(int(second), 59), tzinfo=_UTC)
    except ValueError:  # month 13, February 30, hour 25, ...
        return None
    epoch = when.timestamp() + (float(fraction) if fraction else 0.0)
    if not zulu:
        if int(off_h) > 23 or int(off_m) > 59:
            return None
        offset = int(off_h) * 3600 + int(off_m) * 60
        epoch -= offset if sign == "+" else -offset
    return epoch - now


def _reset(name: bytes, value: str, now: float) -> float | None:
    if name.startswith(b"anthropic-"):
        return _rfc3339(value, now)
    number = _seconds(value)
    if number is None:
        try:  # OpenAI's "6m0s", "20ms"; also accepted for x-ratelimit-reset (Groq and others send durations)
            return parse_duration(value)
        except ValueError:
            return None
    if name != b"x-ratelimit-reset" or number < _EPOCH_SECONDS:
        return number
    return (number / 1000.0 if number >= _EPOCH_MILLIS else number) - now


def retry_after_seconds(headers: list[tuple[bytes, bytes]], now: float | None = None) -> float | None:
    """How long the upstream asks us to wait, in seconds, from its response headers; None when it gives no hint.

    ``headers`` are ``(name, value)`` with lower-case names. ``now`` is wall-clock time (``time.time()`` when
    None), used for absolute times. Read, in this order of precedence:

    1. ``retry-after-ms``: milliseconds (OpenAI, Azure).
    2. ``retry-after``: delta seconds (fractions accepted; Gemini's ``RetryInfo`` arrives here) or an HTTP date.
    3. The reset of each rate limit: ``x-ratelimit-reset-requests`` / ``-tokens`` (OpenAI durations such as
       ``1s``, ``6m0s``, ``20ms``, ``1h2m3.5s``, or seconds), ``x-ratelimit-reset`` (a number: below 1e9 delta
       seconds, below 1e12 Unix seconds, else Unix milliseconds; or a duration), ``anthropic-ratelimit-
       {requests,tokens,input-tokens,output-tokens}-reset`` (RFC 3339). When a matching ``...-remaining`` header
       says ``0``, only the exhausted limits count; the longest of the counted resets is the answer (the request
       can go through once every limit that blocks it has reset).

    A value that does not parse is ignored (the next hint is used), never raised. A time already past gives 0.0;
    anything longer than :data:`MAX_RETRY_AFTER` is capped to it.
    """
    wall = time.time() if now is None else now
    retry_ms: float | None = None
    retry: float | None = None
    resets: list[tuple[bytes, float]] | None = None
    exhausted: set[bytes] | None = None
    for name, raw in headers:
        if name == b"retry-after-ms":
            if retry_ms is None and (number := _seconds(raw.decode("latin-1").strip())) is not None:
                retry_ms = number / 1000.0
        elif name == b"retry-after":
            if retry is None:
                value = raw.decode("latin-1").strip()
                retry = _seconds(value)
                if retry is None:
                    retry = _http_date(value, wall)
        elif (limit := _RESET_HEADERS.get(name)) is not None:
            if (delta := _reset(name, raw.decode("latin-1").strip(), wall)) is not None:
                resets = resets or []
                resets.append((limit, delta))
        elif (limit := _REMAINING_HEADERS.get(name)) is not None and raw.strip() == b"0":
            exhausted = exhausted or set()
            exhausted.add(limit)
    hint = retry_ms if retry_ms is not None else retry
    if hint is None and resets:
        blocking = [delta for limit, delta in resets if exhausted and limit in exhausted]
        hint = max(blocking or [delta for _, delta in resets])
    if hint is None or math.isnan(hint):  # the parsers give no nan, but never hand one on
        return None
    return min(max(hint, 0.0), MAX_RETRY_AFTER)


@dataclass(frozen=True, slots=True)
class EvictionPolicy:
    """agentgateway's ``health.eviction`` in seconds and counts, plus our growth cap.

    - ``duration``: base eviction time (``eviction.duration``). None: the upstream's Retry-After, else
      :data:`DEFAULT_EVICTION`. When set it wins over Retry-After, as in agentgateway.
    - ``consecutive_failures``: evict once this many failures in a row (``eviction.consecutiveFailures``); 0
      never triggers.
    - ``health_threshold``: evict on a failure while the health EWMA is below this, in [0, 1]
      (``eviction.healthThreshold``). With neither threshold set, every failure evicts.
    - ``restore_health``: the health EWMA a backend gets back when its eviction ends, in [0, 1]
      (``eviction.restoreHealth``); None leaves it as it was.
    - ``max_duration``: cap of the grown duration (``duration * (evictions + 1)``); agentgateway has none.
    """

    duration: float | None = None
    consecutive_failures: int | None = None
    health_threshold: float | None = None
    restore_health: float | None = None
    max_duration: float = math.inf

    def __post_init__(self) -> None:
        if self.duration is not None and not self.duration >= 0.0:
            raise ValueError(f"eviction duration must not be negative, got {self.duration!r}")
        if self.consecutive_failures is not None and self.consecutive_failures < 0:
            raise ValueError(f"consecutiveFailures must not be negative, got {self.consecutive_failures!r}")
        for name, score in (("healthThreshold", self.health_threshold), ("restoreHealth", self.restore_health)):
            if score is not None and not 0.0 <= score <= 1.0:
                raise ValueError(f"{name} must be between 0.0 and 1.0, got {score!r}")
        if not self.max_duration > 0.0:
            raise ValueError(f"max eviction duration must be positive, got {self.max_duration!r}")

    @classmethod
    def default_failover(cls) -> EvictionPolicy:
        """For a failover target without ``health``: every failure evicts, for Retry-After else 3 s, growing with
        each repeat up to 5 minutes, reset by a success (agentgateway's default for AI backends in priority
        groups, plus the cap)."""
        return cls(max_duration=DEFAULT_FAILOVER_MAX)


class BackendHealth:
    """One backend's health in one worker process: eviction state, health EWMA and latency EWMA.

    Evictions end lazily: the first look after ``evicted_until`` clears them (and applies ``restore_health``), so
    nothing runs in the background. Reads and updates are O(1); the clock is read only while an eviction is set.
    """

    __slots__ = ("_clock", "_evictions", "_failures", "_health", "_latency", "_policy", "_until")

    def __init__(self, policy: EvictionPolicy, clock: Clock = time.monotonic) -> None:
        self._policy = policy
        self._clock = clock
        self._health = 1.0  # EWMA of outcomes (1 success, 0 failure); agentgateway starts new endpoints at 1.0
        self._latency: float | None = None  # EWMA of successful attempts' latency, seconds; None: never measured
        self._failures = 0  # consecutive failures; reset by a success only, not when an eviction ends
        self._evictions = 0  # evictions since the last success: the duration multiplier is this + 1
        self._until = 0.0  # clock time the current eviction ends; 0.0: not evicted

    @property
    def policy(self) -> EvictionPolicy:
        return self._policy

    def _expire(self) -> None:
        """The eviction has run out: put the backend back, with ``restore_health`` if the policy has one."""
        self._until = 0.0
        restore = self._policy.restore_health
        if restore is not None:
            self._health = restore

    def evicted(self) -> bool:
        """Evicted right now."""
        until = self._until
        if not until:
            return False
        if self._clock() < until:
            return True
        self._expire()
        return False

    @property
    def evicted_until(self) -> float:
        """Clock time the current eviction ends; 0.0 when not evicted."""
        return self._until if self.evicted() else 0.0

    @property
    def latency(self) -> float | None:
        """EWMA of successful attempts' latency in seconds; None until one succeeded."""
        return self._latency

    @property
    def health(self) -> float:
        """EWMA of outcomes in [0, 1] (1.0 for a new backend); what ``healthThreshold`` is compared with."""
        if self._until:
            self.evicted()  # an eviction that ran out sets restore_health
        return self._health

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    @property
    def evictions(self) -> int:
        """Evictions since the last success."""
        return self._evictions

    def record_success(self, latency: float) -> None:
        """An attempt succeeded after ``latency`` seconds (the caller picks what it measures, e.g. first byte)."""
        if self._until and self._clock() >= self._until:
            self._expire()
        # agentgateway's Ewma::record: an EWMA at exactly 0.0 takes the new value (restoreHealth 0 then a success).
        health = self._health
        self._health = _ALPHA + _KEEP * health if health else 1.0
        previous = self._latency
        self._latency = latency if previous is None else _ALPHA * latency + _KEEP * previous
        self._failures = 0
        self._evictions = 0

    def record_failure(self, retry_after: float | None = None) -> bool:
        """An attempt failed (by :func:`is_failure_status`, a connection failure or ``unhealthyExpression``).

        ``retry_after``: the upstream's hint in seconds (:func:`retry_after_seconds`), used when the policy sets
        no duration. Returns True when this failure evicted the backend now; False when it did not, including
        when it was already evicted (a running eviction is neither extended nor counted again).
        """
        until = self._until
        now = 0.0
        if until:
            now = self._clock()
            if now >= until:
                self._expire()
                until = 0.0
        policy = self._policy
        health = self._health
        self._failures += 1
        self._health = _KEEP * health  # record(0.0); from 0.0 it stays 0.0
        if until:
            return False
        count = policy.consecutive_failures
        threshold = policy.health_threshold
        if count is not None or threshold is not None:
            # Both compare state from before this failure was recorded, plus this failure for the count.
            by_count = count is not None and count > 0 and self._failures >= count
            if not by_count and not (threshold is not None and health < threshold):
                return False
        base = policy.duration
        if base is None:
            base = retry_after if retry_after is not None and retry_after >= 0.0 else DEFAULT_EVICTION
        duration = min(base * (self._evictions + 1), policy.max_duration)
        if not duration > 0.0:  # "retry now" (Retry-After: 0): nothing to evict for
            return False
        self._evictions += 1
        self._until = (now or self._clock()) + duration
        return True

    def _score(self) -> float:
        # agentgateway's EndpointInfo::score without the pending-request term; unknown latency scores as 0 s, so a
        # member never measured is tried before a measured one of the same health.
        latency = self._latency
        return self._health if latency is None else self._health / (1.0 + latency)

    def _rank(self) -> tuple[int, float]:
        if self.evicted():
            return (1, self._until)
        return (0, -self._score())


def order_by_health(group: Sequence[T], health: Callable[[T], BackendHealth]) -> list[T]:
    """One priority group, best first: members not evicted by ``health / (1 + latency)`` (higher first; equal
    ones keep the configured order), then evicted members by the end of their eviction (soonest first).

    Every member is returned, evicted ones included, so the attempt loop can still try one when all are evicted.
    Across groups: take the first group with a member not evicted; when every member of every group is evicted,
    try the member with the smallest ``evicted_until`` over all groups first (never an outage by policy alone).
    """
    if len(group) == 2:  # the common failover shape, without a sort
        first, second = group
        a, b = health(first), health(second)
        a_out, b_out = a.evicted(), b.evicted()
        if a_out != b_out:
            return [second, first] if a_out else [first, second]
        if a_out:
            return [second, first] if b._until < a._until else [first, second]
        return [second, first] if b._score() > a._score() else [first, second]
    if len(group) < 2:
        return list(group)
    return sorted(group, key=lambda member: health(member)._rank())


def is_failure_status(status: int) -> bool:
    """The default failure (no ``unhealthyExpression``): 429 or any 5xx. agentgateway's default is 5xx only; we
    add 429 because the failover loop moves on it."""
    return status >= 500 or status == 429
