"""Media types (issue 20): the aliases clients send (``image/jpg``, ``image/x-png``, ``audio/mpeg``) reach every
provider under the registered name it accepts, through one normalisation (openai_input.parse_data_url), checked
end to end through the openai SDK against the fakes, which validate with the providers' own types (anthropic's
``media_type`` literal, botocore's image ``format`` enum, google-genai's Blob)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import RunningGateway, openai_client, start_gateway
from fakes.anthropic_upstream import FakeAnthropic, start_fake_anthropic
from fakes.bedrock_upstream import FakeBedrock, start_fake_bedrock
from fakes.gemini_upstream import FakeGoogle, start_fake_google

JPEG = base64.b64encode(b"\xff\xd8\xff\xe0" + b"\0" * 16).decode()
KEY = "test-key"


@pytest.fixture(scope="module")
def fakes() -> Iterator[tuple[FakeAnthropic, FakeBedrock, FakeGoogle]]:
    anthropic, stop_anthropic = start_fake_anthropic(KEY)
    bedrock, stop_bedrock = start_fake_bedrock(api_keys={KEY})
    google, stop_google = start_fake_google(KEY)
    yield anthropic, bedrock, google
    stop_anthropic()
    stop_bedrock()
    stop_google()


@pytest.fixture(scope="module")
def gateway(
    fakes: tuple[FakeAnthropic, FakeBedrock, FakeGoogle], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningGateway]:
    anthropic, bedrock, google = fakes
    config = f"""
llm:
  models:
  - {{name: anthropic, provider: anthropic, params: {{model: claude-x, apiKey: {KEY}, baseUrl: "{anthropic.origin}"}}}}
  - name: bedrock
    provider: bedrock
    params: {{model: anthropic.claude-x, apiKey: {KEY}, awsRegion: us-east-1, baseUrl: "{bedrock.base_url}"}}
  - {{name: gemini, provider: gemini, params: {{model: gemini-2.5-flash, apiKey: {KEY}, baseUrl: "{google.origin}"}}}}
"""
    running = start_gateway(config, tmp_path_factory.mktemp("gw-media"))
    yield running
    running.stop()


def image(media_type: str) -> list[Any]:
    url = f"data:{media_type};base64,{JPEG}"
    return [
        {"role": "user", "content": [{"type": "text", "text": "see"}, {"type": "image_url", "image_url": {"url": url}}]}
    ]


@pytest.mark.parametrize("alias", ["image/jpg", "IMAGE/JPG", "image/pjpeg"])
def test_jpeg_aliases_reach_every_provider_as_image_jpeg(
    gateway: RunningGateway, fakes: tuple[FakeAnthropic, FakeBedrock, FakeGoogle], alias: str
) -> None:
    anthropic, bedrock, google = fakes
    client = openai_client(gateway.url)
    for model in ("anthropic", "bedrock", "gemini"):
        client.chat.completions.create(model=model, messages=image(alias))
    assert anthropic.last().body["messages"][0]["content"][1]["source"]["media_type"] == "image/jpeg"
    assert bedrock.last().body["messages"][0]["content"][1]["image"]["format"] == "jpeg"
    assert google.last().body["contents"][0]["parts"][1]["inlineData"]["mimeType"] == "image/jpeg"
