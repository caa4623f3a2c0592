"""The anthropic provider end to end: the real openai clients → the gateway → a fake Messages API that validates
every body with the anthropic package's types and the API's rules, and answers in the exact wire format."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest
from conftest import TEST_KEY, RunningGateway, openai_client, run_openai_npm, start_gateway
from fakes.anthropic_upstream import NEW_VERSION, USAGE, FakeAnthropic, start_fake_anthropic

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAnthropic]:
    fake, stop = start_fake_anthropic(TEST_KEY)
    yield fake
    stop()


@pytest.fixture(scope="module")
def gateway(fake: FakeAnthropic, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    config = f"""
llm:
  models:
  - name: aliased
    provider: anthropic
    params: {{model: claude-real, apiKey: {TEST_KEY}, baseUrl: "{fake.origin}"}}
  - name: "claude-new-*"
    provider: anthropic
    params: {{apiKey: {TEST_KEY}, baseUrl: "{fake.origin}", anthropicVersion: "{NEW_VERSION}"}}
  - name: "claude-*"
    provider: anthropic
    params: {{apiKey: {TEST_KEY}, baseUrl: "{fake.origin}", maxTokens: 1000}}
  - name: "keyless-*"
    provider: anthropic
    params: {{baseUrl: "{fake.origin}"}}
"""
    running = start_gateway(config, tmp_path_factory.mktemp("gw-anthropic"))
    yield running
    running.stop()


def client(gateway: RunningGateway) -> openai.OpenAI:
    return openai_client(gateway.url)


# -- plain and streamed answers -------------------------------------------------------------------------------------


def test_plain_completion_maps_text_finish_usage_and_model(gateway: RunningGateway, fake: FakeAnthropic) -> None:
    completion = client(gateway).chat.completions.create(
        model="claude-sonnet", messages=[{"role": "user", "content": "Hello"}]
    )
    assert completion.choices[0].message.content == "You said: Hello"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "claude-sonnet"
    assert completion.id == "msg_01XFDUDYJgAACzvnptvVoYEL"
    usage = completion.usage
    assert usage is not None
    prompt = USAGE["input_tokens"] + USAGE["cache_read_input_tokens"] + USAGE["cache_creation_input_tokens"]
    assert (usage.prompt_tokens, usage.completion_tokens) == (prompt, USAGE["output_tokens"])
    assert usage.total_tokens == prompt + USAGE["output_tokens"]
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == USAGE["cache_read_input_tokens"]
    sent = fake.last()
    assert sent.headers["x-api-key"] == TEST_KEY
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.body == {
        "model": "claude-sonnet",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello"}]}],
        "max_tokens": 1000,
    }


def test_params_model_goes_upstream_and_the_client_sees_its_own(gateway: RunningGateway, fake: FakeAnthropic) -> None:
    completion = client(gateway).chat.completions.create(model="aliased", messages=[{"role": "user", "content": "x"}])
    assert fake.last().body["model"] == "claude-real"
    assert fake.last().body["max_tokens"] == 4096  # no params.maxTokens: the gateway's default
    assert completion.model == "aliased"


def test_stream_with_usage(gateway: RunningGateway) -> None:
    chunks = list(
        client(gateway).chat.completions.create(
            model="claude-sonnet",
            messages=[{"role": "user", "content": "a streamed hello"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "You said: a streamed hello"
    assert len({c.id for c in chunks}) == 1
    assert {c.model for c in chunks} == {"claude-sonnet"}
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["stop"]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == USAGE["output_tokens"]


def test_stream_without_usage_has_no_usage_chunk(gateway: RunningGateway) -> None:
    response = httpx.post(
        gateway.url + "/v1/chat/completions",
        json={"model": "claude-sonnet", "messages": [{"role": "user", "content": "hi"}], "stream": True},
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    frames = [f for f in response.text.split("\n\n") if f]
    assert frames[-1] == "data: [DONE]"
    assert all('"usage"' not in frame for frame in frames)
    assert all(frame.startswith("data: ") for frame in frames)


def test_async_client_plain_and_streamed(gateway: RunningGateway) -> None:
    async def run() -> tuple[str | None, str]:
        async with openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0) as aclient:
            plain = await aclient.chat.completions.create(
                model="claude-sonnet", messages=[{"role": "user", "content": "async"}]
            )
            stream = await aclient.chat.completions.create(
                model="claude-sonnet", messages=[{"role": "user", "content": "async stream"}], stream=True
            )
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
            return plain.choices[0].message.content, text

    plain, streamed = asyncio.run(run())
    assert plain == "You said: async"
    assert streamed == "You said: async stream"


@pytest.mark.parametrize(("model", "reason"), [("claude-max", "length"), ("claude-refusal", "content_filter")])
def test_stop_reasons(gateway: RunningGateway, model: str, reason: str) -> None:
    messages: Any = [{"role": "user", "content": "x"}]
    plain = client(gateway).chat.completions.create(model=model, messages=messages)
    assert plain.choices[0].finish_reason == reason
    chunks = list(client(gateway).chat.completions.create(model=model, messages=messages, stream=True))
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [reason]


# -- request translation --------------------------------------------------------------------------------------------


def test_request_mapping(gateway: RunningGateway, fake: FakeAnthropic) -> None:
    client(gateway).chat.completions.create(
        model="claude-sonnet",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
            {"role": "user", "content": "First."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": ""},
                    {"type": "text", "text": "Look:"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "low"}},
                ],
            },
            {"role": "assistant", "content": ""},
            {"role": "assistant", "content": "Seen."},
            {"role": "user", "content": "And?"},
        ],
        max_completion_tokens=300,
        temperature=1.7,
        top_p=0.9,
        stop=["END", " "],
        user="user-42",
        seed=7,
        presence_penalty=0.5,
    )
    body = fake.last().body
    assert body["system"] == [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Use metric units."}]
    assert body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "First."},
                {"type": "text", "text": "Look:"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
            ],
        },
        {"role": "assistant", "content": [{"type": "text", "text": "Seen."}]},
        {"role": "user", "content": [{"type": "text", "text": "And?"}]},
    ]
    assert body["max_tokens"] == 300
    assert body["temperature"] == 1.0
    assert body["top_p"] == 0.9
    assert body["stop_sequences"] == ["END"]
    assert body["metadata"] == {"user_id": "user-42"}
    assert not {"seed", "presence_penalty", "user", "stop", "n"} & set(body)


@pytest.mark.parametrize(
    ("tool_choice", "parallel", "expected"),
    [
        (None, None, None),
        ("auto", False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("none", None, {"type": "none"}),
        ("required", None, {"type": "any"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            False,
            {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
        ),
    ],
)
def test_tools_and_tool_choice(
    gateway: RunningGateway, fake: FakeAnthropic, tool_choice: Any, parallel: bool | None, expected: Any
) -> None:
    extra: dict[str, Any] = {}
    if tool_choice is not None:
        extra["tool_choice"] = tool_choice
    if parallel is not None:
        extra["parallel_tool_calls"] = parallel
    client(gateway).chat.completions.create(
        model="claude-sonnet", messages=[{"role": "user", "content": "weather?"}], tools=[WEATHER_TOOL], **extra
    )
    body = fake.last().body
    assert body["tools"] == [
        {
            "name": "get_weather",
            "input_schema": WEATHER_TOOL["function"]["parameters"],  # type: ignore[index]
            "description": "Weather for a city",
        }
    ]
    assert body.get("tool_choice") == expected


def test_structured_output_is_native(gateway: RunningGateway, fake: FakeAnthropic) -> None:
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "integer"}},
        "required": ["answer"],
        "additionalProperties": False,
    }
    completion = client(gateway).chat.completions.create(
        model="claude-json",
        messages=[{"role": "user", "content": "The answer?"}],
        response_format={"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}},
    )
    assert orjson.loads(completion.choices[0].message.content or "") == {"answer": 42}
    assert fake.last().body["output_config"] == {"format": {"type": "json_schema", "schema": schema}}


def test_reasoning_effort_becomes_a_thinking_budget(gateway: RunningGateway, fake: FakeAnthropic) -> None:
    client(gateway).chat.completions.create(
        model="claude-sonnet", messages=[{"role": "user", "content": "x"}], reasoning_effort="medium", temperature=0.2
    )
    body = fake.last().body
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 8192}
    assert body["max_tokens"] == 8192 + 1000  # the budget plus the configured answer allowance
    assert "temperature" not in body  # thinking requires the default
    client(gateway).chat.completions.create(
        model="claude-sonnet", messages=[{"role": "user", "content": "x"}], reasoning_effort="high", max_tokens=5000
    )
    assert fake.last().body["thinking"] == {"type": "enabled", "budget_tokens": 4999}
    assert fake.last().body["max_tokens"] == 5000


def test_newer_api_version_uses_bearer_effort_and_no_sampling(gateway: RunningGateway, fake: FakeAnthropic) -> None:
    client(gateway).chat.completions.create(
        model="claude-new-sonnet", messages=[{"role": "user", "content": "x"}], reasoning_effort="low", temperature=0.3
    )
    sent = fake.last()
    assert sent.headers["anthropic-version"] == NEW_VERSION
    assert sent.headers["authorization"] == f"Bearer {TEST_KEY}"
    assert "x-api-key" not in sent.headers
    assert sent.body["thinking"] == {"type": "adaptive"}
    assert sent.body["output_config"] == {"effort": "low"}
    assert "temperature" not in sent.body


def test_client_version_and_beta_headers_win(gateway: RunningGateway, fake: FakeAnthropic) -> None:
    client(gateway).chat.completions.create(
        model="claude-sonnet",
        messages=[{"role": "user", "content": "x"}],
        extra_headers={"anthropic-version": NEW_VERSION, "anthropic-beta": "context-1m-2025-08-07"},
    )
    sent = fake.last()
    assert sent.headers["anthropic-version"] == NEW_VERSION
    assert sent.headers["anthropic-beta"] == "context-1m-2025-08-07"
    assert sent.headers["authorization"] == f"Bearer {TEST_KEY}"


def test_without_a_configured_key_the_clients_key_is_used(gateway: RunningGateway, fake: FakeAnthropic) -> None:
    keyed = openai_client(gateway.url, TEST_KEY)
    with keyed:
        completion = keyed.chat.completions.create(model="keyless-haiku", messages=[{"role": "user", "content": "k"}])
    assert completion.choices[0].message.content == "You said: k"
    assert fake.last().headers["x-api-key"] == TEST_KEY
    with pytest.raises(openai.AuthenticationError):
        client(gateway).chat.completions.create(model="keyless-haiku", messages=[{"role": "user", "content": "k"}])


# -- tool calls and thinking over several turns ---------------------------------------------------------------------


def test_multi_turn_tool_calls_plain(gateway: RunningGateway, fake: FakeAnthropic) -> None:
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris and Tokyo?"}]
    first = client(gateway).chat.completions.create(model="claude-tool", messages=messages, tools=[WEATHER_TOOL])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Let me check both cities."
    calls = choice.message.tool_calls or []
    assert [(c.id, c.function.name, orjson.loads(c.function.arguments)) for c in calls] == [
        ("toolu_01A", "get_weather", {"city": "Paris"}),
        ("toolu_01B", "get_weather", {"city": "Tokyo", "n": [1, 2]}),
    ]
    messages.append(choice.message.model_dump(exclude_none=True))
    messages += [
        {"role": "tool", "tool_call_id": "toolu_01A", "content": "18C"},
        {"role": "tool", "tool_call_id": "toolu_01B", "content": [{"type": "text", "text": "25C"}]},
        {"role": "user", "content": "Thanks!"},
    ]
    second = client(gateway).chat.completions.create(model="claude-tool", messages=messages, tools=[WEATHER_TOOL])
    assert second.choices[0].message.content == "Tool results: toolu_01A=18C; toolu_01B=25C"
    turns = fake.last().body["messages"]
    assert turns[1]["content"][1:] == [
        {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "toolu_01B", "name": "get_weather", "input": {"city": "Tokyo", "n": [1, 2]}},
    ]
    assert turns[2] == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "18C"},
            {"type": "tool_result", "tool_use_id": "toolu_01B", "content": "25C"},
            {"type": "text", "text": "Thanks!"},
        ],
    }


def _collect_stream(stream: Any) -> dict[str, Any]:
    """Rebuild the assistant message from stream chunks the way OpenAI clients do (and keep thinking_blocks)."""
    message: dict[str, Any] = {"role": "assistant", "content": "", "reasoning_content": ""}
    calls: dict[int, dict[str, Any]] = {}
    blocks: list[Any] = []
    finish = None
    for chunk in stream:
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        message["content"] += delta.content or ""
        extra = delta.model_extra or {}
        message["reasoning_content"] += extra.get("reasoning_content") or ""
        blocks += extra.get("thinking_blocks") or []
        for call in delta.tool_calls or []:
            entry = calls.setdefault(
                call.index, {"id": None, "type": "function", "function": {"name": None, "arguments": ""}}
            )
            if call.id:
                entry["id"] = call.id
            if call.function and call.function.name:
                entry["function"]["name"] = call.function.name
            if call.function and call.function.arguments:
                entry["function"]["arguments"] += call.function.arguments
        finish = chunk.choices[0].finish_reason or finish
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    if blocks:
        message["thinking_blocks"] = blocks
    message["finish_reason"] = finish
    return message


def test_streamed_tool_calls_have_their_own_indexes(gateway: RunningGateway) -> None:
    message = _collect_stream(
        client(gateway).chat.completions.create(
            model="claude-tool", messages=[{"role": "user", "content": "Weather?"}], tools=[WEATHER_TOOL], stream=True
        )
    )
    assert message["finish_reason"] == "tool_calls"
    assert message["content"] == "Let me check both cities."
    assert [(c["id"], orjson.loads(c["function"]["arguments"])) for c in message["tool_calls"]] == [
        ("toolu_01A", {"city": "Paris"}),
        ("toolu_01B", {"city": "Tokyo", "n": [1, 2]}),
    ]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_thinking_with_tools_survives_the_round_trip(
    gateway: RunningGateway, fake: FakeAnthropic, stream: bool
) -> None:
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    request: dict[str, Any] = {"model": "claude-think-tool", "tools": [WEATHER_TOOL], "reasoning_effort": "low"}
    if stream:
        message = _collect_stream(client(gateway).chat.completions.create(messages=messages, stream=True, **request))
        message.pop("finish_reason")
    else:
        completion = client(gateway).chat.completions.create(messages=messages, **request)
        message = completion.choices[0].message.model_dump(exclude_none=True)
    assert message["reasoning_content"].startswith("The user wrote 1 messages")
    [block] = message["thinking_blocks"]
    assert block["type"] == "thinking"
    assert block["thinking"] == message["reasoning_content"]
    assert block["signature"].startswith("sig-")
    # As users write it: the SDK's message object goes back as it is (its extra fields included).
    messages.append(message if stream else completion.choices[0].message)
    messages += [{"role": "tool", "tool_call_id": call["id"], "content": "sunny"} for call in message["tool_calls"]]
    # The fake rejects the turn, as Anthropic does, unless the signed thinking block comes back first and unchanged.
    follow_up = client(gateway).chat.completions.create(messages=messages, **request)
    assert follow_up.choices[0].message.content == "Tool results: toolu_01A=sunny; toolu_01B=sunny"
    assert fake.last().body["messages"][1]["content"][0] == {
        "type": "thinking",
        "thinking": block["thinking"],
        "signature": block["signature"],
    }


def test_reasoning_sent_back_in_the_flat_fields_of_other_gateways_is_restored(
    gateway: RunningGateway, fake: FakeAnthropic
) -> None:
    # agentgateway's and LiteLLM's convention: reasoning_content + reasoning_signature instead of thinking_blocks.
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    request: dict[str, Any] = {"model": "claude-think-tool", "tools": [WEATHER_TOOL], "reasoning_effort": "low"}
    message = client(gateway).chat.completions.create(messages=messages, **request).choices[0].message
    [block] = message.model_dump()["thinking_blocks"]
    assistant = {
        "role": "assistant",
        "content": message.content,
        "tool_calls": [call.model_dump() for call in message.tool_calls or []],
        "reasoning_content": block["thinking"],
        "reasoning_signature": block["signature"],
    }
    messages.append(assistant)
    messages += [{"role": "tool", "tool_call_id": call["id"], "content": "sunny"} for call in assistant["tool_calls"]]
    # The fake, as Anthropic, refuses the turn unless the signed thinking block comes back first and unchanged.
    follow_up = client(gateway).chat.completions.create(messages=messages, **request)
    assert follow_up.choices[0].message.content == "Tool results: toolu_01A=sunny; toolu_01B=sunny"
    assert fake.last().body["messages"][1]["content"][0] == {
        "type": "thinking",
        "thinking": block["thinking"],
        "signature": block["signature"],
    }


def test_a_dropped_thinking_block_is_rejected_upstream_and_reported(gateway: RunningGateway) -> None:
    """The check the round-trip test relies on is real: without thinking_blocks the upstream says 400."""
    messages: list[Any] = [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "toolu_01A", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_01A", "content": "sunny"},
    ]
    with pytest.raises(openai.BadRequestError) as caught:
        client(gateway).chat.completions.create(
            model="claude-think-tool", messages=messages, tools=[WEATHER_TOOL], reasoning_effort="low"
        )
    assert "Expected `thinking` or `redacted_thinking`" in str(caught.value)


# -- recorded capture ------------------------------------------------------------------------------------------------


def test_recorded_stream_replays_into_openai_chunks(gateway: RunningGateway) -> None:
    chunks = list(
        client(gateway).chat.completions.create(
            model="claude-fixture",
            messages=[{"role": "user", "content": "Weather in Paris?"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    message = _collect_stream(iter(chunks))
    assert message["content"] == "I'll check the current weather in Paris for you."
    [call] = message["tool_calls"]
    assert call["id"] == "toolu_01NRLabsLyVHZPKxbKvkfSMn"
    assert call["function"]["name"] == "get_weather"
    assert orjson.loads(call["function"]["arguments"]) == {"location": "Paris"}
    assert message["finish_reason"] == "tool_calls"
    usage = chunks[-1].usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (377, 65, 442)
    assert {c.id for c in chunks} == {"msg_019Q1hrJbZG26Fb9BQhrkHEr"}


# -- errors ----------------------------------------------------------------------------------------------------------


def test_rate_limit_keeps_status_retry_after_and_message(gateway: RunningGateway) -> None:
    response = httpx.post(
        gateway.url + "/v1/chat/completions",
        json={"model": "claude-429", "messages": [{"role": "user", "content": "x"}]},
    )
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert response.headers["anthropic-ratelimit-requests-remaining"] == "0"
    error = response.json()["error"]
    assert error["message"] == "Number of requests has exceeded your rate limit"
    assert error["type"] == "rate_limit_error"
    with pytest.raises(openai.RateLimitError):
        client(gateway).chat.completions.create(
            model="claude-429", messages=[{"role": "user", "content": "x"}], stream=True
        )


@pytest.mark.parametrize(
    "model", ["claude-overloaded", "claude-200-error"], ids=["status-529", "status-200-error-body"]
)
def test_overloaded_keeps_529(gateway: RunningGateway, model: str) -> None:
    """Also when the upstream says 200 but its body is the error: the client gets the status the error stands for."""
    with pytest.raises(openai.InternalServerError) as caught:
        client(gateway).chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}])
    assert caught.value.status_code == 529
    assert "Overloaded" in str(caught.value)


def test_error_event_mid_stream_reaches_the_client(gateway: RunningGateway) -> None:
    stream = client(gateway).chat.completions.create(
        model="claude-overloaded", messages=[{"role": "user", "content": "a long answer"}], stream=True
    )
    received = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            received.append(chunk)
    assert "Overloaded" in str(caught.value)
    assert received  # the text before the error arrived first


@pytest.mark.parametrize(
    ("messages", "extra", "param"),
    [
        (
            [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}}]}],
            {},
            "messages[0].content[0].image_url.url",
        ),
        (
            [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/tiff;base64,AAAA"}}]}],
            {},
            "messages[0].content[0].image_url.url",
        ),
        (
            [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}]}],
            {},
            "messages[0].content[0].type",
        ),
        ([{"role": "user", "content": "x"}], {"n": 9}, "n"),
        ([{"role": "system", "content": "only a system prompt"}], {}, "messages"),
        (
            [
                {"role": "user", "content": "x"},
                {
                    "role": "assistant",
                    "tool_calls": [{"id": "a", "type": "function", "function": {"name": "f", "arguments": "{oops"}}],
                },
            ],
            {},
            "messages[1].tool_calls[0].function.arguments",
        ),
        ([{"role": "tool", "content": "x"}], {}, "messages[0].tool_call_id"),
        ([{"role": "user", "content": "x"}], {"reasoning_effort": "extreme"}, "reasoning_effort"),
        (
            [{"role": "user", "content": "x"}],
            {"reasoning_effort": "low", "tools": [WEATHER_TOOL], "tool_choice": "required"},
            "reasoning_effort",
        ),
        (
            [{"role": "user", "content": "x"}],
            {"tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "sometimes"},
            "tool_choice",
        ),
    ],
)
def test_bad_requests_are_400_naming_the_field(
    gateway: RunningGateway, messages: list[Any], extra: dict[str, Any], param: str
) -> None:
    response = httpx.post(
        gateway.url + "/v1/chat/completions", json={"model": "claude-sonnet", "messages": messages, **extra}
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


def test_pdf_file_becomes_a_document(gateway: RunningGateway, fake: FakeAnthropic) -> None:
    pdf = base64.b64encode(b"%PDF-1.4 tiny").decode()
    client(gateway).chat.completions.create(
        model="claude-sonnet",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "file", "file": {"filename": "a.pdf", "file_data": f"data:application/pdf;base64,{pdf}"}},
                    {"type": "text", "text": "Summarise"},
                ],
            }
        ],
    )
    assert fake.last().body["messages"][0]["content"][0] == {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": pdf},
    }


# -- upstream faults ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def impatient(fake: FakeAnthropic, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    config = f"""
llm:
  models:
  - {{name: "claude-*", provider: anthropic, params: {{apiKey: {TEST_KEY}, baseUrl: "{fake.origin}"}}}}
  - {{name: "refused-*", provider: anthropic, params: {{apiKey: {TEST_KEY}, baseUrl: "http://127.0.0.1:9"}}}}
  timeouts: {{connect: 1, firstByte: 2, idle: 1}}
"""
    running = start_gateway(config, tmp_path_factory.mktemp("gw-anthropic-impatient"))
    yield running
    running.stop()


def _stream_error(gateway: RunningGateway, model: str) -> tuple[str, openai.APIError]:
    """The text a client received before the stream failed, and the error the SDK raised."""
    text = ""
    stream = client(gateway).chat.completions.create(
        model=model, messages=[{"role": "user", "content": "a fairly long question"}], stream=True
    )
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            text += (chunk.choices[0].delta.content or "") if chunk.choices else ""
    return text, caught.value


@pytest.mark.parametrize(
    ("model", "fragment"),
    [
        ("claude-truncated", "ended before the response was complete"),
        ("claude-garbage", "could not be read"),
        ("claude-reset", ""),
        ("claude-stall", ""),
    ],
)
def test_stream_faults_end_with_an_error_event(impatient: RunningGateway, model: str, fragment: str) -> None:
    text, error = _stream_error(impatient, model)
    assert text  # what arrived before the fault reached the client
    assert "You said: a fairly long question".startswith(text)
    assert fragment in str(error)
    # and the gateway goes on serving
    assert (
        client(impatient)
        .chat.completions.create(model="claude-sonnet", messages=[{"role": "user", "content": "ok?"}])
        .choices[0]
        .message.content
        == "You said: ok?"
    )


def test_unreachable_upstream_is_502(impatient: RunningGateway) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        client(impatient).chat.completions.create(model="refused-x", messages=[{"role": "user", "content": "x"}])
    assert caught.value.status_code == 502


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_very_large_answers_come_through_whole(gateway: RunningGateway, stream: bool) -> None:
    messages: Any = [{"role": "user", "content": "x"}]
    if stream:
        text = "".join(
            c.choices[0].delta.content or ""
            for c in client(gateway).chat.completions.create(model="claude-big", messages=messages, stream=True)
            if c.choices
        )
    else:
        text = client(gateway).chat.completions.create(model="claude-big", messages=messages).choices[0].message.content
    assert text == "x" * (4 << 20)


def test_openai_npm_package(gateway: RunningGateway) -> None:
    seen = run_openai_npm(gateway.url, "claude-sonnet", "claude-tool")
    assert seen["plain"] == seen["streamed"] == "You said: Tell me a story."
    assert seen["streamModels"] == ["claude-sonnet"]
    assert seen["finishReason"] == "stop"
    assert seen["usage"]["prompt_tokens"] == 29
    assert seen["toolCalls"] == [
        {"id": "toolu_01A", "name": "get_weather", "arguments": {"city": "Paris"}},
        {"id": "toolu_01B", "name": "get_weather", "arguments": {"city": "Tokyo", "n": [1, 2]}},
    ]
