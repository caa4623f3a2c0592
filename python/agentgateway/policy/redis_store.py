"""Rate-limit buckets in Redis (ext ``config.redis``): one count for every replica of the gateway.

One Lua script per check reads, refills and takes from all of a request's buckets atomically, on Redis's own clock
(``TIME``), so replicas with drifting clocks still share one bucket; the same script gives tokens back when a token
reservation settles. The buckets are the same as in shared memory (shm.py), in microseconds.

Redis must never hold a request up: every call is bounded by ``commandTimeout`` (default 50 ms), redis-py's own
retries are off, and a circuit breaker stops calling after ``_THRESHOLD`` failures in a row. While it is open,
requests are answered at once by ``failureMode`` -- ``failClosed`` (default): 503 ``rate_limit_store_unavailable``;
``failOpen``: admitted without a count. After ``_COOLDOWN`` seconds one request probes Redis; when it answers, the
breaker closes and the shared counts are used again, with no restart.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import GatewayError
from .limits import Limit, Taken

if TYPE_CHECKING:
    from ..config import RedisConfig

__all__ = ["SCRIPT", "Breaker", "RedisStore"]

logger = logging.getLogger("agentgateway")

# asyncio.timeout (3.11+) bounds the call without the extra task asyncio.wait_for runs it in.
_timeout = getattr(asyncio, "timeout", None)
_THRESHOLD = 3
_COOLDOWN = 1.0
#: one hash tag, so that a Redis Cluster keeps every bucket of a request in one slot (the script needs that).
KEY_PREFIX = "agentgateway:{rl}:"

# KEYS: the buckets. ARGV[1]: "take" | "give"; then per bucket: maxTokens, tokensPerFill, fillInterval (µs), and
# the cost to take (take) or the amount to give back (give). Returns {ok, now, tokens1, last1, tokens2, last2, ...}:
# the buckets after the take (or as found, when refused).
SCRIPT = """
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local give = ARGV[1] == 'give'
local tokens, last = {}, {}
local ok = 1
for i = 1, #KEYS do
  local base = 2 + (i - 1) * 4
  local max, per, interval = tonumber(ARGV[base]), tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2])
  local state = redis.call('HMGET', KEYS[i], 't', 'l')
  local t, l = tonumber(state[1]), tonumber(state[2])
  if t == nil or l == nil then t, l = max, now end
  if now > l then
    local fills = math.floor((now - l) / interval)
    if fills > 0 then
      t = math.min(max, t + fills * per)
      l = l + fills * interval
    end
  end
  tokens[i], last[i] = t, l
  if not give and t < tonumber(ARGV[base + 3]) then ok = 0 end
end
local out = {ok, now}
for i = 1, #KEYS do
  local base = 2 + (i - 1) * 4
  local max, per, interval = tonumber(ARGV[base]), tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2])
  local amount = tonumber(ARGV[base + 3])
  if ok == 1 then
    if give then tokens[i] = math.min(max, tokens[i] + amount) else tokens[i] = tokens[i] - amount end
    redis.call('HSET', KEYS[i], 't', tokens[i], 'l', last[i])
    -- an idle bucket refills completely within this time: past it, a missing key is the same full bucket
    redis.call('PEXPIRE', KEYS[i], math.ceil((math.ceil(max / per) + 1) * interval / 1000))
  end
  out[#out + 1] = tokens[i]
  out[#out + 1] = last[i]
end
return out
"""


class Breaker:
    """Closed → (``threshold`` failures in a row) open → (``cooldown`` later) one probe → closed or open again."""

    __slots__ = ("_clock", "_failures", "_opened_at", "_probing", "cooldown", "threshold")

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, threshold: int = _THRESHOLD, cooldown: float = _COOLDOWN
    ) -> None:
        self._clock = clock
        self.threshold = threshold
        self.cooldown = cooldown
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def open(self) -> bool:
        return self._opened_at is not None

    def allow(self) -> bool:
        """Whether to call Redis now (when open: True once per cooldown, for the probe)."""
        if self._opened_at is None:
            return True
        if self._probing or self._clock() - self._opened_at < self.cooldown:
            return False
        self._probing = True
        return True

    def succeeded(self) -> bool:
        """Records a success; True when it closed the breaker."""
        was_open = self._opened_at is not None
        self._failures = 0
        self._opened_at = None
        self._probing = False
        return was_open

    def failed(self) -> bool:
        """Records a failure; True when it opened the breaker (not when a probe failed)."""
        self._failures += 1
        if self._opened_at is not None:
            self._opened_at = self._clock()
            self._probing = False
            return False
        if self._failures >= self.threshold:
            self._opened_at = self._clock()
            return True
        return False

    def abandoned(self) -> None:
        """A probe ended with no answer either way (its request was cancelled): let another one probe."""
        self._probing = False


def store_unavailable() -> GatewayError:
    return GatewayError(
        "The rate-limit store (Redis) is unavailable, and this gateway refuses requests it cannot count "
        "(config.redis.failureMode: failClosed). Retry shortly.",
        status=503,
        code="rate_limit_store_unavailable",
        headers=[(b"retry-after", b"1")],
    )


class RedisStore:
    def __init__(self, config: RedisConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self._url = config.url.get_secret_value()
        self.timeout = config.command_timeout
        self.fail_open = config.failure_mode == "failOpen"
        self.breaker = Breaker(clock)
        self._client: Any = None
        self._script: Any = None
        self._background: set[asyncio.Task[None]] = set()
        #: requests decided by failureMode because Redis could not be asked (a metric reads it).
        self.unavailable = 0
        #: calls to Redis that failed or timed out.
        self.failures = 0
        #: told of each failed call, with the failure mode (telemetry counts them).
        self.on_failure: Callable[[str], None] | None = None
        self.mode = config.failure_mode

    def _redis(self) -> Any:
        if self._client is None:
            import redis.asyncio as redis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            self._client = redis.Redis.from_url(
                self._url,
                socket_timeout=self.timeout,
                socket_connect_timeout=self.timeout,
                retry=Retry(NoBackoff(), 0),
                retry_on_timeout=False,
                health_check_interval=0,
            )
            self._script = self._client.register_script(SCRIPT)
        return self._script

    async def _call(self, mode: str, items: Sequence[tuple[Limit, int]]) -> list[int] | None:
        """The script's answer, or None when Redis could not be asked (breaker open, error, timeout)."""
        breaker = self.breaker
        if not breaker.allow():
            return None
        keys = [KEY_PREFIX + limit.key.hex() for limit, _ in items]
        args: list[Any] = [mode]
        for limit, amount in items:
            bucket = limit.bucket
            args += (bucket.max_tokens, bucket.tokens_per_fill, max(1, bucket.interval_ns // 1000), amount)
        from redis.exceptions import RedisError

        try:
            if _timeout is not None:
                async with _timeout(self.timeout):
                    result: list[int] = await self._redis()(keys=keys, args=args)
            else:  # Python 3.10
                result = await asyncio.wait_for(self._redis()(keys=keys, args=args), self.timeout)
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            self.failures += 1
            if self.on_failure is not None:
                self.on_failure(self.mode)
            if breaker.failed():
                logger.warning(
                    "rate-limit store (Redis) failing (%s); %s until it answers again",
                    type(exc).__name__,
                    "admitting requests uncounted" if self.fail_open else "refusing requests with 503",
                )
            return None
        except BaseException:
            breaker.abandoned()
            raise
        if breaker.succeeded():
            logger.warning("rate-limit store (Redis) answers again; shared counts are in use")
        return result

    async def take(self, items: Sequence[tuple[Limit, int]]) -> Taken | None:
        result = await self._call("take", items)
        if result is None:
            self.unavailable += 1
            if self.fail_open:
                return None
            raise store_unavailable()
        # The script counts in microseconds of Redis's clock; the rest of the gateway in nanoseconds.
        found = [(int(result[i]), int(result[i + 1]) * 1000) for i in range(2, 2 + 2 * len(items), 2)]
        return bool(result[0]), int(result[1]) * 1000, found

    def give(self, limit: Limit, amount: int) -> None:
        task = asyncio.get_running_loop().create_task(self._give(limit, amount))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _give(self, limit: Limit, amount: int) -> None:
        await self._call("give", [(limit, amount)])

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
