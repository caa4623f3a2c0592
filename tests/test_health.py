"""Backend health, eviction and back-off hints (python/agentgateway/health.py).

The eviction cases mirror agentgateway's own tests of ``Policy::eviction_decision``
(crates/agentgateway/src/http/health.rs) and of ``EndpointInfo`` (crates/agentgateway/src/types/loadbalancer.rs),
driven through the public API with a fake clock: nothing sleeps.
"""

from __future__ import annotations

import math
from email.utils import formatdate

import pytest
from agentgateway.health import (
    DEFAULT_EVICTION,
    MAX_RETRY_AFTER,
    BackendHealth,
    EvictionPolicy,
    is_failure_status,
    order_by_health,
    parse_duration,
    retry_after_seconds,
)

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z, the wall clock for absolute hints


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def backend(clock: FakeClock, **policy: float | int | None) -> BackendHealth:
    return BackendHealth(EvictionPolicy(**policy), clock)  # type: ignore[arg-type]


def hdrs(*pairs: tuple[str, str]) -> list[tuple[bytes, bytes]]:
    return [(name.encode(), value.encode()) for name, value in pairs]


# --- parse_duration ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("1m", 60.0),
        ("500ms", 0.5),
        ("1h", 3600.0),
        ("1.5s", 1.5),
        ("6m0s", 360.0),
        ("20ms", 0.02),
        ("1h2m3.5s", 3723.5),
        ("250us", 0.00025),
        ("250µs", 0.00025),
        ("10ns", 1e-8),
        (".5s", 0.5),
        ("0", 0.0),
        ("0s", 0.0),
        ("+2s", 2.0),
    ],
)
def test_parse_duration_reads_go_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "30", "s", "1x", "1.s.", "-1s", " 30s", "30s ", "1 m", "1e3s", "nan", ".s", "1d"])
def test_parse_duration_rejects_bad_input(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


# --- retry_after_seconds ----------------------------------------------------------------------------------------


def test_retry_after_delta_seconds() -> None:
    assert retry_after_seconds(hdrs(("retry-after", "120")), now=NOW) == 120.0
    assert retry_after_seconds(hdrs(("retry-after", " 1.5 ")), now=NOW) == 1.5  # Gemini's RetryInfo, converted


def test_retry_after_http_date_against_a_fixed_now() -> None:
    assert retry_after_seconds(hdrs(("retry-after", formatdate(NOW + 90, usegmt=True))), now=NOW) == 90.0
    assert retry_after_seconds(hdrs(("retry-after", "Thu, 01 Jan 2026 00:00:30 GMT")), now=NOW) == 30.0


def test_retry_after_date_in_the_past_is_zero() -> None:
    assert retry_after_seconds(hdrs(("retry-after", "Wed, 31 Dec 2025 23:00:00 GMT")), now=NOW) == 0.0


def test_retry_after_ms() -> None:
    assert retry_after_seconds(hdrs(("retry-after-ms", "1500")), now=NOW) == 1.5


def test_retry_after_ms_wins_over_retry_after_which_wins_over_resets() -> None:
    both = hdrs(("x-ratelimit-reset-requests", "9s"), ("retry-after", "2"), ("retry-after-ms", "250"))
    assert retry_after_seconds(both, now=NOW) == 0.25
    assert retry_after_seconds(both[:2], now=NOW) == 2.0


@pytest.mark.parametrize(
    ("value", "seconds"), [("1s", 1.0), ("6m0s", 360.0), ("20ms", 0.02), ("0h2m3.5s", 123.5), ("7.25", 7.25)]
)
def test_openai_reset_durations(value: str, seconds: float) -> None:
    assert retry_after_seconds(hdrs(("x-ratelimit-reset-tokens", value)), now=NOW) == pytest.approx(seconds)


def test_openai_resets_count_only_the_exhausted_limit() -> None:
    tokens_out = hdrs(
        ("x-ratelimit-remaining-requests", "4999"),
        ("x-ratelimit-reset-requests", "12ms"),
        ("x-ratelimit-remaining-tokens", "0"),
        ("x-ratelimit-reset-tokens", "6s"),
    )
    requests_out = hdrs(
        ("x-ratelimit-remaining-requests", "0"),
        ("x-ratelimit-reset-requests", "12ms"),
        ("x-ratelimit-remaining-tokens", "100"),
        ("x-ratelimit-reset-tokens", "6s"),
    )
    assert retry_after_seconds(tokens_out, now=NOW) == 6.0
    assert retry_after_seconds(requests_out, now=NOW) == pytest.approx(0.012)


def test_resets_without_remaining_take_the_longest() -> None:
    resets = hdrs(("x-ratelimit-reset-requests", "12ms"), ("x-ratelimit-reset-tokens", "6s"))
    assert retry_after_seconds(resets, now=NOW) == 6.0


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("30", 30.0),  # a delta
        (str(int(NOW + 45)), 45.0),  # Unix seconds
        (str(int((NOW + 45) * 1000)), 45.0),  # Unix milliseconds
        ("2m", 120.0),  # a duration
    ],
)
def test_x_ratelimit_reset_by_magnitude(value: str, seconds: float) -> None:
    assert retry_after_seconds(hdrs(("x-ratelimit-reset", value)), now=NOW) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value",
    [
        "2026-01-01T00:00:20Z",
        "2026-01-01T00:00:20.000000000Z",
        "2026-01-01T02:00:20+02:00",
        "2025-12-31T23:00:20-01:00",
    ],
)
def test_anthropic_reset_rfc3339(value: str) -> None:
    assert retry_after_seconds(hdrs(("anthropic-ratelimit-tokens-reset", value)), now=NOW) == pytest.approx(20.0)


def test_anthropic_exhausted_limit_wins() -> None:
    headers = hdrs(
        ("anthropic-ratelimit-requests-remaining", "0"),
        ("anthropic-ratelimit-requests-reset", "2026-01-01T00:00:05Z"),
        ("anthropic-ratelimit-tokens-remaining", "90000"),
        ("anthropic-ratelimit-tokens-reset", "2026-01-01T00:00:50Z"),
    )
    assert retry_after_seconds(headers, now=NOW) == 5.0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("retry-after", "soon"),
        ("retry-after", "-5"),
        ("retry-after", "nan"),
        ("retry-after", "inf"),
        ("retry-after", "1e3"),
        ("retry-after", "1_000"),
        ("retry-after", ""),
        ("retry-after", "Mon, 99 Foo 2026 99:99:99 GMT"),
        ("retry-after-ms", "fast"),
        ("retry-after-ms", "-1"),
        ("x-ratelimit-reset-tokens", "6 minutes"),
        ("x-ratelimit-reset", "0x10"),
        ("anthropic-ratelimit-requests-reset", "2026-13-01T00:00:00Z"),
        ("anthropic-ratelimit-requests-reset", "2026-02-30T00:00:00Z"),
        ("anthropic-ratelimit-requests-reset", "tomorrow"),
        ("anthropic-ratelimit-requests-reset", "2026-01-01T00:00:20+25:00"),
    ],
)
def test_garbage_is_ignored_and_the_next_hint_used(name: str, value: str) -> None:
    assert retry_after_seconds(hdrs((name, value)), now=NOW) is None
    assert retry_after_seconds(hdrs((name, value), ("x-ratelimit-reset-requests", "3s")), now=NOW) == 3.0


def test_non_utf8_bytes_never_raise() -> None:
    assert retry_after_seconds([(b"retry-after", b"\xff\xfe\x00"), (b"retry-after-ms", b"\x80")], now=NOW) is None


def test_absurd_values_are_capped() -> None:
    assert retry_after_seconds(hdrs(("retry-after", "99999999999")), now=NOW) == MAX_RETRY_AFTER
    assert retry_after_seconds(hdrs(("retry-after", "Fri, 01 Jan 2100 00:00:00 GMT")), now=NOW) == MAX_RETRY_AFTER


def test_no_hint() -> None:
    assert retry_after_seconds([], now=NOW) is None
    assert retry_after_seconds(hdrs(("content-type", "application/json")), now=NOW) is None


def test_default_now_is_the_wall_clock() -> None:
    value = retry_after_seconds(hdrs(("retry-after", formatdate(NOW + 3600 * 24 * 365 * 50, usegmt=True))))
    assert value == MAX_RETRY_AFTER  # far future of the real clock too; a date parsed against now=0 would be too


# --- eviction ----------------------------------------------------------------------------------------------------


def test_evicts_after_n_consecutive_failures_not_before(clock: FakeClock) -> None:
    health = backend(clock, consecutive_failures=3, duration=10.0)
    assert health.record_failure() is False
    assert health.record_failure() is False
    assert not health.evicted()
    assert health.record_failure() is True
    assert health.evicted()
    assert health.evicted_until == clock.now + 10.0


def test_a_success_resets_the_consecutive_count(clock: FakeClock) -> None:
    health = backend(clock, consecutive_failures=3)
    health.record_failure()
    health.record_failure()
    health.record_success(0.1)
    assert health.record_failure() is False
    assert health.record_failure() is False
    assert not health.evicted()


def test_without_thresholds_one_failure_evicts(clock: FakeClock) -> None:
    assert backend(clock).record_failure() is True


def test_consecutive_failures_zero_never_evicts(clock: FakeClock) -> None:
    health = backend(clock, consecutive_failures=0)
    assert not any(health.record_failure() for _ in range(100))


def test_restored_after_the_duration(clock: FakeClock) -> None:
    health = backend(clock, duration=30.0)
    health.record_failure()
    clock.advance(29.999)
    assert health.evicted()
    clock.advance(0.001)
    assert not health.evicted()
    assert health.evicted_until == 0.0


def test_duration_grows_with_repeats_and_resets_after_success(clock: FakeClock) -> None:
    health = backend(clock, duration=10.0)
    durations = []
    for _ in range(3):
        health.record_failure()
        durations.append(health.evicted_until - clock.now)
        clock.advance(durations[-1])
    assert durations == [10.0, 20.0, 30.0]  # base * (evictions + 1), agentgateway's multiplicative back-off
    health.record_success(0.2)
    health.record_failure()
    assert health.evicted_until - clock.now == 10.0


def test_failure_while_evicted_neither_extends_nor_counts(clock: FakeClock) -> None:
    health = backend(clock, duration=10.0)
    health.record_failure()
    until = health.evicted_until
    clock.advance(5)
    assert health.record_failure(retry_after=100.0) is False
    assert health.evicted_until == until
    clock.advance(5)
    health.record_failure()
    assert health.evicted_until - clock.now == 20.0  # second eviction, not third


def test_success_does_not_lift_a_running_eviction(clock: FakeClock) -> None:
    health = backend(clock, duration=10.0)
    health.record_failure()
    health.record_success(0.1)  # e.g. a request that began before the eviction
    assert health.evicted()


def test_default_failover_evicts_for_retry_after_else_3s(clock: FakeClock) -> None:
    health = BackendHealth(EvictionPolicy.default_failover(), clock)
    assert health.record_failure(retry_after=42.0) is True
    assert health.evicted_until - clock.now == 42.0
    other = BackendHealth(EvictionPolicy.default_failover(), clock)
    other.record_failure()
    assert other.evicted_until - clock.now == DEFAULT_EVICTION == 3.0


def test_default_failover_growth_is_capped(clock: FakeClock) -> None:
    health = BackendHealth(EvictionPolicy.default_failover(), clock)
    longest = 0.0
    for _ in range(500):
        health.record_failure()
        longest = max(longest, health.evicted_until - clock.now)
        clock.advance(health.evicted_until - clock.now)
    assert longest == 300.0
    assert EvictionPolicy().max_duration == math.inf  # agentgateway's own policies grow uncapped


def test_configured_duration_wins_over_retry_after(clock: FakeClock) -> None:
    health = backend(clock, duration=5.0)
    health.record_failure(retry_after=60.0)
    assert health.evicted_until - clock.now == 5.0  # agentgateway: eviction_duration().or(fallback)


def test_retry_after_zero_does_not_evict(clock: FakeClock) -> None:
    health = BackendHealth(EvictionPolicy.default_failover(), clock)
    assert health.record_failure(retry_after=0.0) is False
    assert not health.evicted()


# --- healthThreshold / restoreHealth -----------------------------------------------------------------------------


def test_health_threshold_evicts_once_the_ewma_is_below_it(clock: FakeClock) -> None:
    # agentgateway's ewma_simulation_three_failures_with_threshold: 1.0 -> 0.7 -> 0.49, the third failure evicts.
    health = backend(clock, health_threshold=0.5, duration=10.0)
    assert health.record_failure() is False
    assert health.health == pytest.approx(0.7)
    assert health.record_failure() is False
    assert health.health == pytest.approx(0.49)
    assert health.record_failure() is True


def test_health_threshold_compares_strictly(clock: FakeClock) -> None:
    health = backend(clock, health_threshold=1.0)
    assert health.record_failure() is False  # 1.0 is not below 1.0 (agentgateway: current_health < t)
    assert health.record_failure() is True  # 0.7 is


def test_either_threshold_evicts(clock: FakeClock) -> None:
    by_count = backend(clock, health_threshold=0.1, consecutive_failures=2)
    by_count.record_failure()
    assert by_count.record_failure() is True
    by_health = backend(clock, health_threshold=0.75, consecutive_failures=5)
    by_health.record_failure()
    assert by_health.record_failure() is True


def test_restore_health_is_set_when_the_eviction_ends(clock: FakeClock) -> None:
    health = backend(clock, health_threshold=0.5, restore_health=1.0, duration=10.0)
    for _ in range(3):
        health.record_failure()
    assert health.evicted()
    clock.advance(10)
    assert health.health == 1.0
    assert health.record_failure() is False  # a fresh start: three more failures to evict again
    assert health.record_failure() is False
    assert health.record_failure() is True
    assert health.evicted_until - clock.now == 20.0


def test_restore_health_zero_re_evicts_on_the_next_failure(clock: FakeClock) -> None:
    health = backend(clock, health_threshold=0.5, restore_health=0.0, duration=10.0)
    for _ in range(3):
        health.record_failure()
    clock.advance(10)
    assert health.record_failure() is True


def test_without_restore_health_the_ewma_is_kept(clock: FakeClock) -> None:
    health = backend(clock, duration=10.0)
    health.record_failure()
    clock.advance(10)
    assert health.health == pytest.approx(0.7)


def test_consecutive_count_survives_the_end_of_an_eviction(clock: FakeClock) -> None:
    health = backend(clock, consecutive_failures=3, restore_health=1.0, duration=10.0)
    for _ in range(3):
        health.record_failure()
    clock.advance(10)
    assert health.record_failure() is True  # agentgateway's consecutive_failures_not_reset_on_unevict


def test_success_after_restore_health_zero_jumps_to_one(clock: FakeClock) -> None:
    health = backend(clock, restore_health=0.0, duration=1.0)
    health.record_failure()
    clock.advance(1)
    health.record_success(0.1)
    assert health.health == 1.0  # agentgateway's Ewma::record: from exactly 0.0 it takes the new sample


@pytest.mark.parametrize(
    "policy",
    [
        {"health_threshold": 1.5},
        {"restore_health": -0.1},
        {"duration": -1.0},
        {"consecutive_failures": -1},
        {"max_duration": 0.0},
        {"duration": math.nan},
    ],
)
def test_policy_rejects_out_of_range_values(policy: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must"):
        EvictionPolicy(**policy)  # type: ignore[arg-type]


# --- latency and ordering ----------------------------------------------------------------------------------------


def test_latency_ewma(clock: FakeClock) -> None:
    health = backend(clock)
    assert health.latency is None
    health.record_success(1.0)
    assert health.latency == 1.0
    health.record_success(2.0)
    assert health.latency == pytest.approx(1.3)
    health.record_failure()
    assert health.latency == pytest.approx(1.3)  # failures are often fast: they do not count


def make_group(clock: FakeClock, *names: str) -> dict[str, BackendHealth]:
    return {name: BackendHealth(EvictionPolicy.default_failover(), clock) for name in names}


def test_orders_by_latency_ewma(clock: FakeClock) -> None:
    group = make_group(clock, "slow", "fast")
    group["slow"].record_success(2.0)
    group["fast"].record_success(0.3)
    assert order_by_health(["slow", "fast"], group.__getitem__) == ["fast", "slow"]
    assert order_by_health(["fast", "slow"], group.__getitem__) == ["fast", "slow"]


def test_orders_by_health_too(clock: FakeClock) -> None:
    group = {name: backend(clock, consecutive_failures=10) for name in ("flaky", "steady")}
    for member in group.values():
        member.record_success(0.5)
    group["flaky"].record_failure()
    assert order_by_health(["flaky", "steady"], group.__getitem__) == ["steady", "flaky"]


def test_unknown_latency_is_tried_first(clock: FakeClock) -> None:
    group = make_group(clock, "known", "new")
    group["known"].record_success(0.05)
    assert order_by_health(["known", "new"], group.__getitem__) == ["new", "known"]


def test_equal_members_keep_the_configured_order(clock: FakeClock) -> None:
    group = make_group(clock, "a", "b", "c")
    assert order_by_health(["a", "b", "c"], group.__getitem__) == ["a", "b", "c"]
    assert order_by_health(["b", "a"], group.__getitem__) == ["b", "a"]


def test_an_evicted_member_goes_last(clock: FakeClock) -> None:
    group = make_group(clock, "a", "b", "c")
    group["a"].record_success(0.01)
    group["b"].record_success(1.0)
    group["c"].record_success(1.0)
    group["a"].record_failure()  # still the best score (0.7 / 1.01 against 1 / 2), but evicted
    assert order_by_health(["a", "b"], group.__getitem__) == ["b", "a"]
    assert order_by_health(["a", "b", "c"], group.__getitem__) == ["b", "c", "a"]
    clock.advance(3)
    assert order_by_health(["b", "a"], group.__getitem__) == ["a", "b"]  # back, and the fastest


def test_all_evicted_earliest_restored_first(clock: FakeClock) -> None:
    group = make_group(clock, "a", "b", "c")
    group["a"].record_failure(retry_after=30)
    group["b"].record_failure(retry_after=10)
    group["c"].record_failure(retry_after=20)
    assert order_by_health(["a", "b"], group.__getitem__) == ["b", "a"]
    assert order_by_health(["a", "b", "c"], group.__getitem__) == ["b", "c", "a"]


def test_single_and_empty_groups(clock: FakeClock) -> None:
    group = make_group(clock, "a")
    group["a"].record_failure()
    assert order_by_health(["a"], group.__getitem__) == ["a"]  # evicted, still returned: never an outage
    assert order_by_health([], group.__getitem__) == []


@pytest.mark.parametrize(("status", "failure"), [(200, False), (400, False), (404, False), (429, True), (500, True)])
def test_is_failure_status(status: int, failure: bool) -> None:
    assert is_failure_status(status) is failure
    assert is_failure_status(503) and is_failure_status(529)
