"""End to end through the openai SDK for what only unit tests covered (issue 20): Vertex AI reasoning, images and
``response_format`` (Gemini and Claude models), Gemini stream faults (garbage, reset, stall), ``cache_control``
passed on to Claude, and a Bedrock 401 (credentials re-resolved and the request sent once more; the same
credentials again: the 401 reaches the client). Each against the validating fakes (google-genai / anthropic types,
SigV4 recomputed with botocore)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from aiohttp import web
from conftest import TEST_KEY, RunningGateway, openai_client, start_gateway
from fakes.anthropic_upstream import FakeAnthropic, start_fake_anthropic
from fakes.bedrock_upstream import FakeBedrock
from fakes.gemini_upstream import FakeGoogle, start_fake_google
from fakes.server import serve_in_thread
from test_bedrock import AWS_ENV_VARS, aws_env
from test_vertex import adc_env, vertex_config

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()
CLAUDE = "claude-sonnet-4-5@20250929"


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


# -- Vertex AI ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def google() -> Iterator[FakeGoogle]:
    fake, stop = start_fake_google(TEST_KEY)
    yield fake
    stop()


@pytest.fixture(scope="module")
def vertex(google: FakeGoogle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    tmp = tmp_path_factory.mktemp("gw-vertex-pins")
    running = start_gateway(vertex_config(google), tmp, env=adc_env(tmp, google.service_account_info()))
    yield running
    running.stop()


@pytest.mark.parametrize("stream", [False, True])
def test_vertex_gemini_reasoning_comes_back_as_reasoning_content(
    vertex: RunningGateway, google: FakeGoogle, stream: bool
) -> None:
    client = openai_client(vertex.url)
    kwargs: dict[str, Any] = {"model": "gemini-2.5-flash-think", "messages": user("Think"), "reasoning_effort": "high"}
    if stream:
        reasoning = content = ""
        for chunk in client.chat.completions.create(**kwargs, stream=True):
            if chunk.choices:
                delta = chunk.choices[0].delta.model_dump()
                reasoning += delta.get("reasoning_content") or ""
                content += delta.get("content") or ""
    else:
        message = client.chat.completions.create(**kwargs).choices[0].message.model_dump()
        reasoning, content = message["reasoning_content"], message["content"]
    assert google.last().path.startswith("/v1/projects/test-project/locations/us-central1/publishers/google/")
    assert google.last().body["generationConfig"]["thinkingConfig"] == {
        "thinkingBudget": 16384,
        "includeThoughts": True,
    }
    assert reasoning and content == "You said: Think"


def test_vertex_claude_reasoning_is_a_thinking_budget_and_comes_back(
    vertex: RunningGateway, google: FakeGoogle
) -> None:
    client = openai_client(vertex.url)
    message = (
        client.chat.completions.create(
            model=f"{CLAUDE}-think", messages=user("Think"), reasoning_effort="low", max_completion_tokens=4000
        )
        .choices[0]
        .message.model_dump()
    )
    body = google.last().body
    assert ":rawPredict" in google.last().path and body["thinking"]["type"] == "enabled"
    assert 1024 <= body["thinking"]["budget_tokens"] < 4000
    assert message["reasoning_content"] and message["content"]


def test_vertex_images_reach_gemini_and_claude(vertex: RunningGateway, google: FakeGoogle) -> None:
    client = openai_client(vertex.url)
    parts: Any = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
    ]
    client.chat.completions.create(model="gemini-2.5-flash", messages=[{"role": "user", "content": parts}])
    assert google.last().body["contents"] == [
        {"role": "user", "parts": [{"text": "What is this?"}, {"inlineData": {"mimeType": "image/png", "data": PNG}}]}
    ]
    client.chat.completions.create(model=CLAUDE, messages=[{"role": "user", "content": parts}], max_tokens=50)
    content = google.last().body["messages"][0]["content"]
    assert {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}} in content


def test_vertex_response_format_json_schema(vertex: RunningGateway, google: FakeGoogle) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]}
    completion = openai_client(vertex.url).chat.completions.create(
        model="gemini-2.5-flash-json",
        messages=user("json please"),
        response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema, "strict": True}},
    )
    assert completion.choices[0].message.content == '{"answer": 42}'
    assert google.last().body["generationConfig"] == {
        "responseMimeType": "application/json",
        "responseJsonSchema": schema,
    }


# -- Gemini stream faults ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gemini(google: FakeGoogle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    config = f"""
llm:
  timeouts: {{connect: 2, firstByte: 10, idle: 1}}
  models:
  - {{name: "*", provider: gemini, params: {{apiKey: {TEST_KEY}, baseUrl: "{google.origin}"}}}}
"""
    running = start_gateway(config, tmp_path_factory.mktemp("gw-gemini-faults"))
    yield running
    running.stop()


@pytest.mark.parametrize(
    ("model", "code", "status"),
    [
        ("gemini-2.5-flash-garbage", "upstream_protocol_error", 502),
        ("gemini-2.5-flash-reset", "upstream_unreachable", 502),
        ("gemini-2.5-flash-stall", "upstream_timeout", 504),
    ],
)
def test_a_gemini_stream_failing_after_it_began_ends_with_its_error_event(
    gemini: RunningGateway, model: str, code: str, status: int
) -> None:
    stream = openai_client(gemini.url).chat.completions.create(model=model, messages=user("Hello there"), stream=True)
    received = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            received.append(chunk)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in received if chunk.choices)
    assert text, "the text before the failure reached the client"
    body = caught.value.body
    assert isinstance(body, dict) and body["code"] == code and body["status"] == status, body


# -- cache_control to Claude -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def claude() -> Iterator[FakeAnthropic]:
    fake, stop = start_fake_anthropic(TEST_KEY)
    yield fake
    stop()


def test_cache_control_on_chat_completions_parts_and_tools_passes_on_to_claude(
    claude: FakeAnthropic, vertex: RunningGateway, google: FakeGoogle, tmp_path: Path
) -> None:
    config = f"""
llm:
  models:
  - name: claude
    provider: anthropic
    params: {{model: claude-real, apiKey: {TEST_KEY}, baseUrl: "{claude.origin}"}}
"""
    running = start_gateway(config, tmp_path)
    try:
        marker = {"type": "ephemeral"}
        messages: Any = [
            {"role": "system", "content": [{"type": "text", "text": "A long system prompt.", "cache_control": marker}]},
            {"role": "user", "content": [{"type": "text", "text": "Hello", "cache_control": marker}]},
        ]
        tool: Any = {
            "type": "function",
            "function": {"name": "now", "parameters": {"type": "object"}},
            "cache_control": marker,
        }
        for client_url, fake_body in (
            (running.url, lambda: claude.last().body),
            (vertex.url, lambda: google.last().body),
        ):
            model = "claude" if client_url == running.url else CLAUDE
            openai_client(client_url).chat.completions.create(
                model=model, messages=messages, tools=[tool], max_tokens=50
            )
            body = fake_body()
            system = body["system"]
            assert system[-1]["cache_control"] == marker, system
            assert body["messages"][0]["content"][-1]["cache_control"] == marker
            assert body["tools"][-1]["cache_control"] == marker
    finally:
        running.stop()


# -- Bedrock 401 -------------------------------------------------------------------------------------------------


class UnauthorizedBedrock(FakeBedrock):
    """The validating Bedrock fake, answering 401 to the access keys in ``unauthorized``."""

    def _check_auth(self, request: web.Request, raw: bytes) -> web.Response | None:
        authorization = request.headers.get("Authorization", "")
        key = authorization.split("Credential=")[1].split("/")[0] if "Credential=" in authorization else ""
        self.seen_keys.append(key)
        if key in self.unauthorized:
            return self._error(
                401, "UnrecognizedClientException", "The security token included in the request is invalid."
            )
        return super()._check_auth(request, raw)


def test_a_bedrock_401_re_resolves_the_credentials_and_retries_once(tmp_path: Path) -> None:
    fake = UnauthorizedBedrock(
        region="us-east-1", keys={"AKIAFIRST": ("secret-1", None), "AKIASECOND": ("secret-2", None)}
    )
    fake.unauthorized, fake.seen_keys = set(), []  # type: ignore[attr-defined]
    app = web.Application(handler_args={"lingering_time": 0})
    app.router.add_post("/model/{tail:.*}", fake.handle)
    fake.base_url, stop = serve_in_thread(app, "fake-bedrock-401")
    credentials = tmp_path / "credentials"
    credentials.write_text("[default]\naws_access_key_id = AKIAFIRST\naws_secret_access_key = secret-1\n")
    config = f"""
llm:
  models:
  - name: "*"
    provider: bedrock
    params: {{model: "anthropic.claude-3-haiku-20240307-v1:0", awsRegion: us-east-1, baseUrl: "{fake.base_url}"}}
"""
    env = aws_env(AWS_SHARED_CREDENTIALS_FILE=str(credentials), AWS_CONFIG_FILE=str(tmp_path / "absent-config"))
    running = start_gateway(config, tmp_path, env=env, unset=AWS_ENV_VARS)
    try:
        client = openai_client(running.url)
        assert client.chat.completions.create(model="m", messages=user("Hi")).choices[0].message.content
        assert fake.seen_keys == ["AKIAFIRST"]  # type: ignore[attr-defined]
        # The keys were rotated: the old ones now get a 401; the file holds the new ones.
        credentials.write_text("[default]\naws_access_key_id = AKIASECOND\naws_secret_access_key = secret-2\n")
        fake.unauthorized.add("AKIAFIRST")  # type: ignore[attr-defined]
        assert client.chat.completions.create(model="m", messages=user("Hi")).choices[0].message.content
        assert fake.seen_keys == ["AKIAFIRST", "AKIAFIRST", "AKIASECOND"]  # type: ignore[attr-defined]
        # Refused again and the chain gives the same keys: the client gets the 401, the request went out once.
        fake.unauthorized.add("AKIASECOND")  # type: ignore[attr-defined]
        with pytest.raises(openai.AuthenticationError) as caught:
            client.chat.completions.create(model="m", messages=user("Hi"))
        assert caught.value.status_code == 401 and "security token" in caught.value.message
        assert fake.seen_keys[3:] == ["AKIASECOND"]  # type: ignore[attr-defined]
    finally:
        running.stop()
        stop()
