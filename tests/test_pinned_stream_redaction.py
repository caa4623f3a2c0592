"""An upstream error inside a stream is redacted like its logged copy (issue 20).

Upstreams quote the credentials they refuse ("Incorrect API key provided: sk-..."). Before a stream starts the
gateway's error body is redacted; these pin the same for the error *event* of a stream that already began, for
both client APIs, whether the core translated the event (OpenAI upstream, OpenAI client; Anthropic upstream,
OpenAI client) or passed it through byte for byte (Anthropic upstream, Anthropic client).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import anthropic
import openai
import pytest
from aiohttp import web
from conftest import RunningGateway, openai_client, start_gateway
from fakes.server import serve_in_thread

# JSON escapes the quote in this one: the redaction must find it written either way.
SECRET = "sk-quoted-back-0123456789abcdef"
QUOTED_SECRET = 'sk-"quoted"-back-9876543210'


def _openai_chunk(content: str) -> bytes:
    chunk = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": content}, "finish_reason": None}],
    }
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


def _anthropic_event(event: str, data: dict[str, object]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


async def _openai_stream(request: web.Request) -> web.StreamResponse:
    key = request.headers["authorization"].removeprefix("Bearer ")
    response = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await response.prepare(request)
    await response.write(_openai_chunk("partial "))
    error = {"error": {"message": f"Incorrect API key provided: {key}.", "type": "invalid_request_error",
                       "param": None, "code": "invalid_api_key"}}  # fmt: skip
    await response.write(b"data: " + json.dumps(error).encode() + b"\n\n")
    await response.write_eof()
    return response


async def _anthropic_stream(request: web.Request) -> web.StreamResponse:
    key = request.headers.get("x-api-key") or request.headers["authorization"].removeprefix("Bearer ")
    response = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await response.prepare(request)
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 3, "output_tokens": 1},
    }
    await response.write(_anthropic_event("message_start", {"type": "message_start", "message": message}))
    block = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    await response.write(_anthropic_event("content_block_start", block))
    delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "partial "}}
    await response.write(_anthropic_event("content_block_delta", delta))
    error = {"type": "error", "error": {"type": "authentication_error", "message": f"invalid x-api-key {key}"}}
    await response.write(_anthropic_event("error", error))
    await response.write_eof()
    return response


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", _openai_stream)
    app.router.add_post("/v1/messages", _anthropic_stream)
    origin, stop = serve_in_thread(app, "fake-quoting-upstream")
    config = f"""
llm:
  models:
  - {{name: openai-model, provider: openAI, params: {{apiKey: '{SECRET}', baseUrl: '{origin}/v1'}}}}
  - {{name: claude-model, provider: anthropic, params: {{apiKey: '{SECRET}', baseUrl: '{origin}'}}}}
  - {{name: quoted-model, provider: openAI, params: {{apiKey: '{QUOTED_SECRET}', baseUrl: '{origin}/v1'}}}}
"""
    running = start_gateway(config, tmp_path_factory.mktemp("gw-redact"))
    yield running
    running.stop()
    stop()


@pytest.mark.parametrize(
    ("model", "secret"), [("openai-model", SECRET), ("claude-model", SECRET), ("quoted-model", QUOTED_SECRET)]
)
def test_the_openai_clients_error_event_does_not_quote_the_key(
    gateway: RunningGateway, model: str, secret: str
) -> None:
    client = openai_client(gateway.url)
    stream = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], stream=True)
    received = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            received.append(chunk)
    assert received, "the stream had begun"
    assert "[redacted]" in caught.value.message
    assert secret not in caught.value.message
    assert secret not in json.dumps(caught.value.body)
    assert secret not in gateway.log() and json.dumps(secret) not in gateway.log()


def test_the_anthropic_clients_error_event_does_not_quote_the_key(gateway: RunningGateway) -> None:
    for model in ("claude-model", "openai-model"):  # passed through byte for byte, and translated
        texts: list[str] = []
        with (
            anthropic.Anthropic(base_url=gateway.url, api_key="sk-client", max_retries=0) as sdk,
            pytest.raises(anthropic.APIStatusError) as caught,
            sdk.messages.stream(model=model, max_tokens=20, messages=[{"role": "user", "content": "hi"}]) as stream,
        ):
            texts.extend(stream.text_stream)
        assert texts, "the stream had begun"
        assert "[redacted]" in str(caught.value.body), caught.value.body
        assert SECRET not in str(caught.value.body) and SECRET not in caught.value.message


def test_the_raw_stream_bytes_hold_no_key(gateway: RunningGateway, tmp_path: Path) -> None:
    import httpx

    for model in ("openai-model", "claude-model", "quoted-model"):
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": True}
        for path in ("/v1/chat/completions", "/v1/messages"):
            payload = {**body, "max_tokens": 20} if path == "/v1/messages" else body
            raw = httpx.post(gateway.url + path, json=payload, timeout=30).content
            assert b"[redacted]" in raw, (model, path, raw)
            for secret in (SECRET, QUOTED_SECRET):
                assert secret.encode() not in raw and json.dumps(secret)[1:-1].encode() not in raw, (model, path)


def test_a_fanned_out_streams_error_event_does_not_quote_the_key(gateway: RunningGateway) -> None:
    # n > 1 on a Claude path: n calls merged into one stream (fanout.py); the first call's error ends it.
    client = openai_client(gateway.url)
    stream = client.chat.completions.create(
        model="claude-model", messages=[{"role": "user", "content": "hi"}], stream=True, n=2
    )
    with pytest.raises(openai.APIError) as caught:
        for _ in stream:
            pass
    assert "[redacted]" in caught.value.message and SECRET not in caught.value.message
