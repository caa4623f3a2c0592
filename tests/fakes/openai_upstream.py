"""A fake OpenAI Chat Completions upstream speaking the real wire format, with faults on demand.

The behaviour is chosen by the model name the upstream receives (the gateway forwards it, or rewrites it from
``params.model``), so one server covers every case. Every request is recorded for assertions.

Models (any other name answers normally):
- ``*-429``            429 with ``Retry-After: 7`` and an OpenAI rate-limit error body
- ``*-500-text``       500 with a plain-text body
- ``*-200-error``      200 whose body is an OpenAI error saying 503 (as some compatible servers answer)
- ``*-midstream-error``  a stream that sends two chunks and then ``data: {"error": ...}``
- ``*-truncated``      a stream that stops after two chunks, without finish_reason or ``[DONE]``
- ``*-reset``          a stream whose connection is reset after two chunks
- ``*-slow-headers``   waits 3 s before answering
- ``*-stall``          a stream that goes silent for 3 s after two chunks
- ``*-hang``           a stream that sends one chunk and then waits until the client goes away (records it)
- ``*-crlf``           a stream framed with ``\\r\\n`` line ends and split at awkward places
- ``*-no-done``        a stream with finish_reason and usage but no ``[DONE]``
- ``*-slow``           a stream that sends one word every 0.1 s
- ``*-garbage``        a stream whose third event is not JSON
- ``*-503``            503 with an OpenAI server_error body and no Retry-After (a failover trigger)
- ``*-evict60``        503 with ``Retry-After: 60`` (evicts the target for longer than any test runs)
- ``*-fail-once``      the first request for this exact model name is an ``*-evict60`` answer, later ones succeed
- ``*-sleep-headers``  no response headers for 30 s (a first-byte timeout; records when the gateway gives up)
- ``*-first-error``    a stream whose FIRST event is ``data: {"error": ...}`` (HTTP 200, nothing before it)
- ``*-content-then-error``  a stream whose first events (role, one word of content) and an error event come in ONE
                       write: content came first, so it is a failure after content however the reads split it

- ``*-tool``           with ``tools`` and no tool result in the last message: a ``get_weather`` tool call (plain and
                       streamed, arguments in pieces); once a ``tool`` message answers it, text about the result

``POST /v1/responses/input_tokens`` (issue 19) is validated with the openai package's ``InputTokenCountParams``
and answers ``{"object": "response.input_tokens", "input_tokens": <its JSON length / 4>}``. Chat bodies whose
model ends with ``-typed`` are validated with the package's ``CompletionCreateParams`` (400 otherwise).

``count(model)`` says how many requests the fake received for an upstream model name (the attempts made).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from .embedding_vectors import encode_base64, fake_vector, token_count
from .server import serve_in_thread

STORY = "Once upon a time there was a small gateway that translated every chunk it saw".split()


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    raw: bytes
    body: Any


@dataclass
class FakeOpenAI:
    requests: list[Recorded] = field(default_factory=list)
    disconnects: list[float] = field(default_factory=list)
    hang_started: list[float] = field(default_factory=list)
    base_url: str = ""

    def last(self) -> Recorded:
        return self.requests[-1]

    def count(self, model: str) -> int:
        """How many requests arrived for the upstream model name ``model``: the attempts the gateway made there."""
        return len(self.for_model(model))

    def for_model(self, model: str) -> list[Recorded]:
        """The requests that arrived for the upstream model name ``model``, in order."""
        return [r for r in self.requests if isinstance(r.body, dict) and r.body.get("model") == model]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body = orjson.loads(raw)
        self.requests.append(Recorded(request.path, dict(request.headers), raw, body))
        model: str = body["model"]
        if model.endswith("-fail-once") and self.count(model) == 1:
            model = model + "-evict60"
        if model.endswith(("-503", "-evict60")):
            return web.Response(
                status=503,
                headers={"Retry-After": "60"} if model.endswith("-evict60") else {},
                content_type="application/json",
                body=orjson.dumps(
                    {
                        "error": {
                            "message": "The server is overloaded or not ready yet.",
                            "type": "server_error",
                            "param": None,
                            "code": None,
                        }
                    }
                ),
            )
        if model.endswith("-sleep-headers"):
            return await self.hang()
        if "-typed" in model:
            problem = check_chat_body(body)
            if problem is not None:
                error = {"message": problem, "type": "invalid_request_error", "param": None, "code": None}
                return web.json_response({"error": error}, status=400)
        if "-tool" in model and body.get("tools") and body["messages"][-1]["role"] != "tool":
            return await tool_call_answer(request, body)
        if model.endswith("-first-error") and body.get("stream"):
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            error = {
                "error": {"message": "The model is overloaded.", "type": "server_error", "param": None, "code": None}
            }
            await response.write(b"data: " + orjson.dumps(error) + b"\n\n")
            await response.write_eof()
            return response
        if model.endswith("-content-then-error") and body.get("stream"):
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            frames = [
                {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]},
                {"choices": [{"index": 0, "delta": {"content": STORY[0]}, "finish_reason": None}]},
            ]
            head = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1700000000, "model": model}
            data = b"".join(b"data: " + orjson.dumps({**head, **frame}) + b"\n\n" for frame in frames)
            error = {"error": {"message": "The server had an error while processing your request.",
                               "type": "server_error", "param": None, "code": None}}  # fmt: skip
            await response.write(data + b"data: " + orjson.dumps(error) + b"\n\n")
            await response.write_eof()
            return response
        if model.endswith("-200-error"):
            return web.json_response({"error": {"message": "model is loading", "type": "server_error", "code": 503}})
        if model.endswith("-429"):
            return web.Response(
                status=429,
                headers={"Retry-After": "7", "x-ratelimit-remaining-requests": "0"},
                content_type="application/json",
                body=orjson.dumps(
                    {
                        "error": {
                            "message": "Rate limit reached for requests",
                            "type": "requests",
                            "param": None,
                            "code": "rate_limit_exceeded",
                        }
                    }
                ),
            )
        if model.endswith("-500-text"):
            return web.Response(status=500, text="upstream exploded")
        if model.endswith("-slow-headers"):
            await asyncio.sleep(3)
        if model.endswith("-hang") and not body.get("stream"):
            return await self.hang()
        if body.get("stream"):
            return await self.stream(request, body)
        if body["messages"][-1]["role"] == "tool":
            said = f"Tool said: {body['messages'][-1]['content']}"
            return web.json_response(
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion",
                    "created": 1700000000,
                    "model": model,
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": said}, "finish_reason": "stop"}
                    ],
                    "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
                }
            )
        return web.Response(
            content_type="application/json",
            headers={"x-request-id": "req_fake_123"},
            body=orjson.dumps(
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion",
                    "created": 1700000000,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": " ".join(STORY), "refusal": None},
                            "logprobs": None,
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 12, "completion_tokens": len(STORY), "total_tokens": 12 + len(STORY)},
                    "system_fingerprint": "fp_fake",
                }
            ),
        )

    async def hang(self) -> web.Response:
        """Never answers (a model thinking for long); records when the gateway gives up on the request."""
        self.hang_started.append(time.monotonic())
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            self.disconnects.append(time.monotonic())
            raise
        return web.Response(status=504, text="hung for 30 s")

    async def stream(self, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        model: str = body["model"]
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        newline = b"\r\n" if model.endswith("-crlf") else b"\n"
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "x-request-id": "req_fake_stream"})
        await response.prepare(request)

        def event(payload: dict[str, Any] | str) -> bytes:
            data = payload.encode() if isinstance(payload, str) else orjson.dumps(payload)
            return b"data: " + data + newline + newline

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
            payload: dict[str, Any] = {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": 1700000000,
                "model": model,
                "system_fingerprint": "fp_fake",
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
            }
            if include_usage:
                payload["usage"] = None  # what OpenAI does on every chunk once usage was asked for
            return event(payload)

        await response.write(b": keep-alive comment" + newline + newline)
        await response.write(chunk({"role": "assistant", "content": ""}))
        await response.write(chunk({"content": STORY[0]}))
        if model.endswith("-midstream-error"):
            await response.write(
                event(
                    {
                        "error": {
                            "message": "The server had an error while processing your request.",
                            "type": "server_error",
                            "param": None,
                            "code": None,
                        }
                    }
                )
            )
            return response
        if model.endswith("-truncated"):
            return response
        if model.endswith("-garbage"):
            await response.write(b"data: <html>502 Bad Gateway</html>" + newline + newline)
            await response.write(chunk({"content": " never"}))
            return response
        if model.endswith("-reset"):
            assert request.transport is not None
            request.transport.abort()
            return response
        if model.endswith("-stall"):
            await asyncio.sleep(3)
        if model.endswith("-hang"):
            await self.hang()
            return response
        rest = b"".join(chunk({"content": " " + word}) for word in STORY[1:]) + chunk({}, "stop")
        if include_usage:
            rest += event(
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion.chunk",
                    "created": 1700000000,
                    "model": model,
                    "system_fingerprint": "fp_fake",
                    "choices": [],
                    "usage": {"prompt_tokens": 12, "completion_tokens": len(STORY), "total_tokens": 12 + len(STORY)},
                }
            )
        if not model.endswith("-no-done"):
            rest += event("[DONE]")
        if model.endswith("-slow"):
            for word in STORY[1:]:
                await response.write(chunk({"content": " " + word}))
                await asyncio.sleep(0.1)
            rest = rest[rest.index(chunk({}, "stop")) :]
        if model.endswith("-crlf"):
            # Split inside "\r\n" pairs and inside JSON, so framing must survive arbitrary read boundaries.
            for start in range(0, len(rest), 37):
                await response.write(rest[start : start + 37])
                await asyncio.sleep(0)
        else:
            await response.write(rest)
        await response.write_eof()
        return response


async def embeddings(fake: FakeOpenAI, request: web.Request) -> web.Response:
    """``POST /embeddings`` (issue 19): the body checked against OpenAI's ``EmbeddingCreateParams`` (the openai
    package's request type: required keys, their types, no unknown key but the extension fields the tests send),
    vectors from `fake_vector` (one per input, ``dimensions`` long), base64 as OpenAI encodes it. Faults by model
    suffix as for chat: ``-503``, ``-evict60``, ``-fail-once``, ``-429``, ``-200-error``."""
    raw = await request.read()
    body = orjson.loads(raw)
    fake.requests.append(Recorded(request.path, dict(request.headers), raw, body))
    problem = check_embeddings_body(body)
    if problem is not None:
        error = {"message": problem, "type": "invalid_request_error", "param": None, "code": None}
        return web.json_response({"error": error}, status=400)
    model: str = body["model"]
    if model.endswith("-fail-once") and fake.count(model) == 1:
        model += "-evict60"
    if model.endswith(("-503", "-evict60")):
        error = {"message": "The server is overloaded or not ready yet.", "type": "server_error", "param": None,
                 "code": None}  # fmt: skip
        headers = {"Retry-After": "60"} if model.endswith("-evict60") else {}
        return web.json_response({"error": error}, status=503, headers=headers)
    if model.endswith("-429"):
        error = {"message": "Rate limit reached for requests", "type": "requests", "param": None,
                 "code": "rate_limit_exceeded"}  # fmt: skip
        return web.json_response({"error": error}, status=429, headers={"Retry-After": "7"})
    if model.endswith("-200-error"):
        return web.json_response({"error": {"message": "model is loading", "type": "server_error", "code": 503}})
    value = body["input"]
    items = [value] if isinstance(value, str) or (value and isinstance(value[0], int)) else value
    base64_wanted = body.get("encoding_format") == "base64"
    data = []
    for index, item in enumerate(items):
        vector = fake_vector(item, body.get("dimensions"))
        data.append({"object": "embedding", "index": index,
                     "embedding": encode_base64(vector) if base64_wanted else vector})  # fmt: skip
    tokens = sum(token_count(item) for item in items)
    return web.json_response(
        {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}},
        headers={"x-request-id": "req_fake_embeddings"},
    )


#: What the tests send beyond OpenAI's own fields (read by other providers, passed on to OpenAI-format upstreams).
EMBEDDING_EXTENSIONS = frozenset(("input_type", "task_type", "normalize", "truncate"))


def check_embeddings_body(body: Any) -> str | None:
    """What OpenAI would refuse in an embeddings body, per the openai package's ``EmbeddingCreateParams``."""
    from openai.types import EmbeddingCreateParams

    if not isinstance(body, dict):
        return "the body must be a JSON object"
    # input and model are Required[...] there (which __required_keys__ cannot see through the package's
    # postponed annotations); the keys themselves come from the type.
    known = EmbeddingCreateParams.__required_keys__ | EmbeddingCreateParams.__optional_keys__
    required = {"input", "model"} & known
    missing = required - set(body)
    if missing:
        return f"missing {sorted(missing)}"
    unknown = set(body) - known - EMBEDDING_EXTENSIONS
    if unknown:
        return f"Unrecognized request argument supplied: {', '.join(sorted(unknown))}"
    value = body["input"]
    strings = isinstance(value, str) or (isinstance(value, list) and all(isinstance(x, str) for x in value))
    tokens = isinstance(value, list) and all(isinstance(x, int) for x in value)
    token_lists = isinstance(value, list) and all(
        isinstance(x, list) and all(isinstance(t, int) for t in x) for x in value
    )
    if not (value and (strings or tokens or token_lists)):
        return "'$.input' is invalid"
    if body.get("encoding_format", "float") not in ("float", "base64"):
        return "encoding_format must be float or base64"
    if "dimensions" in body and not isinstance(body["dimensions"], int):
        return "dimensions must be an integer"
    if not isinstance(body["model"], str):
        return "model must be a string"
    return None


def check_chat_body(body: dict[str, Any]) -> str | None:
    """A Chat Completions body checked with the openai package's own request types (None: valid)."""
    from openai.types.chat import completion_create_params
    from pydantic import TypeAdapter, ValidationError

    kind = (
        completion_create_params.CompletionCreateParamsStreaming
        if body.get("stream")
        else completion_create_params.CompletionCreateParamsNonStreaming
    )
    try:
        validated = TypeAdapter(kind).validate_python(body)
        for message in validated["messages"]:  # Iterable fields validate lazily: read them
            list(message.get("content") or []) if not isinstance(message.get("content"), str) else None
            list(message.get("tool_calls") or [])
        list(validated.get("tools") or [])
    except ValidationError as exc:
        return f"invalid request body: {exc}"
    return None


async def tool_call_answer(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
    """A get_weather tool call, whole or streamed (arguments in pieces, then usage)."""
    model = body["model"]
    arguments = '{"city": "Paris"}'
    call = {"id": "call_fake1", "type": "function", "function": {"name": body["tools"][0]["function"]["name"]}}
    usage = {"prompt_tokens": 20, "completion_tokens": 7, "total_tokens": 27}
    if not body.get("stream"):
        message = {
            "role": "assistant",
            "content": None,
            "tool_calls": [{**call, "function": {**call["function"], "arguments": arguments}}],
        }
        return web.json_response(
            {
                "id": "chatcmpl-tool",
                "object": "chat.completion",
                "created": 1700000000,
                "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}],
                "usage": usage,
            }
        )
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    head = {"id": "chatcmpl-tool", "object": "chat.completion.chunk", "created": 1700000000, "model": model}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return b"data: " + orjson.dumps({**head, "choices": [choice]}) + b"\n\n"

    out = chunk({"role": "assistant", "content": None})
    out += chunk({"tool_calls": [{"index": 0, **call, "function": {**call["function"], "arguments": ""}}]})
    for start in range(0, len(arguments), 6):
        out += chunk({"tool_calls": [{"index": 0, "function": {"arguments": arguments[start : start + 6]}}]})
    out += chunk({}, "tool_calls")
    out += b"data: " + orjson.dumps({**head, "choices": [], "usage": usage}) + b"\n\ndata: [DONE]\n\n"
    await response.write(out)
    await response.write_eof()
    return response


async def input_tokens(fake: FakeOpenAI, request: web.Request) -> web.Response:
    # pydantic cannot build InputTokenCountParams as a whole (its recursive definitions panic pydantic-core), so its
    # fields are checked one by one with the package's own item and tool types.
    from openai.types.responses import function_tool_param, input_token_count_params, response_input_param
    from pydantic import TypeAdapter, ValidationError

    raw = await request.read()
    body = orjson.loads(raw)
    fake.requests.append(Recorded(request.path, dict(request.headers), raw, body))
    try:
        unknown = set(body) - set(input_token_count_params.InputTokenCountParams.__annotations__)
        if unknown or not isinstance(body.get("model"), str) or not isinstance(body.get("instructions", ""), str):
            raise ValueError(f"unknown or mistyped fields: {sorted(unknown)}")
        items = body["input"]
        if not isinstance(items, (str, list)):
            raise ValueError("input must be a string or a list of items")
        for item in items if isinstance(items, list) else []:
            validated = TypeAdapter(response_input_param.ResponseInputItemParam).validate_python(item)
            content = validated.get("content") if isinstance(validated, dict) else None
            if isinstance(content, list):
                list(content)
        for tool in body.get("tools") or []:
            TypeAdapter(function_tool_param.FunctionToolParam).validate_python(tool)
    except (ValidationError, ValueError, KeyError) as exc:
        error = {"message": f"invalid request body: {exc}", "type": "invalid_request_error", "param": None}
        return web.json_response({"error": error}, status=400)
    return web.json_response({"object": "response.input_tokens", "input_tokens": max(1, len(raw) // 4)})


def start_fake_openai() -> tuple[FakeOpenAI, Callable[[], None]]:
    """Serves the fake on 127.0.0.1 (a free port) from a daemon thread."""
    fake = FakeOpenAI()
    app = web.Application(handler_args={"lingering_time": 0})
    app.router.add_post("/v1/chat/completions", fake.handle)
    app.router.add_post("/chat/completions", fake.handle)

    async def embeddings_handler(request: web.Request) -> web.Response:
        return await embeddings(fake, request)

    app.router.add_post("/v1/embeddings", embeddings_handler)

    async def input_tokens_handler(request: web.Request) -> web.Response:
        return await input_tokens(fake, request)

    app.router.add_post("/v1/responses/input_tokens", input_tokens_handler)
    origin, stop = serve_in_thread(app, "fake-openai")
    fake.base_url = origin + "/v1"
    return fake, stop
