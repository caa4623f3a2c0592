"""Embeddings at every provider that has them (``POST /v1/embeddings``, issue 19): one table, one row per provider.

Why one file with a row per provider, and not a few lines in each provider's file: the rows share more with one
another than with their provider's chat code -- the OpenAI answer every row writes (``object: list``, base64 as
little-endian float32), the per-model batch limits, and one attempt that may be several upstream calls (Titan takes
one input per call). What is the provider's own -- endpoint roots, keys, tokens, SigV4 -- stays in its file and is
reused from there (``BedrockProvider.signed_headers``, ``GeminiProvider.auth_headers``,
``VertexProvider.auth_headers``, the OpenAI family's own ``prepare``), so credentials are handled in one place per
provider whatever the operation. The provider files, which carry chat (and the Messages API), keep no embeddings
code.

What each backend receives (``model`` below is ``params.model``, else the route's model name):

- **OpenAI, OpenAI-compatible (``custom``), the presets and Azure**: the provider's chat URL with
  ``/chat/completions`` replaced by ``/embeddings`` (so ``baseUrl`` + ``/embeddings``; Azure's deployment and
  Foundry paths alike), its usual credentials, and the client's body passed on with only ``model`` rewritten
  (the client's bytes untouched when nothing changes): ``encoding_format: base64`` and token arrays go as sent, and
  the upstream's base64 comes back as it was. The answer is the upstream's, with ``model`` the client's name.
- **Bedrock**, ``InvokeModel`` (``POST /model/{id}/invoke``, SigV4 or the API key, as for Converse):
  - Titan Text Embeddings (``amazon.titan-embed-text-v2:0``; v1 and ``titan-embed-g1-text-02`` without
    ``dimensions``): one input per call, so one call per input, ``CONCURRENCY`` at a time, answers in input order:
    ``{"inputText", "dimensions"?, "normalize"}`` (``dimensions`` 256, 512 or 1024; ``normalize`` true unless the
    client's ``normalize`` extension field says otherwise). Usage: the sum of ``inputTextTokenCount``.
  - Cohere Embed (``cohere.embed-english-v3``, ``cohere.embed-multilingual-v3``, ``cohere.embed-v4:0``; inference
    profiles like ``us.cohere.…`` too): up to 96 ``texts`` per call, ``input_type`` (the client's ``input_type``
    extension field, default ``search_document``), ``embedding_types: ["float"]``, ``truncate`` when the client
    sends it, ``output_dimension`` from ``dimensions`` (v4 only). Usage: ``meta.billed_units.input_tokens``, else
    Bedrock's ``X-Amzn-Bedrock-Input-Token-Count`` header.
  - Any other id (an application inference profile ARN included: its model family cannot be told): 400.
- **Gemini API**: ``POST {root}/{version}/models/{m}:batchEmbedContents``, up to 100 requests per call:
  ``{"requests": [{"model": "models/{m}", "content": {"parts": [{"text"}]}, "taskType"?,
  "outputDimensionality"?}]}`` (``taskType`` from the client's ``task_type`` extension field). Usage: the answer's
  ``usageMetadata.promptTokenCount`` when it has one; the Gemini API usually reports none, and then clients see
  ``0`` and the request counts no tokens in metrics while token rate limits keep their admission estimate.
- **Vertex AI**: ``POST …/publishers/google/models/{m}:predict``: ``{"instances": [{"content", "task_type"?}],
  "parameters": {"outputDimensionality"?}}``; ``gemini-embedding-*`` models take one instance per call (so
  concurrent calls, as Titan), the others (``text-embedding-005``, ``text-multilingual-embedding-002``) up to 250.
  Usage: the sum of ``predictions[].embeddings.statistics.token_count``. Claude models: 400.
- **Anthropic**: no embeddings API: 400 saying so.

Token-array inputs (``[1, 2, 3]`` or ``[[1, 2], [3]]``) are passed on to OpenAI-format upstreams only; every other
row answers 400 naming ``input``, as does a ``dimensions`` the model cannot honour (named ``dimensions``).
"""

from __future__ import annotations

import base64
import dataclasses
import sys
from array import array
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import orjson

from ..errors import InvalidRequest, UpstreamHTTPError, UpstreamProtocolError
from ..memo import BoundedMemo
from ..upstream import Endpoint, UpstreamRequest
from .anthropic import AnthropicProvider
from .base import ChatRequest, Provider, header_value
from .bedrock import BedrockProvider
from .gemini import GeminiProvider, model_path
from .openai import OpenAIProvider
from .openai_input import invalid
from .vertex import VertexProvider, is_claude

__all__ = ["CONCURRENCY", "EmbeddingCalls", "Usage", "calls_for", "openai_answer"]

Headers = list[tuple[bytes, bytes]]
#: ``(prompt, completion, total, cached, cache_write, reasoning)``, as `exchange.Facts.usage` holds it.
Usage = tuple[int, int, int, int | None, int | None, int | None]

#: Upstream calls of one request in flight at once (Titan's one call per input): well under a pool's 100
#: connections per origin, so one large request neither waits for connections nor starves the other requests.
CONCURRENCY = 16
COHERE_BATCH = 96
GEMINI_BATCH = 100
VERTEX_BATCH = 250
TITAN_V2_DIMENSIONS = (256, 512, 1024)
COHERE_V4_DIMENSIONS = (256, 512, 1024, 1536)
COHERE_INPUT_TYPES = ("search_document", "search_query", "classification", "clustering")

_ENDPOINTS: BoundedMemo[str, Endpoint] = BoundedMemo(Endpoint.parse, 1024)
_LITTLE_ENDIAN = sys.byteorder == "little"


def openai_answer(vectors: Sequence[Sequence[float]], model: str, tokens: int, encoding_base64: bool) -> bytes:
    """The client's answer in OpenAI's shape; base64 is the vector as little-endian float32, as OpenAI sends it."""
    data: list[dict[str, Any]] = []
    for index, vector in enumerate(vectors):
        embedding: Any = vector
        if encoding_base64:
            packed = array("f", vector)
            if not _LITTLE_ENDIAN:
                packed.byteswap()
            embedding = base64.b64encode(packed.tobytes()).decode("ascii")
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    return orjson.dumps(
        {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
    )


def _usage(tokens: int) -> Usage:
    return (tokens, 0, tokens, None, None, None)


def _unreadable(what: str) -> UpstreamProtocolError:
    return UpstreamProtocolError(f"The upstream's embeddings answer could not be read: {what}.")


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _unreadable(f"not JSON ({exc})") from None


def _list_at(answer: Any, key: str) -> list[Any]:
    """The list an answer (a JSON object) holds at ``key``; the 502 saying it has none."""
    value = answer.get(key) if isinstance(answer, dict) else None
    if not isinstance(value, list):
        raise _unreadable(f"no '{key}' list")
    return value


def _vector(value: Any, what: str) -> list[float]:
    if not isinstance(value, list) or not all(isinstance(x, (int, float)) for x in value[:1]):
        raise _unreadable(f"{what} is not a list of numbers")
    return value


def _count(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def _texts(body: dict[str, Any], provider: str) -> list[str]:
    """The inputs as strings; token arrays are a 400 naming ``input`` (only OpenAI-format upstreams take them)."""
    value = body["input"]
    if isinstance(value, str):
        return [value]
    if all(isinstance(item, str) for item in value):
        return list(value)
    raise invalid(
        f"'input': {provider} embeds text only; token arrays are passed on to OpenAI and OpenAI-compatible backends "
        "only. Send the text as a string or a list of strings.",
        "input",
    )


def _dimensions_refused(model: str, allowed: str) -> InvalidRequest:
    return invalid(
        f"'dimensions': {model} {allowed}.",
        "dimensions",
    )


def _batches(items: list[Any], size: int) -> list[list[Any]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


class EmbeddingCalls:
    """One attempt's upstream calls for one backend, and how their answers become the client's.

    Built from the request (pure, may raise the client's 400 before anything is sent); `prepare` adds credentials
    (it may wait for a token), `answer` joins the answers, in call order, into the client's body and its usage."""

    __slots__ = ("client_model", "encoding_base64", "header_edits", "provider", "tls")

    #: Calls in flight at once for this attempt.
    concurrency = CONCURRENCY

    def __init__(self, provider: Provider, request: ChatRequest, client_model: str) -> None:
        self.provider = provider
        self.client_model = client_model
        self.encoding_base64 = request.body.get("encoding_format") == "base64"
        #: the backend's ``requestHeaders`` (its HeaderEdits), applied to every call
        self.header_edits: Any = None
        #: the backend's TLS (upstream.ClientTLS), for every call; None: the default trust
        self.tls: Any = None

    async def prepare(self) -> list[UpstreamRequest]:
        requests = await self._prepare()
        edits = self.header_edits
        if edits is not None:
            requests = [UpstreamRequest(r.endpoint, edits.apply_lines(r.headers), r.body) for r in requests]
        if self.tls is not None:
            requests = [dataclasses.replace(r, tls=self.tls) for r in requests]
        return requests

    async def _prepare(self) -> list[UpstreamRequest]:
        raise NotImplementedError

    def answer(self, bodies: list[bytes], headers: list[Headers]) -> tuple[bytes, Usage | None]:
        raise NotImplementedError


class _OpenAICalls(EmbeddingCalls):
    __slots__ = ("body", "request")

    def __init__(self, provider: OpenAIProvider, request: ChatRequest, client_model: str) -> None:
        super().__init__(provider, request, client_model)
        self.request = request
        model = provider.upstream_model or request.model
        body = request.body
        self.body = orjson.dumps({**body, "model": model}) if body.get("model") != model or not request.raw else None

    async def _prepare(self) -> list[UpstreamRequest]:
        # The provider's own prepare gives its credentials (a key, the client's Authorization, an Entra token)
        # and its chat URL (asked with a body of nothing but the model: it is not sent); the body is ours.
        request = self.request
        chat = await self.provider.prepare(request.derive(request.model, {"model": request.model}))
        url, found, rest = chat.endpoint.url.rpartition("/chat/completions")
        if not found:
            raise InvalidRequest(f"{chat.endpoint.url} has no /chat/completions path to put /embeddings in.")
        body = self.body if self.body is not None else request.raw
        return [UpstreamRequest(_ENDPOINTS.get(url + "/embeddings" + rest), chat.headers, body)]

    def answer(self, bodies: list[bytes], headers: list[Headers]) -> tuple[bytes, Usage | None]:
        answer = _json(bodies[0])
        if not isinstance(answer, dict):
            raise _unreadable("not a JSON object")
        if "error" in answer:  # a success status with an error body (some compatible servers)
            error = answer["error"]
            code = error.get("code") if isinstance(error, dict) else None
            status = code if isinstance(code, int) and 400 <= code <= 599 else 502
            raise UpstreamHTTPError.from_openai_body(status, bodies[0], [])
        _list_at(answer, "data")
        usage = answer.get("usage")
        tokens = _count(usage.get("prompt_tokens")) if isinstance(usage, dict) else None
        if answer.get("model") != self.client_model:
            answer["model"] = self.client_model
            body = orjson.dumps(answer)
        else:
            body = bodies[0]
        return body, _usage(tokens) if tokens is not None else None


def _bedrock_family(model_id: str) -> str:
    if "titan-embed" in model_id:
        return "titan"
    if "cohere.embed" in model_id:
        return "cohere"
    raise invalid(
        f"Bedrock embeddings are served for Titan Text Embeddings (amazon.titan-embed-text-*) and Cohere Embed "
        f"(cohere.embed-*) model ids; {model_id!r} is neither.",
        "model",
    )


class _BedrockCalls(EmbeddingCalls):
    """``InvokeModel`` calls: one per input (Titan) or per 96 inputs (Cohere)."""

    __slots__ = ("bodies", "family", "path")

    def __init__(self, provider: BedrockProvider, request: ChatRequest, client_model: str) -> None:
        super().__init__(provider, request, client_model)
        model_id = provider.upstream_model or request.model
        body = request.body
        texts = _texts(body, "Bedrock")
        self.family = _bedrock_family(model_id)
        self.path = f"/model/{quote(model_id, safe='')}/invoke"
        dimensions = body.get("dimensions")
        if self.family == "titan":
            fields: dict[str, Any] = {}
            if "titan-embed-text-v2" in model_id:
                if dimensions is not None:
                    if dimensions not in TITAN_V2_DIMENSIONS:
                        raise _dimensions_refused(model_id, "takes 256, 512 or 1024 dimensions")
                    fields["dimensions"] = dimensions
                normalize = body.get("normalize", True)
                if not isinstance(normalize, bool):
                    raise InvalidRequest("'normalize' must be a boolean.", param="normalize")
                fields["normalize"] = normalize
            elif dimensions is not None:
                raise _dimensions_refused(model_id, "has a fixed size (use amazon.titan-embed-text-v2:0 to choose one)")
            self.bodies = [orjson.dumps({"inputText": text, **fields}) for text in texts]
        else:
            input_type = body.get("input_type", "search_document")
            if input_type not in COHERE_INPUT_TYPES:
                raise invalid(
                    f"'input_type' must be one of {', '.join(COHERE_INPUT_TYPES)} for Cohere Embed.",
                    "input_type",
                )
            fields = {"input_type": input_type, "embedding_types": ["float"]}
            truncate = body.get("truncate")
            if truncate is not None:
                fields["truncate"] = truncate
            if dimensions is not None:
                if "embed-v4" not in model_id:
                    raise _dimensions_refused(model_id, "has a fixed size (cohere.embed-v4:0 takes dimensions)")
                if dimensions not in COHERE_V4_DIMENSIONS:
                    raise _dimensions_refused(model_id, "takes 256, 512, 1024 or 1536 dimensions")
                fields["output_dimension"] = dimensions
            self.bodies = [orjson.dumps({"texts": batch, **fields}) for batch in _batches(texts, COHERE_BATCH)]

    async def _prepare(self) -> list[UpstreamRequest]:
        provider = self.provider
        assert isinstance(provider, BedrockProvider)
        endpoint = _ENDPOINTS.get(provider.root + self.path)
        return [UpstreamRequest(endpoint, await provider.signed_headers(self.path, body), body) for body in self.bodies]

    def answer(self, bodies: list[bytes], headers: list[Headers]) -> tuple[bytes, Usage | None]:
        vectors: list[list[float]] = []
        tokens = 0
        for body, answer_headers in zip(bodies, headers, strict=True):
            answer = _json(body)
            if not isinstance(answer, dict):
                raise _unreadable("not a JSON object")
            if self.family == "titan":
                vectors.append(_vector(answer.get("embedding"), "'embedding'"))
                counted: Any = answer.get("inputTextTokenCount")
            else:
                embeddings = answer.get("embeddings")
                if isinstance(embeddings, dict):  # embeddings_by_type
                    embeddings = embeddings.get("float")
                if not isinstance(embeddings, list):
                    raise _unreadable("no 'embeddings' list")
                vectors.extend(_vector(vector, "an embedding") for vector in embeddings)
                meta = answer.get("meta")
                billed = meta.get("billed_units") if isinstance(meta, dict) else None
                counted = billed.get("input_tokens") if isinstance(billed, dict) else None
            if counted is None:
                header = header_value(answer_headers, b"x-amzn-bedrock-input-token-count")
                counted = int(header) if header is not None and header.isdigit() else 0
            tokens += _count(counted)
        return openai_answer(vectors, self.client_model, tokens, self.encoding_base64), _usage(tokens)


def _task_type(body: dict[str, Any]) -> str | None:
    task_type = body.get("task_type")
    if task_type is not None and not isinstance(task_type, str):
        raise InvalidRequest(
            "'task_type' must be a string (RETRIEVAL_QUERY, RETRIEVAL_DOCUMENT, ...).", param="task_type"
        )
    return task_type


class _GeminiCalls(EmbeddingCalls):
    """``batchEmbedContents`` calls of up to 100 inputs each."""

    __slots__ = ("bodies", "endpoint", "request")

    def __init__(self, provider: GeminiProvider, request: ChatRequest, client_model: str) -> None:
        super().__init__(provider, request, client_model)
        self.request = request
        model = provider.upstream_model or request.model
        body = request.body
        fields: dict[str, Any] = {}
        task_type = _task_type(body)
        if task_type is not None:
            fields["taskType"] = task_type
        if body.get("dimensions") is not None:
            fields["outputDimensionality"] = body["dimensions"]
        name = "models/" + model.removeprefix("models/")
        requests = [
            {"model": name, "content": {"parts": [{"text": text}]}, **fields} for text in _texts(body, "Gemini")
        ]
        self.bodies = [orjson.dumps({"requests": batch}) for batch in _batches(requests, GEMINI_BATCH)]
        self.endpoint = _ENDPOINTS.get(f"{provider.root}/models/{model_path(model)}:batchEmbedContents")

    async def _prepare(self) -> list[UpstreamRequest]:
        provider = self.provider
        assert isinstance(provider, GeminiProvider)
        headers = provider.auth_headers(self.request)
        return [UpstreamRequest(self.endpoint, headers, body) for body in self.bodies]

    def answer(self, bodies: list[bytes], headers: list[Headers]) -> tuple[bytes, Usage | None]:
        vectors: list[list[float]] = []
        tokens: int | None = None
        for body in bodies:
            answer = _json(body)
            for embedding in _list_at(answer, "embeddings"):
                vectors.append(_vector(embedding.get("values") if isinstance(embedding, dict) else None, "'values'"))
            usage = answer.get("usageMetadata")
            if isinstance(usage, dict) and "promptTokenCount" in usage:
                tokens = (tokens or 0) + _count(usage["promptTokenCount"])
        body = openai_answer(vectors, self.client_model, tokens or 0, self.encoding_base64)
        return body, _usage(tokens) if tokens is not None else None


class _VertexCalls(EmbeddingCalls):
    """``predict`` calls: one instance each for gemini-embedding models, up to 250 for the others."""

    __slots__ = ("bodies", "endpoint")

    def __init__(self, provider: VertexProvider, request: ChatRequest, client_model: str) -> None:
        super().__init__(provider, request, client_model)
        model = provider.upstream_model_for(request)
        if is_claude(model):
            raise invalid(
                f"{model} is a Claude model: Claude has no embeddings API. Use a Vertex AI embedding model "
                "(gemini-embedding-001, text-embedding-005, ...).",
                "model",
            )
        body = request.body
        task_type = _task_type(body)
        instances = [
            {"content": text} if task_type is None else {"content": text, "task_type": task_type}
            for text in _texts(body, "Vertex AI")
        ]
        parameters = {"outputDimensionality": body["dimensions"]} if body.get("dimensions") is not None else None
        size = 1 if model.startswith("gemini-embedding") else VERTEX_BATCH
        self.bodies = [
            orjson.dumps({"instances": batch, "parameters": parameters} if parameters else {"instances": batch})
            for batch in _batches(instances, size)
        ]
        self.endpoint = _ENDPOINTS.get(f"{provider.root}/google/models/{model_path(model)}:predict")

    async def _prepare(self) -> list[UpstreamRequest]:
        provider = self.provider
        assert isinstance(provider, VertexProvider)
        headers = await provider.auth_headers()
        return [UpstreamRequest(self.endpoint, headers, body) for body in self.bodies]

    def answer(self, bodies: list[bytes], headers: list[Headers]) -> tuple[bytes, Usage | None]:
        vectors: list[list[float]] = []
        tokens = 0
        for body in bodies:
            for prediction in _list_at(_json(body), "predictions"):
                embeddings = prediction.get("embeddings") if isinstance(prediction, dict) else None
                if not isinstance(embeddings, dict):
                    raise _unreadable("a prediction without 'embeddings'")
                vectors.append(_vector(embeddings.get("values"), "'values'"))
                statistics = embeddings.get("statistics")
                if isinstance(statistics, dict):
                    tokens += _count(statistics.get("token_count"))
        return openai_answer(vectors, self.client_model, tokens, self.encoding_base64), _usage(tokens)


def calls_for(provider: Provider, request: ChatRequest, client_model: str) -> EmbeddingCalls:
    """The calls that embed ``request`` (the attempt's: its ``model`` is the route's target) at ``provider``; the
    client's 400 when the provider or model cannot embed it."""
    if isinstance(provider, OpenAIProvider):  # openAI, custom, the presets, azure
        return _OpenAICalls(provider, request, client_model)
    if isinstance(provider, BedrockProvider):
        return _BedrockCalls(provider, request, client_model)
    if isinstance(provider, GeminiProvider):
        return _GeminiCalls(provider, request, client_model)
    if isinstance(provider, VertexProvider):
        return _VertexCalls(provider, request, client_model)
    if isinstance(provider, AnthropicProvider):
        raise invalid(
            "Anthropic has no embeddings API: route this model to an OpenAI, OpenAI-compatible, Bedrock, Gemini or "
            "Vertex AI embedding model.",
            "model",
        )
    raise invalid(f"The provider {provider.entry.provider_name} serves no embeddings here.", "model")
