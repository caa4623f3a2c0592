"""Oversized requests (issue 20) and ``frontendPolicies.http.maxBufferSize`` (issue 21).

A body over the limit is a 413 in the inbound API's shape, and the client *reads* it: a client that writes its whole
body before reading (the openai SDKs, a plain socket) used to hit a reset connection ("broken pipe") because the
gateway answered without reading the rest. The body is now read and thrown away (up to a bound) before the answer.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import anthropic
import openai
import orjson
import pytest
from agentgateway.config import DEFAULT_MAX_REQUEST_BYTES, load_config
from conftest import RunningGateway, gateway_config, openai_client, start_gateway
from fakes.openai_upstream import FakeOpenAI

BIG = 24 * 1024 * 1024  # the size a user reported: a broken pipe instead of the 413
SMALL_LIMIT = 4096


@pytest.fixture(scope="module")
def small_gateway(fake_openai: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    config = f"frontendPolicies:\n  http: {{maxBufferSize: {SMALL_LIMIT}}}\n" + gateway_config(fake_openai.base_url)
    running = start_gateway(config, tmp_path_factory.mktemp("gw-small"))
    yield running
    running.stop()


def chat_body(content_bytes: int) -> bytes:
    head, tail = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"', b'"}]}'
    return head + b"x" * (content_bytes - len(head) - len(tail)) + tail


def read_response(sock: socket.socket) -> tuple[int, dict[bytes, bytes], bytes]:
    """One HTTP/1.1 response with a Content-Length body, read from ``sock``."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.split(b"\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(b":") for line in lines)}
    length = int(headers[b"content-length"])
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "the connection closed inside the response body"
        body += chunk
    return int(status_line.split()[1]), headers, body[:length]


def raw_post(port: int, path: str, body: bytes, *, chunked: bool = False, reuse: bool = False) -> tuple[int, bytes]:
    """Writes the whole request (as a naive client does, before reading anything), then reads the answer. With
    ``reuse``, a small request follows on the same connection and must be answered too."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        framing = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % len(body)
        sock.sendall(b"POST %s HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n%s\r\n\r\n" % (
            path.encode(), framing))  # fmt: skip
        if chunked:
            for start in range(0, len(body), 1 << 16):
                piece = body[start : start + (1 << 16)]
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            sock.sendall(b"0\r\n\r\n")
        else:
            sock.sendall(body)  # a BrokenPipeError / ConnectionResetError here is the bug
        status, _, answer = read_response(sock)
        if reuse:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
            assert read_response(sock)[0] == 200
    return status, answer


def test_the_openai_sdk_sending_24_mb_reads_the_413_in_openais_shape(gateway: RunningGateway) -> None:
    client = openai_client(gateway.url)
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x" * BIG}])
    assert caught.value.status_code == 413
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["code"] == "request_too_large" and error["type"] == "invalid_request_error"
    assert str(DEFAULT_MAX_REQUEST_BYTES) in error["message"]


def test_a_raw_client_writing_24_mb_with_content_length_reads_the_413(gateway: RunningGateway) -> None:
    status, answer = raw_post(gateway.port, "/v1/chat/completions", chat_body(BIG), reuse=True)
    assert status == 413
    assert orjson.loads(answer)["error"]["code"] == "request_too_large"


def test_a_raw_client_writing_24_mb_chunked_reads_the_413(gateway: RunningGateway) -> None:
    status, answer = raw_post(gateway.port, "/v1/chat/completions", chat_body(BIG), chunked=True, reuse=True)
    assert status == 413
    assert orjson.loads(answer)["error"]["code"] == "request_too_large"


def test_embeddings_answer_the_413_in_openais_shape(gateway: RunningGateway) -> None:
    client = openai_client(gateway.url)
    with pytest.raises(openai.APIStatusError) as caught:
        client.embeddings.create(model="gpt-4o-mini", input="x" * BIG)
    assert caught.value.status_code == 413
    assert isinstance(caught.value.body, dict) and caught.value.body["code"] == "request_too_large"


def test_the_messages_api_answers_the_413_in_anthropics_shape(gateway: RunningGateway) -> None:
    with (
        anthropic.Anthropic(base_url=gateway.url, api_key="sk-client", max_retries=0) as sdk,
        pytest.raises(anthropic.APIStatusError) as caught,
    ):
        sdk.messages.create(model="gpt-4o-mini", max_tokens=10, messages=[{"role": "user", "content": "x" * BIG}])
    assert caught.value.status_code == 413
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "request_too_large", "message": caught.value.body["error"]["message"]},  # type: ignore[index]
    }
    status, answer = raw_post(gateway.port, "/v1/messages", b"{" + b" " * BIG + b"}", chunked=True)
    assert status == 413 and orjson.loads(answer)["type"] == "error"


def test_a_client_expecting_100_continue_is_refused_before_it_uploads(gateway: RunningGateway) -> None:
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=30) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nExpect: 100-continue\r\n\r\n" % BIG
        )
        status, _, answer = read_response(sock)  # no body sent at all: the answer comes anyway
    assert status == 413 and orjson.loads(answer)["error"]["code"] == "request_too_large"


def test_max_buffer_size_sets_the_limit(small_gateway: RunningGateway, fake_openai: FakeOpenAI) -> None:
    client = openai_client(small_gateway.url)
    answer = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "x" * (SMALL_LIMIT - 200)}]
    )
    assert answer.choices[0].message.content
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x" * SMALL_LIMIT}])
    assert caught.value.status_code == 413 and f"larger than {SMALL_LIMIT} bytes" in caught.value.message
    # exactly at the limit passes; one byte more does not (Content-Length and chunked alike)
    assert raw_post(small_gateway.port, "/v1/chat/completions", chat_body(SMALL_LIMIT))[0] == 200
    for chunked in (False, True):
        assert raw_post(small_gateway.port, "/v1/chat/completions", chat_body(SMALL_LIMIT + 1), chunked=chunked)[
            0
        ] == 413  # fmt: skip


def test_max_buffer_size_is_served_and_the_other_http_keys_are_named_as_not(tmp_path: Path) -> None:
    config = load_config(
        "frontendPolicies:\n  http: {maxBufferSize: 2097152, http1MaxHeaders: 50}\n"
        "llm: {models: [{name: m, provider: openAI}]}"
    )
    assert config.frontend_policies.max_request_bytes == 2097152
    assert [line for line in config.unserved if "frontendPolicies" in line] == [
        "<inline config>:2: frontendPolicies.http.http1MaxHeaders: accepted but not served: HTTP connection tuning "
        "is the HTTP server's (granian); only frontendPolicies.http.maxBufferSize is used"
    ]
    assert load_config("llm: {models: [{name: m, provider: openAI}]}").frontend_policies.max_request_bytes == (
        DEFAULT_MAX_REQUEST_BYTES
    )
    for bad, problem in (("0", "greater than or equal to 1"), ('"2MB"', "valid integer")):
        with pytest.raises(Exception, match=f"<inline config>:1: frontendPolicies.http.maxBufferSize: .*{problem}"):
            load_config(f"frontendPolicies: {{http: {{maxBufferSize: {bad}}}}}\nllm: {{models: [{{name: m}}]}}")
