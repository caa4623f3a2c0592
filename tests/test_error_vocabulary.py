"""One error vocabulary (issue 15): a cut-off stream, a garbage event and an error the upstream reported end every
provider's stream with the same error event; the openai SDK reads the same fields from each; and the Python errors
write byte for byte the event the core writes for the same kind (mirrors rust/sse_core/tests/error_vocabulary.rs)."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from typing import Any

import openai
import orjson
import pytest
from agentgateway import _core, errors
from agentgateway._core import StreamTranslator, error_kind
from agentgateway.errors import (
    GatewayError,
    InvalidRequest,
    ModelNotFound,
    UpstreamHTTPError,
    UpstreamProtocolError,
    UpstreamTimeout,
    UpstreamUnreachable,
)

PROVIDERS = ["openai", "anthropic", "gemini", "bedrock"]
TRUNCATED_MESSAGE = "upstream stream ended before the response was complete"


def eventstream_message(headers: dict[str, str], payload: bytes) -> bytes:
    """One AWS event stream message (string headers), CRCs included."""
    head = b"".join(
        bytes([len(name)]) + name.encode() + b"\x07" + struct.pack(">H", len(value)) + value.encode()
        for name, value in headers.items()
    )
    total = 12 + len(head) + len(payload) + 4
    prelude = struct.pack(">II", total, len(head))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + head + payload
    return message + struct.pack(">I", zlib.crc32(message))


def bedrock_event(kind: str, payload: bytes) -> bytes:
    headers = {":event-type": kind, ":content-type": "application/json", ":message-type": "event"}
    return eventstream_message(headers, payload)


CUT_OFF = {
    "openai": b'data: {"id":"c","model":"m","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}\n\n',
    "anthropic": (
        b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","usage":{"input_tokens":1}}}\n\n'
        b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
        b'"content_block":{"type":"text","text":""}}\n\n'
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        b'"delta":{"type":"text_delta","text":"Hi"}}\n\n'
    ),
    "gemini": b'data: {"candidates":[{"content":{"parts":[{"text":"Hi"}],"role":"model"},"index":0}]}\n\n',
    "bedrock": bedrock_event("messageStart", b'{"role":"assistant"}')
    + bedrock_event("contentBlockDelta", b'{"contentBlockIndex":0,"delta":{"text":"Hi"}}'),
}


def garbage(provider: str) -> bytes:
    data = bytearray(CUT_OFF[provider])
    if provider == "bedrock":
        data[-1] ^= 0xFF  # the message CRC no longer matches
    else:
        data += b"data: {not json\n\n"
    return bytes(data)


# An error the upstream reported mid-stream: (input, status, code); the message is "Overloaded" in each.
REPORTED = {
    "openai": (b'data: {"error":{"message":"Overloaded","type":"server_error","code":null}}\n\n', 500, "server_error"),
    "anthropic": (
        b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n',
        529,
        "overloaded_error",
    ),
    "gemini": (b'data: {"error":{"code":503,"message":"Overloaded","status":"UNAVAILABLE"}}\n\n', 503, "UNAVAILABLE"),
    "bedrock": (
        eventstream_message(
            {
                ":exception-type": "throttlingException",
                ":content-type": "application/json",
                ":message-type": "exception",
            },
            b'{"message":"Overloaded"}',
        ),
        429,
        "throttlingException",
    ),
}


def translate(provider: str, data: bytes) -> tuple[bytes, StreamTranslator]:
    """``data`` one byte per read (the split must not matter), then EOF: all the client's frames."""
    translator = StreamTranslator(provider, "m", True)
    out = b"".join(translator.feed(data[i : i + 1]) for i in range(len(data))) + translator.finish()
    return out, translator


def last_frame(provider: str, data: bytes) -> bytes:
    out, translator = translate(provider, data)
    assert not translator.done, "no [DONE] after an error"
    frame = out.rstrip(b"\n").rsplit(b"\n\n", 1)[-1] + b"\n\n"
    assert frame.startswith(b'data: {"error":{"message":'), frame
    assert orjson.loads(frame.removeprefix(b"data: "))["error"]["message"] == translator.error
    return frame


def error_of(frame: bytes) -> dict[str, Any]:
    event = orjson.loads(frame.removeprefix(b"data: "))
    assert list(event) == ["error"]
    error: dict[str, Any] = event["error"]
    assert list(error) == ["message", "type", "param", "code", "status"], error
    assert error["param"] is None
    return error


def kind_fields(name: str) -> dict[str, object]:
    status, type_, code = error_kind(name)
    return {"type": type_, "code": code, "status": status}


def fields(error: dict[str, Any]) -> dict[str, object]:
    return {key: error[key] for key in ("type", "code", "status")}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_cut_off_stream_ends_with_the_stream_truncated_event(provider: str) -> None:
    error = error_of(last_frame(provider, CUT_OFF[provider]))
    assert (
        fields(error)
        == kind_fields("stream_truncated")
        == {"type": "server_error", "code": "stream_truncated", "status": 502}
    )
    assert error["message"] == TRUNCATED_MESSAGE


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_garbage_event_ends_with_the_upstream_protocol_error_event(provider: str) -> None:
    error = error_of(last_frame(provider, garbage(provider)))
    assert fields(error) == kind_fields("upstream_protocol_error")
    assert fields(error) == {"type": "server_error", "code": "upstream_protocol_error", "status": 502}
    assert error["message"].startswith("the upstream's stream could not be read: ")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_an_error_the_upstream_reported_keeps_its_status_and_name(provider: str) -> None:
    data, status, code = REPORTED[provider]
    error = error_of(last_frame(provider, data))
    assert fields(error) == {"type": _core.error_type_for_status(status), "code": code, "status": status}
    assert error["message"] == "Overloaded"


def sdk_error(frame: bytes) -> openai.APIError:
    """What the openai SDK raises when a stream that began ends with ``frame``."""
    httpx2 = pytest.importorskip("httpx2")  # the HTTP library of the installed openai SDK
    chunk = b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[]}\n\n'

    def answer(request: Any) -> Any:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=chunk + frame)

    http_client = httpx2.Client(transport=httpx2.MockTransport(answer))
    with openai.OpenAI(base_url="http://gateway", api_key="k", max_retries=0, http_client=http_client) as client:
        stream = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}], stream=True)
        received = []
        with pytest.raises(openai.APIError) as caught:
            for event in stream:
                received.append(event)
    assert len(received) == 1, "the chunk before the error reaches the client"
    return caught.value


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize(
    ("case", "make"),
    [("cut-off", CUT_OFF.__getitem__), ("garbage", garbage), ("reported", lambda p: REPORTED[p][0])],
)
def test_the_openai_sdk_reads_the_same_fields_from_every_provider(
    provider: str, case: str, make: Callable[[str], bytes]
) -> None:
    frame = last_frame(provider, make(provider))
    error = error_of(frame)
    raised = sdk_error(frame)
    assert (raised.message, raised.type, raised.code, raised.param) == (
        error["message"],
        error["type"],
        error["code"],
        None,
    )
    assert isinstance(raised.body, dict)
    assert raised.body["status"] == error["status"]


def test_python_errors_write_the_cores_frame_byte_for_byte() -> None:
    frame = last_frame("openai", garbage("openai"))
    message = error_of(frame)["message"]
    assert UpstreamProtocolError(message).stream_event() == frame
    frame = last_frame("anthropic", CUT_OFF["anthropic"])
    status, type_, code = error_kind("stream_truncated")
    assert GatewayError(TRUNCATED_MESSAGE, status=status, type_=type_, code=code).stream_event() == frame
    for provider in ("anthropic", "gemini", "bedrock"):
        data, status, code = REPORTED[provider]
        expected = last_frame(provider, data)
        assert UpstreamHTTPError.create(status, "Overloaded", code=code).stream_event() == expected, provider


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (GatewayError("x"), "internal_error"),
        (InvalidRequest("x"), "invalid_request"),
        (ModelNotFound("x"), "model_not_found"),
        (UpstreamUnreachable("x"), "upstream_unreachable"),
        (UpstreamTimeout("x"), "upstream_timeout"),
        (UpstreamProtocolError("x"), "upstream_protocol_error"),
    ],
)
def test_each_python_error_is_its_kind_in_the_table(error: GatewayError, kind: str) -> None:
    assert (error.status, error.type, error.code) == error_kind(kind)
    event = orjson.loads(error.stream_event().removeprefix(b"data: "))["error"]
    assert event == {"message": "x", "param": None, **kind_fields(kind)}
    assert orjson.loads(error.body())["error"] == {
        "message": "x",
        "type": error.type,
        "param": None,
        "code": error.code,
    }


def test_every_kind_is_in_the_table_and_5xx_is_server_error() -> None:
    assert len(set(_core.ERROR_KINDS)) == len(_core.ERROR_KINDS) >= 9
    for name in _core.ERROR_KINDS:
        status, type_, _code = error_kind(name)
        if name != "model_not_found":  # OpenAI's own: a 404 that is an invalid request
            assert type_ == _core.error_type_for_status(status), name
    with pytest.raises(_core.CoreError, match="unknown error kind"):
        error_kind("nope")
    assert {
        status: _core.error_type_for_status(status) for status in (400, 401, 403, 404, 413, 429, 500, 503, 529)
    } == {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        413: "invalid_request_error",
        429: "rate_limit_error",
        500: "server_error",
        503: "server_error",
        529: "server_error",
    }
    assert not hasattr(errors, "_type_for_status"), "one status table: the core's"


def test_an_upstream_http_errors_type_follows_its_status() -> None:
    assert UpstreamHTTPError.create(503, "busy", code="UNAVAILABLE").type == "server_error"
    assert UpstreamHTTPError.create(403, "no").type == "permission_error"
    assert UpstreamHTTPError.create(403, "no").code == "upstream_error"
    assert UpstreamHTTPError("x", status=429).type == "rate_limit_error"
    # OpenAI's own fields are kept; with no code, its type names it (as the core reads one in a stream).
    body = b'{"error": {"message": "m", "type": "insufficient_quota", "code": null}}'
    error = UpstreamHTTPError.from_openai_body(429, body, [])
    assert (error.status, error.type, error.code) == (429, "insufficient_quota", "insufficient_quota")
    error = UpstreamHTTPError.from_openai_body(500, b"boom", [])
    assert (error.status, error.type, error.code) == (500, "server_error", "upstream_error")


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (UpstreamUnreachable("x"), True),
        (UpstreamTimeout("x"), True),
        (UpstreamHTTPError.create(429, "x"), True),
        (UpstreamHTTPError.create(500, "x"), True),
        (UpstreamHTTPError.create(503, "x"), True),
        (UpstreamHTTPError.create(529, "x"), True),
        (UpstreamHTTPError.create(400, "x"), False),
        (UpstreamHTTPError.create(401, "x"), False),
        (UpstreamHTTPError.create(404, "x"), False),
        (UpstreamProtocolError("x"), False),
        (InvalidRequest("x"), False),
        (ModelNotFound("x"), False),
        (GatewayError("x"), False),
        (GatewayError("x", status=503, code="not_ready"), False),
    ],
)
def test_retryable(error: GatewayError, retryable: bool) -> None:
    assert error.retryable is retryable
    with pytest.raises(AttributeError):
        error.retryable = not retryable  # type: ignore[misc]
