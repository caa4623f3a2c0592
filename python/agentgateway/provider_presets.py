"""The OpenAI-compatible providers agentgateway knows by name: one table, one place (issue 21).

agentgateway turns each of these into its ``custom`` provider with a default base URL
(``crates/agentgateway/src/types/local.rs``: ``LocalModelAIProvider`` and ``apply_provider_defaults``); so does
this gateway (``providers/presets.py``). ``params.baseUrl`` replaces the base URL, as there. Beyond agentgateway:

* ``key_env``: without ``params.apiKey``, the key is read from this environment variable at load (when it is
  set); without either, the client's own ``Authorization`` header is forwarded, as for ``custom``.
* quirks, applied to the request before it is sent (the OpenAI request a client sends is otherwise forwarded as
  it is):

  - ``developer_as_system``: a ``developer`` message goes as ``system`` (the same instruction in the older name;
    OpenAI introduced ``developer``, and servers that only know ``system`` refuse it). Every preset has it.
  - ``stream_options``: whether ``stream_options.include_usage`` may be asked for. Mistral's API refuses fields
    it does not know (422) and sends the usage in its last chunk unasked, so it is neither added nor passed on.

Names are matched without regard to case (agentgateway spells them in lower case: ``togetherai``, ``xai``).
This module holds data only: config.py imports it, and it imports nothing of the gateway.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["PRESETS", "Preset"]


class Preset(NamedTuple):
    #: the provider name in the config (agentgateway's spelling)
    name: str
    #: the endpoint root when ``params.baseUrl`` is not set (agentgateway's default)
    base_url: str
    #: appended to the base URL for chat completions (agentgateway's format path)
    chat_path: str
    #: where the key comes from when ``params.apiKey`` is not set ("" for none)
    key_env: str
    developer_as_system: bool = True
    stream_options: bool = True


PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset("cohere", "https://api.cohere.ai", "/compatibility/v1/chat/completions", "COHERE_API_KEY"),
        Preset("ollama", "http://localhost:11434/v1", "/chat/completions", "OLLAMA_API_KEY"),
        Preset("baseten", "https://inference.baseten.co/v1", "/chat/completions", "BASETEN_API_KEY"),
        Preset("cerebras", "https://api.cerebras.ai/v1", "/chat/completions", "CEREBRAS_API_KEY"),
        Preset("deepinfra", "https://api.deepinfra.com/v1/openai", "/chat/completions", "DEEPINFRA_API_KEY"),
        Preset("deepseek", "https://api.deepseek.com/v1", "/chat/completions", "DEEPSEEK_API_KEY"),
        Preset("groq", "https://api.groq.com/openai/v1", "/chat/completions", "GROQ_API_KEY"),
        Preset("huggingface", "https://router.huggingface.co/v1", "/chat/completions", "HF_TOKEN"),
        Preset("mistral", "https://api.mistral.ai/v1", "/chat/completions", "MISTRAL_API_KEY", stream_options=False),
        Preset("openrouter", "https://openrouter.ai/api/v1", "/chat/completions", "OPENROUTER_API_KEY"),
        Preset("togetherai", "https://api.together.xyz/v1", "/chat/completions", "TOGETHER_API_KEY"),
        Preset("xai", "https://api.x.ai/v1", "/chat/completions", "XAI_API_KEY"),
        Preset("fireworks", "https://api.fireworks.ai/inference/v1", "/chat/completions", "FIREWORKS_API_KEY"),
    )
}
