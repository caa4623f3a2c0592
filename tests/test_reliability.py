"""Reliability: whatever a client sends, the gateway answers in OpenAI's error shape and keeps serving; aborted
streams leave no connection or memory behind; secrets stay out of logs and error bodies."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiohttp import web
from conftest import RunningGateway, abort_stream, open_sockets, process_tree, rss_kib, start_gateway
from fakes.openai_upstream import FakeOpenAI
from fakes.server import serve_in_thread
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}
MESSAGE = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "m",
    "content": [{"type": "text", "text": "ok"}],
    "stop_reason": "end_turn",
    "usage": {"input_tokens": 1, "output_tokens": 1},
}
OPENAI_STREAM = (
    b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,'
    b'"delta":{"content":"ok"},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
)
ANTHROPIC_STREAM = (
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","usage":{"input_tokens":1}}}\n\n'
    b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
    b'"content_block":{"type":"text","text":""}}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
    b'"delta":{"type":"text_delta","text":"ok"}}\n\n'
    b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},'
    b'"usage":{"output_tokens":1}}\n\n'
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
)


async def _always_fine(request: web.Request) -> web.Response:
    """An upstream that answers every request well, whatever it holds: any 5xx seen by the client is the gateway's."""
    raw = await request.read()
    try:
        stream = orjson.loads(raw).get("stream") is True
    except (orjson.JSONDecodeError, AttributeError):
        stream = False
    anthropic = request.path.endswith("/messages")
    if stream:
        return web.Response(body=ANTHROPIC_STREAM if anthropic else OPENAI_STREAM, content_type="text/event-stream")
    return web.json_response(MESSAGE if anthropic else COMPLETION)


@pytest.fixture(scope="module")
def fine_upstream() -> Iterator[str]:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", _always_fine)
    app.router.add_post("/v1/messages", _always_fine)
    origin, stop = serve_in_thread(app, "always-fine-upstream")
    yield origin
    stop()


@pytest.fixture(scope="module")
def fuzz_gateway(fine_upstream: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    config = f"""
llm:
  models:
  - {{name: "gpt-*", provider: openAI, params: {{apiKey: sk-fuzz, baseUrl: "{fine_upstream}/v1"}}}}
  - {{name: "claude-*", provider: anthropic, params: {{apiKey: sk-fuzz, baseUrl: "{fine_upstream}"}}}}
"""
    running = start_gateway(config, tmp_path_factory.mktemp("gw-fuzz"))
    yield running
    running.stop()


# -- property-based fuzzing of the request path ---------------------------------------------------------------------

_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False), st.text(max_size=12)
)
_json = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
_roles = st.sampled_from(["system", "developer", "user", "assistant", "tool", "function", "robot", ""]) | _json
_part_types = st.sampled_from(["text", "image_url", "file", "input_audio", "refusal", "video"])
_urls = st.sampled_from(
    [
        "data:image/png;base64,iVBORw0KGgo=",
        "data:image/png;base64,@@",
        "https://example.com/a.png",
        "ftp://x",
        "data:,x",
    ]
)
_parts = st.fixed_dictionaries(
    {"type": _part_types},
    optional={
        "text": st.text(max_size=10) | _json,
        "image_url": st.fixed_dictionaries({"url": _urls | _json}) | _json,
        "file": st.fixed_dictionaries({"file_data": _urls | _json}),
        "refusal": st.text(max_size=5),
    },
)
_tool_calls = st.lists(
    st.fixed_dictionaries(
        {
            "id": st.text(max_size=6) | _json,
            "type": st.just("function"),
            "function": st.fixed_dictionaries(
                {"name": st.text(max_size=6) | _json, "arguments": st.sampled_from(["{}", '{"a":1}', "{", "[1]", ""])}
            ),
        }
    ),
    max_size=2,
)
_messages = st.lists(
    st.fixed_dictionaries(
        {"role": _roles},
        optional={
            "content": st.text(max_size=20) | st.lists(_parts | _json, max_size=3) | _json,
            "tool_calls": _tool_calls | _json,
            "tool_call_id": st.text(max_size=6) | _json,
            "thinking_blocks": st.lists(
                st.fixed_dictionaries(
                    {"type": st.sampled_from(["thinking", "redacted_thinking", "other"])},
                    optional={"thinking": st.text(max_size=5), "signature": st.text(max_size=5), "data": _json},
                ),
                max_size=2,
            )
            | _json,
        },
    ),
    max_size=4,
)
_tools = st.lists(
    st.fixed_dictionaries(
        {"type": st.sampled_from(["function", "web_search"])},
        optional={
            "function": st.fixed_dictionaries(
                {"name": st.text(max_size=6) | _json},
                optional={"parameters": _json, "description": st.text(max_size=6)},
            )
        },
    ),
    max_size=2,
)
_bodies = st.fixed_dictionaries(
    {},
    optional={
        "model": st.sampled_from(["gpt-4o", "claude-x", "unknown-model", ""]) | _json,
        "messages": _messages | _json,
        "stream": st.booleans() | _json,
        "stream_options": st.fixed_dictionaries({}, optional={"include_usage": st.booleans() | _json}) | _json,
        "tools": _tools | _json,
        "tool_choice": st.sampled_from(["auto", "none", "required", "sometimes"]) | _json,
        "max_tokens": st.integers(-5, 10**6) | _json,
        "temperature": st.floats(-1, 3) | _json,
        "stop": st.text(max_size=4) | st.lists(st.text(max_size=4), max_size=3) | _json,
        "n": st.integers(-1, 3) | _json,
        "reasoning_effort": st.sampled_from(["none", "low", "high", "extreme"]) | _json,
        "response_format": st.fixed_dictionaries(
            {"type": st.sampled_from(["json_schema", "json_object", "text"])},
            optional={"json_schema": st.fixed_dictionaries({"name": st.just("x")}, optional={"schema": _json})},
        )
        | _json,
        "user": st.text(max_size=5) | _json,
    },
)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_bodies | _json)
def test_no_request_makes_the_gateway_fail(fuzz_gateway: RunningGateway, body: Any) -> None:
    # The standard library's encoder: it writes what orjson refuses to (integers beyond 64 bits), as clients may.
    response = httpx.post(fuzz_gateway.url + "/v1/chat/completions", content=json.dumps(body), timeout=10)
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        error = response.json()["error"]
        assert isinstance(error["message"], str)
        assert error["message"]
    elif response.headers["content-type"].startswith("text/event-stream"):
        assert response.text.endswith("data: [DONE]\n\n")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=200))
def test_arbitrary_bytes_are_a_400(fuzz_gateway: RunningGateway, raw: bytes) -> None:
    response = httpx.post(fuzz_gateway.url + "/v1/chat/completions", content=raw, timeout=10)
    assert response.status_code in (400, 404), response.text
    assert response.json()["error"]["message"]


def test_still_serving_after_the_fuzzing(fuzz_gateway: RunningGateway) -> None:
    for model in ("gpt-4o", "claude-x"):
        response = httpx.post(
            fuzz_gateway.url + "/v1/chat/completions",
            json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
            timeout=10,
        )
        assert response.status_code == 200
        assert response.json()["choices"][0]["message"]["content"] == "ok"


# -- aborted streams --------------------------------------------------------------------------------------------------

HANG = {"model": "passthrough-hang", "messages": [{"role": "user", "content": "hi"}], "stream": True}


def test_aborted_streams_cancel_upstream_quickly_and_leak_nothing(
    fake_openai: FakeOpenAI, tmp_path: Path, fine_upstream: str
) -> None:
    config = f"""
llm:
  models:
  - name: "passthrough-*"
    provider: {{custom: {{formats: [{{type: completions}}]}}}}
    params: {{baseUrl: "{fake_openai.base_url}"}}
"""
    gateway = start_gateway(config, tmp_path)
    try:
        # Each abort, one at a time: the upstream learns within 100 ms.
        delays = []
        for _ in range(20):
            before = len(fake_openai.disconnects)
            asyncio.run(abort_stream(gateway.port, HANG))
            closed = time.monotonic()
            while len(fake_openai.disconnects) == before and time.monotonic() < closed + 5:
                time.sleep(0.001)
            assert len(fake_openai.disconnects) == before + 1, "the upstream request was not cancelled"
            delays.append(fake_openai.disconnects[-1] - closed)
        delays.sort()
        assert delays[len(delays) // 2] < 0.1, delays

        pids = process_tree(gateway.process.pid)
        sockets_before, rss_before = open_sockets(pids), rss_kib(pids)

        async def abort_many(total: int, concurrency: int) -> None:
            semaphore = asyncio.Semaphore(concurrency)

            async def one() -> None:
                async with semaphore:
                    await abort_stream(gateway.port, HANG)

            await asyncio.gather(*(one() for _ in range(total)))

        before = len(fake_openai.disconnects)
        asyncio.run(abort_many(1000, 32))
        deadline = time.monotonic() + 20
        while len(fake_openai.disconnects) < before + 1000 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(fake_openai.disconnects) == before + 1000, "some upstream requests outlived their clients"
        time.sleep(0.5)  # let the last closes settle
        sockets_after, rss_after = open_sockets(pids), rss_kib(pids)
        assert sockets_after <= sockets_before + 2, (sockets_before, sockets_after)
        assert rss_after - rss_before < 20 * 1024, (rss_before, rss_after)  # KiB: no per-stream growth
        response = httpx.post(
            gateway.url + "/v1/chat/completions",
            json={"model": "passthrough-ok", "messages": [{"role": "user", "content": "hi"}]},
            timeout=10,
        )
        assert response.status_code == 200
    finally:
        gateway.stop()


def test_a_disconnect_watch_starts_only_for_a_request_still_running_after_watch_after() -> None:
    """The wait on receive() costs a thread hand-over (app.py `_DisconnectWatch`), so a request answered sooner than
    WATCH_AFTER never starts one; one still running starts its wait once, not before its own deadline, and the
    requests in flight share one timer that moves on to the next oldest."""
    from agentgateway.app import _DisconnectWatch, _Watches

    after = _DisconnectWatch.WATCH_AFTER

    async def run() -> tuple[list[tuple[str, float]], float, float, int]:
        loop = asyncio.get_running_loop()
        watches = _Watches(loop)
        calls: list[tuple[str, float]] = []
        both = asyncio.Event()

        def receive_for(name: str) -> Any:
            def receive() -> asyncio.Future[Any]:
                calls.append((name, loop.time()))
                if len(calls) == 2:
                    both.set()
                return loop.create_future()  # the client stays: never answers

            return receive

        quick = _DisconnectWatch(receive_for("quick"), watches)
        quick.stop()  # answered within the same step: never watched
        slow = _DisconnectWatch(receive_for("slow"), watches)
        await asyncio.sleep(after / 5)
        later = _DisconnectWatch(receive_for("later"), watches)
        await asyncio.wait_for(both.wait(), 10)
        slow.stop()
        later.stop()
        return calls, slow.since, later.since, len(watches.pending)

    calls, slow_since, later_since, left = asyncio.run(run())
    assert [name for name, _ in calls] == ["slow", "later"]
    assert calls[0][1] >= slow_since + after
    assert calls[1][1] >= later_since + after
    assert left == 0


# -- flow control: a client that stops reading ------------------------------------------------------------------------

_FIREHOSE_EVENT = (
    b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,'
    b'"delta":{"content":"' + b"x" * 65536 + b'"},"finish_reason":null}]}\n\n'
)
_FIREHOSE_EVENTS = 4096  # 256 MiB, far more than every buffer between the upstream and the client


@pytest.fixture(scope="module")
def firehose() -> Iterator[tuple[str, list[int]]]:
    """An upstream that streams 256 MiB as fast as it is read, and counts the bytes it managed to send."""
    written: list[int] = [0]

    async def stream(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for _ in range(_FIREHOSE_EVENTS):
            await response.write(_FIREHOSE_EVENT)  # waits while the gateway does not read
            written[0] += len(_FIREHOSE_EVENT)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", stream)
    origin, stop = serve_in_thread(app, "firehose-upstream")
    yield origin, written
    stop()


def test_a_client_that_stops_reading_holds_the_upstream_back(firehose: tuple[str, list[int]], tmp_path: Path) -> None:
    """The stream is not buffered in the gateway's memory: once the client stops reading, the gateway stops reading
    from the upstream, whose sends then wait. (A server interface without backpressure -- granian's RSGI streams
    queue without bound -- would let the whole 256 MiB through into the gateway's memory within a second.)"""
    origin, written = firehose
    config = f"""
llm:
  models:
  - {{name: firehose, provider: openAI, params: {{apiKey: sk-test, baseUrl: "{origin}/v1"}}}}
"""
    gateway = start_gateway(config, tmp_path)
    try:
        pids = process_tree(gateway.process.pid)
        rss_before = rss_kib(pids)
        body = orjson.dumps({"model": "firehose", "messages": [{"role": "user", "content": "go"}], "stream": True})
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: the window stays small
        client.connect(("127.0.0.1", gateway.port))
        try:
            client.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            assert client.recv(64).startswith(b"HTTP/1.1 200")
            time.sleep(3)  # reading nothing more
            stalled_at, rss_stalled = written[0], rss_kib(pids)
        finally:
            client.close()
        total = len(_FIREHOSE_EVENT) * _FIREHOSE_EVENTS
        # What can be in flight: the kernel's socket buffers on both legs (a few MiB each on loopback), the
        # gateway's 256 KiB read-ahead, and what granian holds for the client.
        assert stalled_at < 48 * 1024 * 1024 < total, stalled_at
        assert rss_stalled - rss_before < 64 * 1024, (rss_before, rss_stalled)  # KiB
    finally:
        gateway.stop()


# -- secrets ----------------------------------------------------------------------------------------------------------

SECRET_OPENAI = "sk-live-secret-openai-0123456789abcdef"
SECRET_ANTHROPIC = "sk-ant-secret-anthropic-0123456789abcdef"


async def _quoting_upstream(request: web.Request) -> web.Response:
    """Refuses every key, quoting it back as some upstreams do."""
    key = request.headers.get("x-api-key") or request.headers.get("authorization", "").removeprefix("Bearer ")
    if request.path.endswith("/messages"):
        body = {"type": "error", "error": {"type": "authentication_error", "message": f"invalid x-api-key {key}"}}
    else:
        body = {"error": {"message": f"Incorrect API key provided: {key}", "type": "invalid_request_error"}}
    return web.json_response(body, status=401)


def test_keys_never_reach_logs_or_error_bodies(tmp_path: Path) -> None:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", _quoting_upstream)
    app.router.add_post("/v1/messages", _quoting_upstream)
    origin, stop = serve_in_thread(app, "quoting-upstream")
    config = f"""
llm:
  models:
  - {{name: "gpt-*", provider: openAI, params: {{apiKey: "$TEST_SECRET_OPENAI", baseUrl: "{origin}/v1"}}}}
  - {{name: "claude-*", provider: anthropic, params: {{apiKey: "$TEST_SECRET_ANTHROPIC", baseUrl: "{origin}"}}}}
"""
    env = {"TEST_SECRET_OPENAI": SECRET_OPENAI, "TEST_SECRET_ANTHROPIC": SECRET_ANTHROPIC}
    gateway = start_gateway(config, tmp_path, "--log-level", "debug", env=env)
    try:
        bodies = []
        for model in ("gpt-4o", "claude-x"):
            for stream in (False, True):
                response = httpx.post(
                    gateway.url + "/v1/chat/completions",
                    json={"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream},
                    timeout=10,
                )
                assert response.status_code == 401
                assert "[redacted]" in response.json()["error"]["message"]
                bodies.append(response.text)
        validate = start_gateway_validate_only(config, tmp_path, env)
    finally:
        gateway.stop()
        stop()
    log = gateway.log()
    assert "DEBUG" in log or "INFO" in log  # the log was captured at debug level
    for secret in (SECRET_OPENAI, SECRET_ANTHROPIC):
        assert secret not in log
        assert all(secret not in body for body in bodies)
        assert secret not in validate


def start_gateway_validate_only(config: str, tmp_path: Path, env: dict[str, str]) -> str:
    """What --validate-only prints for the config (it must not echo keys either)."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "agentgateway", "-c", config, "--validate-only", "--log-level", "debug"],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def test_socket_helpers_see_this_process() -> None:
    """The leak check counts real sockets: one opened here shows up."""
    pids = [os.getpid()]
    before = open_sockets(pids)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        assert open_sockets(pids) == before + 1
