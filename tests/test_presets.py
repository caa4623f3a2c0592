"""The OpenAI-compatible presets (issue 21: cohere, ollama, ..., fireworks): agentgateway's default base URLs, the
key from the environment, and the quirks of provider_presets.py, through the real openai SDK against the fake
OpenAI upstream (which records the path, headers and body each preset sent)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from agentgateway.config import BUILTIN_PROVIDERS, load_config
from agentgateway.provider_presets import PRESETS
from agentgateway.providers import PROVIDERS
from agentgateway.providers.presets import PresetProvider
from aiohttp import web
from conftest import TEST_KEY, RunningGateway, openai_client, start_gateway
from fakes.openai_upstream import STORY, FakeOpenAI
from fakes.server import serve_in_thread

GROQ_ENV_KEY = "gsk-from-the-environment-0123"
MESSAGES: Any = [{"role": "developer", "content": "be brief"}, {"role": "user", "content": "hi"}]

# agentgateway's table (crates/agentgateway/src/types/local.rs, apply_provider_defaults and the custom formats)
AGENTGATEWAY_CHAT_URLS = {
    "cohere": "https://api.cohere.ai/compatibility/v1/chat/completions",
    "ollama": "http://localhost:11434/v1/chat/completions",
    "baseten": "https://inference.baseten.co/v1/chat/completions",
    "cerebras": "https://api.cerebras.ai/v1/chat/completions",
    "deepinfra": "https://api.deepinfra.com/v1/openai/chat/completions",
    "deepseek": "https://api.deepseek.com/v1/chat/completions",
    "groq": "https://api.groq.com/openai/v1/chat/completions",
    "huggingface": "https://router.huggingface.co/v1/chat/completions",
    "mistral": "https://api.mistral.ai/v1/chat/completions",
    "openrouter": "https://openrouter.ai/api/v1/chat/completions",
    "togetherai": "https://api.together.xyz/v1/chat/completions",
    "xai": "https://api.x.ai/v1/chat/completions",
    "fireworks": "https://api.fireworks.ai/inference/v1/chat/completions",
}


def test_every_preset_of_agentgateway_is_in_the_one_table_and_registered() -> None:
    assert set(PRESETS) == set(AGENTGATEWAY_CHAT_URLS)
    assert set(PRESETS) <= set(BUILTIN_PROVIDERS)
    assert all(PROVIDERS[name] is PresetProvider for name in PRESETS)


@pytest.mark.parametrize("name", sorted(AGENTGATEWAY_CHAT_URLS))
def test_each_preset_defaults_to_agentgateways_endpoint(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PRESETS[name].key_env, raising=False)
    # agentgateway spells them in lower case; any case is accepted
    config = load_config(f"llm: {{models: [{{name: m, provider: {name.upper()}}}]}}")
    provider = PROVIDERS[config.llm.models[0].provider_name](config.llm.models[0])
    assert provider.endpoint.url == AGENTGATEWAY_CHAT_URLS[name]
    assert provider.forward_client_auth  # no key anywhere: the client's own Authorization goes upstream


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    """The fake OpenAI upstream, also at Cohere's compatibility path."""
    fake = FakeOpenAI()
    app = web.Application()
    for path in ("/v1/chat/completions", "/compatibility/v1/chat/completions"):
        app.router.add_post(path, fake.handle)
    origin, stop = serve_in_thread(app, "fake-openai-presets")
    fake.base_url = origin + "/v1"
    yield fake
    stop()


@pytest.fixture(scope="module")
def gateway(fake: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    origin = fake.base_url.removesuffix("/v1")
    config = f"""
llm:
  models:
  - {{name: groq-model, provider: groq, params: {{model: llama-up, baseUrl: "{fake.base_url}"}}}}
  - name: mistral-model
    provider: mistral
    params: {{model: mistral-up, apiKey: {TEST_KEY}, baseUrl: "{fake.base_url}"}}
  - {{name: cohere-model, provider: cohere, params: {{model: command-up, apiKey: {TEST_KEY}, baseUrl: "{origin}"}}}}
  - {{name: ollama-model, provider: ollama, params: {{model: llama3-up, baseUrl: "{fake.base_url}"}}}}
"""
    running = start_gateway(
        config, tmp_path_factory.mktemp("gw-presets"), env={"GROQ_API_KEY": GROQ_ENV_KEY}, unset=("OLLAMA_API_KEY",)
    )
    yield running
    running.stop()


def test_a_preset_takes_its_key_from_its_environment_variable(gateway: RunningGateway, fake: FakeOpenAI) -> None:
    completion = openai_client(gateway.url).chat.completions.create(model="groq-model", messages=MESSAGES)
    assert completion.choices[0].message.content == " ".join(STORY)
    assert completion.model == "groq-model"
    sent = fake.for_model("llama-up")[-1]
    assert sent.headers["Authorization"] == f"Bearer {GROQ_ENV_KEY}"
    assert sent.path == "/v1/chat/completions"


def test_developer_messages_go_as_system_to_presets(gateway: RunningGateway, fake: FakeOpenAI) -> None:
    openai_client(gateway.url).chat.completions.create(model="groq-model", messages=MESSAGES)
    roles = [m["role"] for m in fake.for_model("llama-up")[-1].body["messages"]]
    assert roles == ["system", "user"]


def test_mistral_streams_without_stream_options(gateway: RunningGateway, fake: FakeOpenAI) -> None:
    client = openai_client(gateway.url)
    chunks = list(
        client.chat.completions.create(
            model="mistral-model", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).split() == STORY
    sent = fake.for_model("mistral-up")[-1].body
    assert "stream_options" not in sent and sent["stream"] is True
    assert fake.for_model("mistral-up")[-1].headers["Authorization"] == f"Bearer {TEST_KEY}"


def test_other_presets_stream_with_usage_asked_for(gateway: RunningGateway, fake: FakeOpenAI) -> None:
    chunks = list(
        openai_client(gateway.url).chat.completions.create(model="groq-model", messages=MESSAGES, stream=True)
    )
    assert chunks
    assert fake.for_model("llama-up")[-1].body["stream_options"] == {"include_usage": True}


def test_cohere_uses_its_compatibility_path(gateway: RunningGateway, fake: FakeOpenAI) -> None:
    openai_client(gateway.url).chat.completions.create(model="cohere-model", messages=MESSAGES)
    assert fake.for_model("command-up")[-1].path == "/compatibility/v1/chat/completions"


def test_without_any_key_the_clients_own_is_forwarded(gateway: RunningGateway, fake: FakeOpenAI) -> None:
    openai_client(gateway.url).chat.completions.create(model="ollama-model", messages=MESSAGES)
    assert fake.for_model("llama3-up")[-1].headers["Authorization"] == "Bearer sk-client"


def test_every_provider_has_a_metrics_provider_name() -> None:
    """gen_ai_provider_name is never 'unknown' for a provider the config accepts."""
    from agentgateway.config import BUILTIN_PROVIDERS
    from agentgateway.telemetry._metrics import _PROVIDERS

    assert set(BUILTIN_PROVIDERS) | {"custom"} <= set(_PROVIDERS)
