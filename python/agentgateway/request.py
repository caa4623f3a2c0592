"""Checks a client's Chat Completions body before anything is sent upstream.

Hand-written checks rather than a pydantic model: they run on every request, they only look at the fields whose
shape the gateway relies on (everything else passes through to the upstream, which knows its own rules), and
each failure names the field the way OpenAI does (``messages[2].role``) so the client knows what to fix.
"""

from __future__ import annotations

from typing import Any

import orjson

from .errors import InvalidRequest
from .providers import ChatRequest, header_value

__all__ = ["parse_chat_request"]

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


def _type_name(value: Any) -> str:
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)


def _wrong_type(param: str, expected: str, value: Any) -> InvalidRequest:
    return InvalidRequest(
        f"Invalid type for '{param}': expected {expected}, but got {_type_name(value)} instead.",
        code="invalid_type",
        param=param,
    )


# What each content part type must hold (other part types pass through to providers that know them).
_PART_FIELDS: dict[str, tuple[str, type | tuple[type, ...], str]] = {
    "text": ("text", str, "a string"),
    "image_url": ("image_url", (dict, str), "an object with 'url'"),
}


def _check_part(part: Any, param: str) -> None:
    if not isinstance(part, dict):
        raise _wrong_type(param, "a content part object", part)
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
            raise _wrong_type(f"{param}.{field}", expected, value)


def parse_chat_request(raw: bytes, headers: list[tuple[bytes, bytes]]) -> ChatRequest:
    if not raw:
        raise InvalidRequest(
            "The request body is empty: send a JSON object with 'model' and 'messages'.", code="invalid_json"
        )
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc}.", code="invalid_json") from None
    if not isinstance(body, dict):
        raise InvalidRequest(
            f"The request body must be a JSON object with 'model' and 'messages', got {_type_name(body)}.",
            code="invalid_json",
        )

    model = body.get("model")
    if model is None:
        raise InvalidRequest("Missing required parameter: 'model'.", code="missing_required_parameter", param="model")
    if not isinstance(model, str):
        raise _wrong_type("model", "a string", model)
    if not model:
        raise InvalidRequest("'model' must not be empty.", code="invalid_value", param="model")

    messages = body.get("messages")
    if messages is None:
        raise InvalidRequest(
            "Missing required parameter: 'messages'.", code="missing_required_parameter", param="messages"
        )
    if not isinstance(messages, list):
        raise _wrong_type("messages", "an array of message objects", messages)
    if not messages:
        raise InvalidRequest("'messages' must contain at least one message.", code="empty_array", param="messages")
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise _wrong_type(f"messages[{index}]", "an object", message)
        role = message.get("role")
        if not isinstance(role, str):
            if role is None:
                raise InvalidRequest(
                    f"Missing required parameter: 'messages[{index}].role'.",
                    code="missing_required_parameter",
                    param=f"messages[{index}].role",
                )
            raise _wrong_type(f"messages[{index}].role", "a string", role)
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
                raise _wrong_type(f"messages[{index}].content", "a string or an array of content parts", content)
            for part_index, part in enumerate(content):
                _check_part(part, f"messages[{index}].content[{part_index}]")

    stream = body.get("stream", False)
    if stream is None:
        stream = False
    elif not isinstance(stream, bool):
        raise _wrong_type("stream", "a boolean", stream)

    include_usage = False
    stream_options = body.get("stream_options")
    if stream_options is not None:
        if not isinstance(stream_options, dict):
            raise _wrong_type("stream_options", "an object", stream_options)
        usage_flag = stream_options.get("include_usage", False)
        if not isinstance(usage_flag, bool):
            raise _wrong_type("stream_options.include_usage", "a boolean", usage_flag)
        include_usage = usage_flag

    # Only the fields the body has: a request carries a handful of the many optional ones.
    for name in _OPTIONAL_NAMES.intersection(body):
        value = body[name]
        types, expected = _OPTIONAL_TYPES[name]
        if value is not None and (not isinstance(value, types) or (isinstance(value, bool) and bool not in types)):
            raise _wrong_type(name, expected, value)

    return ChatRequest(raw, body, model, stream, include_usage, header_value(headers, b"authorization"), headers)
