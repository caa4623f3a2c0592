"""Request shaping by CEL (issue 21): ``llm.policies.transformations`` computes request headers before a model is
chosen (agentgateway's examples/llm-cost-routing: a cost class from the body, used by ``matches``), and
``models[].transformation`` / ``finalTransformation`` set body fields; an expression that fails on a request is a
400 naming its path. Through the real openai SDK against the fake OpenAI upstream."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest
from conftest import TEST_KEY, RunningGateway, openai_client, start_gateway
from fakes.openai_upstream import FakeOpenAI, start_fake_openai

MESSAGES: Any = [{"role": "user", "content": "hi"}]
COST_CLASS = (
    'default(json(request.body).metadata.cost_tier, "") != "" ? default(json(request.body).metadata.cost_tier, "")'
    ' : (default(json(request.body).max_tokens, 1024) > 4096 ? "premium" : '
    'default(json(request.body).max_tokens, 1024) > 1024 ? "balanced" : "economy")'
)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    fake, stop = start_fake_openai()
    yield fake
    stop()


def tier(name: str, upstream: str, base: str) -> str:
    return f"""
  - name: smart-model
    provider: openAI
    params: {{model: {upstream}, apiKey: {TEST_KEY}, baseUrl: "{base}"}}
    matches: [{{headers: [{{name: x-gateway-cost-class, value: {{exact: {name}}}}}]}}]
    requestHeaders: {{remove: [x-gateway-cost-class]}}"""


@pytest.fixture(scope="module")
def gateway(fake: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    base = fake.base_url
    config = f"""
llm:
  policies:
    transformations:
      request:
        set:
          x-gateway-cost-class: '{COST_CLASS}'
          x-strict: 'json(request.body).user.startsWith("u")'
        remove: [x-drop-me]
  models:{tier("economy", "cheap-up", base)}{tier("balanced", "mid-up", base)}{tier("premium", "big-up", base)}
  - name: shaped
    provider: openAI
    params: {{model: shaped-up, apiKey: {TEST_KEY}, baseUrl: "{base}"}}
    transformation: {{max_tokens: 'default(llmRequest.max_tokens, 10) * 2'}}
    finalTransformation: {{temperature: 'llmRequest.max_tokens > 100 ? 0.1 : 0.9'}}
  - name: strict-final
    provider: openAI
    params: {{model: strict-up, apiKey: {TEST_KEY}, baseUrl: "{base}"}}
    finalTransformation: {{top_p: 'llmRequest.metadata.missing'}}
"""
    running = start_gateway(config, tmp_path_factory.mktemp("gw-xform"))
    yield running
    running.stop()


@pytest.mark.parametrize(
    ("extra", "upstream"),
    [
        ({"max_tokens": 100}, "cheap-up"),
        ({"max_tokens": 2000}, "mid-up"),
        ({"max_tokens": 8000}, "big-up"),
        ({"max_tokens": 100, "metadata": {"cost_tier": "premium"}}, "big-up"),
    ],
)
def test_a_header_computed_before_routing_picks_the_entry(
    gateway: RunningGateway, fake: FakeOpenAI, extra: dict[str, Any], upstream: str
) -> None:
    body: dict[str, Any] = {"user": "u1", **extra}
    completion = openai_client(gateway.url).chat.completions.create(
        model="smart-model", messages=MESSAGES, extra_body=body
    )
    assert completion.model == "smart-model"
    assert fake.last().body["model"] == upstream


def test_a_transformation_that_fails_on_the_request_is_a_400_naming_its_path(gateway: RunningGateway) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client(gateway.url).chat.completions.create(model="smart-model", messages=MESSAGES)  # no "user"
    assert "llm.policies.transformations.request.set.x-strict" in str(caught.value)


def test_transformation_then_final_transformation_set_body_fields(gateway: RunningGateway, fake: FakeOpenAI) -> None:
    completion = openai_client(gateway.url).chat.completions.create(
        model="shaped", messages=MESSAGES, max_tokens=60, extra_body={"user": "u1"}
    )
    assert completion.model == "shaped"
    sent = fake.last().body
    assert (sent["model"], sent["max_tokens"], sent["temperature"]) == ("shaped-up", 120, 0.1)


def test_a_final_transformation_that_fails_is_a_400_naming_its_path(gateway: RunningGateway) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client(gateway.url).chat.completions.create(
            model="strict-final", messages=MESSAGES, extra_body={"user": "u1"}, stream=True
        )
    assert "llm.models[4].finalTransformation.top_p" in str(caught.value)
