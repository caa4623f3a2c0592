"""The ``@anthropic-ai/sdk`` npm package against the gateway's ``/v1/messages`` (issue 19): a Claude backend (the
client's body passed on natively) and an OpenAI backend (built from the shared model, answered through the core's
Anthropic encoder); plain, ``messages.stream()`` with ``finalMessage()``, a tool-use round trip and an upstream 429
read as the SDK's ``RateLimitError``. tests/js/anthropic_sdk.mjs drives the SDK; the fakes check what arrives."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import TEST_KEY, RunningGateway, start_gateway
from fakes.anthropic_upstream import USAGE, FakeAnthropic, start_fake_anthropic
from fakes.openai_upstream import STORY, FakeOpenAI, start_fake_openai

SCRIPT = Path(__file__).parent / "js" / "anthropic_sdk.mjs"


@pytest.fixture(scope="module")
def upstreams() -> Iterator[tuple[FakeAnthropic, FakeOpenAI]]:
    fake_anthropic, stop_anthropic = start_fake_anthropic(TEST_KEY)
    fake_openai, stop_openai = start_fake_openai()
    yield fake_anthropic, fake_openai
    stop_openai()
    stop_anthropic()


@pytest.fixture(scope="module")
def gateway(
    upstreams: tuple[FakeAnthropic, FakeOpenAI], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningGateway]:
    fake_anthropic, fake_openai = upstreams
    config = f"""
llm:
  models:
  - name: "claude-*"
    provider: anthropic
    params: {{apiKey: {TEST_KEY}, baseUrl: "{fake_anthropic.origin}"}}
  - name: "gpt-*"
    provider: openAI
    params: {{apiKey: {TEST_KEY}, baseUrl: "{fake_openai.base_url}"}}
"""
    running = start_gateway(config, tmp_path_factory.mktemp("gw-messages-js"))
    yield running
    running.stop()


def run_anthropic_npm(base_url: str, *args: str) -> dict[str, Any]:
    """Run tests/js/anthropic_sdk.mjs against the gateway: what the npm package saw, as JSON."""
    node = shutil.which("node")
    if node is None or not (SCRIPT.parent / "node_modules" / "@anthropic-ai" / "sdk").is_dir():
        if os.environ.get("CI"):
            pytest.fail("node or tests/js/node_modules is missing: .ci/run must npm install it (make install)")
        pytest.skip("node or the @anthropic-ai/sdk npm package is not installed (npm install --prefix tests/js)")
    done = subprocess.run([node, str(SCRIPT), base_url, *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    seen: dict[str, Any] = orjson.loads(done.stdout.strip().splitlines()[-1])
    return seen


STREAM_EVENTS = [
    "content_block_delta",
    "content_block_start",
    "content_block_stop",
    "message_delta",
    "message_start",
    "message_stop",
]


def test_the_npm_sdk_against_a_claude_backend(gateway: RunningGateway, upstreams: tuple[FakeAnthropic, Any]) -> None:
    fake_anthropic, _ = upstreams
    seen = run_anthropic_npm(gateway.url, "claude-sonnet", "claude-x-tool", "claude-x-429")
    assert seen["plain"] == "You said: Hello" and seen["plainType"] == "message"
    assert seen["plainModel"] == "claude-sonnet" and seen["plainStop"] == "end_turn"
    assert seen["plainUsage"]["input_tokens"] == USAGE["input_tokens"]
    assert seen["streamed"] == seen["finalText"] == "You said: Hello"
    assert seen["finalModel"] == "claude-sonnet" and seen["finalStop"] == "end_turn"
    assert seen["finalUsage"]["output_tokens"] == USAGE["output_tokens"]
    assert seen["eventTypes"] == STREAM_EVENTS
    assert seen["toolStop"] == "tool_use"
    assert seen["toolUses"] == [
        {"id": "toolu_01A", "name": "get_weather", "input": {"city": "Paris"}},
        {"id": "toolu_01B", "name": "get_weather", "input": {"city": "Tokyo", "n": [1, 2]}},
    ]
    assert seen["toolAnswer"] == "Tool results: toolu_01A=sunny; toolu_01B=sunny"
    # the assistant turn the SDK sent back reached the upstream as it came from it
    replayed = next(r for r in reversed(fake_anthropic.requests) if r.body.get("model") == "claude-x-tool")
    assert [b["type"] for b in replayed.body["messages"][1]["content"]] == ["text", "tool_use", "tool_use"]
    assert seen["error"] == {
        "status": 429,
        "name": "RateLimitError",
        "isRateLimit": True,
        "type": "rate_limit_error",
        "retryAfter": "7",
    }


def test_the_npm_sdk_against_an_openai_backend(gateway: RunningGateway, upstreams: tuple[Any, FakeOpenAI]) -> None:
    _, fake_openai = upstreams
    seen = run_anthropic_npm(gateway.url, "gpt-4o-typed", "gpt-4o-typed-tool", "gpt-4o-429")
    story = " ".join(STORY)
    assert seen["plain"] == story and seen["plainModel"] == "gpt-4o-typed" and seen["plainStop"] == "end_turn"
    assert seen["plainUsage"]["input_tokens"] == 12 and seen["plainUsage"]["output_tokens"] == len(STORY)
    assert seen["streamed"] == seen["finalText"] == story
    assert seen["finalStop"] == "end_turn" and seen["finalUsage"]["output_tokens"] == len(STORY)
    assert seen["eventTypes"] == STREAM_EVENTS
    assert seen["toolStop"] == "tool_use"
    assert seen["toolUses"] == [{"id": "call_fake1", "name": "get_weather", "input": {"city": "Paris"}}]
    assert seen["toolAnswer"] == "Tool said: sunny"
    sent = fake_openai.for_model("gpt-4o-typed-tool")[-1].body  # the tool_result turn, as OpenAI chat messages
    assert sent["messages"][-1] == {"role": "tool", "tool_call_id": "call_fake1", "content": "sunny"}
    assert sent["messages"][-2]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert seen["error"] == {
        "status": 429,
        "name": "RateLimitError",
        "isRateLimit": True,
        "type": "rate_limit_error",
        "retryAfter": "7",
    }
