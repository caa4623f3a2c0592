"""The exchange: every exit path of a request settles exactly once, with the facts of its answer.

The gateway runs in-process here (its ASGI callable, driven by a small ASGI client) against the fake OpenAI
upstream, so that an observer can look at each settled exchange: the seam that limits, metrics and logs hook into.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from agentgateway.app import Gateway
from agentgateway.config import load_config
from agentgateway.exchange import CLIENT_CLOSED, Exchange
from conftest import TEST_KEY, free_port
from fakes.openai_upstream import FakeOpenAI


def _config(upstream: str) -> str:
    return f"""
llm:
  models:
  - name: "passthrough-*"
    provider: {{custom: {{formats: [{{type: completions}}]}}}}
    params: {{baseUrl: {upstream}, apiKey: {TEST_KEY}}}
  - name: down
    visibility: internal
    provider: openAI
    params: {{baseUrl: "http://127.0.0.1:{free_port()}/v1", apiKey: {TEST_KEY}}}
  virtualModels:
  - name: resilient
    routing:
      failover:
        targets: [{{model: down, priority: 0}}, {{model: passthrough-ok, priority: 1}}]
"""


class _Client:
    """Just enough of an ASGI server: one request, the messages the app sent, and a disconnect on demand."""

    def __init__(self, gateway: Gateway, body: dict[str, Any], *, disconnect_after_first_chunk: bool = False) -> None:
        self.gateway = gateway
        self.raw = orjson.dumps(body)
        self.sent: list[dict[str, Any]] = []
        self.first_chunk = asyncio.Event()
        self.disconnect_after_first_chunk = disconnect_after_first_chunk
        self._body_given = False

    async def receive(self) -> dict[str, Any]:
        if not self._body_given:
            self._body_given = True
            return {"type": "http.request", "body": self.raw, "more_body": False}
        if self.disconnect_after_first_chunk:
            await self.first_chunk.wait()
            return {"type": "http.disconnect"}
        await asyncio.Event().wait()  # a client that stays: never answers
        raise AssertionError("unreachable")

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)
        if message["type"] == "http.response.body" and message.get("body"):
            self.first_chunk.set()

    async def run(self) -> None:
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/v1/chat/completions",
            "headers": [(b"content-type", b"application/json")],
        }
        await self.gateway(scope, self.receive, self.send)

    @property
    def status(self) -> int:
        return int(next(m["status"] for m in self.sent if m["type"] == "http.response.start"))

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")


Run = Callable[..., tuple[_Client, list[Exchange]]]


@pytest.fixture
def run(fake_openai: FakeOpenAI) -> Run:
    def run(body: dict[str, Any], **options: Any) -> tuple[_Client, list[Exchange]]:
        gateway = Gateway(load_config(_config(fake_openai.base_url)))
        settled: list[Exchange] = []
        gateway.observers.append(settled.append)

        async def serve() -> _Client:
            await gateway.startup()
            try:
                client = _Client(gateway, body, **options)
                await asyncio.wait_for(client.run(), 30)
            finally:
                await gateway.shutdown()
            return client

        return asyncio.run(serve()), settled

    return run


def _chat(model: str, **fields: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hello there"}], **fields}


def test_a_whole_answer_settles_once_with_its_usage(run: Run) -> None:
    client, settled = run(_chat("passthrough-ok"))
    assert client.status == 200
    [exchange] = settled
    assert exchange.status == 200
    assert exchange.facts.usage is not None
    assert exchange.facts.usage[2] > 0
    assert [a.outcome for a in exchange.attempts] == ["ok"]
    assert exchange.facts.ttft is not None


def test_a_stream_settles_once_with_usage_the_client_did_not_ask_for(run: Run) -> None:
    client, settled = run(_chat("passthrough-ok", stream=True))
    assert client.status == 200
    assert b"data: [DONE]" in client.body
    assert b'"usage":{' not in client.body  # the client did not ask for the usage chunk
    [exchange] = settled
    assert exchange.facts.usage is not None, "a stream's usage must be counted even when the client did not ask"
    assert exchange.facts.finish_reason == "stop"
    assert exchange.facts.error is None


def test_an_upstream_error_settles_once_with_its_status(run: Run) -> None:
    client, settled = run(_chat("passthrough-429"))
    assert client.status == 429
    [exchange] = settled
    assert exchange.status == 429
    assert exchange.facts.error
    assert [a.outcome for a in exchange.attempts] == ["failed"]  # retryable, but nothing left to try


def test_a_stream_that_fails_midway_settles_once_with_the_error(run: Run) -> None:
    client, settled = run(_chat("passthrough-midstream-error", stream=True))
    assert client.status == 200
    [exchange] = settled
    assert exchange.status == 200
    assert exchange.facts.error
    assert len(exchange.attempts) == 1


def test_a_client_that_goes_away_settles_once_as_closed(run: Run) -> None:
    _, settled = run(_chat("passthrough-hang", stream=True), disconnect_after_first_chunk=True)
    [exchange] = settled
    assert exchange.status == CLIENT_CLOSED
    assert [a.outcome for a in exchange.attempts] == ["ok"]  # the answer had started


def test_a_refused_request_settles_once(run: Run) -> None:
    client, settled = run({"model": "passthrough-ok"})  # no messages
    assert client.status == 400
    [exchange] = settled
    assert exchange.status == 400
    assert exchange.attempts == []
    assert exchange.facts.error


def test_an_unknown_model_settles_once_with_404(run: Run) -> None:
    client, settled = run(_chat("nope"))
    assert client.status == 404
    [exchange] = settled
    assert exchange.status == 404


def test_failover_is_one_exchange_with_every_attempt(run: Run) -> None:
    client, settled = run(_chat("resilient"))
    assert client.status == 200
    assert orjson.loads(client.body)["model"] == "resilient"
    [exchange] = settled
    assert [(a.backend.entry.name, a.outcome) for a in exchange.attempts] == [
        ("down", "failover"),
        ("passthrough-*", "ok"),
    ]
    assert [a.model for a in exchange.attempts] == ["down", "passthrough-ok"]


def test_an_observer_that_fails_does_not_reach_the_client(fake_openai: FakeOpenAI) -> None:
    gateway = Gateway(load_config(_config(fake_openai.base_url)))

    def broken(exchange: Exchange) -> None:
        raise RuntimeError("observer bug")

    gateway.observers.append(broken)

    async def serve() -> _Client:
        await gateway.startup()
        try:
            client = _Client(gateway, _chat("passthrough-ok"))
            await client.run()
        finally:
            await gateway.shutdown()
        return client

    assert asyncio.run(serve()).status == 200


def test_a_streamed_request_refused_by_the_upstream_keeps_the_connection_for_the_next(fake_openai: FakeOpenAI) -> None:
    """A 429 storm must not open a new upstream connection per retry: the error answer is read to its end and
    the connection goes back to the pool."""
    gateway = Gateway(load_config(_config(fake_openai.base_url)))
    idle_after: list[int] = []

    async def serve() -> None:
        await gateway.startup()
        try:
            for _ in range(3):
                client = _Client(gateway, _chat("passthrough-429", stream=True))
                await client.run()
                assert client.status == 429
                assert gateway.client is not None
                idle_after.append(sum(len(pool.idle) for pool in gateway.client._pools.values()))
        finally:
            await gateway.shutdown()

    asyncio.run(serve())
    assert idle_after == [1, 1, 1]
