"""The provider registry: config provider name -> the class that calls that upstream.

Adding a provider is one file here, one in ``rust/sse_core/src/providers/`` and one line in each registry."""

from __future__ import annotations

from ..provider_presets import PRESETS
from .anthropic import AnthropicProvider
from .azure import AzureProvider
from .base import ChatRequest, Provider, header_value
from .bedrock import BedrockProvider
from .gemini import GeminiProvider
from .openai import OpenAIProvider
from .presets import PresetProvider
from .vertex import VertexProvider

__all__ = ["PROVIDERS", "ChatRequest", "Provider", "header_value"]

PROVIDERS: dict[str, type[Provider]] = {
    "openAI": OpenAIProvider,
    "custom": OpenAIProvider,
    "anthropic": AnthropicProvider,
    "gemini": GeminiProvider,
    "vertex": VertexProvider,
    "bedrock": BedrockProvider,
    "azure": AzureProvider,
    **dict.fromkeys(PRESETS, PresetProvider),  # the OpenAI-compatible presets: one table (provider_presets.py)
}
