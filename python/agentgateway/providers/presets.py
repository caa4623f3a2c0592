"""The OpenAI-compatible presets (``provider: groq``, ``mistral``, ``ollama``, ...): the table is
``agentgateway/provider_presets.py``; this is the provider that serves every row of it.

A preset is ``custom`` with a default endpoint, a key from the environment, and the row's quirks applied to the
request. Everything that depends on the row is decided here, once per model entry; per request only a quirk that
applies costs anything (a body with no ``developer`` message and no ``stream_options`` to drop is sent as the
client's own bytes, apart from what ``OpenAIProvider`` changes too: the model and ``stream_options``)."""

from __future__ import annotations

import os
from typing import Any

import orjson

from ..config import ModelEntry
from ..errors import InvalidRequest
from ..provider_presets import PRESETS, Preset
from ..upstream import Endpoint, UpstreamRequest, encode_headers, header_line
from .base import ChatRequest
from .openai import OpenAIProvider

__all__ = ["PresetProvider"]


class PresetProvider(OpenAIProvider):
    translator = "openai"

    def __init__(self, entry: ModelEntry) -> None:
        super().__init__(entry)
        preset: Preset = PRESETS[entry.provider_name]
        self.preset = preset
        self.endpoint = Endpoint.parse((entry.params.base_url or preset.base_url) + preset.chat_path)
        key = entry.params.api_key.get_secret_value() if entry.params.api_key is not None else None
        if key is None and preset.key_env:
            key = os.environ.get(preset.key_env) or None
            if key is not None:
                self.secrets.append(key)
        headers = {"Content-Type": "application/json"}
        if key is not None:
            headers["Authorization"] = "Bearer " + key
        self.headers = encode_headers(headers)
        self.forward_client_auth = key is None

    async def prepare(self, request: ChatRequest) -> UpstreamRequest:
        request = self.chat_request(request)  # an Anthropic Messages client's request as Chat Completions (issue 19)
        headers = self.headers
        if self.forward_client_auth and request.authorization is not None:
            try:
                headers += header_line(b"Authorization", request.authorization)
            except ValueError as exc:
                raise InvalidRequest(f"Invalid Authorization header: {exc}.", param="Authorization") from None
        body = request.body
        edits: dict[str, Any] = {}
        model = self.upstream_model or request.model
        if body.get("model") != model:
            edits["model"] = model
        preset = self.preset
        if request.stream:
            options = body.get("stream_options")
            if not preset.stream_options:
                if options is not None:
                    edits["stream_options"] = None  # dropped below: the upstream refuses the field
            elif not (isinstance(options, dict) and options.get("include_usage") is True):
                edits["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
        elif not preset.stream_options and "stream_options" in body:
            edits["stream_options"] = None
        if preset.developer_as_system:
            messages = body.get("messages")
            if isinstance(messages, list) and any(
                isinstance(m, dict) and m.get("role") == "developer" for m in messages
            ):
                edits["messages"] = [
                    {**m, "role": "system"} if isinstance(m, dict) and m.get("role") == "developer" else m
                    for m in messages
                ]
        if not edits and request.raw:
            return UpstreamRequest(self.endpoint, headers, request.raw)
        merged = {**body, **edits}
        if merged.get("stream_options", 0) is None and "stream_options" in edits:
            del merged["stream_options"]
        return UpstreamRequest(self.endpoint, headers, orjson.dumps(merged))
