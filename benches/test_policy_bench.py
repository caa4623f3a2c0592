"""Micro benches of inbound auth and rate limits (python/agentgateway/policy/, issue 17) as app.py runs them.

Run: ``python -m pytest benches/test_policy_bench.py --benchmark-enable -p no:cacheprovider``.

One round is what a request adds on its way through ``Gateway.chat_completions`` when the policies are on:
``authenticate`` (Bearer header, sha256, digest lookup), ``upstream_headers`` (the key removed), ``check_model``,
``admit`` (the shared-memory table: one flock, refill, take, ``x-ratelimit-*`` headers) and the settle observer.
The coroutines never suspend with the local store, so they are driven with ``send(None)`` as the event loop
would run them, without the loop's own cost. Budget (issue 17): 8 µs for key auth plus one local request limit.

The Redis case measures one check against a real ``redis-server`` on loopback (one EVALSHA round trip on an
event loop): the gateway process's CPU per check, and the latency of a check (p50 / p99), printed.
"""

from __future__ import annotations

import asyncio
import os
import resource
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest
from agentgateway.config import load_config
from agentgateway.exchange import Exchange
from agentgateway.policy import Guard
from agentgateway.request import parse_chat_request
from pytest_benchmark.fixture import BenchmarkFixture

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))

KEY = "sk-gw-bench-0123456789abcdef0123"
BODY = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello gateway"}],"max_tokens":64}'
HEADERS = [
    (b"host", b"127.0.0.1:3000"),
    (b"content-type", b"application/json"),
    (b"user-agent", b"OpenAI/Python 1.99.0"),
    (b"accept", b"application/json"),
    (b"authorization", b"Bearer " + KEY.encode()),
    (b"x-stainless-lang", b"python"),
    (b"content-length", b"96"),
]
SCOPE: dict[str, Any] = {"method": "POST", "path": "/v1/chat/completions", "headers": HEADERS}


def _config(limits: str, redis: str = "") -> str:
    return f"""
llm:
  models: [{{name: gpt-4o-mini, provider: openAI, params: {{apiKey: sk-up}}}}]
  policies:
    apiKey:
      keys: [{{key: {KEY}, metadata: {{name: bench}}, allowedModels: ["gpt-*"]}}]
    localRateLimit: {limits}
{redis}
"""


def _run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    raise AssertionError("the local path never suspends")


def _one_request(guard: Guard) -> None:
    exchange = Exchange(SCOPE, ())
    exchange.identity = _run(guard.authenticate(HEADERS))
    headers = exchange.request_headers = guard.upstream_headers(HEADERS)
    request = parse_chat_request(BODY, headers)
    guard.check_model(exchange.identity, request.model)
    _run(guard.admit(exchange, request))
    exchange.facts.usage = (10, 20, 30)
    guard.settle(exchange)


def _baseline() -> None:
    exchange = Exchange(SCOPE, ())
    parse_chat_request(BODY, HEADERS)
    exchange.facts.usage = (10, 20, 30)


BIG = "10000000"
CASES = {
    "no-policy (exchange + parse only)": None,
    "key auth only": "[]",
    "key auth + 1 request limit": f"[{{type: requests, maxTokens: {BIG}, tokensPerFill: {BIG}, fillInterval: 1s}}]",
    "key auth + request and token limits": (
        f"[{{type: requests, maxTokens: {BIG}, tokensPerFill: {BIG}, fillInterval: 1s}}, "
        f"{{type: tokens, maxTokens: {BIG}, tokensPerFill: {BIG}, fillInterval: 1s}}]"
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_policy_per_request(benchmark: BenchmarkFixture, case: str) -> None:
    limits = CASES[case]
    if limits is None:
        benchmark(_baseline)
        return
    guard = Guard(load_config(_config(limits)))
    _one_request(guard)
    benchmark(_one_request, guard)


def test_redis_check(benchmark: BenchmarkFixture, tmp_path: Path) -> None:
    from redis_server import RedisServer

    server = RedisServer(tmp_path)
    try:
        limits = f"[{{type: requests, maxTokens: {BIG}, tokensPerFill: {BIG}, fillInterval: 1s}}]"
        redis = f"config:\n  redis: {{url: '{server.url}', commandTimeout: 1s}}"
        guard = Guard(load_config(_config(limits, redis)))
        rounds = 5000

        async def run() -> tuple[float, list[float]]:
            latencies = []
            await _admit(guard)  # connects and loads the script
            cpu = resource.getrusage(resource.RUSAGE_SELF)
            for _ in range(rounds):
                started = time.perf_counter()
                await _admit(guard)
                latencies.append(time.perf_counter() - started)
            after = resource.getrusage(resource.RUSAGE_SELF)
            await guard.shutdown()
            used = (after.ru_utime - cpu.ru_utime) + (after.ru_stime - cpu.ru_stime)
            return used / rounds, sorted(latencies)

        redis_cpu_before = _process_cpu(server.process.pid if server.process else 0)
        cpu, latencies = asyncio.run(run())
        redis_cpu = (_process_cpu(server.process.pid if server.process else 0) - redis_cpu_before) / rounds
        print(
            f"\nredis check: gateway CPU {cpu * 1e6:.1f} µs, redis-server CPU {redis_cpu * 1e6:.1f} µs, "
            f"latency p50 {latencies[len(latencies) // 2] * 1e6:.0f} µs, "
            f"p99 {latencies[int(len(latencies) * 0.99)] * 1e6:.0f} µs"
        )
        benchmark.pedantic(lambda: None, rounds=1)
    finally:
        server.stop()


async def _admit(guard: Guard) -> None:
    exchange = Exchange(SCOPE, ())
    exchange.identity = await guard.authenticate(HEADERS)
    request = parse_chat_request(BODY, guard.upstream_headers(HEADERS))
    await guard.admit(exchange, request)
    guard.settle(exchange)


def _process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
