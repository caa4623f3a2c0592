"""The openAI and custom providers end to end: the real ``openai`` clients -> agentgateway -> a fake upstream."""

from __future__ import annotations

import asyncio

import httpx
import openai
import orjson
import pytest
from conftest import TEST_KEY, RunningGateway, openai_client
from fakes.openai_upstream import STORY, FakeOpenAI

MESSAGES = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Tell me a story."}]
STORY_TEXT = " ".join(STORY)


def client(gateway: RunningGateway, suffix: str = "") -> openai.OpenAI:
    return openai_client(gateway.url + suffix)


def sse_payloads(body: bytes) -> list[bytes]:
    events = [e for e in body.split(b"\n\n") if e]
    assert all(e.startswith(b"data: ") for e in events), events
    return [e[len(b"data: ") :] for e in events]


@pytest.mark.parametrize("suffix", ["", "/v1"])
def test_sync_completion_reports_client_model_and_sends_upstream_model(
    gateway: RunningGateway, fake_openai: FakeOpenAI, suffix: str
) -> None:
    completion = client(gateway, suffix).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    assert completion.choices[0].message.content == STORY_TEXT
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "gpt-4o-mini"
    assert completion.usage is not None and completion.usage.total_tokens == 12 + len(STORY)
    sent = fake_openai.last()
    assert sent.path == "/v1/chat/completions"
    assert sent.body["model"] == "upstream-model"
    assert sent.headers["Authorization"] == f"Bearer {TEST_KEY}"
    assert "stream_options" not in sent.body


@pytest.mark.parametrize("suffix", ["", "/v1"])
def test_sync_stream_without_usage_hides_the_metering_chunk(
    gateway: RunningGateway, fake_openai: FakeOpenAI, suffix: str
) -> None:
    stream = client(gateway, suffix).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)  # type: ignore[arg-type]
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == STORY_TEXT
    assert all(c.model == "gpt-4o-mini" for c in chunks)
    assert all(c.choices for c in chunks), "the usage chunk the client did not ask for leaked through"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert fake_openai.last().body["stream_options"] == {"include_usage": True}
    assert fake_openai.last().body["model"] == "upstream-model"


def test_stream_with_usage_requested_gets_the_usage_chunk(gateway: RunningGateway) -> None:
    stream = client(gateway).chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},  # type: ignore[arg-type]
    )
    chunks = list(stream)
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (12, len(STORY))
    assert all(c.usage is None for c in chunks[:-1])


def test_raw_stream_bytes_are_clean_sse_without_usage_nulls(gateway: RunningGateway) -> None:
    response = httpx.post(
        gateway.url + "/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True},
        timeout=10,
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    payloads = sse_payloads(response.content)
    assert payloads[-1] == b"[DONE]"
    chunks = [orjson.loads(p) for p in payloads[:-1]]
    assert all("usage" not in c for c in chunks), "a client that did not ask for usage must not see usage: null"
    assert {c["model"] for c in chunks} == {"gpt-4o-mini"}
    assert {c["id"] for c in chunks} == {"chatcmpl-fake"}


def test_async_client_plain_and_streamed(gateway: RunningGateway) -> None:
    async def run() -> tuple[str, str]:
        async with openai.AsyncOpenAI(base_url=gateway.url, api_key="sk-client", max_retries=0) as aclient:
            completion = await aclient.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
            stream = await aclient.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)  # type: ignore[arg-type]
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
            return completion.choices[0].message.content or "", text

    plain, streamed = asyncio.run(run())
    assert plain == STORY_TEXT
    assert streamed == STORY_TEXT


def test_async_client_many_concurrent_streams(gateway: RunningGateway) -> None:
    async def run() -> list[str]:
        async with openai.AsyncOpenAI(base_url=gateway.url, api_key="sk-client", max_retries=0) as aclient:

            async def one(i: int) -> str:
                stream = await aclient.chat.completions.create(
                    model="passthrough-ok", messages=[{"role": "user", "content": f"n{i}"}], stream=True
                )
                return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

            return await asyncio.gather(*(one(i) for i in range(50)))

    assert asyncio.run(run()) == [STORY_TEXT] * 50


def test_raw_post_to_root_like_the_docs_curl(gateway: RunningGateway) -> None:
    response = httpx.post(gateway.url + "/", json={"model": "gpt-4o-mini", "messages": MESSAGES}, timeout=10)
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == "gpt-4o-mini"
    assert body["choices"][0]["message"]["content"] == STORY_TEXT
    assert body["system_fingerprint"] == "fp_fake", "fields the gateway does not know must pass through"
    assert response.headers["x-upstream-request-id"] == "req_fake_123", "the upstream's id (issue 18)"
    assert response.headers["x-request-id"] not in ("", "req_fake_123"), "the gateway's own request id"


def test_custom_provider_forwards_client_authorization_and_unknown_fields_byte_exact(
    gateway: RunningGateway, fake_openai: FakeOpenAI
) -> None:
    raw = (
        b'{"model":"passthrough-ok","messages":[{"role":"user","content":"hi"}],'
        b'"temperature":0.10000000000000001,"x_vendor_field":{"a":[1,2]}}'
    )
    response = httpx.post(
        gateway.url + "/chat/completions",
        content=raw,
        headers={"Authorization": "Bearer client-own-key", "Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 200
    sent = fake_openai.last()
    assert sent.headers["Authorization"] == "Bearer client-own-key"
    assert sent.raw == raw, "an unmodified request must reach the upstream byte for byte"
    assert response.json()["model"] == "passthrough-ok"


def test_streamed_request_reaches_the_upstream_as_the_clients_bytes_plus_the_usage_ask(
    gateway: RunningGateway, fake_openai: FakeOpenAI
) -> None:
    """Issue 22: a stream's body is not re-serialized to ask for usage; the member is appended to the client's bytes
    (numbers keep their spelling, unknown fields their order). A body that has ``stream_options`` is merged."""
    raw = (
        b'{"model":"passthrough-ok","messages":[{"role":"user","content":"hi"}],'
        b'"temperature":0.10000000000000001,"stream":true,"x_vendor_field":{"a":[1,2]}}\n'
    )
    headers = {"Authorization": "Bearer client-own-key", "Content-Type": "application/json"}
    response = httpx.post(gateway.url + "/chat/completions", content=raw, headers=headers, timeout=10)
    assert response.status_code == 200 and response.text.endswith("data: [DONE]\n\n")
    assert fake_openai.last().raw == raw.rstrip()[:-1] + b',"stream_options":{"include_usage":true}}'

    merged = raw.replace(b'"stream":true', b'"stream":true,"stream_options":{"include_usage":false,"x":1}')
    response = httpx.post(gateway.url + "/chat/completions", content=merged, headers=headers, timeout=10)
    assert response.status_code == 200
    sent = fake_openai.last()
    assert sent.body["stream_options"] == {"include_usage": True, "x": 1}
    assert sent.body["temperature"] == 0.1 and sent.body["x_vendor_field"] == {"a": [1, 2]}


def test_stream_framed_with_crlf_and_split_anywhere(gateway: RunningGateway) -> None:
    stream = client(gateway).chat.completions.create(
        model="passthrough-crlf",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},  # type: ignore[arg-type]
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == STORY_TEXT
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 12 + len(STORY)


def test_stream_without_done_is_completed_by_the_gateway(gateway: RunningGateway) -> None:
    response = httpx.post(
        gateway.url + "/v1/chat/completions",
        json={"model": "passthrough-no-done", "messages": MESSAGES, "stream": True},
        timeout=10,
    )
    payloads = sse_payloads(response.content)
    assert payloads[-1] == b"[DONE]"
    assert orjson.loads(payloads[-2])["choices"][0]["finish_reason"] == "stop"


def test_models_listing(gateway: RunningGateway) -> None:
    for path in ("/v1/models", "/models"):
        listing = httpx.get(gateway.url + path).json()
        assert listing["object"] == "list"
        assert [m["id"] for m in listing["data"]] == ["gpt-4o-mini", "unreachable"]
    models = client(gateway).models.list()
    assert [m.id for m in models] == ["gpt-4o-mini", "unreachable"]


def test_health_endpoints(gateway: RunningGateway) -> None:
    assert httpx.get(gateway.url + "/healthz").json() == {"status": "ok"}
    assert httpx.get(gateway.url + "/readyz").status_code == 200
