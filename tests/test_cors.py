"""llm.policies.cors (issue 21): preflights answered by the gateway, CORS headers on answers to allowed origins
(plain, streamed and errors), nothing for other origins. The real gateway; httpx sends what a browser sends."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from conftest import TEST_KEY, RunningGateway, openai_client, start_gateway
from fakes.openai_upstream import FakeOpenAI, start_fake_openai

PREFLIGHT = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type,authorization"}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    fake: FakeOpenAI
    fake, stop = start_fake_openai()
    config = f"""
llm:
  policies:
    cors:
      allowOrigins: [http://localhost:15000, "https://*.example.com"]
      allowMethods: [POST, GET]
      allowHeaders: ["*"]
      exposeHeaders: [x-request-id]
      allowCredentials: true
      maxAge: 10m
  models:
  - {{name: gpt-4o-mini, provider: openAI, params: {{apiKey: {TEST_KEY}, baseUrl: "{fake.base_url}"}}}}
"""
    running = start_gateway(config, tmp_path_factory.mktemp("gw-cors"))
    yield running
    running.stop()
    stop()


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/chat/completions", "/v1/models"])
def test_a_preflight_from_an_allowed_origin_is_answered_by_the_gateway(gateway: RunningGateway, path: str) -> None:
    answer = httpx.options(gateway.url + path, headers={"Origin": "https://app.example.com", **PREFLIGHT})
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == "https://app.example.com"
    assert answer.headers["access-control-allow-methods"] == "POST, GET"
    assert answer.headers["access-control-allow-headers"] == "content-type,authorization"  # "*" echoes the ask
    assert answer.headers["access-control-allow-credentials"] == "true"
    assert answer.headers["access-control-max-age"] == "600"
    assert "origin" in answer.headers["vary"].lower()


def test_a_preflight_from_another_origin_gets_no_cors_headers(gateway: RunningGateway) -> None:
    answer = httpx.options(gateway.url + "/v1/chat/completions", headers={"Origin": "https://evil.test", **PREFLIGHT})
    assert answer.status_code == 200
    assert not [name for name in answer.headers if name.startswith("access-control-")]


def test_answers_to_an_allowed_origin_carry_the_cors_headers(gateway: RunningGateway) -> None:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    for extra in ({}, {"stream": True}):
        answer = httpx.post(
            gateway.url + "/v1/chat/completions", json={**body, **extra}, headers={"Origin": "http://localhost:15000"}
        )
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == "http://localhost:15000"
        assert answer.headers["access-control-expose-headers"] == "x-request-id"
    error = httpx.post(gateway.url + "/v1/chat/completions", json={**body, "model": "nope"},
                       headers={"Origin": "http://localhost:15000"})  # fmt: skip
    assert error.status_code == 404 and error.headers["access-control-allow-origin"] == "http://localhost:15000"
    other = httpx.post(gateway.url + "/v1/chat/completions", json=body, headers={"Origin": "http://localhost:1"})
    assert other.status_code == 200 and "access-control-allow-origin" not in other.headers


def test_clients_without_origin_are_served_as_before(gateway: RunningGateway) -> None:
    completion = openai_client(gateway.url).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )
    assert completion.choices[0].message.content
