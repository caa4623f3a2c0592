"""Failover inside one request (issue 15): a failed attempt moves the same request to the next target of a
``failover`` virtual model before any byte reaches the client; after content reached the client it is never retried;
failed targets are evicted and skipped by later requests.

The real openai SDK is the client, the real ``agentgateway`` command serves, and every upstream is a local fake that
records each request it receives, so each test counts the attempts: one request to each failed target, one to the
target that answered, none to a target that was evicted or came after the answer.

Every trigger has its own virtual model and its own targets (``fo-<trigger>-<mode>``): eviction of one test's failed
target never changes what another test sees.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import openai
import pytest
from conftest import TEST_KEY, RunningGateway, free_port, openai_client, start_gateway
from fakes.anthropic_upstream import FakeAnthropic, start_fake_anthropic
from fakes.bedrock_upstream import FakeBedrock, start_fake_bedrock
from fakes.gemini_upstream import FakeGoogle, start_fake_google
from fakes.openai_upstream import STORY, FakeOpenAI, start_fake_openai
from fakes.server import blackhole

BEDROCK_KEY = "ABSKbedrock-failover-test-key"
ANSWER = " ".join(STORY)  # what the fake OpenAI answers
MODES = ("plain", "stream")
AWS_ENV_VARS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_BEARER_TOKEN_BEDROCK",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
)
# Slow enough (connect 1 s, first byte 2 s) for a loaded machine to answer the healthy targets, and far below the
# 15 s the client waits: a gateway that ignored them would wait for the OS (minutes) or the fake (30 s) instead.
TIMEOUTS = "timeouts: {connect: 1, firstByte: 2, idle: 5}"
CLIENT_TIMEOUT = 15.0


@dataclass
class Upstreams:
    openai: FakeOpenAI
    anthropic: FakeAnthropic
    bedrock: FakeBedrock
    google: FakeGoogle
    refused: str  # a base URL nothing listens on
    blackholed: str  # a base URL whose connects never complete


@pytest.fixture(scope="module")
def upstreams() -> Iterator[Upstreams]:
    fake_openai, stop_openai = start_fake_openai()
    fake_anthropic, stop_anthropic = start_fake_anthropic(TEST_KEY)
    fake_bedrock, stop_bedrock = start_fake_bedrock(api_keys={BEDROCK_KEY})
    fake_google, stop_google = start_fake_google(TEST_KEY)
    hole, close_hole = blackhole()
    yield Upstreams(
        fake_openai,
        fake_anthropic,
        fake_bedrock,
        fake_google,
        refused=f"http://127.0.0.1:{free_port()}/v1",
        blackholed=f"http://127.0.0.1:{hole}/v1",
    )
    close_hole()
    stop_google()
    stop_bedrock()
    stop_anthropic()
    stop_openai()


# -- the config --------------------------------------------------------------------------------------------------------


def openai_entry(name: str, upstream_model: str, base_url: str) -> str:
    return f"""
  - name: {name}
    provider: openAI
    params: {{model: "{upstream_model}", apiKey: {TEST_KEY}, baseUrl: "{base_url}"}}"""


def anthropic_entry(name: str, upstream_model: str, origin: str) -> str:
    return f"""
  - name: {name}
    provider: anthropic
    params: {{model: "{upstream_model}", apiKey: {TEST_KEY}, baseUrl: "{origin}"}}"""


def bedrock_entry(name: str, model_id: str, base_url: str) -> str:
    return f"""
  - name: {name}
    provider: bedrock
    params: {{model: "{model_id}", awsRegion: us-east-1, apiKey: {BEDROCK_KEY}, baseUrl: "{base_url}"}}"""


def gemini_entry(name: str, upstream_model: str, origin: str) -> str:
    return f"""
  - name: {name}
    provider: gemini
    params: {{model: "{upstream_model}", apiKey: {TEST_KEY}, baseUrl: "{origin}"}}"""


def failover(name: str, *targets: str) -> str:
    listed = "".join(f"\n        - {{model: {target}, priority: {index}}}" for index, target in enumerate(targets))
    return f"""
  - name: {name}
    routing:
      failover:
        targets:{listed}"""


# trigger -> (base URL of the failing target, the upstream model it is asked for; None: the fake never sees it)
def trigger_targets(up: Upstreams, mode: str) -> dict[str, tuple[str, str | None]]:
    fake = up.openai.base_url
    return {
        "connect-refused": (up.refused, None),
        "dns-failure": ("http://nonexistent.invalid/v1", None),
        "connect-timeout": (up.blackholed, None),
        "first-byte-timeout": (fake, f"bad-fbt-{mode}-sleep-headers"),
        "status-500": (fake, f"bad-500-{mode}-500-text"),
        "status-503": (fake, f"bad-503-{mode}-503"),
        "status-429": (fake, f"bad-429-{mode}-429"),
    }


TRIGGERS = ("connect-refused", "dns-failure", "connect-timeout", "first-byte-timeout", "status-500", "status-503",
            "status-429")  # fmt: skip
FIRST_EVENT_ERRORS = ("openai", "anthropic", "bedrock", "gemini")
PROVIDER_5XX = ("anthropic-529", "bedrock-503", "gemini-503")
# an error after the first content: in separate writes, and in the same write as the content (one read)
AFTER_CONTENT = ("midstream-error", "content-then-error")


def first_event_error_entry(up: Upstreams, provider: str) -> tuple[str, str]:
    """The entry (named ``fe-<provider>``) whose streams start with an error event, and its upstream model name."""
    if provider == "openai":
        return openai_entry("fe-openai", "fe-openai-first-error", up.openai.base_url), "fe-openai-first-error"
    if provider == "anthropic":
        return anthropic_entry("fe-anthropic", "claude-fe-firsterror", up.anthropic.origin), "claude-fe-firsterror"
    if provider == "bedrock":
        model_id = "fe-bedrock-first-exception"
        return bedrock_entry("fe-bedrock", model_id, up.bedrock.base_url), model_id
    return gemini_entry("fe-gemini", "gemini-fe-first-error", up.google.origin), "gemini-fe-first-error"


def provider_5xx_entry(up: Upstreams, case: str, mode: str) -> tuple[str, str]:
    name = f"p5-{case}-{mode}"
    if case == "anthropic-529":
        return anthropic_entry(name, f"claude-{name}-529", up.anthropic.origin), f"claude-{name}-529"
    if case == "bedrock-503":
        return bedrock_entry(name, f"{name}-unavailable", up.bedrock.base_url), f"{name}-unavailable"
    return gemini_entry(name, f"gemini-{name}-503", up.google.origin), f"gemini-{name}-503"


def failover_config(up: Upstreams) -> str:
    models: list[str] = []
    virtual: list[str] = []
    fake = up.openai.base_url
    for mode in MODES:
        for trigger, (base_url, upstream_model) in trigger_targets(up, mode).items():
            bad, good = f"bad-{trigger}-{mode}", f"good-{trigger}-{mode}"
            models.append(openai_entry(bad, upstream_model or "never-reached", base_url))
            models.append(openai_entry(good, f"ok-{trigger}-{mode}", fake))
            virtual.append(failover(f"fo-{trigger}-{mode}", bad, good))
        for case in PROVIDER_5XX:
            entry, _ = provider_5xx_entry(up, case, mode)
            models.append(entry)
            models.append(openai_entry(f"good-p5-{case}-{mode}", f"ok-p5-{case}-{mode}", fake))
            virtual.append(failover(f"fo-p5-{case}-{mode}", f"p5-{case}-{mode}", f"good-p5-{case}-{mode}"))
        # OpenAI (503) -> Bedrock (429 ThrottlingException) -> Gemini (answers)
        models.append(openai_entry(f"xp-openai-{mode}", f"xp-openai-{mode}-503", fake))
        models.append(bedrock_entry(f"xp-bedrock-{mode}", f"xp-bedrock-{mode}-throttle", up.bedrock.base_url))
        models.append(gemini_entry(f"xp-gemini-{mode}", f"gemini-xp-{mode}", up.google.origin))
        virtual.append(failover(f"fo-chain-{mode}", f"xp-openai-{mode}", f"xp-bedrock-{mode}", f"xp-gemini-{mode}"))
        # every attempt fails: the last one's status is the client's
        models.append(openai_entry(f"af-503-{mode}", f"af-{mode}-503", fake))
        models.append(openai_entry(f"af-429-{mode}", f"af-{mode}-429", fake))
        models.append(openai_entry(f"af2-429-{mode}", f"af2-{mode}-429", fake))
        models.append(openai_entry(f"af2-503-{mode}", f"af2-{mode}-503", fake))
        virtual.append(failover(f"fo-allfail-429-last-{mode}", f"af-503-{mode}", f"af-429-{mode}"))
        virtual.append(failover(f"fo-allfail-503-last-{mode}", f"af2-429-{mode}", f"af2-503-{mode}"))
    for provider in FIRST_EVENT_ERRORS:
        entry, _ = first_event_error_entry(up, provider)
        models.append(entry)
        models.append(openai_entry(f"good-fe-{provider}", f"ok-fe-{provider}", fake))
        virtual.append(failover(f"fo-fe-{provider}", f"fe-{provider}", f"good-fe-{provider}"))
    # content came first, then the stream failed: no retry
    for fault in AFTER_CONTENT:
        models.append(openai_entry(f"ms-bad-{fault}", f"ms-{fault}", fake))
        models.append(openai_entry(f"ms-good-{fault}", f"ok-after-{fault}-target", fake))
        virtual.append(failover(f"fo-ms-{fault}", f"ms-bad-{fault}", f"ms-good-{fault}"))
    # eviction: a 503 with Retry-After: 60 keeps the target out for the whole test
    models.append(openai_entry("ev-bad", "ev-evict60", fake))
    models.append(openai_entry("ev-good", "ok-ev", fake))
    virtual.append(failover("fo-evict", "ev-bad", "ev-good"))
    # every target evicted: the one evicted longest ago is still tried -- the second in priority here (evicted
    # first, through a virtual model of its own), which answers its second request
    models.append(openai_entry("ae-first", "ae-first-evict60", fake))
    models.append(openai_entry("ae-second", "ae-second-fail-once", fake))
    virtual.append(failover("fo-evict-second", "ae-second"))
    virtual.append(failover("fo-evict-first", "ae-first"))
    virtual.append(failover("fo-all-evicted", "ae-first", "ae-second"))
    # health: evicted only after consecutiveFailures failures that match unhealthyExpression
    models.append(
        openai_entry("hc-bad", "hc-503", fake)
        + """
    health:
      unhealthyExpression: "response.code >= 500"
      eviction: {duration: 60s, consecutiveFailures: 2}"""
    )
    models.append(openai_entry("hc-good", "ok-hc", fake))
    virtual.append(failover("fo-health", "hc-bad", "hc-good"))
    return "llm:\n  " + TIMEOUTS + "\n  models:" + "".join(models) + "\n  virtualModels:" + "".join(virtual) + "\n"


@pytest.fixture(scope="module")
def gateway(upstreams: Upstreams, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    running = start_gateway(
        failover_config(upstreams),
        tmp_path_factory.mktemp("gw-failover"),
        env={"AWS_EC2_METADATA_DISABLED": "true"},
        unset=AWS_ENV_VARS,
    )
    yield running
    running.stop()


# -- helpers -----------------------------------------------------------------------------------------------------------


def client(gateway: RunningGateway) -> openai.OpenAI:
    return openai_client(gateway.url).with_options(timeout=CLIENT_TIMEOUT)


def ask(gateway: RunningGateway, model: str, stream: bool, text: str = "hello") -> str:
    """The answer's text, through the openai SDK, whole or streamed."""
    messages: Any = [{"role": "user", "content": text}]
    if not stream:
        completion = client(gateway).chat.completions.create(model=model, messages=messages)
        return completion.choices[0].message.content or ""
    pieces = []
    for chunk in client(gateway).chat.completions.create(model=model, messages=messages, stream=True):
        for choice in chunk.choices:
            pieces.append(choice.delta.content or "")
    return "".join(pieces)


# -- each trigger, plain and streamed ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("trigger", TRIGGERS)
def test_a_failed_attempt_moves_the_request_to_the_next_target(
    gateway: RunningGateway, upstreams: Upstreams, trigger: str, mode: str
) -> None:
    _, failing_model = trigger_targets(upstreams, mode)[trigger]
    fake = upstreams.openai
    assert ask(gateway, f"fo-{trigger}-{mode}", mode == "stream") == ANSWER
    assert fake.count(f"ok-{trigger}-{mode}") == 1, "the next target answers the same request, once"
    if failing_model is not None:
        assert fake.count(failing_model) == 1, "the failed target was asked once, not retried"
    # the request that moved is the client's request (same messages), not something else
    moved = fake.for_model(f"ok-{trigger}-{mode}")[0].body
    assert moved["messages"] == [{"role": "user", "content": "hello"}]
    assert bool(moved.get("stream")) == (mode == "stream")


@pytest.mark.parametrize("provider", FIRST_EVENT_ERRORS)
def test_a_stream_whose_first_event_is_an_error_moves_to_the_next_target(
    gateway: RunningGateway, upstreams: Upstreams, provider: str
) -> None:
    _, failing_model = first_event_error_entry(upstreams, provider)
    fake_of = {"openai": upstreams.openai, "anthropic": upstreams.anthropic, "bedrock": upstreams.bedrock,
               "gemini": upstreams.google}  # fmt: skip
    assert ask(gateway, f"fo-fe-{provider}", stream=True) == ANSWER
    assert fake_of[provider].count(failing_model) == 1
    assert upstreams.openai.count(f"ok-fe-{provider}") == 1


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", PROVIDER_5XX)
def test_each_providers_server_error_moves_to_the_next_target(
    gateway: RunningGateway, upstreams: Upstreams, case: str, mode: str
) -> None:
    _, failing_model = provider_5xx_entry(upstreams, case, mode)
    fake = {"anthropic-529": upstreams.anthropic, "bedrock-503": upstreams.bedrock, "gemini-503": upstreams.google}
    assert ask(gateway, f"fo-p5-{case}-{mode}", mode == "stream") == ANSWER
    assert fake[case].count(failing_model) == 1
    assert upstreams.openai.count(f"ok-p5-{case}-{mode}") == 1


@pytest.mark.parametrize("mode", MODES)
def test_failover_across_providers_openai_then_bedrock_then_gemini(
    gateway: RunningGateway, upstreams: Upstreams, mode: str
) -> None:
    answer = ask(gateway, f"fo-chain-{mode}", mode == "stream", text="hello chain")
    assert answer == "You said: hello chain", "Gemini, the third target, answers"
    assert upstreams.openai.count(f"xp-openai-{mode}-503") == 1
    assert upstreams.bedrock.count(f"xp-bedrock-{mode}-throttle") == 1
    assert upstreams.google.count(f"gemini-xp-{mode}") == 1
    # each provider got the request in its own wire format, translated from the one client request
    bedrock_body = next(r.body for r in upstreams.bedrock.requests if r.model_id == f"xp-bedrock-{mode}-throttle")
    assert bedrock_body["messages"] == [{"role": "user", "content": [{"text": "hello chain"}]}]


# -- when every attempt fails ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_when_every_attempt_fails_the_client_gets_the_last_429_with_its_retry_after(
    gateway: RunningGateway, upstreams: Upstreams, mode: str
) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        ask(gateway, f"fo-allfail-429-last-{mode}", mode == "stream")
    response = caught.value.response
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert response.json()["error"]["message"] == "Rate limit reached for requests"
    assert upstreams.openai.count(f"af-{mode}-503") == 1
    assert upstreams.openai.count(f"af-{mode}-429") == 1


@pytest.mark.parametrize("mode", MODES)
def test_when_every_attempt_fails_the_client_gets_the_last_status_not_the_first(
    gateway: RunningGateway, upstreams: Upstreams, mode: str
) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        ask(gateway, f"fo-allfail-503-last-{mode}", mode == "stream")
    assert caught.value.status_code == 503
    assert "overloaded" in caught.value.response.json()["error"]["message"]
    assert upstreams.openai.count(f"af2-{mode}-429") == 1
    assert upstreams.openai.count(f"af2-{mode}-503") == 1


# -- after content reached the client: no retry ------------------------------------------------------------------------


@pytest.mark.parametrize("fault", AFTER_CONTENT)
def test_a_stream_that_fails_after_content_is_not_retried(
    gateway: RunningGateway, upstreams: Upstreams, fault: str
) -> None:
    """The first upstream event is content, not an error: the stream is the client's, and its failure ends it with the
    error event -- also when the content and the error arrive in one read (nothing was forwarded yet, but the
    upstream already generated and billed the content; whether a retry happens must not depend on read sizes)."""
    received: list[str] = []
    stream = client(gateway).chat.completions.create(
        model=f"fo-ms-{fault}", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            received.extend(choice.delta.content or "" for choice in chunk.choices)
    assert STORY[0] in "".join(received), "the content before the failure reached the client"
    assert "error while processing" in caught.value.message
    assert upstreams.openai.count(f"ms-{fault}") == 1
    assert upstreams.openai.count(f"ok-after-{fault}-target") == 0, "no second attempt once content came"


# -- eviction ----------------------------------------------------------------------------------------------------------


def test_a_failed_target_is_evicted_and_skipped_by_the_next_requests(
    gateway: RunningGateway, upstreams: Upstreams
) -> None:
    fake = upstreams.openai
    assert ask(gateway, "fo-evict", stream=False) == ANSWER
    assert (fake.count("ev-evict60"), fake.count("ok-ev")) == (1, 1)
    # Retry-After: 60 -> evicted for a minute: the next requests go straight to the second target
    assert ask(gateway, "fo-evict", stream=False) == ANSWER
    assert ask(gateway, "fo-evict", stream=True) == ANSWER
    assert (fake.count("ev-evict60"), fake.count("ok-ev")) == (1, 3), "the evicted target must see no request"


def test_when_every_target_is_evicted_the_one_evicted_longest_ago_is_still_tried(
    gateway: RunningGateway, upstreams: Upstreams
) -> None:
    fake = upstreams.openai
    # evict the second target first, then the first one (each fails with Retry-After: 60)
    with pytest.raises(openai.InternalServerError):
        ask(gateway, "fo-evict-second", stream=False)
    with pytest.raises(openai.InternalServerError):
        ask(gateway, "fo-evict-first", stream=False)
    assert (fake.count("ae-first-evict60"), fake.count("ae-second-fail-once")) == (1, 1)
    # never an outage by policy alone: the one evicted longest ago (not the first by priority) is tried, and answers
    assert ask(gateway, "fo-all-evicted", stream=False) == ANSWER
    assert (fake.count("ae-first-evict60"), fake.count("ae-second-fail-once")) == (1, 2)


def test_health_evicts_only_after_consecutive_failures(gateway: RunningGateway, upstreams: Upstreams) -> None:
    fake = upstreams.openai
    assert ask(gateway, "fo-health", stream=False) == ANSWER
    assert fake.count("hc-503") == 1
    assert ask(gateway, "fo-health", stream=False) == ANSWER
    assert fake.count("hc-503") == 2, "one failure of consecutiveFailures: 2 does not evict"
    assert ask(gateway, "fo-health", stream=False) == ANSWER
    assert fake.count("hc-503") == 2, "two consecutive failures evict it for the 60 s duration"
    assert fake.count("ok-hc") == 3
