"""OpenAI and OpenAI-compatible (``custom``) upstreams: the request is forwarded as is, except for the model
(``params.model``) and ``stream_options.include_usage``, which is always asked for so every stream is metered;
the core translator gives the client back its own model name and drops the usage chunk it did not ask for.

Anthropic Messages clients (``/v1/messages``, issue 19) get the Chat Completions body built from the shared model
(providers/messages_input.py ``chat_body``); the core's OpenAI decoder writes the answer as Anthropic's.
``/v1/messages/count_tokens``: OpenAI's ``/v1/responses/input_tokens``; an OpenAI-compatible server has no such
endpoint and gets the gateway's documented estimate (messages_input.estimate_input_tokens) instead of a call."""

from __future__ import annotations

import orjson

from ..config import ModelEntry
from ..errors import InvalidRequest
from ..upstream import Endpoint, UpstreamRequest, encode_headers, header_line
from .base import ChatRequest, Provider
from .messages_input import chat_body, read_messages, responses_input_tokens_body

__all__ = ["OpenAIProvider"]

DEFAULT_BASE_URL = "https://api.openai.com/v1"
#: The member a streamed body gets, written before its closing brace (the body has members: ``model`` at least).
_ASK_FOR_USAGE = b',"stream_options":{"include_usage":true}}'


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
        #: OpenAI itself (not a compatible server): max_completion_tokens, /v1/responses/input_tokens.
        self.is_openai = entry.provider_name == "openAI"
        self.count_endpoint = Endpoint.parse((entry.params.base_url or DEFAULT_BASE_URL) + "/responses/input_tokens")

    def chat_request(self, request: ChatRequest) -> ChatRequest:
        """The Chat Completions request to send for ``request``: itself, or for an Anthropic Messages client (issue
        19) the body built from the shared model (providers/messages_input.py ``chat_body``)."""
        if request.api == "chat":
            return request
        body = chat_body(read_messages(request.body), self.upstream_model or request.model, openai=self.is_openai)
        return ChatRequest(b"", body, request.model, request.stream, True, request.authorization, request.headers)

    def counts_tokens(self, request: ChatRequest) -> bool:
        return self.is_openai  # OpenAI's /v1/responses/input_tokens; compatible servers have no counting endpoint

    async def prepare(self, request: ChatRequest) -> UpstreamRequest:
        if request.api == "count_tokens":
            counted = responses_input_tokens_body(self.chat_request(request).body)
            return UpstreamRequest(self.count_endpoint, self._auth_headers(request), orjson.dumps(counted))
        request = self.chat_request(request)
        headers = self._auth_headers(request)
        body = request.body
        edits: dict[str, object] = {}
        model = self.upstream_model or request.model
        if body.get("model") != model:
            edits["model"] = model
        if request.stream:
            options = body.get("stream_options")
            if not edits and "stream_options" not in body and request.raw:
                # The usual stream: only usage to ask for. Appended to the client's bytes (issue 22: re-serializing
                # every streamed body cost more than the rest of prepare), which keep their exact spelling.
                raw = request.raw.rstrip()
                if raw.endswith(b"}"):
                    return UpstreamRequest(self.endpoint, headers, raw[:-1] + _ASK_FOR_USAGE)
            if not (isinstance(options, dict) and options.get("include_usage") is True):
                edits["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
        # Nothing to change: the client's bytes go upstream untouched (and its numbers keep their exact spelling).
        payload = orjson.dumps({**body, **edits}) if edits or not request.raw else request.raw
        return UpstreamRequest(self.endpoint, headers, payload)

    def _auth_headers(self, request: ChatRequest) -> bytes:
        headers = self.headers
        if self.forward_client_auth and request.authorization is not None:
            try:
                headers += header_line(b"Authorization", request.authorization)
            except ValueError as exc:
                raise InvalidRequest(f"Invalid Authorization header: {exc}.", param="Authorization") from None
        return headers

    def response_model(self, client_model: str, request: ChatRequest) -> str | None:
        # Answers already name the model the client asked for unless another name went upstream (params.model, or
        # a virtual model's target).
        return None if (self.upstream_model or request.model) == client_model else client_model
