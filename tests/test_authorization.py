"""authorization.rules (issue 21): CEL over request, jwt and apiKey, in llm.policies and per model; a caller no
rule lets in gets 403 model_authorization_denied. The identity comes from policy/ (API keys here), through the
real openai SDK."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest
from conftest import TEST_KEY, RunningGateway, openai_client, start_gateway
from fakes.openai_upstream import FakeOpenAI, start_fake_openai

MESSAGES: Any = [{"role": "user", "content": "hi"}]
GOLD, SILVER, OUTSIDER = "sk-gold-0123456789", "sk-silver-0123456789", "sk-outsider-0123456789"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    fake, stop = start_fake_openai()
    yield fake
    stop()


@pytest.fixture(scope="module")
def gateway(fake: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    base = fake.base_url
    config = f"""
llm:
  policies:
    apiKey:
      keys:
      - {{key: {GOLD}, metadata: {{name: gold, tier: gold}}}}
      - {{key: {SILVER}, metadata: {{name: silver, tier: silver}}}}
      - {{key: {OUTSIDER}, metadata: {{name: outsider, tier: none}}}}
    authorization:
      rules:
      - 'apiKey.tier == "gold" || apiKey.tier == "silver"'
      - 'request.headers["x-break-glass"] == "yes"'
  models:
  - {{name: open-model, provider: openAI, params: {{model: open-up, apiKey: {TEST_KEY}, baseUrl: "{base}"}}}}
  - name: gold-model
    provider: openAI
    params: {{model: gold-up, apiKey: {TEST_KEY}, baseUrl: "{base}"}}
    authorization: {{rules: ['apiKey.tier == "gold"', 'jwt.email.endsWith("@example.com")']}}
  - name: silver-fallback
    provider: openAI
    params: {{model: fallback-up, apiKey: {TEST_KEY}, baseUrl: "{base}"}}
  virtualModels:
  - name: best
    routing: {{failover: {{targets: [{{model: gold-model, priority: 0}}, {{model: silver-fallback, priority: 1}}]}}}}
"""
    running = start_gateway(config, tmp_path_factory.mktemp("gw-authz"))
    yield running
    running.stop()


def client(gateway: RunningGateway, key: str, **headers: str) -> openai.OpenAI:
    return openai_client(gateway.url, key, default_headers=headers)


def test_the_gateway_wide_rules_admit_by_key_metadata_or_header(gateway: RunningGateway) -> None:
    assert client(gateway, SILVER).chat.completions.create(model="open-model", messages=MESSAGES).choices
    with pytest.raises(openai.PermissionDeniedError) as caught:
        client(gateway, OUTSIDER).chat.completions.create(model="open-model", messages=MESSAGES)
    assert caught.value.code == "model_authorization_denied"
    assert "llm.policies.authorization" in caught.value.message
    assert OUTSIDER not in caught.value.message
    allowed = client(gateway, OUTSIDER, **{"x-break-glass": "yes"})
    assert allowed.chat.completions.create(model="open-model", messages=MESSAGES).choices


def test_a_models_rules_hold_for_that_model(gateway: RunningGateway, fake: FakeOpenAI) -> None:
    client(gateway, GOLD).chat.completions.create(model="gold-model", messages=MESSAGES)
    assert fake.last().body["model"] == "gold-up"
    before = fake.count("gold-up")
    with pytest.raises(openai.PermissionDeniedError) as caught:
        client(gateway, SILVER).chat.completions.create(model="gold-model", messages=MESSAGES, stream=True)
    assert caught.value.code == "model_authorization_denied"
    assert "llm.models[1].authorization" in caught.value.message
    assert fake.count("gold-up") == before  # nothing went upstream


def test_a_virtual_model_passes_over_targets_the_caller_may_not_use(gateway: RunningGateway, fake: FakeOpenAI) -> None:
    client(gateway, GOLD).chat.completions.create(model="best", messages=MESSAGES)
    assert fake.last().body["model"] == "gold-up"
    completion = client(gateway, SILVER).chat.completions.create(model="best", messages=MESSAGES)
    assert completion.model == "best"
    assert fake.last().body["model"] == "fallback-up"
