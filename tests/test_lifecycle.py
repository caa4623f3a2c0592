"""Process life: graceful shutdown drains in-flight streams; several workers serve; the demo works offline."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx
from conftest import gateway_config, openai_client, start_gateway
from fakes.openai_upstream import STORY, FakeOpenAI

MESSAGES = [{"role": "user", "content": "hi"}]


def test_sigterm_lets_an_in_flight_stream_finish_then_exits_0(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    gateway = start_gateway(gateway_config(fake_openai.base_url), tmp_path, "--drain-timeout", "10")
    received: list[bytes] = []
    first_chunk = threading.Event()

    def consume() -> None:
        with httpx.stream(
            "POST",
            gateway.url + "/v1/chat/completions",
            json={"model": "passthrough-slow", "messages": MESSAGES, "stream": True},
            timeout=20,
        ) as response:
            for data in response.iter_bytes():
                received.append(data)
                first_chunk.set()

    reader = threading.Thread(target=consume)
    reader.start()
    assert first_chunk.wait(10)
    gateway.process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    # While draining, new connections are refused.
    try:
        httpx.get(gateway.url + "/healthz", timeout=1)
        refused = False
    except httpx.TransportError:
        refused = True
    reader.join(20)
    assert gateway.process.wait(20) == 0, gateway.log()
    body = b"".join(received)
    assert body.endswith(b"data: [DONE]\n\n"), body[-200:]
    assert body.count(b'"content"') >= len(STORY)
    assert refused, "a draining gateway must not accept new connections"


def test_two_workers_serve(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    gateway = start_gateway(gateway_config(fake_openai.base_url), tmp_path, workers=2)
    try:
        client = openai_client(gateway.url)
        for _ in range(10):
            completion = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
            assert completion.choices[0].message.content == " ".join(STORY)
    finally:
        assert gateway.stop() == 0


def test_demo_runs_offline_and_answers_the_docs_requests(tmp_path: Path) -> None:
    gateway = start_gateway(None, tmp_path, "--demo")
    try:
        # The docs' curl: a raw POST to /.
        answer = httpx.post(
            gateway.url + "/",
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello gateway"}]},
            timeout=10,
        ).json()
        assert answer["model"] == "gpt-4o-mini"
        assert answer["choices"][0]["message"]["content"].endswith("You said: Hello gateway")
        # The docs' Python snippet, plain and streamed, with any model name (the demo's "*" entry).
        client = openai_client(gateway.url)
        plain = client.chat.completions.create(model="any-model", messages=[{"role": "user", "content": "Hi"}])
        assert plain.choices[0].message.content is not None
        assert plain.choices[0].message.content.endswith("You said: Hi")
        chunks = list(
            client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}], stream=True
            )
        )
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == plain.choices[0].message.content
        assert {c.model for c in chunks} == {"gpt-4o-mini"}
    finally:
        assert gateway.stop() == 0
