"""Reading the pieces of an OpenAI Chat Completions request that every translating provider needs (Anthropic,
Bedrock, Gemini, Vertex AI), with one wording of every 400 so a client sees the same message whatever the model.

Each function checks the shape of one piece and returns it in a neutral form, for messages_input.py ``read_chat``
(the shared request model Gemini, Claude and Bedrock build from). Errors name the field the way OpenAI does
(``messages[2].tool_calls[0].function.arguments``).
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

import orjson

from ..errors import InvalidRequest

__all__ = [
    "JSON_TOOL_NAME",
    "MAX_CHOICES",
    "append_turn",
    "invalid",
    "parse_data_url",
    "read_choice_count",
    "read_function_tool",
    "read_reasoning",
    "read_stop",
    "read_tool_call",
    "read_tool_choice",
    "text_of",
    "thinking_while_forced",
]

#: The tool the gateway forces to get a JSON object out of Claude (``response_format`` json_object on every Claude
#: path, json_schema on Bedrock models without native structured output); the core turns its input back into the
#: answer's content (rust/sse_core/src/providers/bedrock.rs and anthropic.rs, JSON_TOOL_NAME). Reserved: a client
#: tool of that name is a 400.
JSON_TOOL_NAME = "agentgateway_json_output"

#: Common aliases of media types, as clients send them, and the registered name every provider accepts.
MEDIA_TYPE_ALIASES = {
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "image/x-png": "image/png",
    "audio/x-wav": "audio/wav",
    "audio/wave": "audio/wav",
    "audio/mpeg": "audio/mp3",
    "application/x-pdf": "application/pdf",
}
_DATA_URL = re.compile(r"data:([\w.+-]+/[\w.+-]+)?((?:;[\w.+-]+=[^;,]*)*)(;base64)?,(.*)", re.DOTALL)


#: The most choices (``n``) one request may ask for: Gemini's own candidateCount limit, and the most calls the gateway
#: fans one request out to on providers that answer one choice per call (fanout.py).
MAX_CHOICES = 8


def invalid(message: str, param: str) -> InvalidRequest:
    return InvalidRequest(message, code="invalid_value", param=param)


def text_of(content: Any, param: str, separator: str = "\n") -> str:
    """The text of a system, developer or tool message: a string, or text parts joined by ``separator``."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts = []
    for index, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise invalid(
                f"'{param}[{index}]' must be a text part ({{'type': 'text', 'text': ...}}) for this message role.",
                f"{param}[{index}]",
            )
        texts.append(part["text"])
    return separator.join(texts)


def parse_data_url(url: str, param: str) -> tuple[str, str, int]:
    """``(media type, base64 data, decoded size in bytes)`` of a base64 ``data:`` URL; a clear 400 for anything
    else. The media type is lower-cased and common aliases (``image/jpg``) are given their registered name, so each
    provider sees what it accepts. The data is passed on as the client encoded it; the size is for providers that
    cap it."""
    match = _DATA_URL.fullmatch(url)
    if match is None or match[3] is None:
        raise invalid(f"'{param}' is not a base64 data: URL (data:<media type>;base64,<data>).", param)
    data = match[4]
    try:
        size = len(base64.b64decode(data, validate=True))
    except (binascii.Error, ValueError):
        raise invalid(f"'{param}' is not valid base64 data.", param) from None
    media_type = (match[1] or "").lower()
    return MEDIA_TYPE_ALIASES.get(media_type, media_type), data, size


def read_choice_count(body: dict[str, Any], models: str, how: str) -> int:
    """The request's ``n`` (1 when absent); the 400 naming ``n`` outside 1 to `MAX_CHOICES`. ``models`` and ``how``
    complete the message: "for Anthropic models (one request per choice)"."""
    n = body.get("n")
    if n is None:
        return 1
    if not 1 <= n <= MAX_CHOICES:
        raise invalid(f"'n' must be between 1 and {MAX_CHOICES} for {models} ({how}).", "n")
    return int(n)


def read_stop(body: dict[str, Any], max_count: int | None, models: str) -> list[str]:
    """The request's ``stop`` sequences, one rule for every provider: a string or an array of strings; blank ones
    (empty or whitespace only: Anthropic refuses them, Bedrock refuses empty ones, and none can end visible text)
    are left out; more than ``max_count`` (the provider's limit, None: none) is a 400 naming ``stop``."""
    stop = body.get("stop")
    if stop is None:
        return []
    sequences = [stop] if isinstance(stop, str) else stop
    for index, sequence in enumerate(sequences):
        if not isinstance(sequence, str):
            raise InvalidRequest(
                f"Invalid type for 'stop[{index}]': expected a string.", code="invalid_type", param="stop"
            )
    sequences = [sequence for sequence in sequences if sequence.strip()]
    if max_count is not None and len(sequences) > max_count:
        raise invalid(f"'stop' holds {len(sequences)} sequences; {models} take at most {max_count}.", "stop")
    return sequences


def thinking_while_forced(forced_by: str) -> InvalidRequest:
    """The 400 for ``reasoning_effort`` with a forced tool call (``forced_by``: what forces it), which Claude refuses
    on every path."""
    return InvalidRequest(
        f"'reasoning_effort' cannot be combined with {forced_by}: Claude cannot think while forced to call a tool. "
        "Leave out reasoning_effort, or use tool_choice 'auto' or 'none'.",
        code="unsupported_value",
        param="reasoning_effort",
    )


def read_tool_call(call: Any, param: str) -> tuple[str, str, dict[str, Any]]:
    """``(id, function name, arguments object)`` of an assistant message's tool call."""
    function = call.get("function") if isinstance(call, dict) else None
    call_id = call.get("id") if isinstance(call, dict) else None
    if not isinstance(function, dict) or not isinstance(call_id, str) or not isinstance(function.get("name"), str):
        raise invalid(
            f"'{param}' must be {{'id': ..., 'type': 'function', 'function': {{'name': ..., 'arguments': ...}}}}.",
            param,
        )
    arguments = function.get("arguments") or "{}"
    try:
        parsed = orjson.loads(arguments) if isinstance(arguments, str) else arguments
    except orjson.JSONDecodeError:
        raise invalid(f"'{param}.function.arguments' is not valid JSON.", f"{param}.function.arguments") from None
    if not isinstance(parsed, dict):
        raise invalid(f"'{param}.function.arguments' must be a JSON object.", f"{param}.function.arguments")
    return call_id, function["name"], parsed


def read_function_tool(index: int, tool: Any) -> tuple[str, str | None, dict[str, Any] | None]:
    """``(name, description, parameters schema)`` of ``tools[index]``; description and schema may be absent."""
    param = f"tools[{index}]"
    function = tool.get("function") if isinstance(tool, dict) else None
    if not isinstance(tool, dict) or tool.get("type", "function") != "function" or not isinstance(function, dict):
        raise invalid(f"'{param}' must be a function tool ({{'type': 'function', 'function': {{...}}}}).", param)
    name = function.get("name")
    if not isinstance(name, str) or not name:
        raise invalid(f"'{param}.function.name' must be a non-empty string.", f"{param}.function.name")
    if name == JSON_TOOL_NAME:
        raise invalid(f"'{param}.function.name': {name!r} is reserved by the gateway.", f"{param}.function.name")
    schema = function.get("parameters")
    if schema is not None and not isinstance(schema, dict):
        raise invalid(f"'{param}.function.parameters' must be a JSON Schema object.", f"{param}.function.parameters")
    description = function.get("description")
    return name, description if isinstance(description, str) and description else None, schema


def read_tool_choice(choice: Any) -> tuple[str, str | None]:
    """``("auto" | "none" | "required", None)`` or ``("function", name)``; absent means auto."""
    if choice is None or choice == "auto":
        return "auto", None
    if choice in ("none", "required"):
        return choice, None
    if isinstance(choice, dict):
        function = choice.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if isinstance(name, str) and name:
            return "function", name
    raise invalid(
        "'tool_choice' must be 'auto', 'none', 'required' or {'type': 'function', 'function': {'name': ...}}.",
        "tool_choice",
    )


def append_turn(turns: list[dict[str, Any]], role: str, items: list[dict[str, Any]], key: str = "content") -> None:
    """Add ``items`` (blocks or parts) as a turn of ``role``, merged into the last turn when it has the same role:
    the providers want roles to alternate (a tool result followed by a user note is one user turn). Nothing is added
    for no items, since the providers refuse empty turns."""
    if not items:
        return
    if turns and turns[-1]["role"] == role:
        turns[-1][key].extend(items)
    else:
        turns.append({"role": role, key: items})


def read_reasoning(message: dict[str, Any], index: int) -> list[dict[str, str]]:
    """The signed reasoning of the assistant message ``messages[index]``, to send back to the provider that signed
    it: ``{"type": "thinking", "thinking", "signature"}`` and ``{"type": "redacted_thinking", "data"}`` blocks, in
    order. Read from ``thinking_blocks`` (the gateway's answers, LiteLLM's convention), else from the flat
    ``reasoning_content`` + ``reasoning_signature`` fields (agentgateway's and LiteLLM's other convention). Unsigned
    reasoning (another provider's) is left out: no provider takes it back."""
    param = f"messages[{index}].thinking_blocks"
    blocks = message.get("thinking_blocks")
    if not blocks:
        signature = message.get("reasoning_signature")
        if signature is None:
            return []
        text = message.get("reasoning_content")
        if not isinstance(signature, str) or (text is not None and not isinstance(text, str)):
            raise invalid(
                f"'messages[{index}].reasoning_signature' and 'reasoning_content' must be strings.",
                f"messages[{index}].reasoning_signature",
            )
        return [{"type": "thinking", "thinking": text or "", "signature": signature}] if signature else []
    if not isinstance(blocks, list):
        raise invalid(f"'{param}' must be an array.", param)
    out: list[dict[str, str]] = []
    for block_index, block in enumerate(blocks):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "thinking":
            signature = block.get("signature")
            thinking = block.get("thinking")
            if isinstance(signature, str) and signature:
                out.append(
                    {
                        "type": "thinking",
                        "thinking": thinking if isinstance(thinking, str) else "",
                        "signature": signature,
                    }
                )
        elif kind == "redacted_thinking" and isinstance(block.get("data"), str) and block["data"]:
            out.append({"type": "redacted_thinking", "data": block["data"]})
        else:
            raise invalid(
                f"'{param}[{block_index}]' must be a thinking block as the gateway returns them "
                "({'type': 'thinking', 'thinking', 'signature'} or {'type': 'redacted_thinking', 'data'}).",
                f"{param}[{block_index}]",
            )
    return out
