"""The provider registry: config provider name -> the class that calls that upstream.

Adding a provider is one file here, one in ``rust/sse_core/src/providers/`` and one line in each registry."""

from __future__ import annotations

from .anthropic import AnthropicProvider
from .base import ChatRequest, Provider, header_value
from .bedrock import BedrockProvider
from .gemini import GeminiProvider
from .openai import OpenAIProvider
from .vertex import VertexProvider

__all__ = ["PROVIDERS", "ChatRequest", "Provider", "header_value"]

PROVIDERS: dict[str, type[Provider]] = {
    "openAI": OpenAIProvider,
    "custom": OpenAIProvider,
    "anthropic": AnthropicProvider,
    "gemini": GeminiProvider,
    "vertex": VertexProvider,
    "bedrock": BedrockProvider,
}
