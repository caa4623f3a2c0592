"""``response_format: {"type": "json_object"}`` means one thing on every Claude path (issue 20): Anthropic, Claude on
Vertex AI and Bedrock (Converse) get the forced tool ``agentgateway_json_output`` with the open schema
``{"type": "object"}``, and the client gets its input as the answer's content (finish reason ``stop``), plain and
streamed. The fakes validate the bodies with the anthropic SDK's request types / botocore's Converse shape, and
answer a forced tool the way Claude does (that call alone)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest
from conftest import TEST_KEY, RunningGateway, openai_client, start_gateway
from fakes.anthropic_upstream import FakeAnthropic, start_fake_anthropic
from fakes.bedrock_upstream import FakeBedrock, start_fake_bedrock
from fakes.gemini_upstream import FakeGoogle, start_fake_google
from test_vertex import adc_env

ACCESS_KEY = "AKIDTESTJSON"
SECRET_KEY = "json/secret+key/0123456789abcdefghij"
VERTEX_CLAUDE = "claude-sonnet-4-5@20250929"
BEDROCK_CLAUDE = "us.anthropic.claude-3-7-sonnet-20250219-v1:0"
JSON_TOOL = "agentgateway_json_output"
JSON_OBJECT = {"type": "json_object"}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
MODELS = ("anthropic", "bedrock", "vertex")


@pytest.fixture(scope="module")
def anthropic_fake() -> Iterator[FakeAnthropic]:
    fake, stop = start_fake_anthropic(TEST_KEY)
    yield fake
    stop()


@pytest.fixture(scope="module")
def bedrock_fake() -> Iterator[FakeBedrock]:
    fake, stop = start_fake_bedrock(keys={ACCESS_KEY: (SECRET_KEY, None)})
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
    config = f"""
llm:
  models:
  - name: anthropic
    provider: anthropic
    params: {{model: claude-real, apiKey: {TEST_KEY}, baseUrl: "{anthropic_fake.origin}"}}
  - name: bedrock
    provider: bedrock
    params: {{model: "{BEDROCK_CLAUDE}", awsRegion: us-east-1, baseUrl: "{bedrock_fake.base_url}"}}
  - name: vertex
    provider: vertex
    params: {{model: "{VERTEX_CLAUDE}", vertexProject: test-project, vertexRegion: us-central1,
              baseUrl: "{google_fake.origin}"}}
"""
    tmp = tmp_path_factory.mktemp("gw-claude-json")
    env = {
        **adc_env(tmp, google_fake.service_account_info()),
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    running = start_gateway(config, tmp, env=env, unset=("AWS_SESSION_TOKEN", "AWS_PROFILE"))
    yield running
    running.stop()


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def sent_tools(
    model: str, anthropic_fake: FakeAnthropic, bedrock_fake: FakeBedrock, google_fake: FakeGoogle
) -> tuple[list[tuple[str, Any]], Any]:
    """``([(tool name, input schema)], tool choice)`` as the last upstream request of ``model``'s path had them, in
    the Anthropic shape (Bedrock's toolConfig read into it)."""
    if model == "bedrock":
        config = bedrock_fake.last().body["toolConfig"]
        tools = [(t["toolSpec"]["name"], t["toolSpec"]["inputSchema"]["json"]) for t in config["tools"]]
        choice = config.get("toolChoice") or {}
        if "tool" in choice:
            return tools, {"type": "tool", "name": choice["tool"]["name"]}
        return tools, {"type": next(iter(choice), None)}
    body = (anthropic_fake if model == "anthropic" else google_fake).last().body
    return [(t["name"], t["input_schema"]) for t in body["tools"]], {
        k: v for k, v in body["tool_choice"].items() if k != "disable_parallel_tool_use"
    }


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("model", MODELS)
def test_json_object_answers_a_json_object(
    gateway: RunningGateway,
    anthropic_fake: FakeAnthropic,
    bedrock_fake: FakeBedrock,
    google_fake: FakeGoogle,
    model: str,
    stream: bool,
) -> None:
    client = openai_client(gateway.url)
    if stream:
        chunks = list(
            client.chat.completions.create(
                model=model, messages=user("6*7 as JSON"), response_format=JSON_OBJECT, stream=True
            )
        )
        assert all(not c.choices or not c.choices[0].delta.tool_calls for c in chunks)
        content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        finish = [c.choices[0].finish_reason for c in chunks if c.choices][-1]
    else:
        completion = client.chat.completions.create(
            model=model, messages=user("6*7 as JSON"), response_format=JSON_OBJECT
        )
        assert completion.choices[0].message.tool_calls is None
        content = completion.choices[0].message.content or ""
        finish = completion.choices[0].finish_reason
    assert orjson.loads(content) == {"answer": 42}
    assert finish == "stop"
    tools, choice = sent_tools(model, anthropic_fake, bedrock_fake, google_fake)
    assert tools == [(JSON_TOOL, {"type": "object"})]
    assert choice == {"type": "tool", "name": JSON_TOOL}


@pytest.mark.parametrize("model", MODELS)
def test_json_object_with_client_tools_lets_the_model_call_one_or_answer(
    gateway: RunningGateway,
    anthropic_fake: FakeAnthropic,
    bedrock_fake: FakeBedrock,
    google_fake: FakeGoogle,
    model: str,
) -> None:
    completion = openai_client(gateway.url).chat.completions.create(
        model=model,
        messages=user("weather?"),
        response_format=JSON_OBJECT,
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
    )
    tools, choice = sent_tools(model, anthropic_fake, bedrock_fake, google_fake)
    assert [name for name, _ in tools] == ["get_weather", JSON_TOOL]
    assert choice == {"type": "any"}
    message = completion.choices[0].message
    assert message.tool_calls or orjson.loads(message.content or "") == {"answer": 42}


@pytest.mark.parametrize("model", MODELS)
def test_json_object_with_reasoning_is_the_same_400_everywhere(gateway: RunningGateway, model: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client(gateway.url).chat.completions.create(
            model=model, messages=user("x"), response_format=JSON_OBJECT, reasoning_effort="low"
        )
    body = caught.value.body
    assert isinstance(body, dict)
    assert (body["param"], body["code"]) == ("reasoning_effort", "unsupported_value")
    assert "json_object" in body["message"]


@pytest.mark.parametrize("model", MODELS)
def test_the_json_tools_name_is_reserved_everywhere(gateway: RunningGateway, model: str) -> None:
    tool = {"type": "function", "function": {"name": JSON_TOOL}}
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client(gateway.url).chat.completions.create(model=model, messages=user("x"), tools=[tool])  # type: ignore[list-item]
    body = caught.value.body
    assert isinstance(body, dict)
    assert (body["param"], body["code"]) == ("tools[0].function.name", "invalid_value")


# -- one reader per field: the same 400 on every Claude path (issue 20) ------------------------------------------

BAD_TOOL_CALL = [
    {"role": "user", "content": "x"},
    {"role": "assistant", "tool_calls": [{"id": "a", "type": "function", "function": {"name": "f", "arguments": "{"}}]},
    {"role": "tool", "tool_call_id": "a", "content": "r"},
]


MISTAKES: list[tuple[dict[str, Any], str, str]] = [
    ({"stop": ["ok", 3]}, "stop", "invalid_type"),
    ({"messages": BAD_TOOL_CALL}, "messages[1].tool_calls[0].function.arguments", "invalid_value"),
    ({"tools": [{"type": "function", "function": {"name": ""}}]}, "tools[0].function.name", "invalid_value"),
    ({"tools": [WEATHER_TOOL], "tool_choice": "sometimes"}, "tool_choice", "invalid_value"),
    ({"tools": [{"type": "retrieval"}]}, "tools[0]", "invalid_value"),
]


@pytest.mark.parametrize(
    ("model", "extra", "param", "code"),
    [(model, *mistake) for model in MODELS for mistake in MISTAKES]
    # above Converse's limit (Anthropic sets none)
    + [("bedrock", {"stop": ["x"] * 2501}, "stop", "invalid_value")],
)
def test_field_mistakes_are_the_same_400_on_every_claude_path(
    gateway: RunningGateway, model: str, extra: dict[str, Any], param: str, code: str
) -> None:
    body = {"model": model, "messages": user("x"), **extra}
    response = httpx.post(gateway.url + "/v1/chat/completions", json=body, timeout=30)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["param"], error["code"]) == (param, code), error


@pytest.mark.parametrize("model", MODELS)
def test_blank_stop_sequences_are_left_out_and_a_string_is_one(
    gateway: RunningGateway,
    anthropic_fake: FakeAnthropic,
    bedrock_fake: FakeBedrock,
    google_fake: FakeGoogle,
    model: str,
) -> None:
    client = openai_client(gateway.url)
    client.chat.completions.create(model=model, messages=user("x"), stop=["  ", "", "END"])
    if model == "bedrock":
        sent = bedrock_fake.last().body["inferenceConfig"].get("stopSequences")
    else:
        sent = (anthropic_fake if model == "anthropic" else google_fake).last().body.get("stop_sequences")
    assert sent == ["END"]
    client.chat.completions.create(model=model, messages=user("x"), stop="  ")
    if model == "bedrock":
        assert "stopSequences" not in bedrock_fake.last().body.get("inferenceConfig", {})
    else:
        assert "stop_sequences" not in (anthropic_fake if model == "anthropic" else google_fake).last().body


def test_gemini_takes_at_most_five_stop_sequences() -> None:
    from agentgateway.errors import InvalidRequest
    from agentgateway.providers import ChatRequest
    from agentgateway.providers.gemini import translate_request

    def request(stop: list[str]) -> ChatRequest:
        return ChatRequest(b"", {"model": "g", "messages": user("x"), "stop": stop}, "g", False, False, None, [])

    assert translate_request(request(["a"] * 5))["generationConfig"]["stopSequences"] == ["a"] * 5
    with pytest.raises(InvalidRequest) as caught:
        translate_request(request(["a"] * 6))
    assert (caught.value.param, caught.value.code) == ("stop", "invalid_value")
