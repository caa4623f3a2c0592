"""A fake Azure OpenAI / AI Foundry upstream, and the managed-identity token endpoint azure-identity asks.

It refuses what the real service would refuse: a path other than the v1 API (``/openai/v1/chat/completions``),
a deployment path (``/openai/deployments/{d}/chat/completions``, which needs ``api-version``) or a Foundry project
path (``/api/projects/{p}/openai/v1/chat/completions``); an ``api-version`` where the path needs none or a missing
one where it does; a request without ``api-key`` equal to ``key`` or ``Authorization: Bearer`` with a token this
fake issued (404 / 400 / 401 with Azure's error shape). Answers are OpenAI chat completions, plain or SSE.

Token endpoint (App Service managed identity, what ``DefaultAzureCredential`` uses with ``IDENTITY_ENDPOINT`` and
``IDENTITY_HEADER`` set): ``GET /msi/token?api-version=2019-08-01&resource=...`` with ``X-IDENTITY-HEADER``.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from .server import serve_in_thread

IDENTITY_HEADER = "fake-identity-header-secret"
_PATHS = (
    (re.compile(r"/openai/v1/chat/completions"), "v1"),
    (re.compile(r"/openai/deployments/(?P<deployment>[^/]+)/chat/completions"), "deployment"),
    (re.compile(r"/api/projects/(?P<project>[^/]+)/openai/v1/chat/completions"), "foundry"),
)


@dataclass
class Seen:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    kind: str


@dataclass
class FakeAzure:
    key: str
    origin: str = ""
    requests: list[Seen] = field(default_factory=list)
    tokens_issued: list[str] = field(default_factory=list)
    token_requests: list[dict[str, str]] = field(default_factory=list)

    @staticmethod
    def _error(status: int, code: str, message: str) -> web.Response:
        return web.json_response({"error": {"code": code, "message": message}}, status=status)

    async def token(self, request: web.Request) -> web.Response:
        self.token_requests.append(dict(request.query))
        if request.headers.get("X-IDENTITY-HEADER") != IDENTITY_HEADER:
            return web.json_response({"error": "bad identity header"}, status=401)
        if request.query.get("resource") != "https://cognitiveservices.azure.com":
            return web.json_response({"error": f"unexpected resource {request.query.get('resource')}"}, status=400)
        token = f"entra-token-{len(self.tokens_issued) + 1}"
        self.tokens_issued.append(token)
        return web.json_response(
            {
                "access_token": token,
                "expires_on": str(int(time.time()) + 3600),
                "resource": "https://cognitiveservices.azure.com",
                "token_type": "Bearer",
            }
        )

    async def chat(self, request: web.Request) -> web.StreamResponse:
        kind = next((k for pattern, k in _PATHS if pattern.fullmatch(request.path)), None)
        raw = await request.read()
        body = orjson.loads(raw) if raw else None
        self.requests.append(Seen(request.path, dict(request.query), dict(request.headers), body, kind or ""))
        if kind is None:
            return self._error(404, "404", f"Resource not found: {request.path}")
        version = request.query.get("api-version")
        if kind == "deployment" and not version:
            return self._error(400, "BadRequest", "api-version query parameter is required")
        if kind != "deployment" and version not in (None, "preview"):
            return self._error(400, "BadRequest", f"api-version {version} is not valid for the v1 API")
        key, bearer = request.headers.get("api-key"), request.headers.get("Authorization", "")
        if not (key == self.key or bearer.removeprefix("Bearer ") in self.tokens_issued):
            return self._error(401, "401", "Access denied due to invalid subscription key or wrong API endpoint.")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body.get("model"):
            return self._error(400, "BadRequest", "model and messages are required")
        model = request.match_info.get("deployment") or body["model"]
        if body.get("stream"):
            if (body.get("stream_options") or {}).get("include_usage") is not True:
                return self._error(400, "BadRequest", "the gateway should ask for stream usage")
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            head = {"id": "chatcmpl-az", "object": "chat.completion.chunk", "created": 1, "model": model}
            for delta, finish in (({"role": "assistant", "content": ""}, None), ({"content": "hello azure"}, None),
                                  ({}, "stop")):  # fmt: skip
                chunk = {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
                await response.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
            usage = {**head, "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}
            await response.write(b"data: " + orjson.dumps(usage) + b"\n\ndata: [DONE]\n\n")
            await response.write_eof()
            return response
        return web.json_response(
            {
                "id": "chatcmpl-az",
                "object": "chat.completion",
                "created": 1,
                "model": model,
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": "hello azure"}, "finish_reason": "stop"}
                ],
                "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
            }
        )


def start_fake_azure(key: str) -> tuple[FakeAzure, Any]:
    fake = FakeAzure(key)
    app = web.Application()
    app.router.add_get("/msi/token", fake.token)
    app.router.add_post("/{tail:.*}", fake.chat)
    fake.origin, stop = serve_in_thread(app, "fake-azure")
    return fake, stop
