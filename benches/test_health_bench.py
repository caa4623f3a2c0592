"""Micro benches of the failover health state (python/agentgateway/health.py), as the attempt loop uses it.

Run: ``python -m pytest benches/test_health_bench.py --benchmark-enable`` (the project's normal pytest run collects
only tests/).

One round is what a request through a virtual model with two failover targets in one priority group adds on the
success path: ``order_by_health`` of the group, then ``record_success`` on the member that answered. The clock is
the real ``time.monotonic``. Cases: both members healthy (the clock is never read), and one member evicted (each
look at it reads the clock once). The budget is a few µs for the whole failover overhead of a request.
"""

from __future__ import annotations

import pytest
from agentgateway.health import BackendHealth, EvictionPolicy, order_by_health
from pytest_benchmark.fixture import BenchmarkFixture


class Target:
    """Stands in for the lead's target object: the health lives on it, looked up through an attribute."""

    __slots__ = ("health", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self.health = BackendHealth(EvictionPolicy.default_failover())


def target_health(target: Target) -> BackendHealth:
    return target.health


@pytest.mark.parametrize("evicted", [False, True], ids=["both-healthy", "one-evicted"])
def test_order_two_and_record_success(benchmark: BenchmarkFixture, evicted: bool) -> None:
    group = [Target("openai/gpt-5-mini"), Target("bedrock/haiku")]
    group[0].health.record_success(0.8)
    group[1].health.record_success(0.4)
    if evicted:
        group[1].health.record_failure(retry_after=3600.0)

    def attempt() -> Target:
        first = order_by_health(group, target_health)[0]
        first.health.record_success(0.5)
        return first

    # benchmark() calibrates many calls per timing, so a sub-µs figure is not timer noise
    first = benchmark(attempt)
    assert first is group[0] if evicted else first is group[1]
