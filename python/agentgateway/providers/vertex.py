"""Vertex AI (``provider: vertex``): Gemini models through ``generateContent`` and Claude models through the
Anthropic publisher's ``rawPredict`` (WIRE.md section 5).

- Host by ``params.vertexRegion`` (default ``global``): ``global`` → ``aiplatform.googleapis.com``; the
  multi-regions ``us`` / ``eu`` → ``aiplatform.{us,eu}.rep.googleapis.com``; any other region R →
  ``R-aiplatform.googleapis.com``. ``params.baseUrl`` replaces scheme, host and port (the path is kept).
- A model id starting with ``claude`` (``claude-sonnet-4-5@20250929``) goes to
  ``/v1/projects/{project}/locations/{region}/publishers/anthropic/models/{model}:rawPredict`` (streams
  ``:streamRawPredict``) with the Anthropic Messages body of providers/anthropic.py's ``translate_request``,
  without ``model`` and with ``anthropic_version`` (``params.anthropicVersion``, default ``vertex-2023-10-16``);
  its answers are read by the core's ``anthropic`` translator.
- Any other id goes to ``…/publishers/google/models/{model}:generateContent`` (streams
  ``:streamGenerateContent?alt=sse``) with the body of providers/gemini.py's ``translate_request``; answers are
  read by the core's ``gemini`` translator.
- Auth: Google Application Default Credentials (agentgateway/google_auth.py), ``Authorization: Bearer <token>``,
  one token cache per credential source and worker shared by every Vertex entry; a 401 drops the cached token and
  the request is sent once more with a new one. With ``params.apiKey`` (Vertex
  AI express mode) the key is sent as ``x-goog-api-key`` instead, and ``vertexProject`` becomes optional: without
  it the project-less express path ``/v1/publishers/google/models/{model}:generateContent`` is used.
- Anthropic Messages clients (``/v1/messages``, issue 19): Claude models get the client's body natively (``model``
  removed, ``anthropic_version`` added, ``anthropic-beta`` passed on as a header); Gemini models the body built from
  the shared model (providers/messages_input.py). ``/v1/messages/count_tokens``: Claude's
  ``publishers/anthropic/models/count-tokens:rawPredict`` (the model in the body), Gemini's ``:countTokens``.
- Errors: Google's ``{"error": {code, message, status}}`` and, from Claude models, Anthropic's
  ``{"type": "error", "error": {type, message}}``, each turned into OpenAI's shape with the status kept.
"""

from __future__ import annotations

import os

import orjson

from ..config import ModelEntry
from ..errors import GatewayError
from ..google_auth import GoogleCredentials
from ..memo import BoundedMemo
from ..prompt_caching import anthropic_cache_points
from ..upstream import Endpoint, UpstreamRequest, encode_headers, header_line
from .anthropic import DEFAULT_MAX_TOKENS as ANTHROPIC_DEFAULT_MAX_TOKENS
from .anthropic import error_from_anthropic_body
from .anthropic import translate_request as translate_anthropic_request
from .base import ChatRequest, Provider, header_value
from .gemini import error_from_google_body, model_path
from .gemini import translate_request as translate_gemini_request
from .messages_input import claude_body, claude_count_body, gemini_body, read_messages
from .openai_input import read_choice_count

__all__ = ["VERTEX_ANTHROPIC_VERSION", "VertexProvider", "vertex_host"]

VERTEX_ANTHROPIC_VERSION = "vertex-2023-10-16"
# One token cache per credential source in this worker (issue 20): every Vertex entry on the same Application
# Default Credentials shares one token and one refresh, instead of fetching a token per entry.
_SHARED_CREDENTIALS: dict[str | None, GoogleCredentials] = {}


def shared_credentials() -> GoogleCredentials:
    """The ADC token cache of this worker for the credential source in use (``GOOGLE_APPLICATION_CREDENTIALS``, else
    the gcloud file or the metadata server, which google-auth finds the same way for every entry)."""
    source = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    credentials = _SHARED_CREDENTIALS.get(source)
    if credentials is None:
        credentials = _SHARED_CREDENTIALS[source] = GoogleCredentials()
    return credentials


_MULTI_REGIONS = frozenset(("us", "eu"))
_MAX_MODEL_ENDPOINTS = 256


def vertex_host(region: str) -> str:
    """The ``https://`` origin that serves a Vertex AI region."""
    if region == "global":
        return "https://aiplatform.googleapis.com"
    if region in _MULTI_REGIONS:
        return f"https://aiplatform.{region}.rep.googleapis.com"
    return f"https://{region}-aiplatform.googleapis.com"


def is_claude(model: str) -> bool:
    return model.startswith("claude")


class VertexProvider(Provider):
    translator = "gemini"

    def __init__(self, entry: ModelEntry) -> None:
        super().__init__(entry)
        params = entry.params
        region = params.vertex_region or "global"
        origin = params.base_url or vertex_host(region)
        project = params.vertex_project
        if project is None:  # express mode (API key): no project in the path
            self.root = f"{origin}/v1/publishers"
        else:
            self.root = f"{origin}/v1/projects/{project}/locations/{region}/publishers"
        self.max_tokens = params.max_tokens
        self.anthropic_version = params.anthropic_version or VERTEX_ANTHROPIC_VERSION
        self.headers = encode_headers({"Content-Type": "application/json"})
        self.credentials: GoogleCredentials | None = None
        if params.api_key is not None:
            self.headers += encode_headers({"x-goog-api-key": params.api_key.get_secret_value()})
        else:
            self.credentials = shared_credentials()
        self.configured_secrets = list(self.secrets)
        # (plain, streamed) endpoints per upstream model.
        self.endpoints: BoundedMemo[str, tuple[Endpoint, Endpoint]] = BoundedMemo(
            self._make_endpoints, _MAX_MODEL_ENDPOINTS
        )
        #: count_tokens endpoints per Gemini model ("anthropic": Claude's one count-tokens endpoint).
        self.count_endpoints: BoundedMemo[str, Endpoint] = BoundedMemo(self._make_count_endpoint, _MAX_MODEL_ENDPOINTS)

    def upstream_model_for(self, request: ChatRequest) -> str:
        return self.upstream_model or request.model

    def translator_for(self, request: ChatRequest) -> str:
        return "anthropic" if is_claude(self.upstream_model_for(request)) else "gemini"

    def _make_endpoints(self, model: str) -> tuple[Endpoint, Endpoint]:
        if is_claude(model):
            base = f"{self.root}/anthropic/models/{model_path(model)}"
            return Endpoint.parse(base + ":rawPredict"), Endpoint.parse(base + ":streamRawPredict")
        base = f"{self.root}/google/models/{model_path(model)}"
        return Endpoint.parse(base + ":generateContent"), Endpoint.parse(base + ":streamGenerateContent?alt=sse")

    async def prepare(self, request: ChatRequest) -> UpstreamRequest:
        model = self.upstream_model_for(request)
        if request.api != "chat":
            return await self._prepare_messages(request, model)
        plain, streamed = self.endpoints.get(model)
        if is_claude(model):
            body = translate_anthropic_request(
                request,
                model=None,
                version=self.anthropic_version,
                default_max_tokens=self.max_tokens or ANTHROPIC_DEFAULT_MAX_TOKENS,
            )
            body["anthropic_version"] = self.anthropic_version
            body = anthropic_cache_points(body, self.entry.prompt_caching)  # promptCaching (issue 21)
        else:
            body = translate_gemini_request(request, model=model, default_max_tokens=self.max_tokens)
        return UpstreamRequest(streamed if request.stream else plain, await self.auth_headers(), orjson.dumps(body))

    async def _prepare_messages(self, request: ChatRequest, model: str) -> UpstreamRequest:
        """An Anthropic Messages client (issue 19): Claude gets its body natively (no ``model``, Vertex's
        ``anthropic_version``, the ``anthropic-beta`` header passed on); Gemini the body built from the shared
        model. ``count_tokens``: Claude's ``count-tokens:rawPredict``, Gemini's ``:countTokens``."""
        headers = await self.auth_headers()
        version = {"anthropic_version": self.anthropic_version}
        if is_claude(model):
            beta = header_value(request.headers, b"anthropic-beta")
            if beta:
                headers += header_line(b"anthropic-beta", beta)
            if request.api == "count_tokens":
                body = {**claude_count_body(request.body, model=model), **version}
                return UpstreamRequest(self.count_endpoints.get("anthropic"), headers, orjson.dumps(body))
            plain, streamed = self.endpoints.get(model)
            body = claude_body(request.body, model=None, extra=version)
            body = anthropic_cache_points(body, self.entry.prompt_caching)  # promptCaching (issue 21)
            return UpstreamRequest(streamed if request.stream else plain, headers, orjson.dumps(body))
        body = gemini_body(read_messages(request.body), model, self.max_tokens)
        if request.api == "count_tokens":
            counted = {key: body[key] for key in ("contents", "systemInstruction", "tools") if key in body}
            return UpstreamRequest(self.count_endpoints.get(model), headers, orjson.dumps(counted))
        plain, streamed = self.endpoints.get(model)
        return UpstreamRequest(streamed if request.stream else plain, headers, orjson.dumps(body))

    def _make_count_endpoint(self, model: str) -> Endpoint:
        if model == "anthropic":
            return Endpoint.parse(f"{self.root}/anthropic/models/count-tokens:rawPredict")
        return Endpoint.parse(f"{self.root}/google/models/{model_path(model)}:countTokens")

    def fan_out(self, request: ChatRequest) -> int:
        # Gemini serves n itself (candidateCount); Claude answers one choice per call: fanned out (fanout.py).
        if "n" not in request.body or not is_claude(self.upstream_model_for(request)):
            return 1
        return read_choice_count(request.body, "Claude models", "one request per choice")

    def counts_tokens(self, request: ChatRequest) -> bool:
        return True

    def input_tokens(self, body: bytes) -> int | None:
        count = super().input_tokens(body)  # Claude's {"input_tokens"}
        if count is None:
            try:
                parsed = orjson.loads(body)
            except orjson.JSONDecodeError:
                return None
            total = parsed.get("totalTokens") if isinstance(parsed, dict) else None
            count = total if isinstance(total, int) else None
        return count

    async def auth_headers(self) -> bytes:
        """The content type and the credentials (the express-mode key, or the ADC token, fetched or cached): the
        headers of every call (``generateContent``, ``rawPredict``, and ``predict`` for embeddings)."""
        headers = self.headers
        if self.credentials is not None:
            token = await self.credentials.token()
            if token not in self.secrets:  # the access token in use must not reach a client or a log either
                self.secrets = [*self.configured_secrets, token]
            headers += header_line(b"Authorization", b"Bearer " + token.encode("latin-1"))
        return headers

    def error_from_response(self, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> GatewayError:
        # Claude models answer Anthropic's errors; Vertex itself (quota, auth, routing) answers Google's.
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict) and parsed.get("type") == "error":
            return error_from_anthropic_body(status, body, headers)
        return error_from_google_body(status, body, headers)

    async def credentials_rejected(self) -> bool:
        if self.credentials is None:
            return False
        self.credentials.invalidate()
        return True
