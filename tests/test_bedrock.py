"""Bedrock (Converse / ConverseStream) end to end: the real openai clients -> the real gateway -> a fake Bedrock that
recomputes every SigV4 signature with botocore, validates every body with botocore's ParamValidator against the
bedrock-runtime input shapes, and answers with real binary event stream frames (tests/fakes/bedrock_upstream.py)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from botocore.eventstream import EventStreamBuffer
from conftest import RunningGateway, openai_client, run_openai_npm, start_gateway
from fakes.bedrock_upstream import FIXTURES, FakeBedrock, event, exception, start_fake_bedrock

ACCESS_KEY = "AKIDTESTBEDROCK"
SECRET_KEY = "bedrock/secret+key/0123456789abcdefghij"
SESSION_TOKEN = "FwoGZXIvYXdzEBYaDH+session/token=="
API_KEY = "ABSKbedrock-api-key-for-tests"
CLAUDE = "us.anthropic.claude-3-7-sonnet-20250219-v1:0"
ARN = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123"
AWS_ENV_VARS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_BEARER_TOKEN_BEDROCK",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONFIG_FILE",
    "AWS_ROLE_SESSION_NAME",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_STS",
    "AWS_ENDPOINT_URL_BEDROCK_RUNTIME",
)
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 32).decode()


def config(base_url: str) -> str:
    return f"""
llm:
  models:
  - name: claude
    provider: bedrock
    params: {{model: "{CLAUDE}", awsRegion: us-east-1, baseUrl: "{base_url}"}}
  - name: arn-model
    provider: bedrock
    params: {{model: "{ARN}", awsRegion: us-east-1, baseUrl: "{base_url}"}}
  - name: "key-*"
    provider: bedrock
    params: {{apiKey: "{API_KEY}", awsRegion: us-east-1, baseUrl: "{base_url}"}}
  - name: "*"
    provider: bedrock
    params: {{awsRegion: us-east-1, baseUrl: "{base_url}", maxTokens: 777}}
"""


def aws_env(**extra: str) -> dict[str, str]:
    return {"AWS_EC2_METADATA_DISABLED": "true", **extra}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeBedrock]:
    fake, stop = start_fake_bedrock(keys={ACCESS_KEY: (SECRET_KEY, SESSION_TOKEN)}, api_keys={API_KEY})
    yield fake
    stop()


@pytest.fixture(scope="module")
def gateway(fake: FakeBedrock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    env = aws_env(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_SESSION_TOKEN=SESSION_TOKEN)
    running = start_gateway(config(fake.base_url), tmp_path_factory.mktemp("bedrock"), env=env, unset=AWS_ENV_VARS)
    yield running
    running.stop()


@pytest.fixture
def client(gateway: RunningGateway) -> openai.OpenAI:
    return openai_client(gateway.url)


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


# -- plain answers -------------------------------------------------------------------------------------------------


def test_text_answer_signed_with_session_token_and_usage_mapped(client: openai.OpenAI, fake: FakeBedrock) -> None:
    completion = client.chat.completions.create(
        model="claude",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Be kind."}]},
            {"role": "user", "content": "Hi"},
        ],
        max_tokens=100,
        temperature=0.5,
        top_p=0.9,
        stop="END",
    )
    assert completion.model == "claude"
    assert completion.choices[0].message.content == "Hello from Bedrock"
    assert completion.choices[0].finish_reason == "stop"
    usage = completion.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (15, 5, 20)
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 3
    recorded = fake.last()
    assert recorded.raw_path == "/model/us.anthropic.claude-3-7-sonnet-20250219-v1%3A0/converse"
    assert recorded.model_id == CLAUDE
    assert recorded.headers["X-Amz-Security-Token"] == SESSION_TOKEN
    assert "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token" in recorded.headers["Authorization"]
    assert recorded.body["system"] == [{"text": "Be brief."}, {"text": "Be kind."}]
    assert recorded.body["messages"] == [{"role": "user", "content": [{"text": "Hi"}]}]
    assert recorded.body["inferenceConfig"] == {
        "maxTokens": 100,
        "temperature": 0.5,
        "topP": 0.9,
        "stopSequences": ["END"],
    }
    assert "toolConfig" not in recorded.body


def test_arn_model_id_is_one_encoded_path_segment(client: openai.OpenAI, fake: FakeBedrock) -> None:
    client.chat.completions.create(model="arn-model", messages=user("Hi"))
    assert fake.last().model_id == ARN
    assert fake.last().raw_path == "/model/" + ARN.replace(":", "%3A").replace("/", "%2F") + "/converse"
    assert "inferenceConfig" not in fake.last().body


def test_client_model_is_the_model_id_and_params_max_tokens_is_the_default(
    client: openai.OpenAI, fake: FakeBedrock
) -> None:
    client.chat.completions.create(model="mistral.mistral-large-2407-v1:0", messages=user("Hi"))
    assert fake.last().model_id == "mistral.mistral-large-2407-v1:0"
    assert fake.last().body["inferenceConfig"] == {"maxTokens": 777}


def test_api_key_is_sent_as_bearer(client: openai.OpenAI, fake: FakeBedrock) -> None:
    completion = client.chat.completions.create(model="key-model", messages=user("Hi"))
    assert completion.choices[0].message.content == "Hello from Bedrock"
    assert fake.last().headers["Authorization"] == f"Bearer {API_KEY}"
    assert "X-Amz-Date" not in fake.last().headers


@pytest.mark.parametrize(("model", "reason"), [("m-length", "length"), ("m-guardrail", "content_filter")])
def test_stop_reasons(client: openai.OpenAI, model: str, reason: str) -> None:
    completion = client.chat.completions.create(model=model, messages=user("Hi"))
    assert completion.choices[0].finish_reason == reason
    chunks = list(client.chat.completions.create(model=model, messages=user("Hi"), stream=True))
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == reason


# -- streams -------------------------------------------------------------------------------------------------------


def test_stream_text_then_finish_then_usage(client: openai.OpenAI, fake: FakeBedrock) -> None:
    chunks = list(
        client.chat.completions.create(
            model="claude", messages=user("Hi"), stream=True, stream_options={"include_usage": True}
        )
    )
    assert fake.last().path.endswith("/converse-stream")
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from Bedrock"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == 15
    assert chunks[-1].usage.total_tokens == 20
    assert len({c.id for c in chunks}) == 1
    assert {c.model for c in chunks} == {"claude"}


def test_stream_without_include_usage_has_no_usage_chunk(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(model="claude", messages=user("Hi"), stream=True))
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_stream_frames_split_into_tiny_reads(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(model="m-split", messages=user("Hi"), stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from Bedrock"


def test_async_client_stream(gateway: RunningGateway) -> None:
    async def run() -> str:
        async with openai.AsyncOpenAI(base_url=gateway.url, api_key="x", max_retries=0) as client:
            stream = await client.chat.completions.create(model="claude", messages=user("Hi"), stream=True)
            return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    assert asyncio.run(run()) == "Hello from Bedrock"


# -- tools ---------------------------------------------------------------------------------------------------------


def test_tool_call_and_round_trip(client: openai.OpenAI, fake: FakeBedrock) -> None:
    completion = client.chat.completions.create(model="m-tool", messages=user("Weather?"), tools=[WEATHER_TOOL])
    message = completion.choices[0].message
    assert completion.choices[0].finish_reason == "tool_calls"
    assert message.content == "Let me check."
    assert message.tool_calls is not None
    call = message.tool_calls[0]
    assert call.id == "tooluse_fake1"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    sent = fake.last().body["toolConfig"]
    assert sent["tools"][0]["toolSpec"] == {
        "name": "get_weather",
        "description": "Weather in a city",
        "inputSchema": {"json": WEATHER_TOOL["function"]["parameters"]},  # type: ignore[index]
    }
    assert sent["toolChoice"] == {"auto": {}}

    # The next turn: the assistant's call, the tool's result and a user note (merged into one user turn).
    follow_up: list[Any] = [
        *user("Weather?"),
        message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "Sunny"},
        {"role": "user", "content": "Thanks!"},
    ]
    client.chat.completions.create(model="claude", messages=follow_up, tools=[WEATHER_TOOL])
    turns = fake.last().body["messages"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    assert turns[1]["content"] == [
        {"text": "Let me check."},
        {"toolUse": {"toolUseId": "tooluse_fake1", "name": "get_weather", "input": {"city": "Paris"}}},
    ]
    assert turns[2]["content"] == [
        {"toolResult": {"toolUseId": "tooluse_fake1", "content": [{"text": "Sunny"}]}},
        {"text": "Thanks!"},
    ]


def test_streamed_tool_call_reassembles(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(model="m-tool", messages=user("Weather?"), tools=[WEATHER_TOOL], stream=True)
    )
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert calls[0].id == "tooluse_fake1"
    assert calls[0].function is not None
    assert calls[0].function.name == "get_weather"
    assert {tc.index for tc in calls} == {0}
    arguments = "".join(tc.function.arguments or "" for tc in calls if tc.function)
    assert json.loads(arguments) == {"city": "Paris"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


@pytest.mark.parametrize(
    ("tool_choice", "expected"),
    [
        ("required", {"any": {}}),
        ({"type": "function", "function": {"name": "get_weather"}}, {"tool": {"name": "get_weather"}}),
    ],
)
def test_tool_choice(client: openai.OpenAI, fake: FakeBedrock, tool_choice: Any, expected: Any) -> None:
    completion = client.chat.completions.create(
        model="claude", messages=user("Weather?"), tools=[WEATHER_TOOL], tool_choice=tool_choice
    )
    assert fake.last().body["toolConfig"]["toolChoice"] == expected
    assert completion.choices[0].message.tool_calls is not None


def test_tool_choice_none_leaves_tools_out(client: openai.OpenAI, fake: FakeBedrock) -> None:
    completion = client.chat.completions.create(
        model="claude", messages=user("Weather?"), tools=[WEATHER_TOOL], tool_choice="none"
    )
    assert "toolConfig" not in fake.last().body
    assert completion.choices[0].message.content == "Hello from Bedrock"


def history_with_tools() -> list[Any]:
    return [
        *user("Weather?"),
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "t1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "t1", "content": "Rain"},
    ]


def test_tool_history_without_tools_still_sends_tool_config(client: openai.OpenAI, fake: FakeBedrock) -> None:
    completion = client.chat.completions.create(model="claude", messages=history_with_tools())
    assert completion.choices[0].message.content == "Hello from Bedrock"
    config = fake.last().body["toolConfig"]
    assert [t["toolSpec"]["name"] for t in config["tools"]] == ["get_weather"]
    assert "toolChoice" not in config


def test_tool_choice_none_with_tool_history_keeps_the_tools_but_no_choice(
    client: openai.OpenAI, fake: FakeBedrock
) -> None:
    client.chat.completions.create(
        model="claude", messages=history_with_tools(), tools=[WEATHER_TOOL], tool_choice="none"
    )
    config = fake.last().body["toolConfig"]
    assert config["tools"][0]["toolSpec"]["description"] == "Weather in a city"
    assert "toolChoice" not in config


# -- content -------------------------------------------------------------------------------------------------------


def test_image_data_url_becomes_bytes_and_empty_text_is_dropped(client: openai.OpenAI, fake: FakeBedrock) -> None:
    client.chat.completions.create(
        model="claude",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": ""},
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                ],
            },
            {"role": "assistant", "content": ""},
            {"role": "user", "content": "Answer please"},
        ],
    )
    turns = fake.last().body["messages"]
    assert turns == [
        {
            "role": "user",
            "content": [
                {"text": "What is this?"},
                {"image": {"format": "png", "source": {"bytes": PNG}}},
                {"text": "Answer please"},
            ],
        }
    ]


def test_pdf_file_part_becomes_a_document(client: openai.OpenAI, fake: FakeBedrock) -> None:
    pdf = base64.b64encode(b"%PDF-1.4 fake").decode()
    client.chat.completions.create(
        model="claude",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Summarise"},
                    {"type": "file", "file": {"file_data": f"data:application/pdf;base64,{pdf}", "filename": "a.pdf"}},
                ],
            }
        ],
    )
    assert fake.last().body["messages"][0]["content"][1] == {
        "document": {"format": "pdf", "name": "a (2)", "source": {"bytes": pdf}}
    }


def test_http_image_url_is_a_clear_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="claude",
            messages=[
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x.test/cat.png"}}]}
            ],
        )
    assert "data: URL" in caught.value.message
    assert caught.value.body["param"] == "messages[0].content[0].image_url.url"  # type: ignore[index]


# -- structured output and reasoning -------------------------------------------------------------------------------

SCHEMA = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]}
RESPONSE_FORMAT: Any = {"type": "json_schema", "json_schema": {"name": "result", "schema": SCHEMA}}


def test_json_schema_uses_native_structured_output_where_supported(client: openai.OpenAI, fake: FakeBedrock) -> None:
    completion = client.chat.completions.create(
        model="us.anthropic.claude-sonnet-4-5-20250929-v1:0", messages=user("6*7?"), response_format=RESPONSE_FORMAT
    )
    assert json.loads(completion.choices[0].message.content or "") == {"answer": 42}
    text_format = fake.last().body["outputConfig"]["textFormat"]
    assert text_format["type"] == "json_schema"
    assert json.loads(text_format["structure"]["jsonSchema"]["schema"]) == SCHEMA
    assert "toolConfig" not in fake.last().body


@pytest.mark.parametrize("stream", [False, True])
def test_json_schema_elsewhere_is_a_forced_tool_answered_as_content(
    client: openai.OpenAI, fake: FakeBedrock, stream: bool
) -> None:
    if stream:
        chunks = list(
            client.chat.completions.create(
                model="claude", messages=user("6*7?"), response_format=RESPONSE_FORMAT, stream=True
            )
        )
        content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        finish = [c.choices[0].finish_reason for c in chunks if c.choices][-1]
        assert all(not c.choices or not c.choices[0].delta.tool_calls for c in chunks)
    else:
        completion = client.chat.completions.create(
            model="claude", messages=user("6*7?"), response_format=RESPONSE_FORMAT
        )
        content = completion.choices[0].message.content or ""
        finish = completion.choices[0].finish_reason
        assert completion.choices[0].message.tool_calls is None
    assert finish == "stop"
    assert content.endswith('{"answer":42}')
    config = fake.last().body["toolConfig"]
    assert config["toolChoice"] == {"tool": {"name": "agentgateway_json_output"}}
    assert config["tools"][0]["toolSpec"]["inputSchema"] == {"json": SCHEMA}


def test_reasoning_effort_enables_claude_thinking_with_the_anthropic_budget(
    client: openai.OpenAI, fake: FakeBedrock
) -> None:
    # The budget of the one table (providers/reasoning.py), the same as on Anthropic and Vertex AI.
    client.chat.completions.create(model="claude", messages=user("Hi"), reasoning_effort="medium")
    body = fake.last().body
    assert body["additionalModelRequestFields"] == {"thinking": {"type": "enabled", "budget_tokens": 8192}}
    assert body["inferenceConfig"]["maxTokens"] == 8192 + 4096


def test_reasoning_effort_below_the_budget_is_a_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="claude", messages=user("Hi"), reasoning_effort="high", max_tokens=100)
    assert caught.value.body["param"] == "max_tokens"  # type: ignore[index]


def test_reasoning_with_signature_survives_a_round_trip(client: openai.OpenAI, fake: FakeBedrock) -> None:
    completion = client.chat.completions.create(model="m-reasoning", messages=user("2+2?"))
    message = completion.model_dump()["choices"][0]["message"]
    assert message["reasoning_content"] == "2 and 2 is 4."
    assert message["thinking_blocks"] == [{"type": "thinking", "thinking": "2 and 2 is 4.", "signature": "sig-abc=="}]
    chunks = list(client.chat.completions.create(model="m-reasoning", messages=user("2+2?"), stream=True))
    deltas = [c.model_dump()["choices"][0]["delta"] for c in chunks if c.choices]
    assert "".join(d.get("reasoning_content") or "" for d in deltas) == "2 and 2 is 4."
    blocks = [b for d in deltas for b in (d.get("thinking_blocks") or [])]
    assert blocks == message["thinking_blocks"]

    assistant = {"role": "assistant", "content": message["content"], "thinking_blocks": blocks}
    client.chat.completions.create(model="claude", messages=[*user("2+2?"), assistant, *user("And 3+3?")])
    sent = fake.last().body["messages"][1]["content"]
    assert sent == [
        {"reasoningContent": {"reasoningText": {"text": "2 and 2 is 4.", "signature": "sig-abc=="}}},
        {"text": "Hello from Bedrock"},
    ]


def test_reasoning_in_the_flat_fields_of_other_gateways_becomes_reasoning_content(
    client: openai.OpenAI, fake: FakeBedrock
) -> None:
    assistant = {
        "role": "assistant",
        "content": "4",
        "reasoning_content": "2 and 2 is 4.",
        "reasoning_signature": "sig-abc==",
    }
    client.chat.completions.create(model="claude", messages=[*user("2+2?"), assistant, *user("And 3+3?")])  # type: ignore[list-item]
    assert fake.last().body["messages"][1]["content"] == [
        {"reasoningContent": {"reasoningText": {"text": "2 and 2 is 4.", "signature": "sig-abc=="}}},
        {"text": "4"},
    ]


# -- errors --------------------------------------------------------------------------------------------------------


def test_http_throttling_keeps_status_and_type(client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="m-throttle", messages=user("Hi"))
    assert caught.value.status_code == 429
    assert caught.value.body["message"] == "Too many requests, please wait before trying again."  # type: ignore[index]
    assert caught.value.body["code"] == "ThrottlingException"  # type: ignore[index]
    assert caught.value.response.headers["x-amzn-requestid"] == "req-fake-error"
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="m-throttle", messages=user("Hi"), stream=True)


def test_upstream_validation_error_is_a_400_with_its_message(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="claude", messages=[{"role": "assistant", "content": "I start"}, *user("Hi")]
        )
    assert "must start with a user message" in caught.value.message
    assert caught.value.body["code"] == "ValidationException"  # type: ignore[index]


@pytest.mark.parametrize(
    ("model", "status", "code"),
    [
        ("m-throttle-midstream", 429, "throttlingException"),
        ("m-corrupt", 502, "upstream_protocol_error"),
        ("m-cut", 502, "stream_truncated"),
    ],
)
def test_stream_failures_reach_the_client_as_errors(client: openai.OpenAI, model: str, status: int, code: str) -> None:
    stream = client.chat.completions.create(model=model, messages=user("Hi"), stream=True)
    with pytest.raises(openai.APIError) as caught:
        for _ in stream:
            pass
    assert caught.value.body["code"] == code  # type: ignore[index]
    assert caught.value.body["status"] == status  # type: ignore[index]


def test_recorded_model_stream_error_reaches_the_client(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(model="m-stream-fixture", messages=user("Hi"), stream=True)
    with pytest.raises(openai.APIError) as caught:
        list(stream)
    assert caught.value.message == "Model Stream Error"
    assert caught.value.body["code"] == "modelStreamErrorException"  # type: ignore[index]


def test_client_mistakes_are_400s_naming_the_field(client: openai.OpenAI) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"n": 9}, "n"),
        (
            {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
            "messages[0].content[0].type",
        ),
        (
            {
                "messages": [
                    *user("x"),
                    {
                        "role": "assistant",
                        "tool_calls": [{"id": "a", "type": "function", "function": {"name": "f", "arguments": "[1]"}}],
                    },
                ]
            },
            "messages[1].tool_calls[0].function.arguments",
        ),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
        ({"messages": [{"role": "system", "content": "only system"}]}, "messages"),
    ]
    for extra, param in cases:
        body: dict[str, Any] = {"model": "claude", "messages": user("Hi"), **extra}
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(**body)
        assert caught.value.body["param"] == param, extra  # type: ignore[index]


# -- the fake's frames are what botocore reads ---------------------------------------------------------------------


def test_fake_frames_decode_with_botocore() -> None:
    buffer = EventStreamBuffer()
    buffer.add_data(event("messageStart", {"role": "assistant"}) + exception("throttlingException", "slow"))
    messages = list(buffer)
    assert messages[0].headers[":event-type"] == "messageStart"
    assert messages[1].headers[":exception-type"] == "throttlingException"


def test_fixture_replays_through_the_core_translator() -> None:
    from agentgateway._core import StreamTranslator

    path = FIXTURES / "bedrock" / "stream_exception_model_stream_error.bin"
    data = path.read_bytes()
    translator = StreamTranslator("bedrock", "m", True)
    out = b"".join(translator.feed(data[i : i + 5]) for i in range(0, len(data), 5)) + translator.finish()
    payload = json.loads(out.removeprefix(b"data: ").strip())
    assert payload["error"]["code"] == "modelStreamErrorException"
    assert translator.error == "Model Stream Error"
    assert not translator.done


def test_openai_npm_package(gateway: RunningGateway) -> None:
    seen = run_openai_npm(gateway.url, "claude", "", "js-throttle")
    assert seen["plain"] == seen["streamed"] == "Hello from Bedrock"
    assert seen["finishReason"] == "stop"
    assert seen["usage"]["prompt_tokens"] == 15
    assert seen["usage"]["prompt_tokens_details"] == {"cached_tokens": 3}
    assert seen["error"] == {"status": 429, "code": "ThrottlingException", "name": "RateLimitError"}
