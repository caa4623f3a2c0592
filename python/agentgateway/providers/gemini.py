"""Gemini API (``provider: gemini``): Chat Completions and Anthropic Messages requests translated into
``generateContent`` requests, both built by providers/messages_input.py ``gemini_body`` from the one shared request
model (``read_chat`` / ``read_messages``). The answers are translated by the core's ``gemini`` translator
(rust/sse_core/src/providers/gemini.rs), which Gemini models on Vertex AI share (providers/vertex.py calls
`translate_request` too).

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

Anthropic Messages clients (``/v1/messages``, issue 19) get the same mapping from their blocks
(``thinking.budget_tokens`` kept as the budget on Gemini 2.5; ``is_error`` results as ``{"error": text}``);
``/v1/messages/count_tokens`` is
``:countTokens`` with a ``generateContentRequest`` (so system text and tools count), its ``totalTokens`` the
answer's ``input_tokens``.

Errors: Google's ``{"error": {"code", "message", "status"}}`` → OpenAI's shape with the status kept and the status
name as ``code``; a 429's ``RetryInfo.retryDelay`` becomes a ``Retry-After`` header when the upstream sent none.
"""

from __future__ import annotations

import math
import re
from typing import Any
from urllib.parse import quote

import orjson

from ..config import ModelEntry
from ..errors import GatewayError, InvalidRequest, UpstreamHTTPError
from ..memo import BoundedMemo
from ..upstream import Endpoint, UpstreamRequest, encode_headers, header_line
from .base import ChatRequest, Provider, client_key
from .messages_input import ChatTarget, gemini_body, read_chat, read_messages

__all__ = [
    "CHAT_TARGET",
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
#: Gemini's limit on stopSequences.
MAX_STOP_SEQUENCES = 5
_MAX_MODEL_ENDPOINTS = 256


def split_tool_call_id(tool_call_id: str) -> tuple[str, str | None]:
    """``(id, thoughtSignature or None)`` of a tool call id the core wrote."""
    call_id, separator, signature = tool_call_id.partition(THOUGHT_SEPARATOR)
    return call_id, (signature or None) if separator else None


#: What Gemini takes of a Chat Completions request (providers/messages_input.py `read_chat`).
CHAT_TARGET = ChatTarget(
    models="Gemini models",
    provider="Gemini",
    max_stop=MAX_STOP_SEQUENCES,
    choices="Gemini's candidateCount",
    url_schemes=("https://", "http://", "gs://"),
    url_rule="an http(s):// or gs:// URL",
)


def translate_request(
    request: ChatRequest, *, model: str = "", default_max_tokens: int | None = None
) -> dict[str, Any]:
    """The ``generateContent`` body for a Chat Completions request, built from the shared model like a Messages
    request's. The model goes in the URL; ``model`` (the upstream model id) picks what ``reasoning_effort`` becomes
    (Gemini 3 or 2.5)."""
    return gemini_body(read_chat(request.body, CHAT_TARGET, stream=request.stream), model, default_max_tokens)


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
