"""The Anthropic Messages API as an inbound API (issue 19): ``POST /v1/messages`` and ``/v1/messages/count_tokens``.

Checks a client's Messages body before anything is sent upstream, in the spirit of request.py: only the fields
whose shape the gateway relies on are checked (everything else passes through to a Claude backend, which knows its
own rules), and each failure names the field the way Anthropic does (``messages.2.content.0.text``). The request is
then carried as a `ChatRequest` with ``api="messages"`` (or ``"count_tokens"``) and the client's body unchanged:

- Claude backends (``anthropic``, Claude on Vertex AI, Claude on Bedrock through InvokeModel) get that body natively,
  only the model (and Vertex's / Bedrock's ``anthropic_version``) changed: thinking signatures, ``cache_control``,
  documents, citations, server tools and betas are kept byte for byte in meaning.
- Every other backend builds its upstream body from the shared model read by
  `providers.messages_input.read_messages` (OpenAI chat, Gemini ``generateContent``, Bedrock Converse).

Errors reach the client in Anthropic's shape (errors.py, ``GatewayError.anthropic_body``).
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from typing import Any

import orjson

from .errors import InvalidRequest
from .exchange import Exchange, Observer
from .providers import ChatRequest, header_value

__all__ = ["COUNT_TOKENS", "MESSAGES", "MessagesApi", "parse_messages_request"]

_ROLES = frozenset(("user", "assistant", "system"))
_TOOL_CHOICES = frozenset(("auto", "any", "tool", "none"))
_THINKING = frozenset(("enabled", "disabled", "adaptive"))
_NUMBER = (int, float)

_JSON_TYPE_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "a boolean",
    list: "an array",
    dict: "an object",
    type(None): "null",
}


def _type_name(value: Any) -> str:
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)


def _invalid(message: str, param: str) -> InvalidRequest:
    return InvalidRequest(f"{param}: {message}", param=param)


def _wrong_type(param: str, expected: str, value: Any) -> InvalidRequest:
    return _invalid(f"Input should be {expected}, got {_type_name(value)}.", param)


def _is_number(value: Any) -> bool:
    return isinstance(value, _NUMBER) and not isinstance(value, bool)


def _check_blocks(content: Any, param: str) -> None:
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise _wrong_type(param, "a string or an array of content blocks", content)
    for index, block in enumerate(content):
        where = f"{param}.{index}"
        if not isinstance(block, dict):
            raise _wrong_type(where, "a content block object", block)
        kind = block.get("type")
        if not isinstance(kind, str):
            raise _invalid("Field required.", f"{where}.type")
        if kind == "text" and not isinstance(block.get("text"), str):
            raise _wrong_type(f"{where}.text", "a string", block.get("text"))
        elif kind == "tool_use":
            if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
                raise _invalid("a tool_use block needs a string 'id' and 'name'.", where)
            if not isinstance(block.get("input", {}), dict):
                raise _wrong_type(f"{where}.input", "an object", block.get("input"))
        elif kind == "tool_result":
            if not isinstance(block.get("tool_use_id"), str):
                raise _wrong_type(f"{where}.tool_use_id", "a string", block.get("tool_use_id"))
            inner = block.get("content")
            if inner is not None:
                _check_blocks(inner, f"{where}.content")
        elif kind == "thinking":
            if not isinstance(block.get("thinking"), str) or not isinstance(block.get("signature"), str):
                raise _invalid("a thinking block needs string 'thinking' and 'signature'.", where)
        elif kind in ("image", "document") and not isinstance(block.get("source"), dict):
            raise _wrong_type(f"{where}.source", "an object", block.get("source"))


def parse_messages_request(
    raw: bytes, headers: list[tuple[bytes, bytes]], *, count_tokens: bool = False
) -> ChatRequest:
    """The checked request of a ``/v1/messages`` (``count_tokens``: ``/v1/messages/count_tokens``) body."""
    if not raw:
        raise InvalidRequest("The request body is empty: send a JSON object with 'model', 'max_tokens' and 'messages'.")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc}.") from None
    if not isinstance(body, dict):
        raise InvalidRequest(f"The request body must be a JSON object, got {_type_name(body)}.")

    model = body.get("model")
    if model is None:
        raise _invalid("Field required.", "model")
    if not isinstance(model, str):
        raise _wrong_type("model", "a string", model)
    if not model:
        raise _invalid("must not be empty.", "model")

    if not count_tokens:
        max_tokens = body.get("max_tokens")
        if max_tokens is None:
            raise _invalid("Field required.", "max_tokens")
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool):
            raise _wrong_type("max_tokens", "an integer", max_tokens)
        if max_tokens < 1:
            raise _invalid("must be at least 1.", "max_tokens")

    messages = body.get("messages")
    if messages is None:
        raise _invalid("Field required.", "messages")
    if not isinstance(messages, list):
        raise _wrong_type("messages", "an array of messages", messages)
    if not messages:
        raise _invalid("at least one message is required.", "messages")
    for index, message in enumerate(messages):
        where = f"messages.{index}"
        if not isinstance(message, dict):
            raise _wrong_type(where, "an object", message)
        role = message.get("role")
        if role not in _ROLES:
            raise _invalid(f"Input should be 'user' or 'assistant', got {role!r}.", f"{where}.role")
        if "content" not in message:
            raise _invalid("Field required.", f"{where}.content")
        _check_blocks(message["content"], f"{where}.content")

    system = body.get("system")
    if system is not None:
        if isinstance(system, list):
            for index, block in enumerate(system):
                if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(block.get("text"), str):
                    raise _invalid(
                        "system blocks must be text blocks ({'type': 'text', 'text': ...}).", f"system.{index}"
                    )
        elif not isinstance(system, str):
            raise _wrong_type("system", "a string or an array of text blocks", system)

    stream = body.get("stream", False)
    if stream is None:
        stream = False
    elif not isinstance(stream, bool):
        raise _wrong_type("stream", "a boolean", stream)
    if count_tokens:
        stream = False

    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise _wrong_type("tools", "an array", tools)
        for index, tool in enumerate(tools):
            if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
                raise _invalid("a tool needs a string 'name'.", f"tools.{index}")
    choice = body.get("tool_choice")
    if choice is not None:
        if not isinstance(choice, dict) or choice.get("type") not in _TOOL_CHOICES:
            raise _invalid("Input should be {'type': 'auto' | 'any' | 'tool' | 'none'}.", "tool_choice")
        if choice["type"] == "tool" and not isinstance(choice.get("name"), str):
            raise _invalid("Field required.", "tool_choice.name")
    thinking = body.get("thinking")
    if thinking is not None:
        if not isinstance(thinking, dict) or thinking.get("type") not in _THINKING:
            raise _invalid("Input should be {'type': 'enabled' | 'disabled' | 'adaptive'}.", "thinking")
        if thinking["type"] == "enabled":
            budget = thinking.get("budget_tokens")
            if not isinstance(budget, int) or isinstance(budget, bool):
                raise _wrong_type("thinking.budget_tokens", "an integer", budget)
    stop = body.get("stop_sequences")
    if stop is not None and (not isinstance(stop, list) or not all(isinstance(s, str) for s in stop)):
        raise _wrong_type("stop_sequences", "an array of strings", stop)
    for name in ("temperature", "top_p"):
        value = body.get(name)
        if value is not None and not _is_number(value):
            raise _wrong_type(name, "a number", value)
    top_k = body.get("top_k")
    if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool)):
        raise _wrong_type("top_k", "an integer", top_k)
    metadata = body.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise _wrong_type("metadata", "an object", metadata)

    return ChatRequest(
        raw,
        body,
        model,
        stream,
        True,  # Anthropic streams always carry their usage (message_start, message_delta)
        header_value(headers, b"authorization"),
        headers,
        "count_tokens" if count_tokens else "messages",
    )


class MessagesApi:
    """The inbound API for app.Gateway.chat_completions: Anthropic Messages (``count_tokens``: its token counting),
    through the same exchange as chat completions with ``exchange.api = "messages"``."""

    __slots__ = ("count_tokens",)

    def __init__(self, *, count_tokens: bool) -> None:
        self.count_tokens = count_tokens

    def exchange(self, scope: MutableMapping[str, Any], observers: Sequence[Observer]) -> Exchange:
        return Exchange(scope, observers, api="messages")

    def parse(self, raw: bytes, headers: list[tuple[bytes, bytes]]) -> ChatRequest:
        return parse_messages_request(raw, headers, count_tokens=self.count_tokens)


MESSAGES = MessagesApi(count_tokens=False)
COUNT_TOKENS = MessagesApi(count_tokens=True)
