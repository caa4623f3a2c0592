"""Checks a client's Chat Completions body before anything is sent upstream.

Hand-written checks rather than a pydantic model: they run on every request, they only look at the fields whose
shape the gateway relies on (everything else passes through to the upstream, which knows its own rules), and
each failure names the field the way OpenAI does (``messages[2].role``) so the client knows what to fix.

The readers every OpenAI-shaped inbound body shares (the JSON object, ``model``, a field's JSON type and the 400
naming it) are here once; embeddings.py reads its body with them.
"""

from __future__ import annotations

from typing import Any

import orjson

from .errors import InvalidRequest
from .providers import ChatRequest, header_value
from .providers.openai_input import invalid

__all__ = ["check_type", "parse_chat_request", "read_body", "read_model", "type_name", "wrong_type"]

ROLES = frozenset(("system", "developer", "user", "assistant", "tool", "function"))

# Optional top-level fields and the JSON types they must have when present (bool is not a number here).
_NUMBER = (int, float)
_OPTIONAL_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "temperature": (_NUMBER, "a number"),
    "top_p": (_NUMBER, "a number"),
    "presence_penalty": (_NUMBER, "a number"),
    "frequency_penalty": (_NUMBER, "a number"),
    "max_tokens": ((int,), "an integer"),
    "max_completion_tokens": ((int,), "an integer"),
    "n": ((int,), "an integer"),
    "seed": ((int,), "an integer"),
    "tools": ((list,), "an array"),
    "stop": ((str, list), "a string or an array of strings"),
    "response_format": ((dict,), "an object"),
    "metadata": ((dict,), "an object"),
    "user": ((str,), "a string"),
    "logprobs": ((bool,), "a boolean"),
    "parallel_tool_calls": ((bool,), "a boolean"),
}
_OPTIONAL_NAMES = frozenset(_OPTIONAL_TYPES)

_JSON_TYPE_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "a boolean",
    list: "an array",
    dict: "an object",
    type(None): "null",
}


def type_name(value: Any) -> str:
    """How a 400 names a JSON value's type: "a string", "an array", "null"."""
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)


def wrong_type(param: str, expected: str, value: Any) -> InvalidRequest:
    """The 400 (``invalid_type``) naming ``param`` when it holds ``value`` where ``expected`` belongs."""
    return InvalidRequest(
        f"Invalid type for '{param}': expected {expected}, but got {type_name(value)} instead.",
        code="invalid_type",
        param=param,
    )


def check_type(value: Any, param: str, types: tuple[type, ...], expected: str) -> None:
    """`wrong_type` unless ``value`` is absent (None) or one of ``types`` (a bool is no number here)."""
    if value is not None and (not isinstance(value, types) or (isinstance(value, bool) and bool not in types)):
        raise wrong_type(param, expected, value)


def read_body(raw: bytes, fields: str) -> dict[str, Any]:
    """The client's body as a JSON object; ``fields`` ("'model' and 'messages'") completes the 400 otherwise."""
    if not raw:
        raise InvalidRequest(f"The request body is empty: send a JSON object with {fields}.", code="invalid_json")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc}.", code="invalid_json") from None
    if not isinstance(body, dict):
        raise InvalidRequest(
            f"The request body must be a JSON object with {fields}, got {type_name(body)}.", code="invalid_json"
        )
    return body


def read_model(body: dict[str, Any]) -> str:
    """The body's ``model``: a non-empty string."""
    model = body.get("model")
    if model is None:
        raise InvalidRequest("Missing required parameter: 'model'.", code="missing_required_parameter", param="model")
    if not isinstance(model, str):
        raise wrong_type("model", "a string", model)
    if not model:
        raise invalid("'model' must not be empty.", "model")
    return model


# What each content part type must hold (other part types pass through to providers that know them).
_PART_FIELDS: dict[str, tuple[str, type | tuple[type, ...], str]] = {
    "text": ("text", str, "a string"),
    "image_url": ("image_url", (dict, str), "an object with 'url'"),
}


def _check_part(part: Any, param: str) -> None:
    if not isinstance(part, dict):
        raise wrong_type(param, "a content part object", part)
    kind = part.get("type")
    if not isinstance(kind, str):
        raise InvalidRequest(
            f"Missing required parameter: '{param}.type'.", code="missing_required_parameter", param=f"{param}.type"
        )
    required = _PART_FIELDS.get(kind)
    if required is not None:
        field, types, expected = required
        value = part.get(field)
        if kind == "image_url" and isinstance(value, dict):
            value = value.get("url")
            field, types, expected = "image_url.url", str, "a string"
        if not isinstance(value, types):
            raise wrong_type(f"{param}.{field}", expected, value)


def parse_chat_request(raw: bytes, headers: list[tuple[bytes, bytes]]) -> ChatRequest:
    body = read_body(raw, "'model' and 'messages'")
    model = read_model(body)

    messages = body.get("messages")
    if messages is None:
        raise InvalidRequest(
            "Missing required parameter: 'messages'.", code="missing_required_parameter", param="messages"
        )
    if not isinstance(messages, list):
        raise wrong_type("messages", "an array of message objects", messages)
    if not messages:
        raise InvalidRequest("'messages' must contain at least one message.", code="empty_array", param="messages")
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise wrong_type(f"messages[{index}]", "an object", message)
        role = message.get("role")
        if not isinstance(role, str):
            if role is None:
                raise InvalidRequest(
                    f"Missing required parameter: 'messages[{index}].role'.",
                    code="missing_required_parameter",
                    param=f"messages[{index}].role",
                )
            raise wrong_type(f"messages[{index}].role", "a string", role)
        if role not in ROLES:
            raise InvalidRequest(
                f"Invalid value for 'messages[{index}].role': {role!r}. Supported values are: "
                "'system', 'developer', 'user', 'assistant', 'tool' and 'function'.",
                code="invalid_value",
                param=f"messages[{index}].role",
            )
        content = message.get("content")
        if content is not None and not isinstance(content, str):
            if not isinstance(content, list):
                raise wrong_type(f"messages[{index}].content", "a string or an array of content parts", content)
            for part_index, part in enumerate(content):
                _check_part(part, f"messages[{index}].content[{part_index}]")

    stream = body.get("stream", False)
    if stream is None:
        stream = False
    elif not isinstance(stream, bool):
        raise wrong_type("stream", "a boolean", stream)

    include_usage = False
    stream_options = body.get("stream_options")
    if stream_options is not None:
        if not isinstance(stream_options, dict):
            raise wrong_type("stream_options", "an object", stream_options)
        usage_flag = stream_options.get("include_usage", False)
        if not isinstance(usage_flag, bool):
            raise wrong_type("stream_options.include_usage", "a boolean", usage_flag)
        include_usage = usage_flag

    # Only the fields the body has: a request carries a handful of the many optional ones.
    for name in _OPTIONAL_NAMES.intersection(body):
        check_type(body[name], name, *_OPTIONAL_TYPES[name])

    return ChatRequest(raw, body, model, stream, include_usage, header_value(headers, b"authorization"), headers)
