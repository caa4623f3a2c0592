"""The ASGI apps of benches/floor.py: what granian alone costs, and what forwarding alone costs.

* ``bare``: answers every request with a fixed body (data/completion.json, or data/stream.sse sent as a stream
  when the request asks for one), never calling an upstream: the least any app served by granian costs.
* ``proxy``: forwards the request body to the mock upstream and answers with what comes back: no checks, no
  routing, no translation. ``FLOOR_CLIENT`` picks the upstream client: ``asyncio`` (the gateway's own, from
  agentgateway.upstream) or ``hyper`` (hyper on a tokio runtime, driven from asyncio through
  pyo3-async-runtimes; built from benches/rust_client).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from agentgateway.config import Timeouts
from agentgateway.upstream import Endpoint, UpstreamClient, UpstreamRequest

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

DATA = Path(__file__).resolve().parent / "data"
PLAIN = (DATA / "completion.json").read_bytes()
STREAM = (DATA / "stream.sse").read_bytes()
JSON_HEADERS = [(b"content-type", b"application/json")]
SSE_HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]
UPSTREAM_HEADERS = b"Authorization: Bearer sk-bench\r\nContent-Type: application/json\r\n"


async def _lifespan(receive: Receive, send: Send, startup: Callable[[], None] = lambda: None) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            startup()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def bare(scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    message = await receive()
    if b'"stream":true' in message.get("body", b""):
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        await send({"type": "http.response.body", "body": STREAM, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    else:
        await send({"type": "http.response.start", "status": 200, "headers": JSON_HEADERS})
        await send({"type": "http.response.body", "body": PLAIN})


class _Proxy:
    def __init__(self) -> None:
        self.url = os.environ.get("FLOOR_UPSTREAM", "")
        self.kind = os.environ.get("FLOOR_CLIENT", "asyncio")
        self.client: Any = None
        self.endpoint: Endpoint | None = None

    def startup(self) -> None:
        if self.kind == "hyper":
            from agentgateway_bench_hyper import HyperClient

            self.client = HyperClient(self.url)
        else:
            self.client = UpstreamClient(Timeouts())
            self.endpoint = Endpoint.parse(self.url)

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send, self.startup)
            return
        body = (await receive()).get("body", b"")
        if self.kind == "hyper":
            status, answer = await self.client.post(body)
        else:
            assert self.endpoint is not None
            response = await self.client.send(UpstreamRequest(self.endpoint, UPSTREAM_HEADERS, body))
            answer = await response.read()
            response.release()
            status = response.status
        await send({"type": "http.response.start", "status": status, "headers": JSON_HEADERS})
        await send({"type": "http.response.body", "body": answer})


proxy = _Proxy()
