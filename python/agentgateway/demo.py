"""A small OpenAI-compatible server for the offline demo (``agentgateway --demo``): no keys, no network.

It answers ``POST /v1/chat/completions`` in OpenAI's exact wire format, whole or streamed word by word, with
usage (words counted as tokens) and ``stream_options.include_usage`` honoured, so that every part of the gateway
-- routing, model rewriting, stream translation -- runs for real against it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from importlib import resources
from typing import Any

import orjson
from aiohttp import web

__all__ = ["DEMO_UPSTREAM_ENV", "demo_config_text", "start_demo_upstream_thread"]

DEMO_UPSTREAM_ENV = "AGENTGATEWAY_DEMO_UPSTREAM"

logger = logging.getLogger("agentgateway.demo")


def demo_config_text() -> str:
    return resources.files("agentgateway").joinpath("demo.yaml").read_text(encoding="utf-8")


def _last_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(
                    part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text"
                )
    return ""


def _count_words(messages: list[Any]) -> int:
    total = 0
    for message in messages:
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            total += len(message["content"].split())
    return total


async def _chat_completions(request: web.Request) -> web.StreamResponse:
    try:
        body = orjson.loads(await request.read())
        messages = body["messages"]
        model = body["model"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return web.json_response(
            {
                "error": {
                    "message": "demo upstream: send model and messages",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": None,
                }
            },
            status=400,
        )
    said = _last_user_text(messages).strip()
    answer = (
        f"Hello from the agentgateway demo upstream! You said: {said}"
        if said
        else "Hello from the agentgateway demo upstream!"
    )
    words = answer.split(" ")
    usage = {
        "prompt_tokens": _count_words(messages),
        "completion_tokens": len(words),
        "total_tokens": _count_words(messages) + len(words),
    }
    completion_id = "chatcmpl-demo-" + uuid.uuid4().hex[:16]
    created = int(time.time())
    if not body.get("stream"):
        return web.Response(
            body=orjson.dumps(
                {
                    "id": completion_id,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": answer, "refusal": None},
                            "logprobs": None,
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": usage,
                }
            ),
            content_type="application/json",
        )

    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)

    def chunk(delta: dict[str, Any], finish_reason: str | None) -> bytes:
        payload: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }
        if include_usage:
            payload["usage"] = None
        return b"data: " + orjson.dumps(payload) + b"\n\n"

    try:
        await response.write(chunk({"role": "assistant", "content": ""}, None))
        for i, word in enumerate(words):
            await response.write(chunk({"content": word if i == 0 else " " + word}, None))
            await asyncio.sleep(0.02)  # a visible, model-like pace
        await response.write(chunk({}, "stop"))
        if include_usage:
            final = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [],
                "usage": usage,
            }
            await response.write(b"data: " + orjson.dumps(final) + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
    except ConnectionError:
        # The gateway drops the connection when its client leaves a stream (DESIGN.md: the upstream stops too):
        # an everyday event, not an error with a traceback (aiohttp's ClientConnectionResetError is one of these).
        logger.info("demo upstream: a client left a stream early")
    return response


def build_demo_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", _chat_completions)
    return app


def start_demo_upstream_thread(host: str = "127.0.0.1", port: int = 0) -> str:
    """Serves the demo upstream from a daemon thread; returns its base URL (``http://host:port/v1``)."""
    ready = threading.Event()
    bound: list[int] = []

    def run() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        runner = web.AppRunner(build_demo_app(), access_log=None)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, host, port)
        loop.run_until_complete(site.start())
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        bound.append(sockets[0].getsockname()[1] if sockets else port)
        ready.set()
        loop.run_forever()

    threading.Thread(target=run, name="agentgateway-demo-upstream", daemon=True).start()
    if not ready.wait(10):
        raise RuntimeError("the demo upstream did not start")
    return f"http://{host}:{bound[0]}/v1"
