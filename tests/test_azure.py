"""provider: azure (issue 21): Azure OpenAI's v1 API, dated api-versions with deployment paths, AI Foundry project
paths, the ``api-key`` header, and Entra ID tokens through azure-identity (its managed-identity endpoint faked on
loopback), plain and streamed through the real openai SDK. The fake refuses a wrong path, api-version or key."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from agentgateway.config import load_config
from agentgateway.providers.azure import AzureProvider
from conftest import RunningGateway, openai_client, start_gateway
from fakes.azure_upstream import IDENTITY_HEADER, FakeAzure, start_fake_azure

KEY = "azure-key-0123456789abcdef"
MESSAGES: Any = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAzure]:
    fake, stop = start_fake_azure(KEY)
    yield fake
    stop()


@pytest.fixture(scope="module")
def gateway(fake: FakeAzure, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    base = fake.origin
    config = f"""
llm:
  models:
  - name: az-v1
    provider: azure
    params: {{model: gpt-4o-mini, apiKey: {KEY}, baseUrl: "{base}", azureResourceName: res, azureResourceType: openAI}}
  - name: az-dated
    provider: azure
    params:
      model: my-deployment
      apiKey: {KEY}
      baseUrl: "{base}"
      azureResourceName: res
      azureResourceType: openAI
      azureApiVersion: 2024-10-21
  - name: az-foundry
    provider: azure
    params:
      apiKey: {KEY}
      baseUrl: "{base}"
      azureResourceName: res
      azureResourceType: foundry
      azureProjectName: my-project
  - name: az-entra
    provider: azure
    params: {{baseUrl: "{base}", azureResourceName: res, azureResourceType: openAI, azureApiVersion: preview}}
  - name: az-wrong-key
    provider: azure
    params: {{apiKey: not-the-key, baseUrl: "{base}", azureResourceName: res, azureResourceType: openAI}}
"""
    env = {"IDENTITY_ENDPOINT": f"{base}/msi/token", "IDENTITY_HEADER": IDENTITY_HEADER}
    running = start_gateway(config, tmp_path_factory.mktemp("gw-azure"), env=env)
    yield running
    running.stop()


def test_the_v1_api_with_an_api_key_plain_and_streamed(gateway: RunningGateway, fake: FakeAzure) -> None:
    client = openai_client(gateway.url)
    completion = client.chat.completions.create(model="az-v1", messages=MESSAGES)
    assert completion.choices[0].message.content == "hello azure"
    assert completion.model == "az-v1"
    seen = fake.requests[-1]
    assert (seen.path, seen.query, seen.body["model"]) == ("/openai/v1/chat/completions", {}, "gpt-4o-mini")
    assert seen.headers["api-key"] == KEY
    assert "Authorization" not in seen.headers  # the client's own key is not forwarded to Azure
    chunks = list(client.chat.completions.create(model="az-v1", messages=MESSAGES, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "hello azure"
    assert fake.requests[-1].body["stream_options"] == {"include_usage": True}


def test_a_dated_api_version_goes_to_the_deployment_path(gateway: RunningGateway, fake: FakeAzure) -> None:
    client = openai_client(gateway.url)
    client.chat.completions.create(model="az-dated", messages=MESSAGES)
    seen = fake.requests[-1]
    assert seen.path == "/openai/deployments/my-deployment/chat/completions"
    assert seen.query == {"api-version": "2024-10-21"}
    chunks = list(client.chat.completions.create(model="az-dated", messages=MESSAGES, stream=True))
    assert chunks and fake.requests[-1].kind == "deployment"


def test_foundry_goes_to_the_project_path(gateway: RunningGateway, fake: FakeAzure) -> None:
    openai_client(gateway.url).chat.completions.create(model="az-foundry", messages=MESSAGES)
    seen = fake.requests[-1]
    assert (seen.path, seen.query) == ("/api/projects/my-project/openai/v1/chat/completions", {})
    assert seen.body["model"] == "az-foundry"  # no params.model: the client's model is the deployment


def test_without_a_key_entra_id_tokens_are_fetched_once_and_sent_as_bearer(
    gateway: RunningGateway, fake: FakeAzure
) -> None:
    client = openai_client(gateway.url)
    client.chat.completions.create(model="az-entra", messages=MESSAGES)
    list(client.chat.completions.create(model="az-entra", messages=MESSAGES, stream=True))
    seen = fake.requests[-1]
    assert seen.query == {"api-version": "preview"}
    assert seen.headers["Authorization"] in {f"Bearer {t}" for t in fake.tokens_issued}
    assert "api-key" not in seen.headers
    assert len(fake.token_requests) == 1  # cached: the second request reused the token
    assert fake.tokens_issued[0] not in gateway.log()


def test_azure_refusing_the_key_reaches_the_client_as_its_401(gateway: RunningGateway) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        openai_client(gateway.url).chat.completions.create(model="az-wrong-key", messages=MESSAGES)
    assert "not-the-key" not in str(caught.value)


@pytest.mark.parametrize(
    ("params", "url"),
    [
        ("azureResourceType: openAI", "https://res.openai.azure.com/openai/v1/chat/completions"),
        ("azureResourceType: azureOpenAI", "https://res.openai.azure.com/openai/v1/chat/completions"),
        (
            "azureResourceType: foundry",
            "https://res.services.ai.azure.com/api/projects/res/openai/v1/chat/completions",
        ),
        (
            "azureResourceType: aiServices, azureProjectName: p",
            "https://res.services.ai.azure.com/api/projects/p/openai/v1/chat/completions",
        ),
    ],
)
def test_the_default_host_is_built_from_the_resource_as_agentgateway_does(params: str, url: str) -> None:
    config = load_config(
        f"llm: {{models: [{{name: m, provider: azure, params: {{apiKey: k, azureResourceName: res, {params}}}}}]}}"
    )
    assert AzureProvider(config.llm.models[0]).endpoint.url == url


def test_azure_without_its_resource_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(Exception, match=r"llm.models\[0\]: params.azureResourceName is required for azure"):
        load_config("llm: {models: [{name: m, provider: azure, params: {azureResourceType: openAI}}]}")
