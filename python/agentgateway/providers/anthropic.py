"""Anthropic Messages API (``provider: anthropic``): Chat Completions requests translated into Messages requests,
read into the shared request model (providers/messages_input.py ``read_chat`` with `CHAT_TARGET`) and written by
`claude_input_body`. The answers are translated by the core's ``anthropic`` translator
(rust/sse_core/src/providers/anthropic.rs).

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
from .messages_input import ChatTarget, MessagesInput, Tool, claude_body, claude_count_body, read_chat
from .openai_input import JSON_TOOL_NAME, append_turn, read_choice_count, thinking_while_forced
from .reasoning import EFFORTS, claude_thinking

__all__ = ["CHAT_TARGET", "AnthropicProvider", "claude_input_body", "translate_request"]

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


#: What Claude takes of a Chat Completions request (providers/messages_input.py `read_chat`); shared with Claude on
#: Vertex AI.
CHAT_TARGET = ChatTarget(
    models="Anthropic models",
    provider="Anthropic",
    max_stop=None,
    choices="one request per choice",
    url_rule="an http(s) URL",
    parts=("text", "image_url", "file"),
    parts_rule="'text', 'image_url' or 'file' (PDF)",
    image_types=_IMAGE_TYPES,
    image_rule="Anthropic takes image/jpeg, image/png, image/gif and image/webp",
    file_ids=False,
    pdf_only=True,
    text_blocks=True,
    function_role=False,
    check_response_format=False,
)


def translate_request(
    request: ChatRequest, *, model: str | None, version: str, default_max_tokens: int = DEFAULT_MAX_TOKENS
) -> dict[str, Any]:
    """The Messages API body for a Chat Completions request, read into the shared model (`read_chat`). ``model``
    None leaves it out (Vertex AI puts the model in the URL). ``version`` is the anthropic-version the body is meant
    for."""
    return claude_input_body(
        read_chat(request.body, CHAT_TARGET, stream=request.stream),
        model=model,
        version=version,
        default_max_tokens=default_max_tokens,
    )


def claude_input_body(
    request: MessagesInput, *, model: str | None, version: str, default_max_tokens: int = DEFAULT_MAX_TOKENS
) -> dict[str, Any]:
    """The Messages API body built from the shared model of a Chat Completions request (a Messages request goes to
    Claude as the client wrote it: messages_input.claude_body)."""
    adaptive = is_adaptive_version(version)
    system: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []
    for role, blocks, _ in request.turns:
        if role == "system":
            system.extend(blocks)
            continue
        content = [_claude_block(block) for block in blocks]
        append_turn(messages, role, content)
    for turn in messages:
        if turn["role"] == "user" and len(turn["content"]) > 1:
            # Results answering the previous assistant turn must come before anything else in the user turn.
            turn["content"].sort(key=lambda block: block["type"] != "tool_result")
    if not messages:
        raise InvalidRequest(
            "'messages' must contain at least one user or assistant message besides system messages.",
            code="invalid_value",
            param="messages",
        )
    out: dict[str, Any] = {}
    if model is not None:
        out["model"] = model
    out["messages"] = messages
    if system:
        out["system"] = system

    # ``n``: one choice per request; n > 1 is served by the gateway's fan-out (fanout.py), never sent.
    client_set_max = request.max_tokens is not None
    max_tokens = request.max_tokens if request.max_tokens is not None else default_max_tokens
    if max_tokens < 1:
        raise InvalidRequest("'max_tokens' must be at least 1.", code="invalid_value", param="max_tokens")

    thinking = False
    effort = request.effort
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
        if request.temperature is not None:
            out["temperature"] = min(float(request.temperature), 1.0)
        if request.top_p is not None:
            out["top_p"] = request.top_p

    if request.stop:
        out["stop_sequences"] = request.stop

    if request.tools or request.json_object:
        specs = [_claude_tool(tool) for tool in request.tools]
        tool_choice: dict[str, Any] = {"type": "auto"}
        if request.tools and request.tool_choice_set:
            tool_choice = {"type": request.tool_choice}
            if request.tool_choice == "tool":
                tool_choice["name"] = request.tool_name
        if request.json_object:
            # No JSON mode on Claude: the answer is the input of a forced tool with an open object schema, which
            # the core turns back into the answer's content (JSON_TOOL_NAME). With tools the model may call, it
            # calls one of them or answers; a named tool_choice stays the client's.
            specs.append(JSON_TOOL)
            if tool_choice["type"] in ("auto", "any") and request.tools:
                tool_choice = {**tool_choice, "type": "any"}
            elif tool_choice["type"] != "tool":
                tool_choice = {"type": "tool", "name": JSON_TOOL_NAME}
        if not request.parallel_tools and tool_choice.get("type") != "none":
            tool_choice["disable_parallel_tool_use"] = True
        if thinking and tool_choice["type"] in ("any", "tool"):
            forced_by = (
                "tool_choice" if not request.json_object else "response_format json_object (served by a forced tool)"
            )
            raise thinking_while_forced(forced_by)
        out["tools"] = specs
        if tool_choice != {"type": "auto"}:
            out["tool_choice"] = tool_choice

    if request.schema is not None:
        out.setdefault("output_config", {})["format"] = {"type": "json_schema", "schema": request.schema}
    if request.user_id:
        out["metadata"] = {"user_id": request.user_id}
    if request.stream:
        out["stream"] = True
    return out


def _claude_block(block: dict[str, Any]) -> dict[str, Any]:
    if block["type"] == "tool_result":
        result: dict[str, Any] = {"type": "tool_result", "tool_use_id": block["tool_use_id"]}
        if block["content"]:
            result["content"] = block["content"]
        return result
    return block  # the shared model's blocks are Anthropic's


def _claude_tool(tool: Tool) -> dict[str, Any]:
    out: dict[str, Any] = {"name": tool.name, "input_schema": tool.schema or {"type": "object", "properties": {}}}
    if tool.description:
        out["description"] = tool.description
    out.update(tool.extra)  # cache_control
    return out


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
