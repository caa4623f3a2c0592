"""Every failure a client can meet arrives in OpenAI's error shape, with the status the openai SDKs expect."""

from __future__ import annotations

import socket
import time

import httpx
import openai
import orjson
import pytest
from conftest import TEST_KEY, RunningGateway, openai_client
from fakes.openai_upstream import FakeOpenAI

MESSAGES = [{"role": "user", "content": "hi"}]


def post(
    gateway: RunningGateway, body: object = None, *, content: bytes | None = None, path: str = "/v1/chat/completions"
) -> httpx.Response:
    if content is None:
        return httpx.post(gateway.url + path, json=body, timeout=15)
    return httpx.post(gateway.url + path, content=content, headers={"content-type": "application/json"}, timeout=15)


def error_of(response: httpx.Response) -> dict[str, object]:
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) >= {"message", "type", "param", "code"}, body
    return body["error"]  # type: ignore[no-any-return]


def sdk(gateway: RunningGateway) -> openai.OpenAI:
    return openai_client(gateway.url)


@pytest.mark.parametrize(
    ("content", "param", "fragment"),
    [
        (b"{not json", None, "not valid JSON"),
        (b"", None, "empty"),
        (b"[1, 2]", None, "must be a JSON object"),
        (b'{"messages": [{"role": "user", "content": "hi"}]}', "model", "'model'"),
        (b'{"model": 5, "messages": [{"role": "user", "content": "hi"}]}', "model", "expected a string"),
        (b'{"model": "gpt-4o-mini"}', "messages", "'messages'"),
        (b'{"model": "gpt-4o-mini", "messages": []}', "messages", "at least one message"),
        (b'{"model": "gpt-4o-mini", "messages": "hi"}', "messages", "expected an array"),
        (b'{"model": "gpt-4o-mini", "messages": [3]}', "messages[0]", "expected an object"),
        (b'{"model": "gpt-4o-mini", "messages": [{"content": "hi"}]}', "messages[0].role", "messages[0].role"),
        (b'{"model": "gpt-4o-mini", "messages": [{"role": "robot", "content": "hi"}]}', "messages[0].role", "robot"),
        (
            b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": 42}]}',
            "messages[0].content",
            "got an integer",
        ),
        (
            b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": "yes"}',
            "stream",
            "a boolean",
        ),
        (
            b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}',
            "temperature",
            "a number",
        ),
        (
            b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": true}',
            "max_tokens",
            "an integer",
        ),
        (
            b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": true, '
            b'"stream_options": {"include_usage": 1}}',
            "stream_options.include_usage",
            "a boolean",
        ),
        (
            b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": ["hi"]}]}',
            "messages[0].content[0]",
            "a content part object",
        ),
        (
            b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": [{"text": "hi"}]}]}',
            "messages[0].content[0].type",
            "Missing required parameter",
        ),
        (
            b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": [{"type": "text", "text": 1}]}]}',
            "messages[0].content[0].text",
            "a string",
        ),
        (
            b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": '
            b'[{"type": "image_url", "image_url": {"detail": "low"}}]}]}',
            "messages[0].content[0].image_url.url",
            "a string",
        ),
    ],
)
def test_bad_requests_are_400_naming_the_field(
    gateway: RunningGateway, fake_openai: FakeOpenAI, content: bytes, param: str | None, fragment: str
) -> None:
    before = len(fake_openai.requests)
    response = post(gateway, content=content)
    assert response.status_code == 400
    error = error_of(response)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert fragment in str(error["message"])
    assert len(fake_openai.requests) == before, "a bad request must not reach the upstream"


def test_bad_request_raises_bad_request_error_in_the_sdk(gateway: RunningGateway) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(gateway).chat.completions.create(model="gpt-4o-mini", messages=[])
    assert "at least one message" in caught.value.message


def test_unknown_model_is_404_listing_what_is_served(gateway: RunningGateway) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        sdk(gateway).chat.completions.create(model="no-such-model", messages=MESSAGES)  # type: ignore[arg-type]
    error = error_of(caught.value.response)
    assert error["code"] == "model_not_found"
    assert error["param"] == "model"
    assert "gpt-4o-mini" in str(error["message"]) and "passthrough-*" in str(error["message"])


def test_unknown_path_and_wrong_method(gateway: RunningGateway) -> None:
    response = httpx.get(gateway.url + "/v1/nothing-here")
    assert response.status_code == 404
    assert error_of(response)["code"] == "unknown_url"
    response = httpx.get(gateway.url + "/v1/chat/completions")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert error_of(response)["code"] == "method_not_allowed"


def test_upstream_429_keeps_status_message_and_retry_after(gateway: RunningGateway) -> None:
    for stream in (False, True):
        with pytest.raises(openai.RateLimitError) as caught:
            sdk(gateway).chat.completions.create(model="passthrough-429", messages=MESSAGES, stream=stream)  # type: ignore[call-overload]
        response = caught.value.response
        assert response.status_code == 429
        assert response.headers["retry-after"] == "7"
        assert response.headers["x-ratelimit-remaining-requests"] == "0"
        error = error_of(response)
        assert error["message"] == "Rate limit reached for requests"
        assert error["code"] == "rate_limit_exceeded"


def test_upstream_500_with_a_text_body_keeps_its_status(gateway: RunningGateway) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        sdk(gateway).chat.completions.create(model="passthrough-500-text", messages=MESSAGES)  # type: ignore[arg-type]
    assert caught.value.status_code == 500
    error = error_of(caught.value.response)
    assert "upstream exploded" in str(error["message"])
    assert (error["type"], error["code"]) == ("server_error", "upstream_error")


def test_unreachable_upstream_is_502(gateway: RunningGateway) -> None:
    for stream in (False, True):
        response = post(gateway, {"model": "unreachable", "messages": MESSAGES, "stream": stream})
        assert response.status_code == 502
        error = error_of(response)
        assert error["code"] == "upstream_unreachable"
        assert TEST_KEY not in response.text


def test_upstream_without_headers_in_time_is_504(impatient_gateway: RunningGateway) -> None:
    for stream in (False, True):
        started = time.monotonic()
        response = post(
            impatient_gateway, {"model": "passthrough-slow-headers", "messages": MESSAGES, "stream": stream}
        )
        assert response.status_code == 504
        assert error_of(response)["code"] == "upstream_timeout"
        assert time.monotonic() - started < 2.5


@pytest.mark.parametrize(
    ("model", "fragment", "code", "status"),
    [
        ("passthrough-midstream-error", "error while processing", "server_error", 500),
        ("passthrough-truncated", "ended before the response was complete", "stream_truncated", 502),
        ("passthrough-reset", "connection failed", "upstream_unreachable", 502),
        ("passthrough-garbage", "stream could not be read", "upstream_protocol_error", 502),
    ],
)
def test_failure_after_the_stream_began_ends_with_an_error_event(
    gateway: RunningGateway, model: str, fragment: str, code: str, status: int
) -> None:
    """Whoever noticed the failure (the core, or the transport in Python), the event has one shape and the type,
    code and status of its kind (rust/sse_core/src/error_kind.rs)."""
    stream = sdk(gateway).chat.completions.create(model=model, messages=MESSAGES, stream=True)  # type: ignore[arg-type]
    received = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            received.append(chunk)
    assert received, "the chunks before the failure must reach the client"
    assert fragment in caught.value.message
    assert (caught.value.type, caught.value.code, caught.value.param) == ("server_error", code, None)
    assert caught.value.body == {
        "message": caught.value.message,
        "type": "server_error",
        "param": None,
        "code": code,
        "status": status,
    }


def test_mid_stream_stall_hits_the_idle_timeout(impatient_gateway: RunningGateway) -> None:
    response = post(impatient_gateway, {"model": "passthrough-stall", "messages": MESSAGES, "stream": True})
    assert response.status_code == 200
    last = response.content.rstrip(b"\n").rsplit(b"\n\n", 1)[-1]
    assert last.startswith(b'data: {"error"')
    error = orjson.loads(last.removeprefix(b"data: "))["error"]
    assert (error["type"], error["code"], error["status"]) == ("server_error", "upstream_timeout", 504)


def test_client_disconnect_cancels_the_upstream_request(gateway: RunningGateway, fake_openai: FakeOpenAI) -> None:
    before = len(fake_openai.disconnects)
    with httpx.stream(
        "POST",
        gateway.url + "/v1/chat/completions",
        json={"model": "passthrough-hang", "messages": MESSAGES, "stream": True},
        timeout=10,
    ) as response:
        for _ in response.iter_bytes():
            break  # the first chunk arrived; now hang up
    closed = time.monotonic()
    deadline = closed + 5
    while len(fake_openai.disconnects) == before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(fake_openai.disconnects) == before + 1, "the upstream request was not cancelled"
    assert fake_openai.disconnects[-1] - closed < 1.0
    # and the gateway keeps serving
    assert post(gateway, {"model": "gpt-4o-mini", "messages": MESSAGES}).status_code == 200


def test_client_disconnect_cancels_a_whole_answer_being_generated(
    gateway: RunningGateway, fake_openai: FakeOpenAI
) -> None:
    """Not a stream: nothing is sent to the client before the answer, so only the gateway's disconnect watch (which
    starts 50 ms into a request) can notice the client leaving and close the upstream request."""
    before = len(fake_openai.disconnects)
    hung = len(fake_openai.hang_started)
    body = orjson.dumps({"model": "passthrough-hang", "messages": MESSAGES})
    with socket.create_connection(("127.0.0.1", gateway.port)) as client:
        client.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        deadline = time.monotonic() + 5
        while len(fake_openai.hang_started) == hung and time.monotonic() < deadline:
            time.sleep(0.005)
    closed = time.monotonic()  # within a few ms of the upstream request starting: before the watch starts
    deadline = closed + 5
    while len(fake_openai.disconnects) == before and time.monotonic() < deadline:
        time.sleep(0.005)
    assert len(fake_openai.disconnects) == before + 1, "the upstream request was not cancelled"
    assert fake_openai.disconnects[-1] - closed < 1.0


def test_oversized_body_is_413(gateway: RunningGateway) -> None:
    big = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"' + b"x" * (11 * 1024 * 1024) + b'"}]}'
    response = post(gateway, content=big)
    assert response.status_code == 413
    assert error_of(response)["code"] == "request_too_large"


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x"])
def test_a_body_that_is_not_json_by_its_content_type_is_415(gateway: RunningGateway, content_type: str) -> None:
    body = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}'
    response = httpx.post(gateway.url + "/v1/chat/completions", content=body, headers={"content-type": content_type})
    assert response.status_code == 415
    assert error_of(response)["param"] == "Content-Type"
    assert "application/json" in str(error_of(response)["message"])


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "text/plain;charset=UTF-8", None])
def test_json_bodies_pass_whatever_their_label(gateway: RunningGateway, content_type: str | None) -> None:
    body = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}'
    headers = {"content-type": content_type} if content_type else {}
    response = httpx.post(gateway.url + "/v1/chat/completions", content=body, headers=headers)
    assert response.status_code == 200


def test_success_status_carrying_an_error_is_that_error(gateway: RunningGateway) -> None:
    response = post(gateway, {"model": "passthrough-200-error", "messages": MESSAGES})
    assert response.status_code == 503
    assert error_of(response)["message"] == "model is loading"
