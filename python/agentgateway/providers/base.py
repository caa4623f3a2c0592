"""What every provider gives the app: how to call its upstream for one request, which core translator reads the
answer, and how to read the upstream's HTTP errors. Per-request work stays small: anything that depends only on
config is computed once in __init__."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import orjson

from ..config import ModelEntry
from ..errors import GatewayError, UpstreamHTTPError
from ..upstream import UpstreamRequest

__all__ = ["ChatRequest", "Provider", "client_key", "header_value"]


@dataclass(slots=True)
class ChatRequest:
    """A validated client request. ``body`` is the parsed JSON and ``raw`` the bytes it came from (empty once a
    backend's ``defaults`` / ``overrides`` made the body differ from them); ``headers`` are the client's request
    headers as ASGI gives them (lower-case names). Never edited once parsed: backends derive new ones."""

    raw: bytes
    body: dict[str, Any]
    model: str
    stream: bool
    include_usage: bool
    authorization: bytes | None
    headers: list[tuple[bytes, bytes]]
    #: the inbound API whose shape ``body`` has: ``chat`` (OpenAI Chat Completions), ``messages`` (Anthropic
    #: Messages, messages.py) or ``count_tokens`` (Anthropic's ``/v1/messages/count_tokens``); providers build
    #: their upstream body from it (issue 19).
    api: str = "chat"

    def derive(self, model: str, body: dict[str, Any] | None = None) -> ChatRequest:
        """A copy for one attempt: another model name, and another body (then ``raw`` no longer matches it).
        Direct construction: ``dataclasses.replace`` costs ~1 µs on the hot path of every virtual model."""
        if body is None:
            return ChatRequest(
                self.raw, self.body, model, self.stream, self.include_usage, self.authorization, self.headers, self.api
            )
        return ChatRequest(
            b"", body, model, self.stream, self.include_usage, self.authorization, self.headers, self.api
        )


def header_value(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """The first value of the (lower-case) header ``name``, or None."""
    for key, value in headers:
        if key == name:
            return value
    return None


def client_key(request: ChatRequest, header: bytes) -> bytes:
    """The client's own key, for a provider entry with no configured key: its ``header`` (``x-api-key``,
    ``x-goog-api-key``), else the token of its ``Authorization: Bearer``; ``b""`` when it sent neither."""
    key = header_value(request.headers, header)
    if key is None and request.authorization is not None:
        scheme, _, token = request.authorization.partition(b" ")
        key = token.strip() if scheme.lower() == b"bearer" else None
    return key or b""


class Provider:
    """One configured model entry's upstream. Subclasses live one per file in this package."""

    #: the provider name that the Rust core's ``StreamTranslator`` / ``translate_response`` know.
    translator: ClassVar[str]

    def __init__(self, entry: ModelEntry) -> None:
        self.entry = entry
        self.upstream_model = entry.params.model
        #: values that must never reach a client or a log (configured keys; providers add what they obtain).
        self.secrets: list[str] = []
        if entry.params.api_key is not None and entry.params.api_key.get_secret_value():
            self.secrets.append(entry.params.api_key.get_secret_value())

    def redact(self, text: str) -> str:
        """``text`` with every secret of this provider replaced (an upstream may quote the key it refused)."""
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, "[redacted]")
        return text

    async def prepare(self, request: ChatRequest) -> UpstreamRequest:
        """The upstream request for ``request``: endpoint, headers (with credentials) and body. Pure: ``request`` is
        never changed, so a failover's next attempt starts from the same input."""
        raise NotImplementedError

    def translator_for(self, request: ChatRequest) -> str:
        """The core translator that reads the answer to ``request`` (Vertex AI picks one by model)."""
        return self.translator

    def fan_out(self, request: ChatRequest) -> int:
        """How many upstream calls answer the Chat Completions ``request``: 1 for a provider that serves ``n``
        itself; a provider that answers one choice per call returns the request's ``n`` (fanout.py, issue 20)."""
        return 1

    def counts_tokens(self, request: ChatRequest) -> bool:
        """Whether ``/v1/messages/count_tokens`` is asked upstream (`prepare` builds that call for a request with
        ``api="count_tokens"``); False: the gateway answers with messages_input.estimate_input_tokens (issue 19)."""
        return False

    def input_tokens(self, body: bytes) -> int | None:
        """The count in the upstream's answer to a token counting call (Anthropic's ``{"input_tokens": N}`` by
        default); None when it has none."""
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        count = parsed.get("input_tokens") if isinstance(parsed, dict) else None
        return count if isinstance(count, int) and not isinstance(count, bool) else None

    def response_model(self, client_model: str, request: ChatRequest) -> str | None:
        """The model name the core writes into answers to ``request`` (the attempt's request, whose ``model`` may be
        a virtual model's target): the client's own; None keeps what the upstream reports (pass-through)."""
        return client_model

    def error_from_response(self, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> GatewayError:
        """The client's error for an upstream HTTP error: its status kept, its message passed on.
        ``headers`` are the upstream headers already chosen to forward (Retry-After, rate limits)."""
        return UpstreamHTTPError.from_openai_body(status, body, headers)

    def rejects_credentials(self, status: int, headers: list[tuple[bytes, bytes]]) -> bool:
        """Whether an upstream answer with this status and these (lower-case) headers refused the credentials, so
        that `credentials_rejected` should be asked. 401 by default; AWS also answers 403 ``ExpiredTokenException``."""
        return status == 401

    async def credentials_rejected(self) -> bool:
        """The upstream answered 401 to credentials this provider obtained (a cloud token that expired or was
        revoked early): drop them and return True to have the request prepared and sent once more."""
        return False
