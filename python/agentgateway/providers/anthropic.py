"""Anthropic Messages API (``provider: anthropic``): Chat Completions requests translated into Messages requests.
The answers are translated by the core's ``anthropic`` translator (rust/sse_core/src/providers/anthropic.rs).

``translate_request`` is shared with Claude on Vertex AI (providers/vertex.py), which takes the same body without
``model`` and with its own ``anthropic_version``.

Mapping (WIRE.md section 2):

- ``system`` and ``developer`` messages → the top-level ``system`` text blocks, wherever they sit.
- Consecutive messages of one role are merged into one turn; ``tool`` messages become ``tool_result`` blocks of a
  user turn, placed before that turn's other blocks. Empty text is never sent.
- User parts: ``text``; ``image_url`` with a ``data:`` URL → a base64 image, with an ``http(s)`` URL → a url image;
  ``file`` with PDF ``file_data`` → a base64 document. ``cache_control`` on a part is passed on.
- Assistant messages: ``thinking_blocks`` (as the gateway returned them), or ``reasoning_content`` +
  ``reasoning_signature`` (agentgateway's and LiteLLM's fields) → ``thinking`` / ``redacted_thinking`` blocks, first
  and unchanged, so a conversation that mixes thinking and tools can go on; ``content`` → text;
  ``tool_calls`` → ``tool_use`` blocks (arguments parsed into ``input``).
- ``tools`` → ``name`` / ``description`` / ``input_schema``; ``tool_choice`` auto / none / required (``any``) /
  named (``tool``); ``parallel_tool_calls: false`` → ``disable_parallel_tool_use``.
- ``max_completion_tokens`` / ``max_tokens`` → ``max_tokens`` (required by Anthropic: ``params.maxTokens`` or
  4096 when the client sends none); ``stop`` → ``stop_sequences``; ``user`` → ``metadata.user_id``.
- ``response_format`` json_schema → native structured output, ``output_config.format`` (the answer's text is the
  JSON; models without structured-output support answer 400). ``json_object`` (no JSON mode on Claude) → a forced
  tool ``agentgateway_json_output`` with the open schema ``{"type": "object"}``, whose input the core returns as the
  answer's content with finish reason ``stop`` -- the same on Bedrock and Vertex AI; with client tools the model
  calls one of them or that tool (``any``); with ``reasoning_effort`` a 400 (Claude cannot think while forced).
- ``reasoning_effort``: API version 2023-06-01 → extended thinking with the budget of providers/reasoning.py's
  one table (shared with Bedrock and Vertex AI; ``max_tokens`` raised above the budget when the client did not set
  it); newer versions → adaptive thinking with ``output_config.effort``. ``none`` turns thinking off.
- ``temperature`` (capped at 1, Anthropic's maximum) and ``top_p`` are sent on 2023-06-01 only, and not with
  thinking, which requires the defaults.
- Dropped on purpose (no Anthropic equivalent): ``seed``, ``presence_penalty``, ``frequency_penalty``,
  ``logit_bias``, ``logprobs``, ``top_logprobs``, ``service_tier``, ``store``, ``modalities``, ``audio``,
  ``prediction``, ``web_search_options``, ``metadata``. ``n`` from 2 to 8: one request per choice, merged by the
  gateway (fanout.py); above 8 a 400.

The API version is the client's ``anthropic-version`` header, else ``params.anthropicVersion``, else 2023-06-01.
2023-06-01 authenticates with ``x-api-key``; later versions with ``Authorization: Bearer``. A client's
``anthropic-beta`` header is passed on. With no ``params.apiKey``, the client's own key (its ``x-api-key``, or the
token of its ``Authorization: Bearer``) is sent.

Anthropic Messages clients (``/v1/messages``, issue 19) get their own body passed on, only ``model`` replaced
(providers/messages_input.py ``claude_body``); ``/v1/messages/count_tokens`` goes to ``/v1/messages/count_tokens``.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from ..config import ModelEntry
from ..errors import GatewayError, InvalidRequest, UpstreamHTTPError
from ..prompt_caching import anthropic_cache_points
from ..upstream import Endpoint, UpstreamRequest, encode_headers, header_line
from .base import ChatRequest, Provider, client_key, header_value
from .messages_input import claude_body, claude_count_body
from .openai_input import (
    JSON_TOOL_NAME,
    append_turn,
    invalid,
    parse_data_url,
    read_choice_count,
    read_function_tool,
    read_reasoning,
    read_stop,
    read_tool_call,
    read_tool_choice,
    text_of,
    thinking_while_forced,
)
from .reasoning import EFFORTS, claude_thinking, read_effort

__all__ = ["AnthropicProvider", "translate_request"]

DEFAULT_BASE_URL = "https://api.anthropic.com"
DEFAULT_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096
# API versions from this date on take adaptive thinking and output_config.effort, and no sampling parameters.
_ADAPTIVE_VERSIONS_FROM = "2026-10-21"

_VERSION_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")

_IMAGE_TYPES = frozenset(("image/jpeg", "image/png", "image/gif", "image/webp"))
#: The forced tool that serves ``response_format`` json_object (see `translate_request`).
JSON_TOOL: dict[str, Any] = {
    "name": JSON_TOOL_NAME,
    "description": "Answer by calling this tool with the response, a JSON object, as its input.",
    "input_schema": {"type": "object"},
}


def is_adaptive_version(version: str) -> bool:
    """Whether an anthropic-version takes adaptive thinking and effort (and no sampling parameters)."""
    return _VERSION_DATE.fullmatch(version) is not None and version >= _ADAPTIVE_VERSIONS_FROM


def translate_request(
    request: ChatRequest, *, model: str | None, version: str, default_max_tokens: int = DEFAULT_MAX_TOKENS
) -> dict[str, Any]:
    """The Messages API body for a Chat Completions request. ``model`` None leaves it out (Vertex AI puts the
    model in the URL). ``version`` is the anthropic-version the body is meant for."""
    body = request.body
    adaptive = is_adaptive_version(version)
    system, messages = _translate_messages(body["messages"])
    out: dict[str, Any] = {}
    if model is not None:
        out["model"] = model
    out["messages"] = messages
    if system:
        out["system"] = system

    # ``n``: one choice per request; n > 1 is served by the gateway's fan-out (fanout.py), never sent.
    max_tokens = body.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = body.get("max_tokens")
    client_set_max = max_tokens is not None
    if max_tokens is None:
        max_tokens = default_max_tokens
    if max_tokens < 1:
        raise InvalidRequest("'max_tokens' must be at least 1.", code="invalid_value", param="max_tokens")

    thinking = False
    effort = read_effort(body)
    if effort is not None and effort != "none":
        thinking = True
        if adaptive:
            out["thinking"] = {"type": "adaptive"}
            out.setdefault("output_config", {})["effort"] = EFFORTS[effort].adaptive
        else:
            budget, max_tokens = claude_thinking(effort, max_tokens if client_set_max else None, default_max_tokens)
            out["thinking"] = {"type": "enabled", "budget_tokens": budget}
    out["max_tokens"] = max_tokens

    if not adaptive and not thinking:
        temperature = body.get("temperature")
        if temperature is not None:
            out["temperature"] = min(float(temperature), 1.0)
        top_p = body.get("top_p")
        if top_p is not None:
            out["top_p"] = top_p

    sequences = read_stop(body, None, "Anthropic models")
    if sequences:
        out["stop_sequences"] = sequences

    response_format = body.get("response_format")
    json_object = isinstance(response_format, dict) and response_format.get("type") == "json_object"
    tools = body.get("tools")
    if tools or json_object:
        specs = [_translate_tool(index, tool) for index, tool in enumerate(tools or [])]
        tool_choice: dict[str, Any] = _translate_tool_choice(body.get("tool_choice")) if tools else {"type": "auto"}
        if json_object:
            # No JSON mode on Claude: the answer is the input of a forced tool with an open object schema, which
            # the core turns back into the answer's content (JSON_TOOL_NAME). With tools the model may call, it
            # calls one of them or answers; a named tool_choice stays the client's.
            specs.append(JSON_TOOL)
            if tool_choice["type"] in ("auto", "any") and tools:
                tool_choice = {**tool_choice, "type": "any"}
            elif tool_choice["type"] != "tool":
                tool_choice = {"type": "tool", "name": JSON_TOOL_NAME}
        if body.get("parallel_tool_calls") is False and tool_choice.get("type") != "none":
            tool_choice["disable_parallel_tool_use"] = True
        if thinking and tool_choice["type"] in ("any", "tool"):
            forced_by = "tool_choice" if not json_object else "response_format json_object (served by a forced tool)"
            raise thinking_while_forced(forced_by)
        out["tools"] = specs
        if tool_choice != {"type": "auto"}:
            out["tool_choice"] = tool_choice

    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        json_schema = response_format.get("json_schema")
        schema = json_schema.get("schema") if isinstance(json_schema, dict) else None
        if not isinstance(schema, dict):
            raise InvalidRequest(
                "'response_format.json_schema.schema' must be a JSON Schema object.",
                code="invalid_value",
                param="response_format.json_schema.schema",
            )
        out.setdefault("output_config", {})["format"] = {"type": "json_schema", "schema": schema}

    user = body.get("user")
    if user:
        out["metadata"] = {"user_id": user}
    if request.stream:
        out["stream"] = True
    return out


def _translate_messages(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []

    for index, message in enumerate(messages):
        role = message["role"]
        content = message.get("content")
        param = f"messages[{index}].content"
        if role in ("system", "developer"):
            if isinstance(content, list):
                for part_index, part in enumerate(content):
                    block = _text_block(part, f"{param}[{part_index}]")
                    if block is not None:
                        system.append(block)
            elif content:
                system.append({"type": "text", "text": content})
        elif role == "user":
            append_turn(turns, "user", _user_blocks(content, param))
        elif role == "assistant":
            append_turn(turns, "assistant", _assistant_blocks(message, index))
        elif role == "tool":
            tool_call_id = message.get("tool_call_id")
            if not isinstance(tool_call_id, str) or not tool_call_id:
                raise InvalidRequest(
                    f"Missing required parameter: 'messages[{index}].tool_call_id'.",
                    code="missing_required_parameter",
                    param=f"messages[{index}].tool_call_id",
                )
            result: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_call_id}
            text = text_of(content, param)
            if text:
                result["content"] = text
            append_turn(turns, "user", [result])
        else:  # "function": the pre-tools protocol carries no call id to answer
            raise invalid(
                f"messages[{index}]: role 'function' is not supported for Anthropic models; use 'tool' messages "
                "with 'tool_call_id'.",
                f"messages[{index}].role",
            )

    for turn in turns:
        if turn["role"] == "user" and len(turn["content"]) > 1:
            # Results answering the previous assistant turn must come before anything else in the user turn.
            turn["content"].sort(key=lambda block: block["type"] != "tool_result")
    if not turns:
        raise InvalidRequest(
            "'messages' must contain at least one user or assistant message besides system messages.",
            code="invalid_value",
            param="messages",
        )
    return system, turns


def _text_block(part: Any, param: str) -> dict[str, Any] | None:
    if not isinstance(part, dict) or part.get("type") != "text":
        raise invalid(f"'{param}' must be a text part ({{'type': 'text', 'text': ...}}).", param)
    text = part.get("text")
    if not isinstance(text, str):
        raise invalid(f"'{param}.text' must be a string.", f"{param}.text")
    if not text:
        return None
    block: dict[str, Any] = {"type": "text", "text": text}
    if "cache_control" in part:
        block["cache_control"] = part["cache_control"]
    return block


def _user_blocks(content: Any, param: str) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for index, part in enumerate(content):
        part_param = f"{param}[{index}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            block = _text_block(part, part_param)
        elif kind == "image_url":
            block = _image_block(part, part_param)
        elif kind == "file":
            block = _document_block(part, part_param)
        else:
            raise invalid(
                f"Unsupported content part {kind!r} at '{part_param}' for Anthropic models: use 'text', "
                "'image_url' or 'file' (PDF).",
                f"{part_param}.type",
            )
        if block is not None:
            if isinstance(part, dict) and "cache_control" in part:
                block["cache_control"] = part["cache_control"]
            blocks.append(block)
    return blocks


def _image_block(part: dict[str, Any], param: str) -> dict[str, Any]:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str) or not url:
        raise invalid(f"'{param}.image_url.url' must be a URL string.", f"{param}.image_url.url")
    if url.startswith("data:"):
        media_type, data, _ = parse_data_url(url, f"{param}.image_url.url")
        if media_type not in _IMAGE_TYPES:
            raise invalid(
                f"'{param}.image_url.url' has media type {media_type!r}; Anthropic takes image/jpeg, image/png, "
                "image/gif and image/webp.",
                f"{param}.image_url.url",
            )
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise invalid(f"'{param}.image_url.url' must be an http(s) URL or a data: URL.", f"{param}.image_url.url")


def _document_block(part: dict[str, Any], param: str) -> dict[str, Any]:
    file = part.get("file")
    file_data = file.get("file_data") if isinstance(file, dict) else None
    if not isinstance(file_data, str):
        raise invalid(
            f"'{param}.file.file_data' must be a data: URL (uploaded file ids cannot be sent to Anthropic).",
            f"{param}.file.file_data",
        )
    media_type, data, _ = parse_data_url(file_data, f"{param}.file.file_data")
    if media_type != "application/pdf":
        raise invalid(f"'{param}.file.file_data' must be a PDF for Anthropic models.", f"{param}.file.file_data")
    return {"type": "document", "source": {"type": "base64", "media_type": media_type, "data": data}}


def _assistant_blocks(message: dict[str, Any], index: int) -> list[dict[str, Any]]:
    # Signed reasoning first and unchanged: Claude refuses a later turn whose reasoning lost its signature.
    blocks: list[dict[str, Any]] = list(read_reasoning(message, index))
    content = message.get("content")
    param = f"messages[{index}].content"
    if isinstance(content, str):
        if content:
            blocks.append({"type": "text", "text": content})
    elif isinstance(content, list):
        for part_index, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "refusal":
                text = part.get("refusal")
                if isinstance(text, str) and text:
                    blocks.append({"type": "text", "text": text})
                continue
            block = _text_block(part, f"{param}[{part_index}]")
            if block is not None:
                blocks.append(block)
    tool_calls = message.get("tool_calls")
    if tool_calls:
        if not isinstance(tool_calls, list):
            raise invalid(f"'messages[{index}].tool_calls' must be an array.", f"messages[{index}].tool_calls")
        for call_index, call in enumerate(tool_calls):
            blocks.append(_tool_use_block(call, f"messages[{index}].tool_calls[{call_index}]"))
    return blocks


def _tool_use_block(call: Any, param: str) -> dict[str, Any]:
    call_id, name, arguments = read_tool_call(call, param)
    return {"type": "tool_use", "id": call_id, "name": name, "input": arguments}


def _translate_tool(index: int, tool: Any) -> dict[str, Any]:
    name, description, schema = read_function_tool(index, tool)
    out: dict[str, Any] = {"name": name, "input_schema": schema or {"type": "object", "properties": {}}}
    if description:
        out["description"] = description
    if "cache_control" in tool:
        out["cache_control"] = tool["cache_control"]
    return out


def _translate_tool_choice(choice: Any) -> dict[str, Any]:
    mode, name = read_tool_choice(choice)
    if mode == "function":
        return {"type": "tool", "name": name}
    return {"type": {"auto": "auto", "none": "none", "required": "any"}[mode]}


def error_from_anthropic_body(status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> GatewayError:
    """An Anthropic HTTP error (``{"type": "error", "error": {"type", "message"}}``) in OpenAI's shape, status kept."""
    try:
        parsed: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        kind = error.get("type") if isinstance(error.get("type"), str) else None
        return UpstreamHTTPError.create(status, error["message"], code=kind, headers=headers)
    return UpstreamHTTPError.from_openai_body(status, body, headers)


class AnthropicProvider(Provider):
    translator = "anthropic"

    def __init__(self, entry: ModelEntry) -> None:
        super().__init__(entry)
        params = entry.params
        self.endpoint = Endpoint.parse((params.base_url or DEFAULT_BASE_URL) + "/v1/messages")
        self.count_endpoint = Endpoint.parse((params.base_url or DEFAULT_BASE_URL) + "/v1/messages/count_tokens")
        self.version = params.anthropic_version or DEFAULT_VERSION
        self.max_tokens = params.max_tokens or DEFAULT_MAX_TOKENS
        self.api_key = params.api_key.get_secret_value() if params.api_key is not None else None
        self.content_type = encode_headers({"Content-Type": "application/json"})
        # The usual case (configured key, configured version) is encoded once.
        self.default_headers = self.content_type + self._credentials(self.version, self.api_key or "")

    @staticmethod
    def _credentials(version: str, key: str) -> bytes:
        version_line = header_line(b"anthropic-version", version.encode("latin-1"))
        if not key:
            return version_line
        if is_adaptive_version(version):
            return version_line + header_line(b"Authorization", b"Bearer " + key.encode("latin-1"))
        return version_line + header_line(b"x-api-key", key.encode("latin-1"))

    async def prepare(self, request: ChatRequest) -> UpstreamRequest:
        client_version = header_value(request.headers, b"anthropic-version")
        version = client_version.decode("latin-1") if client_version else self.version
        try:
            if self.api_key is not None and version == self.version:
                headers = self.default_headers
            else:
                headers = self.content_type + self._credentials(
                    version, self.api_key or client_key(request, b"x-api-key").decode("latin-1")
                )
            beta = header_value(request.headers, b"anthropic-beta")
            if beta:
                headers += header_line(b"anthropic-beta", beta)
        except (ValueError, UnicodeEncodeError) as exc:
            raise InvalidRequest(f"Invalid Anthropic header: {exc}.", param="anthropic-version") from None
        model = self.upstream_model or request.model
        if request.api == "messages":  # an Anthropic Messages client: its own body, only the model replaced
            body = anthropic_cache_points(claude_body(request.body, model=model), self.entry.prompt_caching)
            return UpstreamRequest(self.endpoint, headers, orjson.dumps(body))
        if request.api == "count_tokens":
            body = claude_count_body(request.body, model=model)
            return UpstreamRequest(self.count_endpoint, headers, orjson.dumps(body))
        body = translate_request(request, model=model, version=version, default_max_tokens=self.max_tokens)
        body = anthropic_cache_points(body, self.entry.prompt_caching)  # promptCaching (issue 21)
        return UpstreamRequest(self.endpoint, headers, orjson.dumps(body))

    def fan_out(self, request: ChatRequest) -> int:
        return (
            read_choice_count(request.body, "Anthropic models", "one request per choice") if "n" in request.body else 1
        )

    def counts_tokens(self, request: ChatRequest) -> bool:
        return True

    def error_from_response(self, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> GatewayError:
        return error_from_anthropic_body(status, body, headers)
