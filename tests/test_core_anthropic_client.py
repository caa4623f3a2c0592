"""The core's Anthropic Messages output (issue 19), read with the real ``anthropic`` SDK's types.

Each provider's recorded or fake stream goes through ``StreamTranslator(..., client_api="anthropic")``; every
event the core writes must validate as ``anthropic.types.RawMessageStreamEvent`` (or ``ErrorResponse`` for
``event: error``), and the SDK's own accumulator (what ``client.messages.stream(...).get_final_message()`` runs)
must build a ``Message`` from them. Whole bodies from ``translate_response(..., client_api="anthropic")`` must
validate as ``anthropic.types.Message``.
"""

from __future__ import annotations

import base64
import struct
import zlib
from pathlib import Path
from typing import Any

import orjson
import pytest
from agentgateway._core import (
    CLIENT_APIS,
    PROVIDERS,
    CoreError,
    StreamTranslator,
    UpstreamReportedError,
    anthropic_error,
    error_type_for_status,
    translate_response,
)
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message, RawMessageStreamEvent
from anthropic.types.shared import ErrorResponse
from pydantic import TypeAdapter

ROOT = Path(__file__).parent.parent
CORE_DATA = ROOT / "rust" / "sse_core" / "tests" / "data"
BENCH_DATA = ROOT / "benches" / "data"
EVENT: TypeAdapter[RawMessageStreamEvent] = TypeAdapter(RawMessageStreamEvent)


def frame(headers: list[tuple[str, str]], payload: bytes) -> bytes:
    """One AWS event stream message with string headers and both CRCs."""
    head = b"".join(
        struct.pack("B", len(name)) + name.encode() + b"\x07" + struct.pack(">H", len(value)) + value.encode()
        for name, value in headers
    )
    total = 12 + len(head) + len(payload) + 4
    prelude = struct.pack(">II", total, len(head))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    message = prelude + head + payload
    return message + struct.pack(">I", zlib.crc32(message))


def event_frame(kind: str, payload: dict[str, Any]) -> bytes:
    headers = [(":event-type", kind), (":content-type", "application/json"), (":message-type", "event")]
    return frame(headers, orjson.dumps(payload))


def sse_payloads(stream: bytes) -> list[bytes]:
    return [
        line.removeprefix(b"data: ")
        for event in stream.replace(b"\r\n", b"\n").split(b"\n\n")
        for line in event.split(b"\n")
        if line.startswith(b"data: ")
    ]


def invoke_model_stream(anthropic_sse: bytes) -> bytes:
    """An Anthropic SSE stream as Bedrock's InvokeModelWithResponseStream carries it."""
    return b"".join(
        event_frame("chunk", {"bytes": base64.b64encode(data).decode(), "p": "abcd"})
        for data in sse_payloads(anthropic_sse)
    )


ANTHROPIC_TOOL_USE = (CORE_DATA / "anthropic_tool_use.sse").read_bytes()
ANTHROPIC_THINKING = b"".join(
    b"event: %s\ndata: %s\n\n" % (orjson.loads(data)["type"].encode(), data)
    for data in [
        b'{"type":"message_start","message":{"id":"msg_t","type":"message","role":"assistant","model":"claude-x",'
        b'"content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":10,"output_tokens":1,'
        b'"cache_read_input_tokens":4,"cache_creation_input_tokens":2}}}',
        b'{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}',
        b'{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Let me think."}}',
        b'{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQBCkYIBhgC/+=="}}',
        b'{"type":"content_block_stop","index":0}',
        b'{"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}',
        b'{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"4"}}',
        b'{"type":"content_block_stop","index":1}',
        b'{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":7}}',
        b'{"type":"message_stop"}',
    ]
)

OPENAI_TOOLS = (
    b"".join(
        b"data: " + orjson.dumps(chunk) + b"\n\n"
        for chunk in [
            {
                "id": "chatcmpl-t",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": "gpt-x",
                "choices": [
                    {
                        "index": 0,
                        "delta": {"role": "assistant", "content": None, "reasoning_content": "Plan"},
                        "finish_reason": None,
                    }
                ],
            },
            {
                "id": "chatcmpl-t",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": "gpt-x",
                "choices": [{"index": 0, "delta": {"content": "Checking."}, "finish_reason": None}],
            },
            {
                "id": "chatcmpl-t",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": "gpt-x",
                "choices": [
                    {
                        "index": 0,
                        "delta": {
                            "tool_calls": [
                                {
                                    "index": 0,
                                    "id": "call_1",
                                    "type": "function",
                                    "function": {"name": "weather", "arguments": ""},
                                }
                            ]
                        },
                        "finish_reason": None,
                    }
                ],
            },
            {
                "id": "chatcmpl-t",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": "gpt-x",
                "choices": [
                    {
                        "index": 0,
                        "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"city": "Paris"}'}}]},
                        "finish_reason": None,
                    }
                ],
            },
            {
                "id": "chatcmpl-t",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": "gpt-x",
                "choices": [
                    {
                        "index": 0,
                        "delta": {
                            "tool_calls": [
                                {"index": 1, "type": "function", "function": {"name": "now", "arguments": "{}"}}
                            ]
                        },
                        "finish_reason": None,
                    }
                ],
            },
            {
                "id": "chatcmpl-t",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": "gpt-x",
                "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}],
            },
            {
                "id": "chatcmpl-t",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": "gpt-x",
                "choices": [],
                "usage": {
                    "prompt_tokens": 30,
                    "completion_tokens": 12,
                    "total_tokens": 42,
                    "prompt_tokens_details": {"cached_tokens": 10},
                },
            },
        ]
    )
    + b"data: [DONE]\n\n"
)

_CONVERSE_EVENTS: list[tuple[str, dict[str, Any]]] = [
    ("messageStart", {"role": "assistant"}),
    ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "Hmm."}}}),
    ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": "c2ln"}}}),
    ("contentBlockStop", {"contentBlockIndex": 0}),
    ("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"text": "Hi"}}),
    ("contentBlockStop", {"contentBlockIndex": 1}),
    ("contentBlockStart", {"contentBlockIndex": 2, "start": {"toolUse": {"toolUseId": "tooluse_1", "name": "f"}}}),
    ("contentBlockDelta", {"contentBlockIndex": 2, "delta": {"toolUse": {"input": '{"a": 1}'}}}),
    ("contentBlockStop", {"contentBlockIndex": 2}),
    ("messageStop", {"stopReason": "tool_use"}),
    (
        "metadata",
        {
            "usage": {
                "inputTokens": 10,
                "outputTokens": 7,
                "totalTokens": 23,
                "cacheReadInputTokens": 4,
                "cacheWriteInputTokens": 2,
            }
        },
    ),
]
CONVERSE = b"".join(event_frame(kind, payload) for kind, payload in _CONVERSE_EVENTS)

# (provider, upstream stream, what the final message must hold)
STREAMS: list[tuple[str, bytes, dict[str, Any]]] = [
    ("anthropic", ANTHROPIC_TOOL_USE, {"stop_reason": "tool_use", "block_types": ["text", "tool_use"]}),
    (
        "anthropic",
        ANTHROPIC_THINKING,
        {
            "stop_reason": "end_turn",
            "block_types": ["thinking", "text"],
            "signature": "EqQBCkYIBhgC/+==",
            "usage": (10, 7, 4, 2),
        },
    ),
    (
        "bedrock-anthropic",
        invoke_model_stream(ANTHROPIC_THINKING),
        {"stop_reason": "end_turn", "block_types": ["thinking", "text"], "signature": "EqQBCkYIBhgC/+=="},
    ),
    (
        "bedrock-anthropic",
        invoke_model_stream(ANTHROPIC_TOOL_USE),
        {"stop_reason": "tool_use", "block_types": ["text", "tool_use"]},
    ),
    (
        "openai",
        (CORE_DATA / "openai_stream.sse").read_bytes(),
        {"stop_reason": "end_turn", "block_types": ["text"], "usage": (12, 40, 0, 0)},
    ),
    (
        "openai",
        OPENAI_TOOLS,
        {
            "stop_reason": "tool_use",
            "block_types": ["thinking", "text", "tool_use", "tool_use"],
            "usage": (20, 12, 10, 0),
        },
    ),
    ("openai", (BENCH_DATA / "stream.sse").read_bytes(), {"stop_reason": "end_turn", "block_types": ["text"]}),
    (
        "gemini",
        (CORE_DATA / "gemini_text_thought_signature.sse").read_bytes(),
        {"stop_reason": "end_turn", "block_types": ["text", "thinking"]},
    ),
    ("gemini", (BENCH_DATA / "gemini_stream.sse").read_bytes(), {"stop_reason": "end_turn", "block_types": ["text"]}),
    (
        "bedrock",
        CONVERSE,
        {
            "stop_reason": "tool_use",
            "block_types": ["thinking", "text", "tool_use"],
            "signature": "c2ln",
            "usage": (10, 7, 4, 2),
        },
    ),
    ("bedrock", (BENCH_DATA / "bedrock_stream.bin").read_bytes(), {"stop_reason": "end_turn", "block_types": ["text"]}),
]


def parse_events(out: bytes) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for frame_ in out.split(b"\n\n"):
        if not frame_:
            continue
        name, data = frame_.split(b"\n", 1)
        assert name.startswith(b"event: "), frame_
        assert data.startswith(b"data: "), frame_
        events.append((name.removeprefix(b"event: ").decode(), orjson.loads(data.removeprefix(b"data: "))))
    return events


def final_message(events: list[tuple[str, dict[str, Any]]]) -> Message:
    """What the SDK's stream helper accumulates, each event validated by its type first."""
    snapshot = None
    json_bufs: dict[int, bytes] = {}
    for name, data in events:
        if name == "ping":
            continue
        assert name != "error", data
        event = EVENT.validate_python(data)
        assert event.type == name
        snapshot = accumulate_event(event=event, current_snapshot=snapshot, json_bufs=json_bufs)
    assert snapshot is not None
    return Message.model_validate(snapshot.model_dump())


@pytest.mark.parametrize(
    ("provider", "stream", "expect"), STREAMS, ids=[f"{p}-{i}" for i, (p, _, _) in enumerate(STREAMS)]
)
def test_every_event_validates_and_the_sdk_builds_the_message(
    provider: str, stream: bytes, expect: dict[str, Any]
) -> None:
    translator = StreamTranslator(provider, "client-model", False, client_api="anthropic")
    out = translator.feed(stream) + translator.finish()
    events = parse_events(out)
    assert events[0][0] == "message_start"
    assert events[-1][0] == "message_stop"
    message = final_message(events)
    assert message.model == "client-model"
    assert message.stop_reason == expect["stop_reason"]
    assert [block.type for block in message.content] == expect["block_types"]
    for block in message.content:
        if block.type == "tool_use":
            assert block.id
            assert isinstance(block.input, dict)
    if "signature" in expect:
        thinking = next(block for block in message.content if block.type == "thinking")
        assert thinking.signature == expect["signature"]
    if "usage" in expect:
        usage = message.usage
        assert (
            usage.input_tokens,
            usage.output_tokens,
            usage.cache_read_input_tokens,
            usage.cache_creation_input_tokens,
        ) == expect["usage"]
    assert translator.done
    assert translator.error is None
    assert translator.usage is not None
    assert translator.finish_reason in {"stop", "tool_calls"}
    # Fed one byte per read, the client gets the same events (generated ids aside).
    per_byte = StreamTranslator(provider, "client-model", False, client_api="anthropic")
    out_per_byte = b"".join(per_byte.feed(stream[i : i + 1]) for i in range(len(stream))) + per_byte.finish()
    assert len(out_per_byte) == len(out)


def test_anthropic_upstreams_pass_through_byte_for_byte_but_the_model() -> None:
    translator = StreamTranslator("anthropic", None, False, client_api="anthropic")
    assert translator.feed(ANTHROPIC_TOOL_USE) + translator.finish() == ANTHROPIC_TOOL_USE
    bedrock = StreamTranslator("bedrock-anthropic", None, False, client_api="anthropic")
    assert bedrock.feed(invoke_model_stream(ANTHROPIC_THINKING)) + bedrock.finish() == ANTHROPIC_THINKING


@pytest.mark.parametrize(
    ("provider", "stream", "status"),
    [
        (
            "anthropic",
            b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n',
            529,
        ),
        ("openai", b'data: {"error":{"message":"Overloaded","type":"server_error","code":null}}\n\n', 500),
        ("gemini", b'data: {"error":{"code":429,"message":"Overloaded","status":"RESOURCE_EXHAUSTED"}}\r\n\r\n', 429),
        (
            "bedrock",
            frame(
                [
                    (":exception-type", "throttlingException"),
                    (":content-type", "application/json"),
                    (":message-type", "exception"),
                ],
                b'{"message":"Overloaded"}',
            ),
            429,
        ),
        (
            "bedrock-anthropic",
            frame(
                [
                    (":exception-type", "serviceUnavailableException"),
                    (":content-type", "application/json"),
                    (":message-type", "exception"),
                ],
                b'{"message":"Overloaded"}',
            ),
            503,
        ),
    ],
)
def test_errors_are_anthropic_error_events(provider: str, stream: bytes, status: int) -> None:
    translator = StreamTranslator(provider, "m", False, client_api="anthropic")
    events = parse_events(translator.feed(stream) + translator.finish())
    name, data = events[-1]
    assert name == "error"
    error = ErrorResponse.model_validate(data)
    assert error.error.type == error_type_for_status(status, "anthropic")
    assert error.error.message == "Overloaded"
    assert translator.error == "Overloaded"
    assert not translator.done


def test_truncation_and_garbage_are_api_errors() -> None:
    for provider, stream in [
        ("openai", OPENAI_TOOLS[: len(OPENAI_TOOLS) // 2]),
        ("gemini", b'data: {"candidates":[{"content":{"parts":[{"text":"Hi"}]},"index":0}]}\r\n\r\n'),
        ("anthropic", ANTHROPIC_THINKING[:200]),
        ("bedrock", CONVERSE[:-10]),
    ]:
        translator = StreamTranslator(provider, "m", False, client_api="anthropic")
        events = parse_events(translator.feed(stream) + translator.finish())
        name, data = events[-1]
        assert name == "error", provider
        assert ErrorResponse.model_validate(data).error.type == "api_error"
    translator = StreamTranslator("openai", "m", False, client_api="anthropic")
    events = parse_events(translator.feed(b"data: {not json\n\n") + translator.finish())
    assert events[-1][0] == "error"
    assert translator.failed


WHOLE_BODIES = [
    ("anthropic", (BENCH_DATA / "anthropic_message.json").read_bytes(), "end_turn"),
    ("bedrock-anthropic", (BENCH_DATA / "anthropic_message.json").read_bytes(), "end_turn"),
    ("openai", (BENCH_DATA / "completion.json").read_bytes(), "end_turn"),
    ("gemini", (BENCH_DATA / "gemini_response.json").read_bytes(), "end_turn"),
    ("bedrock", (BENCH_DATA / "bedrock_response.json").read_bytes(), "end_turn"),
    (
        "openai",
        orjson.dumps(
            {
                "id": "chatcmpl-2",
                "object": "chat.completion",
                "created": 1,
                "model": "gpt-x",
                "choices": [
                    {
                        "index": 0,
                        "message": {
                            "role": "assistant",
                            "content": None,
                            "reasoning_content": "r",
                            "tool_calls": [
                                {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
                            ],
                        },
                        "finish_reason": "tool_calls",
                    }
                ],
                "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
            }
        ),
        "tool_use",
    ),
    (
        "bedrock",
        orjson.dumps(
            {
                "output": {
                    "message": {
                        "role": "assistant",
                        "content": [
                            {"reasoningContent": {"reasoningText": {"text": "hmm", "signature": "sig"}}},
                            {"reasoningContent": {"redactedContent": "ZW5j"}},
                            {"text": "Hi"},
                            {"toolUse": {"toolUseId": "tooluse_1", "name": "f", "input": {"a": [1, 2]}}},
                        ],
                    }
                },
                "stopReason": "max_tokens",
                "usage": {"inputTokens": 5, "outputTokens": 9, "totalTokens": 14},
            }
        ),
        "max_tokens",
    ),
]


@pytest.mark.parametrize(("provider", "body", "stop_reason"), WHOLE_BODIES)
def test_whole_bodies_are_anthropic_messages(provider: str, body: bytes, stop_reason: str) -> None:
    out, usage = translate_response(provider, body, "client-model", client_api="anthropic")
    message = Message.model_validate_json(out)
    assert message.model == "client-model"
    assert message.stop_reason == stop_reason
    assert message.content
    assert usage is not None
    assert message.usage.output_tokens == usage[1]
    if provider.endswith("anthropic"):
        # Passed through: only the model changed.
        expected = orjson.loads(body)
        expected["model"] = "client-model"
        assert orjson.loads(out) == expected


def test_whole_body_errors_and_names() -> None:
    error = b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'
    with pytest.raises(UpstreamReportedError) as caught:
        translate_response("anthropic", error, "m", client_api="anthropic")
    assert caught.value.args == ("Overloaded", 529, "overloaded_error")
    with pytest.raises(CoreError):
        translate_response("openai", b"{}", None, client_api="nope")
    with pytest.raises(CoreError):
        StreamTranslator("openai", None, False, client_api="nope")
    assert set(CLIENT_APIS) == {"openai", "anthropic"}
    assert "bedrock-anthropic" in PROVIDERS
    for provider in PROVIDERS:
        for api in CLIENT_APIS:
            StreamTranslator(provider, None, True, client_api=api)
    # 413's request_too_large is Anthropic's wire type, though the SDK's ErrorObject union lacks it.
    assert orjson.loads(anthropic_error("too big", 413))["error"]["type"] == "request_too_large"
    body = orjson.loads(anthropic_error("slow", 429))
    assert ErrorResponse.model_validate(body).error.type == "rate_limit_error"
    assert anthropic_error("busy", 503, event=True).startswith(b"event: error\ndata: {")
    assert error_type_for_status(413, "anthropic") == "request_too_large"
    assert error_type_for_status(503, "anthropic") == "overloaded_error"
