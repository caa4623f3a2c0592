"""``stop_sequences`` on /v1/messages to decoded providers (issue 19): what a Messages client reads as
``stop_reason`` and ``stop_sequence`` when a non-Claude backend stops on one, whole and streamed, through the
anthropic SDK.

- Bedrock Converse says ``stopReason: stop_sequence``; which sequence comes back in ``additionalModelResponseFields``
  because the gateway asks for ``/stop_sequence`` (the fake answers as Converse does: only when asked).
- OpenAI-compatible servers that name the matched string (vLLM's ``stop_reason``) give it too.
- OpenAI itself says ``finish_reason: "stop"`` for a natural end and a matched sequence alike: ``end_turn``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import orjson
import pytest
from aiohttp import web
from conftest import TEST_KEY, RunningGateway, start_gateway
from fakes.bedrock_upstream import FakeBedrock, start_fake_bedrock
from fakes.openai_upstream import FakeOpenAI, start_fake_openai
from fakes.server import serve_in_thread

BEDROCK_KEY = "ABSKbedrock-api-key-for-stop-sequences"


def _vllm_app(seen: list[dict[str, Any]]) -> web.Application:
    """An OpenAI-compatible server as vLLM answers: the text up to the first stop string, ``finish_reason: "stop"``
    and ``stop_reason`` naming the string (null on a natural end)."""

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        seen.append(body)
        text, matched = "1, 2, 3, 4, 5", None
        for stop in body.get("stop") or []:
            if stop in text:
                text, matched = text[: text.index(stop)], stop
                break
        if not body.get("stream"):
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop",
                      "stop_reason": matched}  # fmt: skip
            usage = {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}
            return web.json_response({"id": "cmpl-v", "object": "chat.completion", "created": 1, "model": "m",
                                      "choices": [choice], "usage": usage})  # fmt: skip
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)

        def chunk(delta: dict[str, Any], finish: str | None = None, reason: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "finish_reason": finish, "stop_reason": reason}
            payload = {
                "id": "cmpl-v",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": "m",
                "choices": [choice],
            }
            return b"data: " + orjson.dumps(payload) + b"\n\n"

        out = chunk({"role": "assistant", "content": ""})
        for start in range(0, len(text), 3):
            out += chunk({"content": text[start : start + 3]})
        out += chunk({}, "stop", matched) + b"data: [DONE]\n\n"
        await response.write(out)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    return app


class Upstreams:
    def __init__(self) -> None:
        self.vllm_seen: list[dict[str, Any]] = []
        self.bedrock: FakeBedrock
        self.openai: FakeOpenAI
        self.vllm = ""


@pytest.fixture(scope="module")
def upstreams() -> Iterator[Upstreams]:
    ups = Upstreams()
    ups.bedrock, stop_bedrock = start_fake_bedrock(api_keys={BEDROCK_KEY})
    ups.openai, stop_openai = start_fake_openai()
    ups.vllm, stop_vllm = serve_in_thread(_vllm_app(ups.vllm_seen), "fake-vllm")
    yield ups
    for stop in (stop_vllm, stop_openai, stop_bedrock):
        stop()


@pytest.fixture(scope="module")
def client(upstreams: Upstreams, tmp_path_factory: pytest.TempPathFactory) -> Iterator[anthropic.Anthropic]:
    config = f"""
llm:
  models:
  - name: "amazon.nova-*"
    provider: bedrock
    params: {{apiKey: "{BEDROCK_KEY}", awsRegion: us-east-1, baseUrl: "{upstreams.bedrock.base_url}"}}
  - name: "gpt-*"
    provider: openAI
    params: {{apiKey: {TEST_KEY}, baseUrl: "{upstreams.openai.base_url}"}}
  - name: "vllm-*"
    provider: {{custom: {{formats: [{{type: completions}}]}}}}
    params: {{baseUrl: "{upstreams.vllm}/v1"}}
"""
    running: RunningGateway = start_gateway(config, tmp_path_factory.mktemp("gw-messages-stop"))
    with anthropic.Anthropic(base_url=running.url, api_key="sk-client", max_retries=0) as sdk:
        yield sdk
    running.stop()


def _both(client: anthropic.Anthropic, model: str, stop: list[str]) -> list[anthropic.types.Message]:
    """The same request whole and streamed (the stream's final message, as the SDK accumulates it)."""
    kwargs: dict[str, Any] = {"model": model, "max_tokens": 50, "stop_sequences": stop, "messages": [
        {"role": "user", "content": "Count to five."}]}  # fmt: skip
    whole = client.messages.create(**kwargs)
    with client.messages.stream(**kwargs) as stream:
        streamed = stream.get_final_message()
    return [whole, streamed]


def _text(message: anthropic.types.Message) -> str:
    return "".join(block.text for block in message.content if block.type == "text")


def test_bedrock_converse_names_the_matched_stop_sequence(client: anthropic.Anthropic, upstreams: Upstreams) -> None:
    for message in _both(client, "amazon.nova-pro-v1:0", ["zzz", " from"]):
        assert message.stop_reason == "stop_sequence"
        assert message.stop_sequence == " from"
        assert _text(message) == "Hello"
    sent = upstreams.bedrock.last().body
    assert sent["inferenceConfig"]["stopSequences"] == ["zzz", " from"]
    assert sent["additionalModelResponseFieldPaths"] == ["/stop_sequence"]


def test_bedrock_converse_without_a_match_is_end_turn(client: anthropic.Anthropic) -> None:
    for message in _both(client, "amazon.nova-lite-v1:0", ["zzz"]):
        assert message.stop_reason == "end_turn" and message.stop_sequence is None
        assert _text(message) == "Hello from Bedrock"


def test_a_server_that_names_the_matched_string_gives_it(client: anthropic.Anthropic, upstreams: Upstreams) -> None:
    for message in _both(client, "vllm-llama", [", 4"]):
        assert message.stop_reason == "stop_sequence" and message.stop_sequence == ", 4"
        assert _text(message) == "1, 2, 3"
    assert upstreams.vllm_seen[-1]["stop"] == [", 4"]
    for message in _both(client, "vllm-llama", ["nope"]):
        assert message.stop_reason == "end_turn" and message.stop_sequence is None


def test_openai_cannot_tell_a_stop_sequence_from_a_natural_end(
    client: anthropic.Anthropic, upstreams: Upstreams
) -> None:
    for message in _both(client, "gpt-4o-typed", ["END"]):
        assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert upstreams.openai.last().body["stop"] == ["END"]
