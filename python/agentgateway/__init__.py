"""agentgateway: one OpenAI Chat Completions endpoint in front of many LLM providers."""

from ._core import __version__

__all__ = ["__version__"]
