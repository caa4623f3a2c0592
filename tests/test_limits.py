"""Rate limits (issue 17, OPERATIONS.md section 3): token buckets shared by worker processes (shared memory) and by
gateway replicas (a real redis-server), token reservations settled from the answer's usage, OpenAI-shaped 429s."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest
from agentgateway.config import RateLimit, RedisConfig, load_config
from agentgateway.errors import ConfigError, GatewayError
from agentgateway.policy.limits import compile_limits
from agentgateway.policy.redis_store import Breaker, RedisStore
from agentgateway.policy.shm import TABLE_ENV, Bucket, SharedTable, gateway_table, wait_ns
from conftest import TEST_KEY, RunningGateway, openai_client, start_gateway
from fakes.openai_upstream import STORY, FakeOpenAI
from redis_server import RedisServer

MESSAGES: list[Any] = [{"role": "user", "content": "hi"}]
USED = 12 + len(STORY)  # the fake's usage: prompt 12, one completion token per word
HOUR = 3600 * 10**9


class FakeClock:
    def __init__(self) -> None:
        self.now = 10**12

    def __call__(self) -> int:
        return self.now


# -- the shared-memory table --------------------------------------------------------------------------------------


def test_a_bucket_refills_by_whole_fills_up_to_its_size(tmp_path: Path) -> None:
    clock = FakeClock()
    table = SharedTable(str(tmp_path / "t"), clock=clock)
    bucket = Bucket(max_tokens=3, tokens_per_fill=2, interval_ns=10**9)
    slot = table.slot(b"k" * 16, bucket)
    assert [table.take([(slot, bucket, 1)])[0] for _ in range(4)] == [True, True, True, False]
    ok, now, found = table.take([(slot, bucket, 1)])
    assert not ok
    assert wait_ns(found[0][0], 1, found[0][1], now, bucket) == 10**9
    clock.now += 10**9 - 1
    assert not table.take([(slot, bucket, 1)])[0]
    clock.now += 1
    assert table.take([(slot, bucket, 2)])[0]
    clock.now += 100 * 10**9  # a long idle time fills it only to its size
    ok, _now, found = table.take([(slot, bucket, 1)])
    assert ok
    assert found[0][0] == 2


def test_a_request_takes_from_all_of_its_buckets_or_from_none(tmp_path: Path) -> None:
    table = SharedTable(str(tmp_path / "t"), clock=FakeClock())
    big, small = Bucket(10, 1, HOUR), Bucket(1, 1, HOUR)
    a, b = table.slot(b"a" * 16, big), table.slot(b"b" * 16, small)
    assert table.take([(a, big, 1), (b, small, 1)])[0]
    ok, _now, found = table.take([(a, big, 1), (b, small, 1)])
    assert not ok
    assert found[0][0] == 9  # the big bucket was not charged for the refused request


def _hammer(path: str, rounds: int, start: Any, out: Any) -> None:
    table = SharedTable(path)
    bucket = Bucket(30_000, 1, HOUR)
    slot = table.slot(b"s" * 16, bucket)
    start.wait()
    out.put(sum(table.take([(slot, bucket, 1)])[0] for _ in range(rounds)))


def test_processes_share_one_count_in_the_table(tmp_path: Path) -> None:
    path = str(tmp_path / "t")
    context = multiprocessing.get_context("spawn")
    out, start = context.Queue(), context.Event()
    processes = [context.Process(target=_hammer, args=(path, 20_000, start, out)) for _ in range(3)]
    for process in processes:
        process.start()
    start.set()  # all at once, so that their takes interleave
    admitted = [out.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(60)
    assert sum(admitted) == 30_000  # 60,000 tries on one bucket of 30,000: not a bucket per process, no lost update


def test_a_worker_maps_the_table_its_parent_created_and_counts_survive_reopening(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "handed")
    monkeypatch.setenv(TABLE_ENV, f"{os.getppid()}:{path}")
    table = gateway_table(worker=True)
    assert table.path == path
    bucket = Bucket(5, 1, HOUR)
    slot = table.slot(b"w" * 16, bucket)
    table.take([(slot, bucket, 3)])
    respawned = SharedTable(path)  # a respawned worker maps the same file
    assert respawned.peek(respawned.slot(b"w" * 16, bucket), bucket) == 2
    # Not a worker, or a table of an unrelated ancestor: a new table of its own, handed to its own workers.
    monkeypatch.setenv(TABLE_ENV, f"1:{path}")
    own = gateway_table(worker=False)
    assert own.path != path
    assert os.environ[TABLE_ENV] == f"{os.getpid()}:{own.path}"


def test_a_limit_is_keyed_by_whom_it_applies_to_and_its_numbers_not_its_place() -> None:
    one = RateLimit(type="requests", max_tokens=10, tokens_per_fill=1, fill_interval=1.0)
    two = RateLimit(type="tokens", max_tokens=1000, tokens_per_fill=1000, fill_interval=60.0)
    first = compile_limits([one, two], "global", "l")
    reordered = compile_limits([two, one], "global", "l")
    assert {limit.key for limit in first} == {limit.key for limit in reordered}
    assert compile_limits([one], "key:ab", "l")[0].key != first[0].key
    changed = RateLimit(type="requests", max_tokens=11, tokens_per_fill=1, fill_interval=1.0)
    assert compile_limits([changed], "global", "l")[0].key != first[0].key
    assert len({limit.key for limit in compile_limits([one, one], "global", "l")}) == 2  # two buckets


def test_tokens_per_fill_above_max_tokens_is_a_config_error() -> None:
    text = """llm:
  models: [{name: m, provider: openAI}]
  policies:
    localRateLimit:
    - {type: tokens, maxTokens: 10, tokensPerFill: 20, fillInterval: 1s}
"""
    with pytest.raises(ConfigError) as caught:
        load_config(text, "c.yaml")
    assert "c.yaml:5: llm.policies.localRateLimit[0]: tokensPerFill (20) is larger than maxTokens (10)" in str(
        caught.value
    )


# -- through the gateway -----------------------------------------------------------------------------------------


def _config(upstream: str, policies: str, extra: str = "") -> str:
    return f"""
llm:
  models:
  - name: gpt-4o-mini
    provider: openAI
    params: {{apiKey: {TEST_KEY}, baseUrl: {upstream}}}
  - name: "passthrough-*"
    provider: {{custom: {{formats: [{{type: completions}}]}}}}
    params: {{baseUrl: {upstream}}}
  policies:
{policies}
{extra}
"""


def _post(url: str, model: str = "gpt-4o-mini", **body: Any) -> httpx.Response:
    return httpx.post(url + "/v1/chat/completions", json={"model": model, "messages": MESSAGES, **body}, timeout=30)


def test_two_workers_share_one_request_limit(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    policies = "    localRateLimit: [{type: requests, maxTokens: 20, tokensPerFill: 1, fillInterval: 1h}]"
    running = start_gateway(_config(fake_openai.base_url, policies), tmp_path, workers=2)
    try:
        with ThreadPoolExecutor(16) as pool:  # a new connection per request, many at once: both workers serve
            statuses = list(pool.map(lambda _: _post(running.url).status_code, range(60)))
        assert statuses.count(200) == 20
        assert statuses.count(429) == 40
    finally:
        running.stop()


@pytest.fixture(scope="module")
def limited(fake_openai: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    policies = """    apiKey:
      keys:
      - {key: sk-requests, localRateLimit: [{type: requests, maxTokens: 2, tokensPerFill: 1, fillInterval: 1h}]}
      - {key: sk-tokens, localRateLimit: [{type: tokens, maxTokens: 1000, tokensPerFill: 1000, fillInterval: 1h}]}
      - {key: sk-streams, localRateLimit: [{type: tokens, maxTokens: 500, tokensPerFill: 500, fillInterval: 1h}]}
      - {key: sk-abort, localRateLimit: [{type: tokens, maxTokens: 800, tokensPerFill: 800, fillInterval: 1h}]}
      - {key: sk-fail, localRateLimit: [{type: tokens, maxTokens: 700, tokensPerFill: 700, fillInterval: 1h}]}"""
    running = start_gateway(_config(fake_openai.base_url, policies), tmp_path_factory.mktemp("gw-limits"))
    yield running
    running.stop()


def _estimate(**body: Any) -> int:
    raw = orjson.dumps({"model": "gpt-4o-mini", "messages": MESSAGES, **body})
    return len(raw) // 4 + int(body.get("max_tokens", 0))


def test_a_refused_request_is_an_openai_429_the_sdk_knows_with_retry_after(limited: RunningGateway) -> None:
    client = openai_client(limited.url, "sk-requests")
    first = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    assert first.headers["x-ratelimit-limit"] == "2"
    assert first.headers["x-ratelimit-remaining"] == "1"
    assert int(first.headers["x-ratelimit-reset"]) > 0
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    error = caught.value
    assert error.status_code == 429
    assert error.code == "rate_limit_exceeded"
    assert error.type == "rate_limit_error"
    assert "llm.policies.apiKey.keys[0].localRateLimit[0] (2 requests" in error.message
    assert 3500 <= int(error.response.headers["retry-after"]) <= 3600
    assert error.response.headers["x-ratelimit-remaining"] == "0"
    assert "sk-requests" not in error.response.text


def test_a_token_limit_is_settled_with_the_usage_of_the_answer(limited: RunningGateway) -> None:
    headers = {"authorization": "Bearer sk-tokens"}
    first = httpx.post(
        limited.url + "/v1/chat/completions",
        headers=headers,
        json={"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 100},
    )
    estimate = _estimate(max_tokens=100)
    assert first.headers["x-ratelimit-remaining"] == str(1000 - estimate)
    second = httpx.post(
        limited.url + "/v1/chat/completions", headers=headers, json={"model": "gpt-4o-mini", "messages": MESSAGES}
    )
    # The first request's estimate was replaced by what it used; the second's estimate is reserved.
    assert second.headers["x-ratelimit-remaining"] == str(1000 - USED - _estimate())


def test_concurrent_streams_cannot_overshoot_a_token_limit_and_settle_with_their_usage(
    limited: RunningGateway,
) -> None:
    estimate = _estimate(max_tokens=200, stream=True, stream_options={"include_usage": True})
    assert 2 * estimate <= 500 < 3 * estimate  # room for two reservations, not three

    async def one(client: openai.AsyncOpenAI) -> str:
        try:
            stream = await client.chat.completions.create(
                model="passthrough-slow",
                messages=MESSAGES,
                max_tokens=200,
                stream=True,
                stream_options={"include_usage": True},
            )
            usage = None
            async for chunk in stream:
                usage = chunk.usage or usage
            assert usage is not None
            return "ok"
        except openai.RateLimitError:
            return "429"

    async def run() -> list[str]:
        async with openai.AsyncOpenAI(base_url=limited.url, api_key="sk-streams", max_retries=0) as client:
            return await asyncio.gather(*(one(client) for _ in range(6)))

    results = asyncio.run(run())
    assert results.count("ok") == 2
    assert results.count("429") == 4
    after = httpx.post(
        limited.url + "/v1/chat/completions",
        headers={"x-api-key": "sk-streams"},
        json={"model": "gpt-4o-mini", "messages": MESSAGES},
    )
    assert after.headers["x-ratelimit-remaining"] == str(500 - 2 * USED - _estimate())


def test_an_aborted_stream_keeps_its_estimate_and_a_failed_request_gets_it_back(
    limited: RunningGateway, fake_openai: FakeOpenAI
) -> None:
    body = {"model": "passthrough-hang", "messages": MESSAGES, "stream": True, "max_tokens": 50}
    # abort_stream sends no key: use the x-api-key header through a raw connection of our own.
    asyncio.run(_abort_with_key(limited.port, body, "sk-abort"))
    estimate = len(orjson.dumps(body)) // 4 + 50
    deadline = time.monotonic() + 20
    while True:  # the gateway sees the client go away when it next writes or its disconnect watch fires
        after = httpx.post(
            limited.url + "/v1/chat/completions",
            headers={"x-api-key": "sk-abort"},
            json={"model": "gpt-4o-mini", "messages": MESSAGES},
        )
        if after.headers["x-ratelimit-remaining"] == str(800 - estimate - _estimate()):
            break
        assert time.monotonic() < deadline, after.headers
        time.sleep(0.1)
    # No upstream answered (503 from the fake, not retried): the estimate comes back in full.
    failed = httpx.post(
        limited.url + "/v1/chat/completions",
        headers={"x-api-key": "sk-fail"},
        json={"model": "passthrough-503", "messages": MESSAGES},
    )
    assert failed.status_code == 503
    again = httpx.post(
        limited.url + "/v1/chat/completions",
        headers={"x-api-key": "sk-fail"},
        json={"model": "gpt-4o-mini", "messages": MESSAGES},
    )
    assert again.headers["x-ratelimit-remaining"] == str(700 - _estimate())


async def _abort_with_key(port: int, request: dict[str, Any], key: str) -> None:
    body = orjson.dumps(request)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nx-api-key: %s\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (key.encode(), len(body), body)
    )
    await writer.drain()
    received = b""
    while b"data: " not in received:
        data = await reader.read(4096)
        assert data, "the gateway closed the stream before its first chunk"
        received += data
    writer.transport.abort()


# -- Redis ------------------------------------------------------------------------------------------------------


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    yield server
    server.stop()


def _redis_config(upstream: str, url: str, mode: str, maximum: int = 10) -> str:
    policies = f"    localRateLimit: [{{type: requests, maxTokens: {maximum}, tokensPerFill: 1, fillInterval: 1h}}]"
    extra = f"config:\n  redis: {{url: '{url}', commandTimeout: 50ms, failureMode: {mode}}}"
    return _config(upstream, policies, extra)


def test_two_gateways_share_one_limit_through_redis(
    fake_openai: FakeOpenAI, redis_server: RedisServer, tmp_path: Path
) -> None:
    config = _redis_config(fake_openai.base_url, redis_server.url, "failClosed")
    first = start_gateway(config, tmp_path)
    second = start_gateway(config, tmp_path)
    try:
        statuses = [_post(gateway.url).status_code for _ in range(8) for gateway in (first, second)]
        assert statuses.count(200) == 10
        assert statuses.count(429) == 6
        assert b"agentgateway:{rl}:" in redis_server.command("KEYS", "*")
    finally:
        first.stop()
        second.stop()


def _wait_for(condition: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_fail_closed_answers_503_while_redis_hangs_or_is_dead_and_recovers_without_a_restart(
    fake_openai: FakeOpenAI, redis_server: RedisServer, tmp_path: Path
) -> None:
    running = start_gateway(_redis_config(fake_openai.base_url, redis_server.url, "failClosed", 1000), tmp_path)
    try:
        assert _post(running.url).status_code == 200
        redis_server.pause()  # kill -STOP: connections open, nothing answers
        client = openai_client(running.url, "x", timeout=10)
        for _ in range(5):  # never held for the client's timeout: the command timeout and then the breaker
            with pytest.raises(openai.InternalServerError) as caught:
                client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            assert caught.value.status_code == 503
            assert caught.value.code == "rate_limit_store_unavailable"
        redis_server.resume()
        _wait_for(lambda: _post(running.url).status_code == 200, "the gateway used Redis again after SIGCONT")
        redis_server.kill()  # kill -9: connections refused
        response = _post(running.url)
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "rate_limit_store_unavailable"
        redis_server.start()  # same port, empty: the counts start over
        _wait_for(lambda: _post(running.url).status_code == 200, "the gateway used Redis again after a restart")
        assert b"agentgateway:{rl}:" in redis_server.command("KEYS", "*")
        assert "redis://" not in running.log()
    finally:
        running.stop()


def test_fail_open_admits_requests_while_redis_is_away(
    fake_openai: FakeOpenAI, redis_server: RedisServer, tmp_path: Path
) -> None:
    running = start_gateway(_redis_config(fake_openai.base_url, redis_server.url, "failOpen", 1), tmp_path)
    try:
        assert _post(running.url).status_code == 200
        assert _post(running.url).status_code == 429  # the shared count holds while Redis answers
        redis_server.pause()
        assert [_post(running.url).status_code for _ in range(4)] == [200] * 4
        redis_server.resume()
        _wait_for(lambda: _post(running.url).status_code == 429, "the count is used again once Redis answers")
    finally:
        running.stop()


def test_the_breaker_opens_after_failures_in_a_row_and_probes_once_per_cooldown() -> None:
    now = [0.0]
    breaker = Breaker(lambda: now[0], threshold=3, cooldown=1.0)
    assert not breaker.failed()
    assert not breaker.failed()
    assert breaker.failed()  # opened
    assert not breaker.allow()
    now[0] = 1.0
    assert breaker.allow()  # the probe
    assert not breaker.allow()  # only one at a time
    assert not breaker.failed()  # the probe failed: open again, from now
    now[0] = 1.5
    assert not breaker.allow()
    now[0] = 2.0
    assert breaker.allow()
    assert breaker.succeeded()  # closed
    assert breaker.allow()
    assert breaker.allow()


def test_a_hung_redis_costs_a_request_the_command_timeout_at_most(redis_server: RedisServer) -> None:
    limits = compile_limits(
        [RateLimit(type="requests", max_tokens=5, tokens_per_fill=1, fill_interval=3600)], "global", "l"
    )
    clock = [0.0]
    store = RedisStore(
        RedisConfig(url=redis_server.url, command_timeout=0.2, failure_mode="failClosed"),  # type: ignore[arg-type]
        clock=lambda: clock[0],
    )

    async def run() -> None:
        taken = await store.take([(limits[0], 1)])
        assert taken is not None
        assert taken[0]
        assert taken[2][0][0] == 4
        redis_server.pause()
        for _ in range(3):
            started = time.monotonic()
            with pytest.raises(GatewayError) as caught:
                await store.take([(limits[0], 1)])
            assert caught.value.code == "rate_limit_store_unavailable"
            assert time.monotonic() - started < 5  # bounded by the timeout, not by Redis
        assert store.breaker.open
        started = time.monotonic()
        with pytest.raises(GatewayError):
            await store.take([(limits[0], 1)])  # the breaker answers without asking Redis
        assert store.failures == 3
        redis_server.resume()
        clock[0] += 1.0  # the cooldown passed: the next request probes and closes the breaker
        taken = await store.take([(limits[0], 1)])
        assert taken is not None
        assert taken[0]
        # A take that timed out may still run when Redis resumes (it was already sent): counted, never admitted.
        assert 1 <= taken[2][0][0] <= 3
        await store.close()

    asyncio.run(run())


def test_a_held_table_lock_is_waited_for_then_taken(tmp_path: Path) -> None:
    """The shared table's lock is tried without releasing the GIL (policy/shm.py `_lock`); held by another open
    file (another worker), the take waits for it instead of failing or going ahead."""
    import threading

    from agentgateway.policy import shm

    path = str(tmp_path / "table")
    holder, waiter = os.open(path, os.O_RDWR | os.O_CREAT, 0o600), os.open(path, os.O_RDWR)
    try:
        shm._lock(holder)
        taken = threading.Event()

        def take() -> None:
            shm._lock(waiter)
            taken.set()
            shm._unlock(waiter)

        thread = threading.Thread(target=take)
        thread.start()
        assert not taken.wait(0.2)  # it cannot be taken while held, however loaded the machine
        shm._unlock(holder)
        assert taken.wait(10)
        thread.join(10)
    finally:
        os.close(holder)
        os.close(waiter)
