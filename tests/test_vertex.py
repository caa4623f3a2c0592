"""The vertex provider end to end: Gemini and Claude models on Vertex AI through the real openai clients, with Google
Application Default Credentials from every source (service account, authorized user, the gcloud file, the
metadata server) against a fake token endpoint that verifies the RS256 JWT signature and claims."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest
from agentgateway.providers.gemini import THOUGHT_SEPARATOR
from agentgateway.providers.vertex import vertex_host
from conftest import TEST_KEY, RunningGateway, openai_client, start_gateway
from fakes.anthropic_upstream import USAGE as CLAUDE_USAGE
from fakes.gemini_upstream import FakeGoogle, start_fake_google

CLAUDE = "claude-sonnet-4-5@20250929"
PROJECT_PATH = "/v1/projects/test-project/locations/us-central1/publishers"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def vertex_config(fake: FakeGoogle, extra: str = "") -> str:
    return f"""
llm:
  models:
  - name: express
    provider: vertex
    params: {{model: gemini-2.5-flash, apiKey: {TEST_KEY}, baseUrl: "{fake.origin}"}}
  - name: claude-alias
    provider: vertex
    params: {{model: "{CLAUDE}", vertexProject: test-project, vertexRegion: us-central1, baseUrl: "{fake.origin}",
              maxTokens: 500}}
  - name: "*"
    provider: vertex
    params: {{vertexProject: test-project, vertexRegion: us-central1, baseUrl: "{fake.origin}"}}
{extra}
"""


# google-auth sends every authorized_user refresh to Google's token endpoint whatever the file says; the gateway's
# processes load this (through PYTHONPATH) to send it to the fake instead. Nothing else is changed.
SITECUSTOMIZE = """
import os
if os.environ.get("TEST_GOOGLE_TOKEN_URI"):
    import google.oauth2.credentials
    google.oauth2.credentials._GOOGLE_OAUTH2_TOKEN_ENDPOINT = os.environ["TEST_GOOGLE_TOKEN_URI"]
"""


def adc_env(tmp: Path, info: dict[str, Any] | None = None, **extra: str) -> dict[str, str]:
    """An environment whose only credentials are ``info`` (as GOOGLE_APPLICATION_CREDENTIALS) and ``extra``."""
    gcloud = tmp / "gcloud-empty"
    gcloud.mkdir(exist_ok=True)
    site = tmp / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    extra = {"PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])), **extra}
    # (The tests' own environment has no GOOGLE_APPLICATION_CREDENTIALS: see the check below.)
    assert "GOOGLE_APPLICATION_CREDENTIALS" not in os.environ
    env = {"CLOUDSDK_CONFIG": str(gcloud), "NO_GCE_CHECK": "true"}
    if info is not None:
        path = tmp / "credentials.json"
        path.write_text(json.dumps(info))
        env["GOOGLE_APPLICATION_CREDENTIALS"] = str(path)
    return {**env, **extra}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeGoogle]:
    fake, stop = start_fake_google(TEST_KEY)
    yield fake
    stop()


@pytest.fixture(scope="module")
def gateway(fake: FakeGoogle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    tmp = tmp_path_factory.mktemp("gw-vertex")
    running = start_gateway(vertex_config(fake), tmp, env=adc_env(tmp, fake.service_account_info()))
    yield running
    running.stop()


def client(gateway: RunningGateway) -> openai.OpenAI:
    return openai_client(gateway.url)


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def bearer(fake: FakeGoogle) -> str:
    return fake.last().headers["authorization"].removeprefix("Bearer ")


# -- Gemini on Vertex --------------------------------------------------------------------------------------------------


def test_regional_hosts() -> None:
    assert vertex_host("global") == "https://aiplatform.googleapis.com"
    assert vertex_host("us") == "https://aiplatform.us.rep.googleapis.com"
    assert vertex_host("eu") == "https://aiplatform.eu.rep.googleapis.com"
    assert vertex_host("europe-west4") == "https://europe-west4-aiplatform.googleapis.com"


def test_gemini_plain_and_streamed_with_a_service_account(gateway: RunningGateway, fake: FakeGoogle) -> None:
    completion = client(gateway).chat.completions.create(model="gemini-2.5-flash", messages=user("Hello"))
    assert completion.choices[0].message.content == "You said: Hello"
    sent = fake.last()
    assert sent.path == f"{PROJECT_PATH}/google/models/gemini-2.5-flash:generateContent"
    token = bearer(fake)
    assert token in fake.tokens
    assert "x-goog-api-key" not in sent.headers
    grants = [r["grant_type"] for r in fake.token_requests]
    assert grants[-1] == "urn:ietf:params:oauth:grant-type:jwt-bearer"  # the JWT checked out (signature, claims)

    chunks = list(
        client(gateway).chat.completions.create(
            model="gemini-2.5-flash", messages=user("streamed"), stream=True, stream_options={"include_usage": True}
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "You said: streamed"
    assert chunks[-1].usage is not None
    assert fake.last().path == f"{PROJECT_PATH}/google/models/gemini-2.5-flash:streamGenerateContent"
    assert fake.last().query == "alt=sse"
    assert bearer(fake) == token  # cached, not fetched per request
    assert len(fake.token_requests) == len(grants)


def test_gemini_tool_round_trip_with_signatures(gateway: RunningGateway, fake: FakeGoogle) -> None:
    first = client(gateway).chat.completions.create(
        model="gemini-3-pro-tool", messages=user("Weather?"), tools=[WEATHER_TOOL]
    )
    message = first.choices[0].message
    assert message.tool_calls is not None
    assert THOUGHT_SEPARATOR in message.tool_calls[0].id
    second = client(gateway).chat.completions.create(
        model="gemini-3-pro-tool",
        messages=[
            {"role": "user", "content": "Weather?"},
            message.model_dump(exclude_none=True),  # type: ignore[list-item]
            *({"role": "tool", "tool_call_id": c.id, "content": "sunny"} for c in message.tool_calls),
        ],
        tools=[WEATHER_TOOL],
    )
    assert (second.choices[0].message.content or "").startswith("Tool results:")


def test_vertex_429_keeps_status_and_retry_after(gateway: RunningGateway) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        client(gateway).chat.completions.create(model="gemini-x-429", messages=user("x"))
    assert caught.value.response.headers["retry-after"] == "35"


def test_express_mode_uses_the_api_key_and_no_project(gateway: RunningGateway, fake: FakeGoogle) -> None:
    completion = client(gateway).chat.completions.create(model="express", messages=user("key"))
    assert completion.choices[0].message.content == "You said: key"
    assert fake.last().path == "/v1/publishers/google/models/gemini-2.5-flash:generateContent"
    assert fake.last().headers["x-goog-api-key"] == TEST_KEY
    assert "authorization" not in fake.last().headers


def test_a_revoked_token_is_replaced_and_the_request_sent_once_more(gateway: RunningGateway, fake: FakeGoogle) -> None:
    client(gateway).chat.completions.create(model="gemini-2.5-flash", messages=user("before"))
    old = bearer(fake)
    fake.revoked.add(old)
    count = len(fake.token_requests)
    completion = client(gateway).chat.completions.create(model="gemini-2.5-flash", messages=user("after"))
    assert completion.choices[0].message.content == "You said: after"
    assert bearer(fake) != old
    assert len(fake.token_requests) == count + 1
    assert [r.headers["authorization"] for r in fake.requests[-2:]] == [f"Bearer {old}", f"Bearer {bearer(fake)}"]


# -- Claude on Vertex ------------------------------------------------------------------------------------------------


def test_claude_plain_uses_raw_predict_and_the_anthropic_translation(gateway: RunningGateway, fake: FakeGoogle) -> None:
    completion = client(gateway).chat.completions.create(
        model=CLAUDE,
        messages=[{"role": "system", "content": "Be brief."}, *user("Hello Claude")],
        temperature=0.3,
    )
    assert completion.choices[0].message.content == "You said: Hello Claude"
    assert completion.model == CLAUDE
    assert completion.usage is not None
    assert completion.usage.completion_tokens == CLAUDE_USAGE["output_tokens"]
    sent = fake.last()
    assert sent.path == f"{PROJECT_PATH}/anthropic/models/{CLAUDE}:rawPredict"
    assert sent.body == {
        "anthropic_version": "vertex-2023-10-16",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello Claude"}]}],
        "system": [{"type": "text", "text": "Be brief."}],
        "max_tokens": 4096,
        "temperature": 0.3,
    }
    assert sent.headers["authorization"].startswith("Bearer ya29.fake-")


def test_claude_streamed_with_tools_and_alias(gateway: RunningGateway, fake: FakeGoogle) -> None:
    chunks = list(
        client(gateway).chat.completions.create(
            model="claude-alias",
            messages=user("Weather in Paris and Tokyo?"),
            tools=[WEATHER_TOOL],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    sent = fake.last()
    assert sent.path == f"{PROJECT_PATH}/anthropic/models/{CLAUDE}:streamRawPredict"
    assert sent.body["stream"] is True
    assert sent.body["max_tokens"] == 500
    assert "model" not in sent.body
    # The claude-alias model is really "claude-..." upstream, yet the fake answered: -tool is not in its name.
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).startswith("You said:")
    assert {c.model for c in chunks} == {"claude-alias"}
    assert chunks[-1].usage is not None


def test_claude_tool_calls_round_trip(gateway: RunningGateway, fake: FakeGoogle) -> None:
    model = "claude-haiku-4-5@20251001-tool"
    first = client(gateway).chat.completions.create(model=model, messages=user("Weather?"), tools=[WEATHER_TOOL])
    message = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls"
    assert message.tool_calls is not None
    assert [c.id for c in message.tool_calls] == ["toolu_01A", "toolu_01B"]
    second = client(gateway).chat.completions.create(
        model=model,
        messages=[
            {"role": "user", "content": "Weather?"},
            message.model_dump(exclude_none=True),  # type: ignore[list-item]
            *({"role": "tool", "tool_call_id": c.id, "content": "sunny"} for c in message.tool_calls),
        ],
        tools=[WEATHER_TOOL],
    )
    assert second.choices[0].message.content == "Tool results: toolu_01A=sunny; toolu_01B=sunny"
    assert fake.last().path.endswith(":rawPredict")


def test_claude_errors_keep_anthropics_message(gateway: RunningGateway) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        client(gateway).chat.completions.create(model="claude-x-429", messages=user("x"))
    assert caught.value.code == "rate_limit_error"
    assert caught.value.message.endswith("Number of requests has exceeded your rate limit")
    assert caught.value.response.headers["retry-after"] == "7"


# -- credential sources and refresh ----------------------------------------------------------------------------------


def _one_gateway(fake: FakeGoogle, tmp: Path, env: dict[str, str]) -> RunningGateway:
    return start_gateway(vertex_config(fake), tmp, env=env)


def test_tokens_are_renewed_before_they_expire(fake: FakeGoogle, tmp_path: Path) -> None:
    # A 4 s token: renewed in the background from 2 s (half its life) while still used, not used from 3 s.
    fake.token_lifetime = 4
    try:
        running = _one_gateway(fake, tmp_path, adc_env(tmp_path, fake.service_account_info()))
        try:
            gateway_client = client(running)

            def ask() -> str:
                gateway_client.chat.completions.create(model="gemini-2.5-flash", messages=user("x"))
                return bearer(fake)

            first = ask()
            assert ask() == first
            fetched = len(fake.token_requests)
            time.sleep(2.2)
            # Still valid: this request carries it, and its renewal starts beside it.
            assert ask() == first
            deadline = time.monotonic() + 2.0
            while len(fake.token_requests) == fetched and time.monotonic() < deadline:
                time.sleep(0.02)
            assert len(fake.token_requests) == fetched + 1
            second = ask()
            assert second != first
            # Past its last usable moment a token is never sent: the request waits for a new one.
            time.sleep(3.2)
            third = ask()
            assert third not in (first, second)
            assert fake.tokens[third] > time.time()
        finally:
            running.stop()
    finally:
        fake.token_lifetime = 3600


def test_one_refresh_at_a_time(fake: FakeGoogle, tmp_path: Path) -> None:
    fake.token_delay = 0.5
    try:
        running = _one_gateway(fake, tmp_path, adc_env(tmp_path, fake.service_account_info()))
        try:
            before = len(fake.token_requests)

            async def burst() -> list[str | None]:
                async with openai.AsyncOpenAI(base_url=running.url, api_key="x", max_retries=0) as aclient:
                    answers = await asyncio.gather(
                        *(
                            aclient.chat.completions.create(model="gemini-2.5-flash", messages=user(str(i)))  # type: ignore[arg-type]
                            for i in range(8)
                        )
                    )
                return [a.choices[0].message.content for a in answers]

            assert asyncio.run(burst()) == [f"You said: {i}" for i in range(8)]
            assert len(fake.token_requests) == before + 1
        finally:
            running.stop()
    finally:
        fake.token_delay = 0.0


def test_authorized_user_refresh_token(fake: FakeGoogle, tmp_path: Path) -> None:
    env = adc_env(tmp_path, fake.authorized_user_info(), TEST_GOOGLE_TOKEN_URI=fake.token_uri)
    running = _one_gateway(fake, tmp_path, env)
    try:
        completion = client(running).chat.completions.create(model="gemini-2.5-flash", messages=user("user creds"))
        assert completion.choices[0].message.content == "You said: user creds"
        request = fake.token_requests[-1]
        assert request["grant_type"] == "refresh_token"
        assert request["refresh_token"] == fake.account.refresh_token
        assert bearer(fake) in fake.tokens
    finally:
        running.stop()


def test_gcloud_adc_file(fake: FakeGoogle, tmp_path: Path) -> None:
    env = adc_env(tmp_path, TEST_GOOGLE_TOKEN_URI=fake.token_uri)
    (Path(env["CLOUDSDK_CONFIG"]) / "application_default_credentials.json").write_text(
        json.dumps(fake.authorized_user_info())
    )
    running = _one_gateway(fake, tmp_path, env)
    try:
        completion = client(running).chat.completions.create(model="gemini-2.5-flash", messages=user("gcloud"))
        assert completion.choices[0].message.content == "You said: gcloud"
        assert fake.token_requests[-1]["grant_type"] == "refresh_token"
    finally:
        running.stop()


def test_metadata_server(fake: FakeGoogle, tmp_path: Path) -> None:
    host = fake.origin.removeprefix("http://")
    env = adc_env(tmp_path, GCE_METADATA_HOST=host, GCE_METADATA_IP=host, NO_GCE_CHECK="false")
    running = _one_gateway(fake, tmp_path, env)
    try:
        before = len(fake.token_requests)
        completion = client(running).chat.completions.create(model="gemini-2.5-flash", messages=user("on gce"))
        assert completion.choices[0].message.content == "You said: on gce"
        assert any("service-accounts/default/token" in path for path in fake.metadata_requests)
        assert len(fake.token_requests) == before  # not the OAuth endpoint: the metadata server
        assert bearer(fake) in fake.tokens
    finally:
        running.stop()


def test_unusable_credentials_are_a_clear_502_without_secrets(fake: FakeGoogle, tmp_path: Path) -> None:
    info = fake.service_account_info()
    info["client_email"] = "someone-else@test-project.iam.gserviceaccount.com"  # the JWT's iss will not match
    running = _one_gateway(fake, tmp_path, adc_env(tmp_path, info))
    try:
        with pytest.raises(openai.InternalServerError) as caught:
            client(running).chat.completions.create(model="gemini-2.5-flash", messages=user("x"))
        assert caught.value.status_code == 502
        assert caught.value.code == "upstream_credentials_unavailable"
        assert "Invalid JWT" in caught.value.message
        body = orjson.dumps(caught.value.body).decode()
        assert "PRIVATE KEY" not in body
        assert "PRIVATE KEY" not in running.log()
    finally:
        running.stop()


def test_claude_error_event_mid_stream_reaches_the_client(gateway: RunningGateway) -> None:
    stream = client(gateway).chat.completions.create(model="claude-x-overloaded", messages=user("x"), stream=True)
    with pytest.raises(openai.APIError, match="Overloaded"):
        for _ in stream:
            pass


def test_gemini_bare_error_ending_the_stream_is_a_429_with_googles_message(gateway: RunningGateway) -> None:
    stream = client(gateway).chat.completions.create(model="gemini-x-bare-error", messages=user("x"), stream=True)
    with pytest.raises(openai.APIError, match="Resource has been exhausted") as caught:
        for _ in stream:
            pass
    assert caught.value.code == "RESOURCE_EXHAUSTED"
    assert isinstance(caught.value.body, dict) and caught.value.body["status"] == 429


def test_two_vertex_entries_on_the_same_credentials_share_one_token(fake: FakeGoogle, tmp_path: Path) -> None:
    # "claude-alias" and "*" are two entries on the same ADC: one token for both in the worker, not one each.
    running = _one_gateway(fake, tmp_path, adc_env(tmp_path, fake.service_account_info()))
    try:
        before = len(fake.token_requests)
        client(running).chat.completions.create(model="gemini-2.5-flash", messages=user("one"))
        first = bearer(fake)
        client(running).chat.completions.create(model="claude-alias", messages=user("two"))
        assert bearer(fake) == first
        assert len(fake.token_requests) == before + 1
    finally:
        running.stop()
