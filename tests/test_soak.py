"""Soak: 10 000 mixed requests (OpenAI, custom, Anthropic, Gemini, Vertex AI, Bedrock; plain, streamed and
aborted) at concurrency 64 against the fake upstreams. No gateway-made 5xx, every stream ends properly, and the
worker's memory stays flat.

Not part of the default run (about a minute): ``python -m pytest --soak -m soak -s`` prints the figures.
Environment: SOAK_REQUESTS (default 10000), SOAK_CONCURRENCY (default 64).
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from conftest import TEST_KEY, abort_stream, process_tree, rss_kib, start_gateway
from fakes.anthropic_upstream import FakeAnthropic, start_fake_anthropic
from fakes.bedrock_upstream import FakeBedrock, start_fake_bedrock
from fakes.gemini_upstream import FakeGoogle, start_fake_google
from fakes.openai_upstream import FakeOpenAI
from test_bedrock import ACCESS_KEY, AWS_ENV_VARS, SECRET_KEY, SESSION_TOKEN, aws_env

REQUESTS = int(os.environ.get("SOAK_REQUESTS", "10000"))
CONCURRENCY = int(os.environ.get("SOAK_CONCURRENCY", "64"))
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}}}


def _request(model: str, stream: bool, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "Tell me a story"}], **extra}
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


# (kind, request, expected status); "abort" hangs up after the first chunk.
MIX: list[tuple[str, dict[str, Any], int]] = [
    ("openai plain", _request("gpt-4o-mini", False), 200),
    ("openai stream", _request("gpt-4o-mini", True), 200),
    ("custom stream", _request("passthrough-x", True), 200),
    ("openai 429", _request("gpt-4o-mini-429", False), 429),
    ("anthropic plain", _request("claude-sonnet", False), 200),
    ("anthropic stream", _request("claude-sonnet", True), 200),
    ("anthropic tools stream", _request("claude-tool", True, tools=[TOOL]), 200),
    ("anthropic thinking", _request("claude-think", False, reasoning_effort="low"), 200),
    ("gemini plain", _request("gemini-2.5-flash", False), 200),
    ("gemini stream", _request("gemini-2.5-flash", True), 200),
    ("gemini tools stream", _request("gemini-2.5-flash-tool", True, tools=[TOOL]), 200),
    ("vertex express stream", _request("vertex-express", True), 200),
    ("bedrock plain", _request("bedrock-claude", False), 200),
    ("bedrock stream", _request("bedrock-claude", True), 200),
    ("bedrock tools stream", _request("bedrock-claude-tool", True, tools=[TOOL]), 200),
    ("bedrock abort", _request("bedrock-claude", True), 0),
    ("openai abort", _request("passthrough-hang", True), 0),
    ("anthropic abort", _request("claude-sonnet", True), 0),
    ("gemini abort", _request("gemini-2.5-flash", True), 0),
]


@pytest.fixture(scope="module")
def fake_anthropic() -> Iterator[FakeAnthropic]:
    fake, stop = start_fake_anthropic(TEST_KEY)
    yield fake
    stop()


@pytest.fixture(scope="module")
def fake_google() -> Iterator[FakeGoogle]:
    fake, stop = start_fake_google(TEST_KEY)
    yield fake
    stop()


@pytest.fixture(scope="module")
def fake_bedrock() -> Iterator[FakeBedrock]:
    fake, stop = start_fake_bedrock(keys={ACCESS_KEY: (SECRET_KEY, SESSION_TOKEN)})
    yield fake
    stop()


@pytest.mark.soak
def test_soak(
    fake_openai: FakeOpenAI,
    fake_anthropic: FakeAnthropic,
    fake_google: FakeGoogle,
    fake_bedrock: FakeBedrock,
    tmp_path: Path,
) -> None:
    config = f"""
llm:
  models:
  - {{name: "gpt-*", provider: openAI, params: {{apiKey: {TEST_KEY}, baseUrl: "{fake_openai.base_url}"}}}}
  - name: "passthrough-*"
    provider: {{custom: {{formats: [{{type: completions}}]}}}}
    params: {{baseUrl: "{fake_openai.base_url}"}}
  - {{name: "claude-*", provider: anthropic, params: {{apiKey: {TEST_KEY}, baseUrl: "{fake_anthropic.origin}"}}}}
  - {{name: "gemini-*", provider: gemini, params: {{apiKey: {TEST_KEY}, baseUrl: "{fake_google.origin}"}}}}
  - name: vertex-express
    provider: vertex
    params: {{model: gemini-2.5-flash, apiKey: {TEST_KEY}, baseUrl: "{fake_google.origin}"}}
  - {{name: "bedrock-*", provider: bedrock, params: {{awsRegion: us-east-1, baseUrl: "{fake_bedrock.base_url}"}}}}
"""
    env = aws_env(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_SESSION_TOKEN=SESSION_TOKEN)
    gateway = start_gateway(config, tmp_path, env=env, unset=AWS_ENV_VARS)
    try:
        pids = process_tree(gateway.process.pid)
        outcomes, rss_samples, elapsed = asyncio.run(_run(gateway.port, pids))
        log = gateway.log()
    finally:
        gateway.stop()
    start_kib, end_kib = rss_samples[0], rss_samples[-1]
    print(
        f"\nsoak: {REQUESTS} requests at concurrency {CONCURRENCY} in {elapsed:.1f} s "
        f"({REQUESTS / elapsed:,.0f}/s); outcomes {dict(sorted(outcomes.items()))}"
        f"\nRSS of the gateway's processes: {start_kib / 1024:.1f} MiB after warm-up, {end_kib / 1024:.1f} MiB at the "
        f"end (samples: {', '.join(f'{s / 1024:.1f}' for s in rss_samples)})"
    )
    failures = {outcome: n for outcome, n in outcomes.items() if not outcome.endswith(": ok")}
    assert not failures, failures
    assert "Traceback" not in log
    assert end_kib - start_kib < 16 * 1024, "memory grew over the run"


async def _run(port: int, pids: list[int]) -> tuple[Counter[str], list[int], float]:
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    rng = random.Random(1234)
    plan = [rng.choice(MIX) for _ in range(REQUESTS)]
    outcomes: Counter[str] = Counter()
    rss_samples: list[int] = []
    warm_up = REQUESTS // 10
    done = 0
    semaphore = asyncio.Semaphore(CONCURRENCY)
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    started = time.monotonic()
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(kind: str, body: dict[str, Any], expected: int) -> None:
            nonlocal done
            async with semaphore:
                try:
                    outcome = await _one(session, url, port, body, expected)
                except Exception as exc:  # the soak's verdict, not a crash of the run
                    outcome = f"{type(exc).__name__}: {exc}"
                outcomes[f"{kind}: {outcome}"] += 1
                done += 1
                if done == warm_up or done % (REQUESTS // 10) == 0:
                    rss_samples.append(rss_kib(pids))

        await asyncio.gather(*(one(kind, body, expected) for kind, body, expected in plan))
    return outcomes, rss_samples, time.monotonic() - started


async def _one(session: aiohttp.ClientSession, url: str, port: int, body: dict[str, Any], expected: int) -> str:
    if expected == 0:
        await abort_stream(port, body)
        return "ok"
    async with session.post(url, json=body) as response:
        payload = await response.read()
        if response.status != expected:
            return f"status {response.status}: {payload[:200]!r}"
        if body.get("stream") and not payload.endswith(b"data: [DONE]\n\n"):
            return f"stream did not end with [DONE]: {payload[-200:]!r}"
        if b'"error"' in payload and expected == 200:
            return f"error in the answer: {payload[:200]!r}"
    return "ok"
