"""Micro benches of the Rust core, called from Python as the gateway calls it.

Run: ``python -m pytest benches --benchmark-enable`` (the project's normal pytest run collects only tests/).

The gateway makes one core call per network read, so the benches feed what a read delivers: the whole stream
transcript at once (a fast upstream on loopback), or one SSE event per call (a real model, token by token). Each
stream round uses a fresh translator made outside the timed call. The transcript is data/stream.sse: 33 chunks
(32 with content, one with the finish reason), a usage chunk and ``[DONE]``; every chunk says
``"model": "gpt-4o-mini"``.
"""

from __future__ import annotations

import base64
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from agentgateway._core import ResponseParser, StreamTranslator, translate_response
from pytest_benchmark.fixture import BenchmarkFixture

DATA = Path(__file__).parent / "data"
TRANSCRIPT = (DATA / "stream.sse").read_bytes()
EVENTS = [event + b"\n\n" for event in TRANSCRIPT.split(b"\n\n") if event]
COMPLETION = (DATA / "completion.json").read_bytes()
ROUNDS = 3000

# (client_model, include_usage):
#   passthrough: no model to write back, usage asked for -> every chunk is copied verbatim (the fast path);
#   same-model: the client's model equals the upstream's, usage not asked for -> the usage chunk is dropped and
#     every other chunk is still copied verbatim (nothing to rewrite: the names match);
#   rewrite: an alias the upstream does not report -> every chunk is re-serialized with the client's model.
STREAM_CASES = pytest.mark.parametrize(
    ("client_model", "include_usage"),
    [(None, True), ("gpt-4o-mini", False), ("gpt-4o-mini-alias", False)],
    ids=["passthrough", "same-model-no-usage", "rewrite-model-no-usage"],
)


def fresh_translator(client_model: str | None, include_usage: bool) -> Callable[[], tuple[tuple[Any, ...], dict]]:
    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        return (StreamTranslator("openai", client_model, include_usage),), {}

    return setup


def expected_output(client_model: str | None, include_usage: bool) -> bytes:
    translator = StreamTranslator("openai", client_model, include_usage)
    return translator.feed(TRANSCRIPT) + translator.finish()


@STREAM_CASES
def test_stream_whole_transcript(benchmark: BenchmarkFixture, client_model: str | None, include_usage: bool) -> None:
    def feed(translator: StreamTranslator) -> bytes:
        return translator.feed(TRANSCRIPT)

    out = benchmark.pedantic(
        feed, setup=fresh_translator(client_model, include_usage), rounds=ROUNDS, warmup_rounds=100
    )
    assert out.endswith(b"data: [DONE]\n\n")
    assert (b'"usage": {' in out) == include_usage
    if client_model == "gpt-4o-mini-alias":
        assert out.count(b'"model":"gpt-4o-mini-alias"') == len(EVENTS) - 2  # all but the usage chunk and [DONE]
    else:
        assert TRANSCRIPT.startswith(out[: len(EVENTS[0])])  # the first chunk passed through verbatim


@STREAM_CASES
def test_stream_one_event_per_read(benchmark: BenchmarkFixture, client_model: str | None, include_usage: bool) -> None:
    def feed(translator: StreamTranslator) -> int:
        size = 0
        for event in EVENTS:
            size += len(translator.feed(event))
        return size

    size = benchmark.pedantic(
        feed, setup=fresh_translator(client_model, include_usage), rounds=ROUNDS, warmup_rounds=100
    )
    assert size == len(expected_output(client_model, include_usage))


@pytest.mark.parametrize("client_model", ["gpt-4o-mini", "gpt-4o-mini-alias"], ids=["same-model", "rewrite-model"])
def test_translate_response(benchmark: BenchmarkFixture, client_model: str) -> None:
    body, usage = benchmark(translate_response, "openai", COMPLETION, client_model)
    assert usage is not None and usage[:3] == (12, 17, 29)
    if client_model == "gpt-4o-mini":
        assert body == COMPLETION  # the upstream already reports the client's model: returned byte for byte
    else:
        assert b'"gpt-4o-mini-alias"' in body


def test_http1_content_length_response(benchmark: BenchmarkFixture) -> None:
    response = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        len(COMPLETION),
        COMPLETION,
    )

    def run() -> bytes:
        return ResponseParser().feed(response)[1]

    assert benchmark(run) == COMPLETION


def test_http1_chunked_stream_one_event_per_read(benchmark: BenchmarkFixture) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    pieces = [b"%x\r\n%s\r\n" % (len(event), event) for event in EVENTS] + [b"0\r\n\r\n"]

    def run() -> int:
        parser = ResponseParser()
        parser.feed(head)
        size = 0
        for piece in pieces:
            size += len(parser.feed(piece)[1])
        return size

    assert benchmark(run) == len(TRANSCRIPT)


# -- Anthropic: a 40-delta Messages stream (data/anthropic_stream.sse) translated into OpenAI chunks ---------------

ANTHROPIC_TRANSCRIPT = (DATA / "anthropic_stream.sse").read_bytes()
ANTHROPIC_EVENTS = [event + b"\n\n" for event in ANTHROPIC_TRANSCRIPT.split(b"\n\n") if event]


def fresh_anthropic_translator() -> tuple[tuple[Any, ...], dict[str, Any]]:
    return (StreamTranslator("anthropic", "claude-sonnet", True),), {}


def test_anthropic_stream_whole_transcript(benchmark: BenchmarkFixture) -> None:
    def feed(translator: StreamTranslator) -> bytes:
        return translator.feed(ANTHROPIC_TRANSCRIPT)

    out = benchmark.pedantic(feed, setup=fresh_anthropic_translator, rounds=ROUNDS, warmup_rounds=100)
    assert out.endswith(b"data: [DONE]\n\n")
    assert out.count(b'"content":') == 41  # the role chunk and 40 text deltas


def test_anthropic_stream_one_event_per_read(benchmark: BenchmarkFixture) -> None:
    def feed(translator: StreamTranslator) -> int:
        size = 0
        for event in ANTHROPIC_EVENTS:
            size += len(translator.feed(event))
        return size

    size = benchmark.pedantic(feed, setup=fresh_anthropic_translator, rounds=ROUNDS, warmup_rounds=100)
    assert size > len(ANTHROPIC_EVENTS) * 100


# -- Gemini: a 40-chunk streamGenerateContent stream (data/gemini_stream.sse, \r\n\r\n-framed, cumulative usage) ----

GEMINI_TRANSCRIPT = (DATA / "gemini_stream.sse").read_bytes()
GEMINI_EVENTS = [event + b"\r\n\r\n" for event in GEMINI_TRANSCRIPT.split(b"\r\n\r\n") if event]
GEMINI_RESPONSE = (DATA / "gemini_response.json").read_bytes()


def fresh_gemini_translator() -> tuple[tuple[Any, ...], dict[str, Any]]:
    return (StreamTranslator("gemini", "gemini-flash", True),), {}


def test_gemini_stream_whole_transcript(benchmark: BenchmarkFixture) -> None:
    def feed(translator: StreamTranslator) -> bytes:
        return translator.feed(GEMINI_TRANSCRIPT) + translator.finish()  # Gemini sends no [DONE]: EOF ends it

    out = benchmark.pedantic(feed, setup=fresh_gemini_translator, rounds=ROUNDS, warmup_rounds=100)
    assert out.endswith(b"data: [DONE]\n\n")
    assert out.count(b'"content":') == 41  # the role chunk and 40 text chunks


def test_gemini_stream_one_event_per_read(benchmark: BenchmarkFixture) -> None:
    def feed(translator: StreamTranslator) -> int:
        size = 0
        for event in GEMINI_EVENTS:
            size += len(translator.feed(event))
        return size

    size = benchmark.pedantic(feed, setup=fresh_gemini_translator, rounds=ROUNDS, warmup_rounds=100)
    assert size > len(GEMINI_EVENTS) * 100


def test_gemini_translate_response(benchmark: BenchmarkFixture) -> None:
    body, usage = benchmark(translate_response, "gemini", GEMINI_RESPONSE, "gemini-flash")
    assert usage is not None and usage[:3] == (12, 40, 52)
    assert b'"finish_reason":"stop"' in body


# -- Anthropic Messages clients (issue 19): the same transcripts written for client_api="anthropic" -------------------
#   anthropic -> anthropic: the pass-through (model rewritten in message_start only);
#   bedrock-anthropic -> anthropic: InvokeModelWithResponseStream (base64 chunk events) of the same 40-delta stream;
#   openai / gemini -> anthropic: decoded into the canonical events and written by the Anthropic encoder.


def _eventstream_frame(headers: list[tuple[str, str]], payload: bytes) -> bytes:
    head = b"".join(
        struct.pack("B", len(name)) + name.encode() + b"\x07" + struct.pack(">H", len(value)) + value.encode()
        for name, value in headers
    )
    prelude = struct.pack(">II", 12 + len(head) + len(payload) + 4, len(head))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    message = prelude + head + payload
    return message + struct.pack(">I", zlib.crc32(message))


BEDROCK_ANTHROPIC_TRANSCRIPT = b"".join(
    _eventstream_frame(
        [(":event-type", "chunk"), (":content-type", "application/json"), (":message-type", "event")],
        b'{"bytes":"%s","p":"abcdefgh"}' % base64.b64encode(line.removeprefix(b"data: ")),
    )
    for event in ANTHROPIC_EVENTS
    for line in event.split(b"\n")
    if line.startswith(b"data: ")
)
ANTHROPIC_MESSAGE = (DATA / "anthropic_message.json").read_bytes()

ANTHROPIC_CLIENT_CASES = pytest.mark.parametrize(
    ("provider", "transcript"),
    [
        ("anthropic", ANTHROPIC_TRANSCRIPT),
        ("bedrock-anthropic", BEDROCK_ANTHROPIC_TRANSCRIPT),
        ("openai", TRANSCRIPT),
        ("gemini", GEMINI_TRANSCRIPT),
    ],
    ids=["anthropic-passthrough", "bedrock-invoke-model", "openai-decoded", "gemini-decoded"],
)


@ANTHROPIC_CLIENT_CASES
def test_anthropic_client_stream_whole_transcript(
    benchmark: BenchmarkFixture, provider: str, transcript: bytes
) -> None:
    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        return (StreamTranslator(provider, "claude-alias", False, client_api="anthropic"),), {}

    def feed(translator: StreamTranslator) -> bytes:
        return translator.feed(transcript) + translator.finish()

    out = benchmark.pedantic(feed, setup=setup, rounds=ROUNDS, warmup_rounds=100)
    assert out.endswith(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
    assert b'"model":"claude-alias"' in out


@ANTHROPIC_CLIENT_CASES
def test_anthropic_client_stream_one_event_per_read(
    benchmark: BenchmarkFixture, provider: str, transcript: bytes
) -> None:
    if provider == "bedrock-anthropic":
        pieces, start = [], 0
        while start < len(transcript):
            (length,) = struct.unpack(">I", transcript[start : start + 4])
            pieces.append(transcript[start : start + length])
            start += length
    else:
        separator = b"\r\n\r\n" if provider == "gemini" else b"\n\n"
        pieces = [event + separator for event in transcript.split(separator) if event]

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        return (StreamTranslator(provider, "claude-alias", False, client_api="anthropic"),), {}

    def feed(translator: StreamTranslator) -> int:
        size = 0
        for piece in pieces:
            size += len(translator.feed(piece))
        return size + len(translator.finish())

    size = benchmark.pedantic(feed, setup=setup, rounds=ROUNDS, warmup_rounds=100)
    assert size > len(pieces) * 50


@pytest.mark.parametrize(
    ("provider", "body"),
    [
        ("anthropic", ANTHROPIC_MESSAGE),
        ("openai", COMPLETION),
        ("gemini", GEMINI_RESPONSE),
        ("bedrock", (DATA / "bedrock_response.json").read_bytes()),
    ],
    ids=["anthropic-passthrough", "openai", "gemini", "bedrock"],
)
def test_anthropic_client_translate_response(benchmark: BenchmarkFixture, provider: str, body: bytes) -> None:
    out, usage = benchmark(translate_response, provider, body, "claude-alias", "anthropic")
    assert usage is not None
    assert b'"type":"message"' in out.replace(b" ", b"")
