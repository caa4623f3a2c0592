"""guardrails and promptCaching on /v1/messages (issues 19, 21), through the anthropic SDK: request guards (regex
reject / mask over system, messages and tool results; webhook) and response guards (regex mask / reject, webhook) on
every Messages path -- Claude passed through natively, OpenAI decoded through the core's Anthropic encoder, Claude on
Bedrock through InvokeModel, other Bedrock models through Converse -- whole and streamed, masks split across
``text_delta`` events; rejections in Anthropic's error shape (and as the stream's ``event: error``). promptCaching's
cache points on both Bedrock Messages paths."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx
import pytest
from conftest import TEST_KEY, RunningGateway, start_gateway
from fakes.anthropic_upstream import FakeAnthropic, start_fake_anthropic
from fakes.bedrock_upstream import FakeBedrock, start_fake_bedrock
from fakes.server import serve_in_thread
from test_guardrails import Fakes as GuardFakes
from test_guardrails import _app as guard_app

BEDROCK_KEY = "ABSKbedrock-api-key-for-guardrails"
CARD = "4111 1111 1111 1111"
#: long enough that a stream of 7-character pieces passes the 128-character hold-back several times
LONG = "Please charge " + CARD + " for the order. " + "The rest of this prompt is filler text. " * 8
EMAIL = "jane.doe@example.com"


@dataclass
class Upstreams:
    anthropic: FakeAnthropic
    bedrock: FakeBedrock
    guard: GuardFakes


@pytest.fixture(scope="module")
def upstreams() -> Iterator[Upstreams]:
    fake_anthropic, stop_anthropic = start_fake_anthropic(TEST_KEY)
    fake_bedrock, stop_bedrock = start_fake_bedrock(api_keys={BEDROCK_KEY})
    guard = GuardFakes()
    guard.url, stop_guard = serve_in_thread(guard_app(guard), "guard-fakes-messages")
    yield Upstreams(fake_anthropic, fake_bedrock, guard)
    for stop in (stop_guard, stop_bedrock, stop_anthropic):
        stop()


@pytest.fixture(scope="module")
def gateway(upstreams: Upstreams, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    claude = f'provider: anthropic, params: {{apiKey: {TEST_KEY}, baseUrl: "{upstreams.anthropic.origin}"}}'
    openai = f'provider: openAI, params: {{apiKey: {TEST_KEY}, baseUrl: "{upstreams.guard.url}/v1", model: echo-3}}'
    bedrock = f'provider: bedrock, params: {{apiKey: "{BEDROCK_KEY}", awsRegion: us-east-1, ' \
              f'baseUrl: "{upstreams.bedrock.base_url}"}}'  # fmt: skip
    caching = "promptCaching: {cacheSystem: true, cacheMessages: true, minTokens: 1}"
    host = upstreams.guard.url.removeprefix("http://")
    config = f"""
llm:
  guardrails:
    pii:
      streaming: enabled
      request:
      - regex: {{action: reject, rules: [{{builtin: ssn}}]}}
        rejection: {{status: 400, body: "no SSNs please"}}
      - regex: {{action: mask, rules: [{{builtin: email}}]}}
      response:
      - regex: {{action: mask, rules: [{{builtin: creditCard}}, {{pattern: "Bedrock"}}]}}
      - regex: {{action: reject, rules: [{{pattern: "FORBIDDEN-WORD"}}]}}
  models:
  - {{name: "claude-hooked", {claude}, guardrails: {{request: [{{webhook: {{target: {{host: "{host}"}}}}}}],
      response: [{{webhook: {{target: {{host: "{host}"}}}}}}]}}}}
  - {{name: "claude-answer-hooked", {claude}, guardrails: {{response: [{{webhook: {{target: {{host: "{host}"}}}}}}]}}}}
  - {{name: "claude-stream-hooked", {claude}, guardrails: {{streaming: enabled,
      response: [{{webhook: {{target: {{host: "{host}"}}}}}}]}}}}
  - {{name: "claude-*", {claude}, guardrails: pii}}
  - {{name: "gpt-echo", {openai}, guardrails: pii}}
  - {{name: "us.anthropic.claude-*", {bedrock}, guardrails: pii, {caching}}}
  - {{name: "amazon.nova-*", {bedrock}, guardrails: pii, {caching}}}
"""
    running = start_gateway(config, tmp_path_factory.mktemp("gw-messages-guard"))
    yield running
    running.stop()


@pytest.fixture
def client(gateway: RunningGateway) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gateway.url, api_key="sk-client", max_retries=0) as sdk:
        yield sdk


def _text(message: Any) -> str:
    return "".join(block.text for block in message.content if block.type == "text")


def _streamed(client: anthropic.Anthropic, model: str, text: str) -> tuple[list[str], Any]:
    """The text_delta pieces as the SDK hands them out, and the final message it accumulated."""
    with client.messages.stream(model=model, max_tokens=100, messages=[{"role": "user", "content": text}]) as stream:
        pieces = list(stream.text_stream)
        return pieces, stream.get_final_message()


#: every Messages path with a text-echoing upstream: (model, what the echo puts before the prompt)
ECHOES = [("claude-sonnet", "You said: "), ("gpt-echo", ""), ("us.anthropic.claude-sonnet-4-5", "You said: ")]


# -- request guards --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["claude-sonnet", "gpt-echo", "us.anthropic.claude-x", "amazon.nova-pro-v1:0"])
def test_a_prompt_with_an_ssn_is_rejected_in_anthropics_shape(client: anthropic.Anthropic, model: str) -> None:
    with pytest.raises(anthropic.BadRequestError) as refused:
        client.messages.create(
            model=model, max_tokens=10, messages=[{"role": "user", "content": "My SSN is 123-45-6789"}]
        )
    body = refused.value.body
    assert isinstance(body, dict)
    assert body["type"] == "error" and body["error"] == {"type": "invalid_request_error", "message": "no SSNs please"}


def test_emails_are_masked_in_system_messages_and_tool_results_before_they_are_sent(
    client: anthropic.Anthropic, upstreams: Upstreams
) -> None:
    tool = {"name": "lookup", "input_schema": {"type": "object"}}
    messages: list[Any] = [
        {"role": "user", "content": f"Write to {EMAIL}"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": f"owner {EMAIL}"}]},
            {"type": "text", "text": "thanks"},
        ]},
    ]  # fmt: skip
    client.messages.create(
        model="claude-sonnet",
        max_tokens=20,
        system=[{"type": "text", "text": f"Reply to {EMAIL}"}],
        tools=[tool],  # type: ignore[list-item]
        messages=messages,
    )
    sent = upstreams.anthropic.last().body
    assert EMAIL not in repr(sent)
    assert sent["system"] == [{"type": "text", "text": "Reply to <EMAIL_ADDRESS>"}]
    assert sent["messages"][0]["content"] == "Write to <EMAIL_ADDRESS>"
    result = sent["messages"][2]["content"][0]
    assert result["content"] == [{"type": "text", "text": "owner <EMAIL_ADDRESS>"}]
    assert sent["messages"][1] == messages[1]  # the tool_use turn untouched


def test_the_request_webhook_masks_messages_keeping_their_blocks(
    client: anthropic.Anthropic, upstreams: Upstreams
) -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
    content: list[Any] = [image, {"type": "text", "text": "my secret plan"}]
    message = client.messages.create(
        model="claude-hooked", max_tokens=20, messages=[{"role": "user", "content": content}]
    )
    sent = upstreams.anthropic.last().body["messages"][0]["content"]
    assert sent == [image, {"type": "text", "text": "my [hidden] plan"}]
    assert upstreams.guard.hooks[-2][2] == {"body": {"messages": [{"role": "user", "content": "my secret plan"}]}}
    # the answer ("You said: my [hidden] plan") passed the response webhook unchanged
    assert _text(message) == "You said: my [hidden] plan"


def test_the_webhook_rejects_with_its_own_status(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.UnprocessableEntityError) as refused:
        client.messages.create(model="claude-hooked", max_tokens=20, messages=[{"role": "user", "content": "REJECTME"}])
    body = refused.value.body
    assert isinstance(body, dict) and body["error"]["message"] == "the webhook refused it"


# -- response guards -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "prefix"), ECHOES)
def test_a_whole_answer_is_masked(client: anthropic.Anthropic, model: str, prefix: str) -> None:
    message = client.messages.create(model=model, max_tokens=100, messages=[{"role": "user", "content": LONG}])
    assert _text(message) == prefix + LONG.replace(CARD, "<CREDIT_CARD>")


@pytest.mark.parametrize(("model", "prefix"), ECHOES)
def test_a_streamed_answer_is_masked_across_text_delta_events(
    client: anthropic.Anthropic, model: str, prefix: str
) -> None:
    pieces, final = _streamed(client, model, LONG)
    expected = prefix + LONG.replace(CARD, "<CREDIT_CARD>")
    assert "".join(pieces) == expected and _text(final) == expected
    assert len(pieces) > 2  # not held whole: the text went out as it came, past the hold-back
    assert all(CARD not in piece for piece in pieces)


def test_the_response_webhook_masks_whole_answers(client: anthropic.Anthropic, upstreams: Upstreams) -> None:
    message = client.messages.create(
        model="claude-answer-hooked", max_tokens=20, messages=[{"role": "user", "content": "the secret word"}]
    )
    assert _text(message) == "You said: the [gone] word"
    path, _, payload = upstreams.guard.hooks[-1]
    assert path == "/response"
    assert payload == {
        "body": {"choices": [{"message": {"role": "assistant", "content": "You said: the secret word"}}]}
    }
    with pytest.raises(anthropic.UnprocessableEntityError):
        client.messages.create(
            model="claude-answer-hooked", max_tokens=20, messages=[{"role": "user", "content": "REJECTME"}]
        )


def test_a_streaming_webhook_passes_windows_and_ends_the_stream_on_a_rejection(
    client: anthropic.Anthropic, upstreams: Upstreams
) -> None:
    text = "".join(f"sentence {i} of a long answer. " for i in range(60))
    before = len(upstreams.guard.hooks)
    pieces, final = _streamed(client, "claude-stream-hooked", text)
    assert "".join(pieces) == "You said: " + text == _text(final)
    windows = [h[2] for h in upstreams.guard.hooks[before:] if h[0] == "/response"]
    assert len(windows) == 2  # about 1 900 characters: two windows of the text_delta pieces
    seen = windows[0]["body"]["choices"][0]["message"]["content"]
    assert seen.startswith("You said: sentence 0") and len(seen) >= 1024
    with (
        pytest.raises(anthropic.APIStatusError) as ended,
        client.messages.stream(
            model="claude-stream-hooked", max_tokens=20, messages=[{"role": "user", "content": "REJECTME"}]
        ) as stream,
    ):
        for event in stream:
            assert event.type not in ("content_block_delta", "text"), "text of a rejected window went out"
    assert isinstance(ended.value.body, dict) and ended.value.body["error"]["message"] == "the webhook refused it"


def test_bedrock_converse_answers_are_masked_whole_and_streamed(client: anthropic.Anthropic) -> None:
    message = client.messages.create(
        model="amazon.nova-pro-v1:0", max_tokens=20, messages=[{"role": "user", "content": "hi"}]
    )
    assert _text(message) == "Hello from <masked>"
    pieces, final = _streamed(client, "amazon.nova-lite-v1:0", "hi")
    assert "".join(pieces) == "Hello from <masked>" == _text(final)


@pytest.mark.parametrize(("model", "prefix"), ECHOES)
def test_a_forbidden_answer_is_rejected_whole_and_ends_a_stream_with_an_error_event(
    client: anthropic.Anthropic, gateway: RunningGateway, model: str, prefix: str
) -> None:
    text = "say FORBIDDEN-WORD now"
    with pytest.raises(anthropic.PermissionDeniedError) as refused:
        client.messages.create(model=model, max_tokens=20, messages=[{"role": "user", "content": text}])
    body = refused.value.body
    assert isinstance(body, dict) and body["type"] == "error" and body["error"]["type"] == "permission_error"
    request = {"model": model, "max_tokens": 20, "stream": True, "messages": [{"role": "user", "content": text}]}
    with httpx.stream("POST", gateway.url + "/v1/messages", json=request, timeout=30) as response:
        raw = response.read().decode()
    assert response.status_code == 200
    assert "FORBIDDEN" not in raw.replace('"message":"', "")[: raw.find("event: error")]
    assert raw.rstrip().splitlines()[-2] == "event: error"
    assert '"type":"permission_error"' in raw.rstrip().splitlines()[-1]
    with (
        pytest.raises(anthropic.APIStatusError) as ended,
        client.messages.stream(model=model, max_tokens=20, messages=request["messages"]) as stream,
    ):
        for _ in stream:
            pass
    assert isinstance(ended.value.body, dict) and ended.value.body["error"]["type"] == "permission_error"


# -- promptCaching on the Bedrock Messages paths ---------------------------------------------------------------------


def test_prompt_caching_marks_bedrock_invoke_model_and_converse_bodies(
    client: anthropic.Anthropic, upstreams: Upstreams
) -> None:
    history: list[Any] = [
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": "second question"},
    ]
    client.messages.create(model="us.anthropic.claude-sonnet-4-5", max_tokens=20, system="Be brief.", messages=history)
    sent = upstreams.bedrock.last()
    assert sent.raw_path.endswith("/invoke")
    assert sent.body["system"] == [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}]
    assert sent.body["messages"][1]["content"] == [
        {"type": "text", "text": "first answer", "cache_control": {"type": "ephemeral"}}
    ]
    client.messages.create(model="amazon.nova-pro-v1:0", max_tokens=20, system="Be brief.", messages=history)
    sent = upstreams.bedrock.last()
    assert sent.raw_path.endswith("/converse")
    point = {"cachePoint": {"type": "default"}}
    assert sent.body["system"] == [{"text": "Be brief."}, point]
    assert sent.body["messages"][1]["content"] == [{"text": "first answer"}, point]
