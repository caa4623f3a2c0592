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
        edits: dict[str, object] = {}
        model = self.upstream_model or request.model
        if body.get("model") != model:
            edits["model"] = model
        if request.stream:
            options = body.get("stream_options")
            if not (isinstance(options, dict) and options.get("include_usage") is True):
                edits["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
        # Nothing to change: the client's bytes go upstream untouched (and its numbers keep their exact spelling).
        payload = orjson.dumps({**body, **edits}) if edits or not request.raw else request.raw
        return UpstreamRequest(self.endpoint, headers, payload)

    def response_model(self, client_model: str, request: ChatRequest) -> str | None:
        # Answers already name the model the client asked for unless another name went upstream (params.model, or
        # a virtual model's target).
        return None if (self.upstream_model or request.model) == client_model else client_model
