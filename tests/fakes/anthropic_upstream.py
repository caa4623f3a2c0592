"""A fake Anthropic Messages API that checks what the gateway sends and answers in the exact wire format.

Every request body is validated with the ``anthropic`` package's own request types (``MessageCreateParams``) and
with the API's rules that the types cannot express (roles alternate, no empty text, tool results first in their
turn, the thinking budget below max_tokens, sampling parameters only where the API version has them, thinking
blocks sent back before tool use). A body that breaks a rule gets the 400 the real API gives, so a test that
expects success fails loudly.

Behaviour by the model name the upstream receives:
- ``*-tool``       tool_use blocks (two parallel calls) unless the last turn holds tool results: then text about them
- a ``tool_choice`` that forces a tool (``tool``; ``any``: the last tool listed): that tool's call alone, input
  ``{"answer": 42}`` for the gateway's ``agentgateway_json_output``, else ``{"city": "Paris"}``
- ``*-think``      a thinking block (signed) before the answer; with ``-tool`` too, thinking then tool use
- ``*-json``       answers a JSON text (structured output must have been requested)
- ``*-429``        429 rate_limit_error with ``retry-after: 7`` and Anthropic's rate-limit headers
- ``*-overloaded`` 529 overloaded_error; in a stream, text and then an ``error`` event after the 200
- ``*-max``        stops with ``max_tokens``; ``*-refusal`` stops with ``refusal``
- ``*-fixture``    streams the recorded capture ``tests/data/fixtures/anthropic/stream_text_then_tool_use.sse`` as is
- ``*-200-error``  HTTP 200 whose body is an ``overloaded_error`` (plain requests)
- ``*-truncated``  a stream that stops after its first text pieces (no message_delta, no message_stop)
- ``*-garbage``    a stream whose fifth event is not JSON
- ``*-reset``      a stream whose connection is reset after a few events
- ``*-stall``      a stream that goes silent for 3 s after a few events
- ``*-big``        an answer of 4 MiB of text (whole or in 4 KiB deltas)
- ``*-529``        529 overloaded_error, plain and streamed (before any event)
- ``*-firsterror`` a stream whose FIRST event is an ``error`` event (overloaded_error) after the 200
- otherwise        "You said: <last user text>"

``POST /v1/messages/count_tokens`` is validated with the SDK's ``MessageCountTokensParams`` (as strictly) and
answers ``{"input_tokens": <the body's JSON length / 4>}`` (`count_of`).
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from anthropic.types import message_count_tokens_params, message_create_params
from pydantic import TypeAdapter, ValidationError
from typing_extensions import is_typeddict

from .server import serve_in_thread, stream_in_pieces

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "fixtures" / "anthropic" / "stream_text_then_tool_use.sse"


def _forbid_extra_fields() -> None:
    """The SDK's request TypedDicts ignore unknown keys; the API refuses them. Make validation as strict as the API
    (the SDK's own explicit settings, such as the open tool input schema, are kept)."""
    for module in list(sys.modules.values()):
        if not getattr(module, "__name__", "").startswith("anthropic.types"):
            continue
        for value in vars(module).values():
            if isinstance(value, type) and is_typeddict(value) and "__pydantic_config__" not in vars(value):
                value.__pydantic_config__ = {"extra": "forbid"}  # type: ignore[attr-defined]


def _consume(value: Any) -> None:
    """pydantic validates ``Iterable`` fields lazily, item by item as they are read: read them all."""
    if isinstance(value, Mapping):
        for item in value.values():
            _consume(item)
    elif isinstance(value, (list, tuple, Iterator)):
        for item in value:
            _consume(item)


_forbid_extra_fields()
_STREAMING = TypeAdapter(message_create_params.MessageCreateParamsStreaming)
_NON_STREAMING = TypeAdapter(message_create_params.MessageCreateParamsNonStreaming)
_COUNT_TOKENS = TypeAdapter(message_count_tokens_params.MessageCountTokensParams)
_NEW_API_FIELDS = frozenset(message_create_params.MessageCreateParamsBase.__annotations__) | {"stream"}
# 2023-06-01 still takes the sampling parameters that the newer version (and the SDK's types) dropped.
_CLASSIC_API_FIELDS = _NEW_API_FIELDS | {"temperature", "top_p", "top_k"}
NEW_VERSION = "2026-10-21"
USAGE = {"input_tokens": 21, "cache_creation_input_tokens": 3, "cache_read_input_tokens": 5, "output_tokens": 9}


def signature_of(thinking: str) -> str:
    return "sig-" + hashlib.sha256(thinking.encode()).hexdigest()[:32]


class Rejected(Exception):
    def __init__(self, message: str, status: int = 400, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeAnthropic:
    api_key: str
    requests: list[Recorded] = field(default_factory=list)
    origin: str = ""

    def last(self) -> Recorded:
        return self.requests[-1]

    def count(self, model: str) -> int:
        """How many requests arrived for the upstream model name ``model``: the attempts the gateway made there."""
        return sum(1 for recorded in self.requests if recorded.body.get("model") == model)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        self.requests.append(Recorded(request.path, {k.lower(): v for k, v in request.headers.items()}, body))
        model: str = body.get("model", request.match_info.get("model", ""))
        try:
            self.check(request, body)
            message = answer(model, body)
        except Rejected as exc:
            return error_response(exc.status, exc.kind, str(exc))
        if model.endswith("-429"):
            headers = {"retry-after": "7", "anthropic-ratelimit-requests-remaining": "0", "request-id": "req_429"}
            return error_response(429, "rate_limit_error", "Number of requests has exceeded your rate limit", headers)
        if model.endswith("-529"):
            return error_response(529, "overloaded_error", "Overloaded")
        if model.endswith("-overloaded") and not body.get("stream"):
            return error_response(529, "overloaded_error", "Overloaded")
        if model.endswith("-fixture"):
            return await replay(request)
        if model.endswith("-200-error"):
            return web.json_response({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
        if model.endswith("-big"):
            message["content"] = [{"type": "text", "text": "x" * (4 << 20)}]
        if body.get("stream"):
            return await stream(request, message, fault=model.rpartition("-")[2])
        return web.json_response(message)

    async def count_tokens(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        self.requests.append(Recorded(request.path, {k.lower(): v for k, v in request.headers.items()}, body))
        try:
            self.check_key(request)
            check_count_tokens(body)
        except Rejected as exc:
            return error_response(exc.status, exc.kind, str(exc))
        return web.json_response({"input_tokens": count_of(body)})

    def check_key(self, request: web.Request) -> None:
        if request.headers.get("anthropic-version") == NEW_VERSION:
            key = request.headers.get("authorization", "").removeprefix("Bearer ")
        else:
            key = request.headers.get("x-api-key", "")
        if key != self.api_key:
            raise Rejected("invalid x-api-key", 401, "authentication_error")

    def check(self, request: web.Request, body: dict[str, Any]) -> None:
        version = request.headers.get("anthropic-version")
        if version is None:
            raise Rejected("anthropic-version: header is required")
        if version == NEW_VERSION:
            key = request.headers.get("authorization", "").removeprefix("Bearer ")
            allowed = _NEW_API_FIELDS
        else:
            key = request.headers.get("x-api-key", "")
            allowed = _CLASSIC_API_FIELDS
        if key != self.api_key:
            raise Rejected("invalid x-api-key", 401, "authentication_error")
        if request.headers.get("content-type") != "application/json":
            raise Rejected("content-type must be application/json")
        unknown = set(body) - allowed
        if unknown:
            raise Rejected(f"{sorted(unknown)}: Extra inputs are not permitted (anthropic-version {version})")
        try:
            # The SDK's types follow the newer version: check the 2023-06-01 sampling numbers here, the rest there.
            sampling = {key: body[key] for key in ("temperature", "top_p", "top_k") if key in body}
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in sampling.values()):
                raise Rejected(f"sampling parameters must be numbers: {sampling}")
            typed = {key: value for key, value in body.items() if key not in sampling}
            _consume((_STREAMING if body.get("stream") else _NON_STREAMING).validate_python(typed))
        except ValidationError as exc:
            raise Rejected(f"invalid request body: {exc}") from None
        check_rules(body)


def count_of(body: dict[str, Any]) -> int:
    """What the fakes answer a token count with: the counted fields' JSON length / 4."""
    return max(1, len(orjson.dumps({k: body[k] for k in ("system", "messages", "tools") if k in body})) // 4)


def check_count_tokens(body: dict[str, Any]) -> None:
    """A count_tokens body as the API takes it (Rejected otherwise)."""
    try:
        _consume(_COUNT_TOKENS.validate_python(body))
    except ValidationError as exc:
        raise Rejected(f"invalid count_tokens body: {exc}") from None


def check_rules(body: dict[str, Any]) -> None:
    """The Messages API rules that the request types do not express."""
    messages = body["messages"]
    if not messages or messages[0]["role"] != "user":
        raise Rejected("messages: the first message must use the user role")
    thinking = body.get("thinking", {}).get("type") in ("enabled", "adaptive")
    budget = body.get("thinking", {}).get("budget_tokens")
    if budget is not None and not 1024 <= budget < body["max_tokens"]:
        raise Rejected("thinking.budget_tokens: must be >= 1024 and less than max_tokens")
    if thinking and ("temperature" in body or "top_p" in body):
        raise Rejected("temperature and top_p may not be set when thinking is enabled")
    if "temperature" in body and not 0 <= body["temperature"] <= 1:
        raise Rejected("temperature: must be between 0 and 1")
    for index, message in enumerate(messages):
        if index and message["role"] == messages[index - 1]["role"]:
            raise Rejected(f"messages.{index}: roles must alternate between user and assistant")
        content = message["content"]
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        if not content:
            raise Rejected(f"messages.{index}: content must not be empty")
        seen_other = False
        for position, block in enumerate(content):
            if block["type"] == "text" and not block["text"]:
                raise Rejected(f"messages.{index}.content.{position}: text content blocks must be non-empty")
            if block["type"] == "tool_result" and seen_other:
                raise Rejected(f"messages.{index}: tool_result blocks must come first in the user message")
            seen_other |= block["type"] != "tool_result"
            if block["type"] == "thinking" and block["signature"] != signature_of(block["thinking"]):
                raise Rejected(f"messages.{index}.content.{position}: Invalid `signature` in `thinking` block")
        uses_tools = message["role"] == "assistant" and any(b["type"] == "tool_use" for b in content)
        if thinking and uses_tools and content[0]["type"] not in ("thinking", "redacted_thinking"):
            raise Rejected(
                f"messages.{index}.content.0.type: Expected `thinking` or `redacted_thinking`, but found "
                f"`{content[0]['type']}`. When `thinking` is enabled, a final `assistant` message must start "
                "with a thinking block."
            )
    for system_block in body.get("system", []):
        if not system_block["text"]:
            raise Rejected("system: text content blocks must be non-empty")
    choice = body.get("tool_choice") or {}
    if choice and not body.get("tools"):
        raise Rejected("tool_choice: may only be specified while providing tools")
    if choice.get("type") == "tool" and choice["name"] not in {tool["name"] for tool in body["tools"]}:
        raise Rejected(f"tool_choice.name: tool {choice['name']!r} not found in tools")
    if thinking and choice.get("type") in ("any", "tool"):
        raise Rejected("Thinking may not be enabled when tool_choice forces tool use.")


def error_response(status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(
        {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_1"},
        status=status,
        headers=headers,
    )


def last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body["messages"]):
        if message["role"] != "user":
            continue
        content = message["content"]
        if isinstance(content, str):
            return content
        texts = [b["text"] for b in content if b["type"] == "text"]
        if texts:
            return " ".join(texts)
    return ""


def answer(model: str, body: dict[str, Any]) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    stop_reason = "end_turn"
    if "-think" in model:
        thought = f"The user wrote {len(body['messages'])} messages; I should answer briefly."
        content.append({"type": "thinking", "thinking": thought, "signature": signature_of(thought)})
    last = body["messages"][-1]
    results = [b for b in last["content"] if isinstance(b, dict) and b["type"] == "tool_result"]
    forced = body.get("tool_choice") or {}
    if forced.get("type") in ("tool", "any") and not results:
        # A forced tool: Claude answers with that tool's call alone (``any``: the last tool, the gateway's JSON tool).
        name = forced["name"] if forced["type"] == "tool" else body["tools"][-1]["name"]
        tool_input = {"answer": 42} if name == "agentgateway_json_output" else {"city": "Paris"}
        content.append({"type": "tool_use", "id": "toolu_01F", "name": name, "input": tool_input})
        stop_reason = "tool_use"
    elif "-tool" in model and not results:
        tool = body["tools"][0]["name"]
        content.append({"type": "text", "text": "Let me check both cities."})
        content.append({"type": "tool_use", "id": "toolu_01A", "name": tool, "input": {"city": "Paris"}})
        content.append({"type": "tool_use", "id": "toolu_01B", "name": tool, "input": {"city": "Tokyo", "n": [1, 2]}})
        stop_reason = "tool_use"
    elif results:
        summary = "; ".join(f"{r['tool_use_id']}={r.get('content', '')}" for r in results)
        content.append({"type": "text", "text": f"Tool results: {summary}"})
    elif model.endswith("-json"):
        if "format" not in body.get("output_config", {}):
            raise Rejected("the -json model needs output_config.format")
        content.append({"type": "text", "text": '{"answer": 42}'})
    else:
        content.append({"type": "text", "text": f"You said: {last_user_text(body)}"})
    if model.endswith("-max"):
        stop_reason = "max_tokens"
    elif model.endswith("-refusal"):
        stop_reason = "refusal"
    return {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": body.get("model", "claude-on-vertex"),
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": USAGE,
    }


def sse(event: str, data: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def stream_events(message: dict[str, Any], piece: int = 7) -> list[bytes]:
    """The event sequence the Messages API sends for ``message``, text (``piece`` characters at a time) and
    arguments in pieces."""
    start = {**message, "content": [], "stop_reason": None, "usage": {**USAGE, "output_tokens": 1}}
    events = [sse("message_start", {"type": "message_start", "message": start}), sse("ping", {"type": "ping"})]
    for index, block in enumerate(message["content"]):
        kind = block["type"]
        if kind == "text":
            empty: dict[str, Any] = {"type": "text", "text": ""}
            text = block["text"]
            pieces = [("text_delta", "text", text[i : i + piece]) for i in range(0, len(text), piece)]
        elif kind == "thinking":
            empty = {"type": "thinking", "thinking": "", "signature": ""}
            pieces = [
                ("thinking_delta", "thinking", block["thinking"][i : i + 9])
                for i in range(0, len(block["thinking"]), 9)
            ]
            pieces.append(("signature_delta", "signature", block["signature"]))
        else:
            empty = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            arguments = orjson.dumps(block["input"]).decode()
            pieces = [("input_json_delta", "partial_json", "")]
            pieces += [("input_json_delta", "partial_json", arguments[i : i + 5]) for i in range(0, len(arguments), 5)]
        events.append(
            sse("content_block_start", {"type": "content_block_start", "index": index, "content_block": empty})
        )
        for delta_type, key, value in pieces:
            delta = {"type": "content_block_delta", "index": index, "delta": {"type": delta_type, key: value}}
            events.append(sse("content_block_delta", delta))
        events.append(sse("content_block_stop", {"type": "content_block_stop", "index": index}))
    events.append(
        sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                "usage": {"output_tokens": USAGE["output_tokens"]},
            },
        )
    )
    events.append(sse("message_stop", {"type": "message_stop"}))
    return events


async def stream(request: web.Request, message: dict[str, Any], *, fault: str) -> web.StreamResponse:
    response = web.StreamResponse(headers={"content-type": "text/event-stream; charset=utf-8", "request-id": "req_s"})
    await response.prepare(request)
    events = stream_events(message, piece=4096 if fault == "big" else 7)
    if fault == "overloaded":
        error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
        events = [*events[:5], sse("error", error)]
    elif fault == "truncated":
        events = events[:5]
    elif fault == "firsterror":
        events = [sse("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})]
    elif fault == "garbage":
        events[4] = b"event: content_block_delta\ndata: {this is not json\n\n"
    for index, event in enumerate(events):
        if index == 5 and fault == "reset":
            assert request.transport is not None
            request.transport.abort()
            return response
        if index == 5 and fault == "stall":
            await asyncio.sleep(3)
        await response.write(event)
        await asyncio.sleep(0)
    await response.write_eof()
    return response


async def replay(request: web.Request) -> web.StreamResponse:
    return await stream_in_pieces(request, FIXTURE.read_bytes(), 97, "text/event-stream; charset=utf-8")


def start_fake_anthropic(api_key: str) -> tuple[FakeAnthropic, Callable[[], None]]:
    fake = FakeAnthropic(api_key)
    app = web.Application(handler_args={"lingering_time": 0})
    app.router.add_post("/v1/messages", fake.handle)
    app.router.add_post("/v1/messages/count_tokens", fake.count_tokens)
    fake.origin, stop = serve_in_thread(app, "fake-anthropic")
    return fake, stop
