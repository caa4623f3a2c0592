"""promptCaching (issue 21, prompt_caching.py): cache points where agentgateway puts them -- the system prompt (gated by
minTokens), the second-to-last message (cacheMessageOffset further back), the last tool -- in the bodies sent to
Anthropic, Bedrock Converse and Claude on Vertex AI. The real gateway and the openai SDK against the fakes, which
validate the bodies with the providers' own types (anthropic's, botocore's ParamValidator); plus the pure
functions: client markers count against the limit of four, and the client's objects are never edited."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from agentgateway.config import PromptCaching
from agentgateway.prompt_caching import anthropic_cache_points, converse_cache_points
from conftest import TEST_KEY, RunningGateway, openai_client, start_gateway
from fakes.anthropic_upstream import FakeAnthropic, start_fake_anthropic
from fakes.bedrock_upstream import FakeBedrock, start_fake_bedrock
from fakes.gemini_upstream import FakeGoogle, start_fake_google
from test_bedrock import ACCESS_KEY, AWS_ENV_VARS, CLAUDE, SECRET_KEY, SESSION_TOKEN, aws_env
from test_vertex import CLAUDE as VERTEX_CLAUDE
from test_vertex import adc_env

EPHEMERAL = {"type": "ephemeral"}
CACHE_POINT = {"cachePoint": {"type": "default"}}
SYSTEM = "You are a careful assistant who answers in one short sentence."  # 11 words: ~14 tokens by the estimate
TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
CONVERSATION: list[Any] = [
    {"role": "system", "content": SYSTEM},
    {"role": "user", "content": "Hello there"},
    {"role": "assistant", "content": "Hi! How can I help?"},
    {"role": "user", "content": "Tell me a story"},
]
CACHING = "promptCaching: {cacheSystem: true, cacheMessages: true, cacheTools: true, minTokens: 10}"
OFFSET = "promptCaching: {cacheTools: false, minTokens: 100, cacheMessageOffset: 1}"


@pytest.fixture(scope="module")
def anthropic_fake() -> Iterator[FakeAnthropic]:
    fake, stop = start_fake_anthropic(TEST_KEY)
    yield fake
    stop()


@pytest.fixture(scope="module")
def bedrock_fake() -> Iterator[FakeBedrock]:
    fake, stop = start_fake_bedrock(keys={ACCESS_KEY: (SECRET_KEY, SESSION_TOKEN)})
    yield fake
    stop()


@pytest.fixture(scope="module")
def google_fake() -> Iterator[FakeGoogle]:
    fake, stop = start_fake_google(TEST_KEY)
    yield fake
    stop()


@pytest.fixture(scope="module")
def gateway(
    anthropic_fake: FakeAnthropic,
    bedrock_fake: FakeBedrock,
    google_fake: FakeGoogle,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningGateway]:
    anthropic = f'provider: anthropic, params: {{apiKey: {TEST_KEY}, baseUrl: "{anthropic_fake.origin}"}}'
    bedrock = f'provider: bedrock, params: {{awsRegion: us-east-1, baseUrl: "{bedrock_fake.base_url}"'
    vertex = f'provider: vertex, params: {{model: "{VERTEX_CLAUDE}", vertexProject: test-project, vertexRegion: ' \
             f'us-central1, baseUrl: "{google_fake.origin}"}}'  # fmt: skip
    config = f"""
llm:
  models:
  - {{name: claude-cached, {anthropic}, {CACHING}}}
  - {{name: claude-offset, {anthropic}, {OFFSET}}}
  - {{name: claude-plain, {anthropic}}}
  - {{name: bedrock-cached, {bedrock}, model: "{CLAUDE}"}}, {CACHING}}}
  - {{name: bedrock-offset, {bedrock}, model: "{CLAUDE}"}}, {OFFSET}}}
  - {{name: bedrock-llama, {bedrock}, model: meta.llama3-70b-instruct-v1:0}}, {CACHING}}}
  - {{name: vertex-cached, {vertex}, {CACHING}}}
"""
    tmp = tmp_path_factory.mktemp("gw-caching")
    env = {
        **aws_env(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_SESSION_TOKEN=SESSION_TOKEN),
        **adc_env(tmp, google_fake.service_account_info()),
    }
    running = start_gateway(config, tmp, env=env, unset=AWS_ENV_VARS)
    yield running
    running.stop()


def _ask(gateway: RunningGateway, model: str, stream: bool = False) -> None:
    client = openai_client(gateway.url)
    if stream:
        list(client.chat.completions.create(model=model, messages=CONVERSATION, tools=[TOOL], stream=True))
    else:
        client.chat.completions.create(model=model, messages=CONVERSATION, tools=[TOOL])


def _marked(blocks: list[dict[str, Any]]) -> list[int]:
    return [i for i, block in enumerate(blocks) if block.get("cache_control") == EPHEMERAL]


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_gets_cache_control_on_system_history_and_tools(
    gateway: RunningGateway, anthropic_fake: FakeAnthropic, stream: bool
) -> None:
    _ask(gateway, "claude-cached", stream)
    body = anthropic_fake.last().body
    assert body["system"] == [{"type": "text", "text": SYSTEM, "cache_control": EPHEMERAL}]
    messages = body["messages"]
    assert [_marked(m["content"]) if isinstance(m["content"], list) else [] for m in messages] == [[], [0], []]
    assert messages[1]["role"] == "assistant"  # the second-to-last message: the history, not the current turn
    assert body["tools"][-1]["cache_control"] == EPHEMERAL


def test_min_tokens_gates_the_system_point_and_the_offset_walks_back(
    gateway: RunningGateway, anthropic_fake: FakeAnthropic
) -> None:
    _ask(gateway, "claude-offset")
    body = anthropic_fake.last().body
    assert not (isinstance(body["system"], list) and _marked(body["system"]))  # 14 estimated tokens < minTokens 100
    messages = body["messages"]
    assert _marked(messages[0]["content"]) == [0]  # one further back than the second-to-last
    assert all(not isinstance(m["content"], list) or not _marked(m["content"]) for m in messages[1:])
    assert "cache_control" not in body["tools"][-1]  # cacheTools: false


def test_without_prompt_caching_nothing_is_marked(gateway: RunningGateway, anthropic_fake: FakeAnthropic) -> None:
    _ask(gateway, "claude-plain")
    assert b"cache_control" not in repr(anthropic_fake.last().body).encode()


@pytest.mark.parametrize("stream", [False, True])
def test_bedrock_gets_cache_points_on_system_history_and_tools(
    gateway: RunningGateway, bedrock_fake: FakeBedrock, stream: bool
) -> None:
    _ask(gateway, "bedrock-cached", stream)
    body = bedrock_fake.last().body
    assert body["system"] == [{"text": SYSTEM}, CACHE_POINT]
    messages = body["messages"]
    assert [CACHE_POINT in m["content"] for m in messages] == [False, True, False]
    assert messages[1]["content"][-1] == CACHE_POINT
    assert body["toolConfig"]["tools"][-1] == CACHE_POINT


def test_bedrock_offset_and_min_tokens(gateway: RunningGateway, bedrock_fake: FakeBedrock) -> None:
    _ask(gateway, "bedrock-offset")
    body = bedrock_fake.last().body
    assert CACHE_POINT not in body["system"]
    assert [CACHE_POINT in m["content"] for m in body["messages"]] == [True, False, False]
    assert CACHE_POINT not in body["toolConfig"]["tools"]


def test_bedrock_models_that_do_not_cache_get_no_cache_points(
    gateway: RunningGateway, bedrock_fake: FakeBedrock
) -> None:
    _ask(gateway, "bedrock-llama")
    assert "cachePoint" not in repr(bedrock_fake.last().body)


def test_vertex_claude_gets_cache_control(gateway: RunningGateway, google_fake: FakeGoogle) -> None:
    _ask(gateway, "vertex-cached")
    body = google_fake.last().body
    assert body["system"][-1]["cache_control"] == EPHEMERAL
    assert _marked(body["messages"][1]["content"]) == [0]
    assert body["tools"][-1]["cache_control"] == EPHEMERAL


# -- the pure functions --------------------------------------------------------------------------------------------

ALL = PromptCaching(cache_tools=True, min_tokens=None)


def test_the_client_body_is_never_edited() -> None:
    body = {
        "system": [{"type": "text", "text": "sys"}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}]}, {"role": "user", "content": "b"}],
        "tools": [{"name": "t", "input_schema": {"type": "object"}}],
    }
    before = copy.deepcopy(body)
    out = anthropic_cache_points(body, ALL)
    assert body == before
    assert out["messages"][0]["content"][0]["cache_control"] == EPHEMERAL
    converse = {"system": [{"text": "sys"}], "messages": [{"role": "user", "content": [{"text": "a"}]}] * 2}
    before = copy.deepcopy(converse)
    out = converse_cache_points(converse, "anthropic.claude-3-5-haiku", ALL)
    assert converse == before and out["messages"][0]["content"][-1] == CACHE_POINT


def test_client_markers_count_against_the_limit_of_four_and_are_kept() -> None:
    mine = {"type": "ephemeral", "ttl": "1h"}
    body = {
        "system": [{"type": "text", "text": "a", "cache_control": mine}, {"type": "text", "text": "b"}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "x", "cache_control": mine}]},
            {"role": "assistant", "content": [{"type": "text", "text": "y", "cache_control": mine}]},
            {"role": "user", "content": "z"},
        ],
        "tools": [{"name": "t", "input_schema": {"type": "object"}}],
    }
    out = anthropic_cache_points(body, ALL)
    assert out["system"][1]["cache_control"] == EPHEMERAL  # the fourth point
    assert out["messages"][1]["content"][0]["cache_control"] == mine  # the client's own TTL kept
    assert "cache_control" not in out["tools"][0]  # no budget left


def test_fewer_than_two_messages_have_no_history_to_cache() -> None:
    body = {"messages": [{"role": "user", "content": "only"}]}
    assert anthropic_cache_points(body, ALL) is body
    assert anthropic_cache_points(body, None) is body
