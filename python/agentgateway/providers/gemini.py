"""Gemini API (``provider: gemini``): Chat Completions requests translated into ``generateContent`` requests.
The answers are translated by the core's ``gemini`` translator (rust/sse_core/src/providers/gemini.rs), which
Gemini models on Vertex AI share (providers/vertex.py calls `translate_request` too).

Endpoint: ``{baseUrl or https://generativelanguage.googleapis.com}/{apiVersion}/models/{model}:generateContent``,
streams ``:streamGenerateContent?alt=sse``; ``apiVersion`` is ``params.apiVersion`` (default ``v1beta``). The key
is ``params.apiKey``, sent as ``x-goog-api-key``; without one the client's own ``x-goog-api-key`` header (or the
token of its ``Authorization: Bearer``) is sent.

Mapping (WIRE.md section 4):

- ``system`` / ``developer`` messages → ``systemInstruction`` (their text, wherever they sit).
- ``user`` → role ``user``; ``assistant`` → role ``model``; consecutive turns of one role are merged (tool results
  and a following user note become one user turn).
- User parts: ``text``; ``image_url`` with a ``data:`` URL → ``inlineData``, with an ``http(s)://`` or ``gs://``
  URL → ``fileData`` (media type guessed from the name, ``image/jpeg`` otherwise); ``input_audio`` →
  ``inlineData`` (audio/wav or audio/mp3); ``file`` with ``file_data`` → ``inlineData``, with ``file_id`` (a Gemini
  Files API or ``gs://`` URI) → ``fileData``.
- Assistant ``tool_calls`` → ``functionCall`` parts (arguments parsed into ``args``); ``tool`` messages →
  ``functionResponse`` parts named after the tool call they answer (found by ``tool_call_id`` in the earlier
  assistant messages); a JSON-object result is sent as the ``response``, anything else as ``{"content": text}``.
- ``thoughtSignature`` round trip (Gemini 3 refuses a ``functionCall`` part without the signature it came with):
  the core appends a function call's signature to its tool call id (``call_…__thought__<signature>``), which
  every client sends back unchanged in ``tool_calls[].id`` and ``tool_call_id``; here it is split off again and
  put back on the ``functionCall`` part. Signatures on thought and text parts come back as ``thinking_blocks``
  entries: one with thought text → a ``{text, thought: true, thoughtSignature}`` part before the answer; one with
  ``thinking: ""`` → the signature on the message's text part. Blocks without a signature (reasoning from another
  provider) are not sent. A call id that the core generated is not sent as ``functionCall.id``; an id Gemini gave
  (Vertex) is.
- ``tools`` → one ``functionDeclarations`` tool; the JSON Schema goes unchanged in ``parametersJsonSchema`` (which
  takes ``$ref``, ``additionalProperties`` and the rest of JSON Schema, unlike the OpenAPI-subset ``parameters``).
  ``tool_choice`` → ``toolConfig.functionCallingConfig``: auto → AUTO, none → NONE, required → ANY, a named
  function → ANY with ``allowedFunctionNames``.
- ``generationConfig``: ``max_completion_tokens`` / ``max_tokens`` (else ``params.maxTokens``) →
  ``maxOutputTokens``; ``temperature``; ``top_p`` → ``topP``; ``stop`` → ``stopSequences``; ``n`` →
  ``candidateCount`` (1 to 8; each candidate is a choice, plain and streamed, with its index); ``seed``;
  ``presence_penalty`` /
  ``frequency_penalty``; ``response_format`` json_object → ``responseMimeType: application/json``, json_schema →
  that plus ``responseJsonSchema``; ``reasoning_effort`` → ``thinkingConfig`` from providers/reasoning.py's one
  table: Gemini 3 models a ``thinkingLevel``, Gemini 2.5 a ``thinkingBudget`` (the Claude budgets, clamped to the
  model's range), with ``includeThoughts`` unless the effort is ``none``.
- Dropped (no Gemini equivalent): ``parallel_tool_calls``, ``logit_bias``, ``logprobs``, ``top_logprobs``,
  ``user``, ``metadata``, ``store``, ``service_tier``, ``modalities``, ``audio``, ``prediction``,
  ``web_search_options``, ``stream_options`` (Gemini always reports usage).

Anthropic Messages clients (``/v1/messages``, issue 19) get the body built from the shared model
(providers/messages_input.py ``gemini_body``); ``/v1/messages/count_tokens`` is ``:countTokens`` with a
``generateContentRequest`` (so system text and tools count), its ``totalTokens`` the answer's ``input_tokens``.

Errors: Google's ``{"error": {"code", "message", "status"}}`` → OpenAI's shape with the status kept and the status
name as ``code``; a 429's ``RetryInfo.retryDelay`` becomes a ``Retry-After`` header when the upstream sent none.
"""

from __future__ import annotations

import math
import mimetypes
import re
from typing import Any
from urllib.parse import quote, urlsplit

import orjson

from ..config import ModelEntry
from ..errors import GatewayError, InvalidRequest, UpstreamHTTPError
from ..memo import BoundedMemo
from ..upstream import Endpoint, UpstreamRequest, encode_headers, header_line
from .base import ChatRequest, Provider, client_key
from .messages_input import gemini_body, read_messages
from .openai_input import (
    append_turn,
    invalid,
    parse_data_url,
    read_function_tool,
    read_reasoning,
    read_stop,
    read_tool_call,
    read_tool_choice,
    text_of,
)
from .reasoning import gemini_thinking_config, read_effort

__all__ = [
    "THOUGHT_SEPARATOR",
    "GeminiProvider",
    "error_from_google_body",
    "split_tool_call_id",
    "translate_request",
]

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
DEFAULT_API_VERSION = "v1beta"
# Between a tool call id and its functionCall's thoughtSignature (rust/sse_core/src/providers/gemini.rs).
THOUGHT_SEPARATOR = "__thought__"
# The ids the core generates for calls that came without one: not Gemini's, so never sent back as ids.
_GENERATED_ID = re.compile(r"call_[0-9a-f]{24}")

_AUDIO_TYPES = {"wav": "audio/wav", "mp3": "audio/mp3"}
#: Gemini's largest candidateCount (the core reads candidates 0-7 as choices, rust/sse_core/src/providers/gemini.rs).
MAX_CHOICES = 8
#: Gemini's limit on stopSequences.
MAX_STOP_SEQUENCES = 5
_MAX_MODEL_ENDPOINTS = 256


def split_tool_call_id(tool_call_id: str) -> tuple[str, str | None]:
    """``(id, thoughtSignature or None)`` of a tool call id the core wrote."""
    call_id, separator, signature = tool_call_id.partition(THOUGHT_SEPARATOR)
    return call_id, (signature or None) if separator else None


def translate_request(
    request: ChatRequest, *, model: str = "", default_max_tokens: int | None = None
) -> dict[str, Any]:
    """The ``generateContent`` body for a Chat Completions request. The model goes in the URL; ``model`` (the
    upstream model id) picks what ``reasoning_effort`` becomes (Gemini 3 or 2.5)."""
    body = request.body
    system, contents = _translate_messages(body["messages"])
    out: dict[str, Any] = {"contents": contents}
    if system:
        out["systemInstruction"] = {"parts": system}

    tools = body.get("tools")
    if tools:
        out["tools"] = [{"functionDeclarations": [_translate_tool(i, tool) for i, tool in enumerate(tools)]}]
    tool_choice = body.get("tool_choice")
    if tool_choice is not None and (tools or tool_choice == "none"):
        out["toolConfig"] = {"functionCallingConfig": _translate_tool_choice(tool_choice)}

    config: dict[str, Any] = {}
    max_tokens = body.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = body.get("max_tokens")
    if max_tokens is None:
        max_tokens = default_max_tokens
    if max_tokens is not None:
        if max_tokens < 1:
            raise invalid("'max_tokens' must be at least 1.", "max_tokens")
        config["maxOutputTokens"] = max_tokens
    for name, wire in (
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("seed", "seed"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ):
        value = body.get(name)
        if value is not None:
            config[wire] = value
    n = body.get("n")
    if n is not None:
        if not 1 <= n <= MAX_CHOICES:
            raise InvalidRequest(
                f"'n' must be between 1 and {MAX_CHOICES} for Gemini models (Gemini's candidateCount).",
                code="invalid_value",
                param="n",
            )
        config["candidateCount"] = n
    sequences = read_stop(body, MAX_STOP_SEQUENCES, "Gemini models")
    if sequences:
        config["stopSequences"] = sequences
    response_format = body.get("response_format")
    if response_format is not None:
        kind = response_format.get("type")
        if kind == "json_object":
            config["responseMimeType"] = "application/json"
        elif kind == "json_schema":
            json_schema = response_format.get("json_schema")
            schema = json_schema.get("schema") if isinstance(json_schema, dict) else None
            if not isinstance(schema, dict):
                raise invalid(
                    "'response_format.json_schema.schema' must be a JSON Schema object.",
                    "response_format.json_schema.schema",
                )
            config["responseMimeType"] = "application/json"
            config["responseJsonSchema"] = schema
        elif kind != "text":
            raise invalid(
                "'response_format.type' must be 'text', 'json_object' or 'json_schema'.", "response_format.type"
            )
    effort = read_effort(body)
    if effort is not None:
        config["thinkingConfig"] = gemini_thinking_config(effort, model)
    if config:
        out["generationConfig"] = config
    return out


def _translate_messages(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    # tool call id (as the client echoes it) -> function name, from the assistant turns seen so far.
    call_names: dict[str, str] = {}

    for index, message in enumerate(messages):
        role = message["role"]
        content = message.get("content")
        param = f"messages[{index}].content"
        if role in ("system", "developer"):
            text = text_of(content, param)
            if text:
                system.append({"text": text})
        elif role == "user":
            append_turn(contents, "user", _user_parts(content, param), key="parts")
        elif role == "assistant":
            append_turn(contents, "model", _model_parts(message, index, call_names), key="parts")
        elif role == "tool":
            tool_call_id = message.get("tool_call_id")
            if not isinstance(tool_call_id, str) or not tool_call_id:
                raise InvalidRequest(
                    f"Missing required parameter: 'messages[{index}].tool_call_id'.",
                    code="missing_required_parameter",
                    param=f"messages[{index}].tool_call_id",
                )
            name = call_names.get(tool_call_id) or call_names.get(split_tool_call_id(tool_call_id)[0])
            if name is None:
                raise invalid(
                    f"'messages[{index}].tool_call_id' ({tool_call_id[:60]!r}) answers no tool call of an earlier "
                    "assistant message; Gemini needs the name of the function a result answers.",
                    f"messages[{index}].tool_call_id",
                )
            append_turn(
                contents, "user", [_function_response(name, tool_call_id, text_of(content, param))], key="parts"
            )
        else:  # "function": the pre-tools protocol names the function itself
            name = message.get("name")
            if not isinstance(name, str) or not name:
                raise invalid(f"'messages[{index}].name' must name the function.", f"messages[{index}].name")
            append_turn(contents, "user", [_function_response(name, "", text_of(content, param))], key="parts")

    if not contents:
        raise invalid(
            "'messages' must contain at least one user or assistant message besides system messages.", "messages"
        )
    return system, contents


def _function_response(name: str, tool_call_id: str, text: str) -> dict[str, Any]:
    response: Any = None
    if text.startswith("{"):
        try:
            response = orjson.loads(text)
        except orjson.JSONDecodeError:
            response = None
    if not isinstance(response, dict):
        response = {"content": text}
    part: dict[str, Any] = {"name": name, "response": response}
    call_id = split_tool_call_id(tool_call_id)[0]
    if call_id and not _GENERATED_ID.fullmatch(call_id):
        part["id"] = call_id
    return {"functionResponse": part}


def _user_parts(content: Any, param: str) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    parts: list[dict[str, Any]] = []
    for index, part in enumerate(content):
        part_param = f"{param}[{index}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            text = part.get("text")
            if not isinstance(text, str):
                raise invalid(f"'{part_param}.text' must be a string.", f"{part_param}.text")
            if text:
                parts.append({"text": text})
        elif kind == "image_url":
            parts.append(_image_part(part, part_param))
        elif kind == "input_audio":
            parts.append(_audio_part(part, part_param))
        elif kind == "file":
            parts.append(_file_part(part, part_param))
        else:
            raise invalid(
                f"Unsupported content part {kind!r} at '{part_param}' for Gemini models: use 'text', 'image_url', "
                "'input_audio' or 'file'.",
                f"{part_param}.type",
            )
    return parts


def _uri_part(uri: str, default_type: str) -> dict[str, Any]:
    guessed, _ = mimetypes.guess_type(urlsplit(uri).path)
    return {"fileData": {"mimeType": guessed or default_type, "fileUri": uri}}


def _image_part(part: dict[str, Any], param: str) -> dict[str, Any]:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    url_param = f"{param}.image_url.url"
    if not isinstance(url, str) or not url:
        raise invalid(f"'{url_param}' must be a URL string.", url_param)
    if url.startswith("data:"):
        media_type, data, _ = parse_data_url(url, url_param)
        return {"inlineData": {"mimeType": media_type or "image/jpeg", "data": data}}
    if url.startswith(("https://", "http://", "gs://")):
        return _uri_part(url, "image/jpeg")
    raise invalid(f"'{url_param}' must be an http(s):// or gs:// URL or a data: URL.", url_param)


def _audio_part(part: dict[str, Any], param: str) -> dict[str, Any]:
    audio = part.get("input_audio")
    data = audio.get("data") if isinstance(audio, dict) else None
    audio_format = audio.get("format") if isinstance(audio, dict) else None
    if not isinstance(data, str) or audio_format not in _AUDIO_TYPES:
        raise invalid(
            f"'{param}.input_audio' must be {{'data': <base64>, 'format': 'wav' or 'mp3'}}.", f"{param}.input_audio"
        )
    return {"inlineData": {"mimeType": _AUDIO_TYPES[audio_format], "data": data}}


def _file_part(part: dict[str, Any], param: str) -> dict[str, Any]:
    file = part.get("file")
    if not isinstance(file, dict):
        raise invalid(f"'{param}.file' must be an object with 'file_data' or 'file_id'.", f"{param}.file")
    file_data = file.get("file_data")
    if isinstance(file_data, str):
        media_type, data, _ = parse_data_url(file_data, f"{param}.file.file_data")
        if not media_type:
            raise invalid(f"'{param}.file.file_data' must name its media type.", f"{param}.file.file_data")
        return {"inlineData": {"mimeType": media_type, "data": data}}
    file_id = file.get("file_id")
    if isinstance(file_id, str) and file_id:
        return _uri_part(file_id, "application/pdf")
    raise invalid(f"'{param}.file' must have 'file_data' (a data: URL) or 'file_id' (a file URI).", f"{param}.file")


def _model_parts(message: dict[str, Any], index: int, call_names: dict[str, str]) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    text_signature: str | None = None
    for block in read_reasoning(message, index):
        if block["type"] != "thinking":
            continue  # redacted reasoning is Claude's: Gemini cannot take it back
        if block["thinking"]:
            parts.append({"text": block["thinking"], "thought": True, "thoughtSignature": block["signature"]})
        elif text_signature is None:
            text_signature = block["signature"]

    content = message.get("content")
    param = f"messages[{index}].content"
    if isinstance(content, str):
        text = content
    elif isinstance(content, list):
        texts = []
        for part_index, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            value = part.get("refusal" if kind == "refusal" else "text") if isinstance(part, dict) else None
            if kind not in ("text", "refusal") or not isinstance(value, str):
                raise invalid(f"'{param}[{part_index}]' must be a text part.", f"{param}[{part_index}]")
            texts.append(value)
        text = "".join(texts)
    else:
        text = ""
    if text:
        text_part: dict[str, Any] = {"text": text}
        if text_signature is not None:
            text_part["thoughtSignature"] = text_signature
        parts.append(text_part)

    tool_calls = message.get("tool_calls")
    if tool_calls:
        if not isinstance(tool_calls, list):
            raise invalid(f"'messages[{index}].tool_calls' must be an array.", f"messages[{index}].tool_calls")
        for call_index, call in enumerate(tool_calls):
            parts.append(_function_call(call, f"messages[{index}].tool_calls[{call_index}]", call_names))
    return parts


def _function_call(call: Any, param: str, call_names: dict[str, str]) -> dict[str, Any]:
    tool_call_id, name, args = read_tool_call(call, param)
    call_names[tool_call_id] = name
    call_id, signature = split_tool_call_id(tool_call_id)
    call_names.setdefault(call_id, name)
    function_call: dict[str, Any] = {"name": name, "args": args}
    if call_id and not _GENERATED_ID.fullmatch(call_id):
        function_call["id"] = call_id
    part: dict[str, Any] = {"functionCall": function_call}
    if signature is not None:
        part["thoughtSignature"] = signature
    return part


def _translate_tool(index: int, tool: Any) -> dict[str, Any]:
    name, description, schema = read_function_tool(index, tool)
    out: dict[str, Any] = {"name": name}
    if description:
        out["description"] = description
    if schema is not None and (schema.get("properties") or schema.get("type") != "object"):
        out["parametersJsonSchema"] = schema
    return out


def _translate_tool_choice(choice: Any) -> dict[str, Any]:
    mode, name = read_tool_choice(choice)
    if mode == "function":
        return {"mode": "ANY", "allowedFunctionNames": [name]}
    return {"mode": {"auto": "AUTO", "none": "NONE", "required": "ANY"}[mode]}


# -- errors --------------------------------------------------------------------------------------------------------

_RETRY_DELAY = re.compile(r"(\d+(?:\.\d+)?)s")


def error_from_google_body(status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> GatewayError:
    """A Google API error (``{"error": {"code", "message", "status", "details"}}``) in OpenAI's shape, the HTTP
    status kept and the status name as ``code``; ``RetryInfo.retryDelay`` → ``Retry-After`` when none was sent."""
    try:
        parsed: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, list) and parsed and isinstance(parsed[0], dict):
        parsed = parsed[0]  # streamGenerateContent without alt=sse answers errors in a JSON array
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if not isinstance(error, dict) or not isinstance(error.get("message"), str):
        return UpstreamHTTPError.from_openai_body(status, body, headers)
    name = error.get("status") if isinstance(error.get("status"), str) else None
    if not any(key == b"retry-after" for key, _ in headers):
        delay = _retry_delay(error.get("details"))
        if delay is not None:
            headers = [*headers, (b"retry-after", str(delay).encode())]
    return UpstreamHTTPError.create(
        status, error["message"] or f"upstream returned HTTP {status}", code=name, headers=headers
    )


def _retry_delay(details: Any) -> int | None:
    if not isinstance(details, list):
        return None
    for detail in details:
        # Read defensively: a detail's "@type" may be null or not a string, and must not turn a 429 into a 500.
        kind = detail.get("@type") if isinstance(detail, dict) else None
        if isinstance(kind, str) and kind.endswith("google.rpc.RetryInfo"):
            match = _RETRY_DELAY.fullmatch(str(detail.get("retryDelay", "")))
            if match is not None:
                return max(1, math.ceil(float(match[1])))
    return None


def model_path(model: str) -> str:
    """The model id as it goes into the URL path (``models/`` prefix dropped, the rest percent-encoded)."""
    return quote(model.removeprefix("models/"), safe="-._~@")


class GeminiProvider(Provider):
    translator = "gemini"

    def __init__(self, entry: ModelEntry) -> None:
        super().__init__(entry)
        params = entry.params
        self.root = (params.base_url or DEFAULT_BASE_URL) + "/" + (params.api_version or DEFAULT_API_VERSION)
        self.max_tokens = params.max_tokens
        self.content_type = encode_headers({"Content-Type": "application/json"})
        self.forward_client_key = params.api_key is None
        self.headers = self.content_type
        if params.api_key is not None:
            self.headers += encode_headers({"x-goog-api-key": params.api_key.get_secret_value()})
        # (plain, streamed) endpoints per upstream model: one for params.model, a bounded few for client models.
        self.endpoints: BoundedMemo[str, tuple[Endpoint, Endpoint]] = BoundedMemo(
            self._make_endpoints, _MAX_MODEL_ENDPOINTS
        )

    def _make_endpoints(self, model: str) -> tuple[Endpoint, Endpoint]:
        base = f"{self.root}/models/{model_path(model)}"
        return Endpoint.parse(base + ":generateContent"), Endpoint.parse(base + ":streamGenerateContent?alt=sse")

    def auth_headers(self, request: ChatRequest) -> bytes:
        """The content type and the key (configured, else the client's): the headers of every call for
        ``request`` (``generateContent``, and ``batchEmbedContents`` for embeddings)."""
        headers = self.headers
        if self.forward_client_key:
            key = client_key(request, b"x-goog-api-key")
            if key:
                try:
                    headers += header_line(b"x-goog-api-key", key)
                except ValueError as exc:
                    raise InvalidRequest(f"Invalid API key header: {exc}.", param="Authorization") from None
        return headers

    async def prepare(self, request: ChatRequest) -> UpstreamRequest:
        headers = self.auth_headers(request)
        model = self.upstream_model or request.model
        if request.api != "chat":  # an Anthropic Messages client (issue 19): built from the shared model
            body = gemini_body(read_messages(request.body), model, self.max_tokens)
            if request.api == "count_tokens":
                counted: dict[str, Any] = {k: body[k] for k in ("contents", "systemInstruction", "tools") if k in body}
                endpoint = Endpoint.parse(f"{self.root}/models/{model_path(model)}:countTokens")
                request_body: dict[str, Any] = {"model": "models/" + model.removeprefix("models/"), **counted}
                payload = {"generateContentRequest": request_body}
                return UpstreamRequest(endpoint, headers, orjson.dumps(payload))
        else:
            body = translate_request(request, model=model, default_max_tokens=self.max_tokens)
        plain, streamed = self.endpoints.get(model)
        return UpstreamRequest(streamed if request.stream else plain, headers, orjson.dumps(body))

    def counts_tokens(self, request: ChatRequest) -> bool:
        return True

    def input_tokens(self, body: bytes) -> int | None:
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        total = parsed.get("totalTokens") if isinstance(parsed, dict) else None
        return total if isinstance(total, int) else None

    def error_from_response(self, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> GatewayError:
        return error_from_google_body(status, body, headers)
