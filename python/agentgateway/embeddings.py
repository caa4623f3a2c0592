"""OpenAI embeddings as an inbound API (issue 19): ``POST /v1/embeddings`` and ``/embeddings`` (what the openai
SDKs call with ``base_url`` set to the gateway).

The operation glue: an embeddings request goes through the same exchange as chat completions -- inbound auth and
``allowedModels``, ``authorization`` rules, routing with virtual models and failover, eviction, rate limits,
metrics (``gen_ai_operation_name="embeddings"``), traces and the access log, settle -- with ``exchange.api =
"embeddings"`` and this module as its ``operation``: the exchange's whole-body path (``Exchange._whole``) asks it,
per attempt, for the upstream calls that embed the request at that attempt's backend, sends them (several at once
when a provider takes fewer inputs per call than the client sent), and answers with what they join into. The
per-provider request builders and answer readers are in providers/embeddings.py.

Checked here before anything is sent, each failure a 400 in OpenAI's shape naming the field: ``model``;
``input`` (a non-empty string, a list of up to 2048 non-empty strings, a token array or a list of token arrays);
``dimensions`` (a positive integer); ``encoding_format`` (``float``, the default, or ``base64``); ``user`` (a
string). Other fields pass through (to OpenAI-format upstreams as sent; the extension fields ``input_type``,
``truncate`` (Cohere), ``normalize`` (Titan) and ``task_type`` (Gemini, Vertex AI) are read by their rows).

A backend's ``defaults``, ``overrides`` and ``transformation`` are written for chat bodies (``temperature`` has no
place in an embeddings request) and are not applied to embeddings; ``requestHeaders`` and ``responseHeaders`` are.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any

from .errors import InvalidRequest
from .exchange import Exchange, Observer
from .providers import ChatRequest, header_value
from .providers.embeddings import EmbeddingCalls, calls_for
from .providers.openai_input import invalid
from .request import check_type, read_body, read_model, wrong_type

if TYPE_CHECKING:
    from .backend import Backend

__all__ = ["EMBEDDINGS", "MAX_INPUTS", "EmbeddingsApi", "parse_embeddings_request"]

#: OpenAI's limit of inputs per request.
MAX_INPUTS = 2048
_ENCODINGS = ("float", "base64")


def _is_token(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


_INPUT_TYPES = "a string, an array of strings, an array of token ids or an array of token arrays"


def _check_input(value: Any) -> None:
    if isinstance(value, str):
        if not value:
            raise invalid("'input' must not be empty.", "input")
        return
    if not isinstance(value, list):
        raise wrong_type("input", _INPUT_TYPES, value)
    if not value:
        raise invalid("'input' must not be an empty array.", "input")
    if len(value) > MAX_INPUTS:
        raise invalid(f"'input' holds {len(value)} items; at most {MAX_INPUTS} are allowed per request.", "input")
    # Every item is of the first one's kind: (the check, what the 400 says is expected, what an empty one is).
    first = value[0]
    kind: tuple[Callable[[Any], bool], str, str | None]
    if isinstance(first, str):
        kind = (lambda item: isinstance(item, str), "a string (like input[0])", "empty")
    elif _is_token(first):
        kind = (_is_token, "a token id (a non-negative integer, like input[0])", None)
    elif isinstance(first, list):
        kind = (lambda item: isinstance(item, list), "an array of token ids (like input[0])", "an empty array")
    else:
        raise wrong_type("input[0]", "a string, a token id or an array of token ids", first)
    is_kind, expected, empty = kind
    for index, item in enumerate(value):
        if not is_kind(item):
            raise wrong_type(f"input[{index}]", expected, item)
        if empty is not None and not item:
            raise invalid(f"'input[{index}]' must not be {empty}.", f"input[{index}]")
        if isinstance(item, list):
            for position, token in enumerate(item):
                if not _is_token(token):
                    raise wrong_type(f"input[{index}][{position}]", "a token id (a non-negative integer)", token)


def parse_embeddings_request(raw: bytes, headers: list[tuple[bytes, bytes]]) -> ChatRequest:
    """The checked request, carried as a `ChatRequest` (never streamed) whose body is the client's embeddings body."""
    body = read_body(raw, "'model' and 'input'")
    model = read_model(body)
    if "input" not in body or body["input"] is None:
        raise InvalidRequest("Missing required parameter: 'input'.", code="missing_required_parameter", param="input")
    _check_input(body["input"])
    dimensions = body.get("dimensions")
    check_type(dimensions, "dimensions", (int,), "an integer")
    if dimensions is not None and dimensions < 1:
        raise invalid(f"'dimensions' must be at least 1, got {dimensions}.", "dimensions")
    encoding = body.get("encoding_format")
    if encoding is not None and encoding not in _ENCODINGS:
        if not isinstance(encoding, str):
            raise wrong_type("encoding_format", "a string", encoding)
        raise invalid(
            f"Invalid value for 'encoding_format': {encoding!r}. Supported values are: 'float' and 'base64'.",
            "encoding_format",
        )
    check_type(body.get("user"), "user", (str,), "a string")
    return ChatRequest(raw, body, model, False, False, header_value(headers, b"authorization"), headers)


class EmbeddingsApi:
    """The inbound API and the exchange's operation for embeddings (``Gateway.chat_completions`` takes it)."""

    api = "embeddings"

    def exchange(self, scope: MutableMapping[str, Any], observers: Sequence[Observer]) -> Exchange:
        exchange = Exchange(scope, observers, self.api)
        exchange.operation = self
        return exchange

    def parse(self, raw: bytes, headers: list[tuple[bytes, bytes]]) -> ChatRequest:
        return parse_embeddings_request(raw, headers)

    def calls(self, backend: Backend, request: ChatRequest, model: str, client_model: str) -> EmbeddingCalls:
        """One attempt's calls at ``backend`` for the route's ``model``; the client's 400 when it cannot embed."""
        attempt = request if model == request.model else request.derive(model)
        calls = calls_for(backend.provider, attempt, client_model)
        calls.header_edits = backend._request_headers  # the entry's requestHeaders, as Backend.prepare applies them
        calls.tls = backend.tls  # and its backend TLS
        return calls


EMBEDDINGS = EmbeddingsApi()
