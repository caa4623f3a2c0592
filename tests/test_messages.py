"""The Anthropic Messages API in (issue 19): the real ``anthropic`` SDK (sync, async, the ``.stream()`` helper and
``get_final_message()``) against the real gateway, with each provider behind it. The fakes validate what the
gateway sends with the providers' own types: the anthropic package's for Anthropic, Vertex Claude and Bedrock
InvokeModel bodies, botocore's for Converse and CountTokens, google-genai's for Gemini, openai's for OpenAI."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx
import orjson
import pytest
from conftest import TEST_KEY, RunningGateway, start_gateway
from fakes.anthropic_upstream import USAGE, FakeAnthropic, signature_of, start_fake_anthropic
from fakes.bedrock_upstream import FakeBedrock, start_fake_bedrock
from fakes.gemini_upstream import FakeGoogle, start_fake_google
from fakes.openai_upstream import STORY, FakeOpenAI, start_fake_openai
from test_vertex import adc_env

BEDROCK_KEY = "ABSKbedrock-api-key-for-messages"
VERTEX_CLAUDE = "claude-sonnet-4-5@20250929"
WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
PROJECT_PATH = "/v1/projects/test-project/locations/us-central1/publishers"


@dataclass
class Upstreams:
    anthropic: FakeAnthropic
    google: FakeGoogle
    bedrock: FakeBedrock
    openai: FakeOpenAI


@pytest.fixture(scope="module")
def fakes() -> Iterator[Upstreams]:
    fake_anthropic, stop_anthropic = start_fake_anthropic(TEST_KEY)
    fake_google, stop_google = start_fake_google(TEST_KEY)
    fake_bedrock, stop_bedrock = start_fake_bedrock(api_keys={BEDROCK_KEY})
    fake_openai, stop_openai = start_fake_openai()
    yield Upstreams(fake_anthropic, fake_google, fake_bedrock, fake_openai)
    for stop in (stop_openai, stop_bedrock, stop_google, stop_anthropic):
        stop()


def config(fakes: Upstreams) -> str:
    google = fakes.google.origin
    vertex = f'vertexProject: test-project, vertexRegion: us-central1, baseUrl: "{google}"'
    return f"""
llm:
  models:
  - name: "claude-wrong-key"
    provider: anthropic
    params: {{apiKey: not-the-key, baseUrl: "{fakes.anthropic.origin}"}}
  - name: "claude-*"
    provider: anthropic
    params: {{apiKey: {TEST_KEY}, baseUrl: "{fakes.anthropic.origin}"}}
  - name: failing-primary
    provider: anthropic
    params: {{model: claude-down-529, apiKey: {TEST_KEY}, baseUrl: "{fakes.anthropic.origin}"}}
  - name: "vertex-claude*"
    provider: vertex
    params: {{model: "{VERTEX_CLAUDE}", {vertex}}}
  - name: "vertex-gemini"
    provider: vertex
    params: {{model: gemini-2.5-flash, {vertex}}}
  - name: "gemini-*"
    provider: gemini
    params: {{apiKey: {TEST_KEY}, baseUrl: "{google}"}}
  - name: "*anthropic.claude*"
    provider: bedrock
    params: {{apiKey: "{BEDROCK_KEY}", awsRegion: us-east-1, baseUrl: "{fakes.bedrock.base_url}"}}
  - name: "amazon.nova-*"
    provider: bedrock
    params: {{apiKey: "{BEDROCK_KEY}", awsRegion: us-east-1, baseUrl: "{fakes.bedrock.base_url}"}}
  - name: "gpt-*"
    provider: openAI
    params: {{apiKey: {TEST_KEY}, baseUrl: "{fakes.openai.base_url}"}}
  - name: "local-*"
    provider: {{custom: {{formats: [{{type: completions}}]}}}}
    params: {{baseUrl: "{fakes.openai.base_url}"}}
  virtualModels:
  - name: resilient
    routing:
      failover:
        targets: [{{model: failing-primary, priority: 0}}, {{model: gpt-4o-typed, priority: 1}}]
"""


@pytest.fixture(scope="module")
def gateway(fakes: Upstreams, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    tmp = tmp_path_factory.mktemp("gw-messages")
    running = start_gateway(config(fakes), tmp, env=adc_env(tmp, fakes.google.service_account_info()))
    yield running
    running.stop()


@pytest.fixture
def client(gateway: RunningGateway) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gateway.url, api_key="sk-client", max_retries=0) as sdk:
        yield sdk


def hello(text: str = "Hello") -> list[Any]:
    return [{"role": "user", "content": text}]


# -- Anthropic: native, the client's body passed on ------------------------------------------------------------------


def test_plain_message_through_the_sdk(client: anthropic.Anthropic, fakes: Upstreams) -> None:
    message = client.messages.create(model="claude-sonnet", max_tokens=100, messages=hello())
    assert message.content[0].type == "text" and message.content[0].text == "You said: Hello"
    assert message.model == "claude-sonnet"
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens == USAGE["input_tokens"]
    assert message.usage.cache_read_input_tokens == USAGE["cache_read_input_tokens"]
    sent = fakes.anthropic.last()
    assert sent.body == {"model": "claude-sonnet", "max_tokens": 100, "messages": hello()}
    assert sent.headers["anthropic-version"] == "2026-10-21"


def test_anthropic_beta_header_and_cache_control_pass_on(client: anthropic.Anthropic, fakes: Upstreams) -> None:
    system = [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}]
    client.messages.create(
        model="claude-sonnet",
        max_tokens=50,
        system=system,  # type: ignore[arg-type]
        messages=hello(),
        extra_headers={"anthropic-beta": "context-management-2025-06-27"},
    )
    sent = fakes.anthropic.last()
    assert sent.body["system"] == system
    assert sent.headers["anthropic-beta"] == "context-management-2025-06-27"


def test_stream_helper_and_final_message(client: anthropic.Anthropic) -> None:
    with client.messages.stream(model="claude-sonnet", max_tokens=100, messages=hello("Hi there")) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "You said: Hi there"
    assert final.content[0].type == "text" and final.content[0].text == text
    assert final.model == "claude-sonnet"
    assert final.usage.output_tokens == USAGE["output_tokens"]


def test_async_client_plain_and_streamed(gateway: RunningGateway) -> None:
    async def run() -> tuple[str, str]:
        async with anthropic.AsyncAnthropic(base_url=gateway.url, api_key="sk", max_retries=0) as sdk:
            message = await sdk.messages.create(model="claude-a", max_tokens=10, messages=hello("async"))
            async with sdk.messages.stream(model="claude-a", max_tokens=10, messages=hello("streamed")) as stream:
                final = await stream.get_final_message()
        first, second = message.content[0], final.content[0]
        assert first.type == "text" and second.type == "text"
        return first.text, second.text

    assert asyncio.run(run()) == ("You said: async", "You said: streamed")


def _tool_turns(client: anthropic.Anthropic, model: str, stream: bool) -> tuple[Any, Any]:
    thinking: Any = {"type": "enabled", "budget_tokens": 2048}
    messages: list[Any] = hello("Weather in Paris and Tokyo?")
    kwargs: dict[str, Any] = {"model": model, "max_tokens": 4096, "tools": [WEATHER], "thinking": thinking}
    if stream:
        with client.messages.stream(messages=messages, **kwargs) as events:
            first = events.get_final_message()
    else:
        first = client.messages.create(messages=messages, **kwargs)
    assert first.stop_reason == "tool_use"
    uses = [block for block in first.content if block.type == "tool_use"]
    messages.append({"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in first.content]})
    messages.append(
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": uses[0].id, "content": "18C"},
                {"type": "tool_result", "tool_use_id": uses[1].id, "content": "no data", "is_error": True},
            ],
        }
    )
    second = client.messages.create(messages=messages, **kwargs)
    return first, second


@pytest.mark.parametrize("stream", [False, True])
def test_tool_use_and_thinking_replay_keep_the_signature(
    client: anthropic.Anthropic, fakes: Upstreams, stream: bool
) -> None:
    first, second = _tool_turns(client, "claude-x-think-tool", stream)
    thinking = first.content[0]
    assert thinking.type == "thinking" and thinking.signature == signature_of(thinking.thinking)
    assert [b.type for b in first.content] == ["thinking", "text", "tool_use", "tool_use"]
    assert first.content[3].input == {"city": "Tokyo", "n": [1, 2]}
    assert second.content[-1].type == "text" and "toolu_01A=18C" in second.content[-1].text
    replayed = fakes.anthropic.last().body["messages"][1]["content"][0]
    assert replayed == {"type": "thinking", "thinking": thinking.thinking, "signature": thinking.signature}


# -- errors in Anthropic's shape --------------------------------------------------------------------------------------


def test_a_missing_max_tokens_is_a_400_naming_it(client: anthropic.Anthropic, gateway: RunningGateway) -> None:
    response = httpx.post(gateway.url + "/v1/messages", json={"model": "claude-a", "messages": hello()})
    assert response.status_code == 400
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in body["error"]["message"]
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(model="claude-a", max_tokens=0, messages=hello())


def test_upstream_errors_reach_the_sdk_as_its_exception_classes(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.AuthenticationError) as refused:
        client.messages.create(model="claude-wrong-key", max_tokens=10, messages=hello())
    assert refused.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    with pytest.raises(anthropic.NotFoundError) as unknown:
        client.messages.create(model="no-such-model", max_tokens=10, messages=hello())
    assert unknown.value.body["type"] == "error"  # type: ignore[index]
    with pytest.raises(anthropic.RateLimitError) as limited:
        client.messages.create(model="claude-x-429", max_tokens=10, messages=hello())
    assert limited.value.response.headers["retry-after"] == "7"
    with pytest.raises(anthropic.OverloadedError) as overloaded:
        client.messages.create(model="claude-x-529", max_tokens=10, messages=hello())
    assert overloaded.value.status_code == 529
    assert overloaded.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]


def test_an_unavailable_upstream_keeps_503_and_reads_as_overloaded(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.APIStatusError) as unavailable:
        client.messages.create(model="us.anthropic.claude-sonnet-unavailable", max_tokens=10, messages=hello())
    assert unavailable.value.status_code == 503
    assert unavailable.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]


def test_an_error_mid_stream_is_an_anthropic_error_event(client: anthropic.Anthropic) -> None:
    with (
        pytest.raises(anthropic.APIStatusError) as failed,
        client.messages.stream(model="claude-x-overloaded", max_tokens=10, messages=hello()) as stream,
    ):
        for _ in stream:
            pass
    assert "Overloaded" in str(failed.value)


def test_failover_through_a_virtual_model(client: anthropic.Anthropic, fakes: Upstreams) -> None:
    before = fakes.anthropic.count("claude-down-529")
    message = client.messages.create(model="resilient", max_tokens=50, messages=hello())
    assert fakes.anthropic.count("claude-down-529") == before + 1
    assert message.content[0].type == "text" and message.content[0].text == " ".join(STORY)
    assert message.model == "resilient"


def test_messages_without_v1_and_x_api_key(gateway: RunningGateway, fakes: Upstreams) -> None:
    response = httpx.post(
        gateway.url + "/messages",
        json={"model": "claude-b", "max_tokens": 5, "messages": hello()},
        headers={"x-api-key": "client-key", "anthropic-version": "2023-06-01"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["type"] == "message"
    assert fakes.anthropic.last().headers["anthropic-version"] == "2023-06-01"


# -- Claude on Vertex AI and on Bedrock -----------------------------------------------------------------------------


def test_vertex_claude_plain_and_streamed(client: anthropic.Anthropic, fakes: Upstreams) -> None:
    message = client.messages.create(model="vertex-claude", max_tokens=64, messages=hello())
    assert message.content[0].type == "text" and message.content[0].text == "You said: Hello"
    assert message.model == "vertex-claude"
    sent = fakes.google.last()
    assert sent.path == f"{PROJECT_PATH}/anthropic/models/{VERTEX_CLAUDE}:rawPredict"
    assert "model" not in sent.body and sent.body["anthropic_version"] == "vertex-2023-10-16"
    with client.messages.stream(model="vertex-claude", max_tokens=64, messages=hello("again")) as stream:
        assert stream.get_final_message().content[0].text == "You said: again"  # type: ignore[union-attr]
    assert fakes.google.last().path.endswith(":streamRawPredict")


@pytest.mark.parametrize("stream", [False, True])
def test_bedrock_claude_through_invoke_model(client: anthropic.Anthropic, fakes: Upstreams, stream: bool) -> None:
    model = "us.anthropic.claude-sonnet-4-5-think-tool"
    first, second = _tool_turns(client, model, stream)
    assert first.model == model
    thinking = first.content[0]
    assert thinking.type == "thinking" and thinking.signature == signature_of(thinking.thinking)
    assert second.content[-1].type == "text" and "Tool results" in second.content[-1].text
    sent = fakes.bedrock.last()
    assert sent.raw_path.endswith("/invoke")
    assert sent.body["anthropic_version"] == "bedrock-2023-05-31" and "model" not in sent.body
    assert sent.body["messages"][1]["content"][0]["signature"] == thinking.signature
    if stream:
        assert any(r.raw_path.endswith("/invoke-with-response-stream") for r in fakes.bedrock.requests[-2:])


def test_bedrock_claude_gets_betas_in_the_body(client: anthropic.Anthropic, fakes: Upstreams) -> None:
    client.messages.create(
        model="us.anthropic.claude-haiku",
        max_tokens=5,
        messages=hello(),
        extra_headers={"anthropic-beta": "a-beta, b-beta"},
    )
    assert fakes.bedrock.last().body["anthropic_beta"] == ["a-beta", "b-beta"]


# -- other backends: built from the shared model --------------------------------------------------------------------


def test_openai_backend_plain_streamed_and_tools(client: anthropic.Anthropic, fakes: Upstreams) -> None:
    message = client.messages.create(
        model="gpt-4o-typed", max_tokens=50, system="Be brief.", messages=hello(), metadata={"user_id": "u1"}
    )
    assert message.content[0].type == "text" and message.content[0].text == " ".join(STORY)
    assert message.usage.input_tokens == 12 and message.usage.output_tokens == len(STORY)
    sent = fakes.openai.last().body
    assert sent["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]
    assert sent["max_completion_tokens"] == 50 and sent["user"] == "u1"
    with client.messages.stream(model="gpt-4o-typed", max_tokens=50, messages=hello()) as stream:
        assert "".join(stream.text_stream) == " ".join(STORY)
        assert stream.get_final_message().usage.output_tokens == len(STORY)
    for streamed in (False, True):
        kwargs: dict[str, Any] = {
            "model": "gpt-4o-typed-tool",
            "max_tokens": 50,
            "tools": [WEATHER],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
            "messages": hello("Weather?"),
        }
        if streamed:
            with client.messages.stream(**kwargs) as events:
                first = events.get_final_message()
        else:
            first = client.messages.create(**kwargs)
        use = first.content[-1]
        assert first.stop_reason == "tool_use" and use.type == "tool_use"
        assert use.name == "get_weather" and use.input == {"city": "Paris"} and use.id == "call_fake1"
    sent = fakes.openai.last().body
    assert sent["tool_choice"] == "required" and sent["parallel_tool_calls"] is False
    assert sent["tools"][0]["function"]["parameters"] == WEATHER["input_schema"]
    messages: list[Any] = [
        *hello("Weather?"),
        {"role": "assistant", "content": [use.model_dump(exclude_none=True)]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}]},
    ]
    answer = client.messages.create(model="gpt-4o-typed-tool", max_tokens=50, tools=[WEATHER], messages=messages)
    assert answer.content[0].type == "text" and answer.content[0].text == "Tool said: sunny"


def test_server_tools_are_a_400_naming_the_field_on_other_backends(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as refused:
        client.messages.create(
            model="gpt-4o",
            max_tokens=10,
            messages=hello(),
            tools=[{"type": "web_search_20250305", "name": "web_search"}],  # type: ignore[list-item]
        )
    assert "tools.0.type" in str(refused.value)


def test_gemini_backend_plain_and_streamed(client: anthropic.Anthropic, fakes: Upstreams) -> None:
    message = client.messages.create(model="gemini-2.5-flash", max_tokens=50, system="Be brief.", messages=hello())
    assert message.content[-1].type == "text" and message.content[-1].text == "You said: Hello"
    sent = fakes.google.last().body
    assert sent["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert sent["generationConfig"]["maxOutputTokens"] == 50
    with client.messages.stream(model="vertex-gemini", max_tokens=50, messages=hello("v")) as stream:
        final = stream.get_final_message()
    assert final.content[-1].type == "text" and final.content[-1].text == "You said: v"
    assert final.model == "vertex-gemini"


def test_bedrock_converse_backend(client: anthropic.Anthropic, fakes: Upstreams) -> None:
    message = client.messages.create(model="amazon.nova-pro-v1:0", max_tokens=40, messages=hello())
    assert message.content[0].type == "text" and message.content[0].text == "Hello from Bedrock"
    sent = fakes.bedrock.last()
    assert sent.raw_path.endswith("/converse")
    assert sent.body["inferenceConfig"] == {"maxTokens": 40}


# -- count_tokens ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "path_end"),
    [
        ("claude-sonnet", "/v1/messages/count_tokens"),
        ("vertex-claude", "/anthropic/models/count-tokens:rawPredict"),
        ("vertex-gemini", "/google/models/gemini-2.5-flash:countTokens"),
        ("gemini-2.5-flash", "/models/gemini-2.5-flash:countTokens"),
        ("us.anthropic.claude-sonnet-4-5", "/count-tokens"),
        ("amazon.nova-pro-v1:0", "/count-tokens"),
        ("gpt-4o", "/v1/responses/input_tokens"),
    ],
)
def test_count_tokens_natively(client: anthropic.Anthropic, fakes: Upstreams, model: str, path_end: str) -> None:
    counted = client.messages.count_tokens(model=model, system="Be brief.", messages=hello("Count me"), tools=[WEATHER])
    assert counted.input_tokens > 0
    every = [*fakes.anthropic.requests, *fakes.google.requests, *fakes.bedrock.requests, *fakes.openai.requests]
    assert any(getattr(r, "raw_path", r.path).endswith(path_end) for r in every)


def test_count_tokens_on_a_compatible_server_is_the_documented_estimate(gateway: RunningGateway) -> None:
    body = {"model": "local-llama", "messages": hello("Count me")}
    response = httpx.post(gateway.url + "/v1/messages/count_tokens", json=body)
    assert response.status_code == 200
    assert response.headers["x-agentgateway-token-count"] == "estimate"
    assert response.json() == {"input_tokens": len(orjson.dumps(body["messages"])) // 4}


# -- inbound keys: x-api-key and Authorization ------------------------------------------------------------------------

GATEWAY_KEY = "sk-gateway-team-key-0123456789"


@pytest.fixture(scope="module")
def keyed_gateway(fakes: Upstreams, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    config = f"""
llm:
  policies:
    apiKey:
      keys: [{{key: "{GATEWAY_KEY}", metadata: {{name: team}}, allowedModels: ["claude-*"]}}]
  models:
  - name: "*"
    provider: anthropic
    params: {{apiKey: {TEST_KEY}, baseUrl: "{fakes.anthropic.origin}"}}
"""
    running = start_gateway(config, tmp_path_factory.mktemp("gw-messages-keys"))
    yield running
    running.stop()


def test_inbound_keys_from_x_api_key_or_authorization(keyed_gateway: RunningGateway, fakes: Upstreams) -> None:
    with anthropic.Anthropic(base_url=keyed_gateway.url, api_key=GATEWAY_KEY, max_retries=0) as sdk:
        message = sdk.messages.create(model="claude-k", max_tokens=5, messages=hello())  # Authorization: Bearer
        assert message.content[0].type == "text"
        with pytest.raises(anthropic.PermissionDeniedError) as denied:
            sdk.messages.create(model="gpt-4o", max_tokens=5, messages=hello())
        assert denied.value.body["error"]["type"] == "permission_error"  # type: ignore[index]
    sent = fakes.anthropic.last().headers
    assert sent["authorization"] == f"Bearer {TEST_KEY}"  # the gateway's key went upstream, not the client's
    response = httpx.post(
        keyed_gateway.url + "/v1/messages",
        json={"model": "claude-k", "max_tokens": 5, "messages": hello()},
        headers={"x-api-key": GATEWAY_KEY},
    )
    assert response.status_code == 200, response.text
    with (
        anthropic.Anthropic(base_url=keyed_gateway.url, api_key="sk-wrong", max_retries=0) as sdk,
        pytest.raises(anthropic.AuthenticationError) as refused,
    ):
        sdk.messages.count_tokens(model="claude-k", messages=hello())
    assert refused.value.body["type"] == "error"  # type: ignore[index]
