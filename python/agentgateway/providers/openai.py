"""OpenAI and OpenAI-compatible (``custom``) upstreams: the request is forwarded as is, except for the model
(``params.model``) and ``stream_options.include_usage``, which is always asked for so every stream is metered;
the core translator gives the client back its own model name and drops the usage chunk it did not ask for."""

from __future__ import annotations

import orjson

from ..config import ModelEntry
from ..errors import InvalidRequest
from ..upstream import Endpoint, UpstreamRequest, encode_headers, header_line
from .base import ChatRequest, Provider

__all__ = ["OpenAIProvider"]

DEFAULT_BASE_URL = "https://api.openai.com/v1"


class OpenAIProvider(Provider):
    translator = "openai"

    def __init__(self, entry: ModelEntry) -> None:
        super().__init__(entry)
        self.endpoint = Endpoint.parse((entry.params.base_url or DEFAULT_BASE_URL) + "/chat/completions")
        api_key = entry.params.api_key
        headers = {"Content-Type": "application/json"}
        if api_key is not None:
            headers["Authorization"] = "Bearer " + api_key.get_secret_value()
        self.headers = encode_headers(headers)
        self.forward_client_auth = api_key is None

    async def prepare(self, request: ChatRequest) -> UpstreamRequest:
        headers = self.headers
        if self.forward_client_auth and request.authorization is not None:
            try:
                headers += header_line(b"Authorization", request.authorization)
            except ValueError as exc:
                raise InvalidRequest(f"Invalid Authorization header: {exc}.", param="Authorization") from None
        body = request.body
        changed = False
        if self.upstream_model is not None and self.upstream_model != request.model:
            body["model"] = self.upstream_model
            changed = True
        if request.stream:
            options = body.get("stream_options")
            if not (isinstance(options, dict) and options.get("include_usage") is True):
                body["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
                changed = True
        # Nothing to change: the client's bytes go upstream untouched (and its numbers keep their exact spelling).
        payload = orjson.dumps(body) if changed else request.raw
        return UpstreamRequest(self.endpoint, headers, payload)

    def response_model(self, client_model: str) -> str | None:
        # Answers already name the model the client asked for unless params.model replaced it upstream.
        upstream_model = self.upstream_model
        return client_model if upstream_model is not None and upstream_model != client_model else None
