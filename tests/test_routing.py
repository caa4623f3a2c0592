"""Routing (issue 15): virtual models (weighted, conditional on CEL), ``matches`` on headers, ``visibility: internal``,
``defaults`` / ``overrides`` of body fields, ``requestHeaders`` / ``responseHeaders`` (agentgateway's HeaderModifier:
``add`` and ``set`` maps, a ``remove`` list), ``providers[]`` with ``provider: {reference}``, the specificity order of
model patterns, and the config errors of all of these.

The real openai SDK is the client and the real ``agentgateway`` command serves; the fake OpenAI upstream records
every request, so each test reads where a request went (the upstream model name each entry sends) and what it held.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from conftest import TEST_KEY, RunningGateway, openai_client, start_gateway
from fakes.openai_upstream import STORY, FakeOpenAI, Recorded, start_fake_openai

ANSWER = " ".join(STORY)
MESSAGES: Any = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    fake, stop = start_fake_openai()
    yield fake
    stop()


def entry(name: str, upstream_model: str, base_url: str, extra: str = "") -> str:
    return f"""
  - name: "{name}"
    provider: openAI
    params: {{model: "{upstream_model}", apiKey: {TEST_KEY}, baseUrl: "{base_url}"}}{extra}"""


TIER_ALPHA = """
    matches:
    - headers:
      - name: X-Team
        value: {exact: alpha}"""
TIER_BETA = """
    matches:
    - headers:
      - name: x-team
        value: {regex: "^beta(-[0-9]+)?$"}
    - headers:
      - {name: x-a, value: {exact: "1"}}
      - {name: x-b, value: {exact: "2"}}"""
SHAPED = """
    defaults: {temperature: 0.3, max_tokens: 50}
    overrides: {top_p: 0.5, presence_penalty: 0.1}"""
REQUEST_HEADERS = """
    requestHeaders:
      add: {x-added: one}
      set: {x-set: fixed}"""
RESPONSE_HEADERS = """
    responseHeaders:
      add: {x-resp-added: "yes"}
      set: {x-resp-set: fixed}
      remove: [x-request-id]"""
VIRTUAL_MODELS = """
  virtualModels:
  - name: split
    routing:
      weighted:
        targets:
        - {model: w-a, weight: 3}
        - {model: w-b, weight: 1}
  - name: smart
    routing:
      conditional:
        targets:
        - when: 'json(request.body).route == "code"'
          model: c-code
        - when: 'default(llmRequest.max_tokens, 9999) > 4096'
          model: c-big
        - when: 'request.headers["x-tier"] == "gold"'
          model: c-gold
        - model: c-default
  - name: via-hidden
    routing:
      failover:
        targets:
        - {model: hidden, priority: 0}
"""


def routing_config(base_url: str) -> str:
    custom = "{custom: {formats: [{type: completions}]}}"
    head = f"""
llm:
  providers:
  - name: shared
    provider: openAI
    params: {{apiKey: {TEST_KEY}, baseUrl: "{base_url}"}}
    defaults:
      defaults: {{temperature: 0.25}}
      requestHeaders: {{set: {{x-from-provider: shared}}}}
  models:
  - name: ref-model
    provider: {{reference: shared}}
    params: {{model: ref-upstream}}
  - name: rh-remove
    provider: {custom}
    params: {{model: rh-remove-up, baseUrl: "{base_url}"}}
    requestHeaders:
      remove: [authorization]
  - name: rh-base
    provider: {custom}
    params: {{model: rh-base-up, baseUrl: "{base_url}"}}"""
    models = [
        entry("w-a", "wa", base_url),
        entry("w-b", "wb", base_url),
        entry("c-code", "cond-code", base_url),
        entry("c-big", "cond-big", base_url),
        entry("c-gold", "cond-gold", base_url),
        entry("c-default", "cond-default", base_url),
        entry("tiered", "tier-alpha", base_url, TIER_ALPHA),
        entry("tiered", "tier-beta", base_url, TIER_BETA),
        entry("tiered", "tier-fallback", base_url),
        entry("hidden", "hidden-up", base_url, "\n    visibility: internal"),
        entry("shaped", "shaped-up", base_url, SHAPED),
        entry("rh", "rh-up", base_url, REQUEST_HEADERS),
        entry("resp", "resp-up", base_url, RESPONSE_HEADERS),
        entry("resp-base", "resp-base-up", base_url),
    ]
    return head + "".join(models) + VIRTUAL_MODELS


@pytest.fixture(scope="module")
def gateway(fake: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    running = start_gateway(routing_config(fake.base_url), tmp_path_factory.mktemp("gw-routing"))
    yield running
    running.stop()


def pattern_config(base_url: str) -> str:
    # Config order is the opposite of specificity: first-match-wins would pick "*" for everything.
    order = [("*", "pat-star"), ("gpt-*", "pat-gpt"), ("*-mini", "pat-mini"), ("gpt-4*", "pat-gpt4"),
             ("gpt-4o-mini", "pat-exact"), ("llama-*", "pat-llama-first"), ("llama-*", "pat-llama-second")]  # fmt: skip
    return "llm:\n  models:" + "".join(entry(name, upstream, base_url) for name, upstream in order) + "\n"


@pytest.fixture(scope="module")
def pattern_gateway(fake: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    running = start_gateway(pattern_config(fake.base_url), tmp_path_factory.mktemp("gw-patterns"))
    yield running
    running.stop()


def sdk(gateway: RunningGateway) -> openai.OpenAI:
    return openai_client(gateway.url).with_options(timeout=15)


def sent_upstream(gateway: RunningGateway, fake: FakeOpenAI, model: str, **kwargs: Any) -> Recorded:
    """Ask the gateway for ``model`` (plain), and return the one request the upstream received for it."""
    before = len(fake.requests)
    completion = sdk(gateway).chat.completions.create(model=model, messages=MESSAGES, **kwargs)
    assert completion.choices[0].message.content == ANSWER
    assert len(fake.requests) == before + 1, "exactly one upstream request per client request"
    return fake.requests[-1]


def header(recorded: Recorded, name: str) -> str | None:
    values = [value for key, value in recorded.headers.items() if key.lower() == name]
    assert len(values) <= 1, values
    return values[0] if values else None


# -- weighted ----------------------------------------------------------------------------------------------------------


def test_weighted_split_follows_the_weights(gateway: RunningGateway, fake: FakeOpenAI) -> None:
    total = 400
    before_a, before_b = fake.count("wa"), fake.count("wb")
    client = sdk(gateway)
    for _ in range(total):
        client.chat.completions.create(model="split", messages=MESSAGES)
    to_a, to_b = fake.count("wa") - before_a, fake.count("wb") - before_b
    assert to_a + to_b == total
    # weights 3:1 -> binomial(400, 0.75): mean 300, sigma 8.66; 5 sigma (about 1 in 1.7 million to miss by chance)
    sigma = (total * 0.75 * 0.25) ** 0.5
    assert abs(to_a - 300) <= 5 * sigma, (to_a, to_b)


# -- conditional -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "headers", "expected"),
    [
        ({"extra_body": {"route": "code"}}, {}, "cond-code"),
        ({"extra_body": {"route": "chat"}, "max_tokens": 8000}, {}, "cond-big"),
        ({"extra_body": {"route": "chat"}}, {}, "cond-big"),  # no max_tokens: default(..., 9999) > 4096
        ({"extra_body": {"route": "chat"}, "max_tokens": 100}, {"x-tier": "gold"}, "cond-gold"),
        ({"extra_body": {"route": "chat"}, "max_tokens": 100}, {"x-tier": "silver"}, "cond-default"),
        ({"extra_body": {"route": "code"}, "max_tokens": 8000}, {"x-tier": "gold"}, "cond-code"),  # the first wins
    ],
    ids=["body-field", "llmRequest-max_tokens", "default-fallback", "header", "fallthrough", "first-true-wins"],
)
def test_conditional_routing(
    gateway: RunningGateway, fake: FakeOpenAI, kwargs: dict[str, Any], headers: dict[str, str], expected: str
) -> None:
    recorded = sent_upstream(gateway, fake, "smart", extra_headers=headers, **kwargs)
    assert recorded.body["model"] == expected


def test_conditional_when_on_an_absent_body_field_is_not_true(gateway: RunningGateway, fake: FakeOpenAI) -> None:
    """agentgateway's own conditional example routes on ``json(request.body).route`` with a fallback target: a
    request without ``route`` falls through to the later targets instead of failing."""
    recorded = sent_upstream(gateway, fake, "smart", max_tokens=100)
    assert recorded.body["model"] == "cond-default"


# -- matches on headers ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"x-team": "alpha"}, "tier-alpha"),  # exact, header names case-insensitive (config says X-Team)
        ({"x-team": "beta-2"}, "tier-beta"),  # regex
        ({"x-a": "1", "x-b": "2"}, "tier-beta"),  # the second match of the entry holds (both its headers)
        ({"x-a": "1"}, "tier-fallback"),  # one header of a two-header match is not enough
        ({"x-team": "alphabet"}, "tier-fallback"),  # exact means exact
        ({}, "tier-fallback"),
    ],
    ids=["exact", "regex", "all-headers-of-a-match", "partial-match", "not-exact", "no-headers"],
)
def test_matches_choose_between_entries_of_one_name(
    gateway: RunningGateway, fake: FakeOpenAI, headers: dict[str, str], expected: str
) -> None:
    assert sent_upstream(gateway, fake, "tiered", extra_headers=headers).body["model"] == expected


# -- visibility --------------------------------------------------------------------------------------------------------


def test_an_internal_model_is_404_when_asked_for_directly(gateway: RunningGateway, fake: FakeOpenAI) -> None:
    before = fake.count("hidden-up")
    for stream in (False, True):
        with pytest.raises(openai.NotFoundError) as caught:
            sdk(gateway).chat.completions.create(model="hidden", messages=MESSAGES, stream=stream)  # type: ignore[call-overload]
        assert caught.value.response.json()["error"]["code"] == "model_not_found"
    assert fake.count("hidden-up") == before


def test_an_internal_model_is_reachable_through_a_virtual_model(gateway: RunningGateway, fake: FakeOpenAI) -> None:
    assert sent_upstream(gateway, fake, "via-hidden").body["model"] == "hidden-up"


# -- defaults / overrides ----------------------------------------------------------------------------------------------


def test_defaults_fill_absent_fields_and_overrides_replace(gateway: RunningGateway, fake: FakeOpenAI) -> None:
    body = sent_upstream(gateway, fake, "shaped", temperature=0.9, top_p=1.0).body
    assert body["temperature"] == 0.9, "a default never replaces what the client sent"
    assert body["max_tokens"] == 50, "a default fills an absent field"
    assert body["top_p"] == 0.5, "an override replaces what the client sent"
    assert body["presence_penalty"] == 0.1, "an override also sets an absent field"
    assert body["messages"] == MESSAGES


# -- request and response headers --------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_request_headers_add_and_set_reach_the_upstream(
    gateway: RunningGateway, fake: FakeOpenAI, stream: bool
) -> None:
    before = fake.count("rh-up")
    response = sdk(gateway).chat.completions.with_raw_response.create(
        model="rh", messages=MESSAGES, stream=stream, extra_headers={"x-set": "from-client"}
    )
    response.parse()
    recorded = fake.for_model("rh-up")
    assert len(recorded) == before + 1
    assert header(recorded[-1], "x-added") == "one"
    assert header(recorded[-1], "x-set") == "fixed"


def test_request_headers_remove_reaches_the_upstream(gateway: RunningGateway, fake: FakeOpenAI) -> None:
    # Without apiKey the client's own Authorization goes upstream (the baseline) -- unless removed.
    assert header(sent_upstream(gateway, fake, "rh-base"), "authorization") == "Bearer sk-client"
    assert header(sent_upstream(gateway, fake, "rh-remove"), "authorization") is None


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_response_headers_reach_the_client(gateway: RunningGateway, stream: bool) -> None:
    def headers_for(model: str) -> Any:
        raw = sdk(gateway).chat.completions.with_raw_response.create(model=model, messages=MESSAGES, stream=stream)
        raw.parse()
        return raw.headers

    baseline = headers_for("resp-base")
    assert "x-request-id" in baseline, "the baseline: a client sees x-request-id without a responseHeaders remove"
    assert "x-resp-added" not in baseline
    modified = headers_for("resp")
    assert modified.get("x-resp-added") == "yes"
    assert modified.get("x-resp-set") == "fixed"
    assert "x-request-id" not in modified


# -- providers[] and provider: {reference} -----------------------------------------------------------------------------


def test_a_model_inherits_its_referenced_providers_params_and_defaults(
    gateway: RunningGateway, fake: FakeOpenAI
) -> None:
    recorded = sent_upstream(gateway, fake, "ref-model")
    assert recorded.body["model"] == "ref-upstream", "the model's own params.model"
    assert header(recorded, "authorization") == f"Bearer {TEST_KEY}", "the provider's apiKey"
    assert recorded.path == "/v1/chat/completions", "the provider's baseUrl"
    assert recorded.body["temperature"] == 0.25, "the provider's defaults.defaults"
    assert header(recorded, "x-from-provider") == "shared", "the provider's defaults.requestHeaders"


# -- pattern specificity -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gpt-4o-mini", "pat-exact"),  # the exact name wins though it comes after every pattern
        ("gpt-4o", "pat-gpt4"),  # the longer prefix wins over "gpt-*"
        ("gpt-3.5-turbo", "pat-gpt"),  # a prefix wins over "*"
        ("o1-mini", "pat-mini"),  # a suffix wins over "*"
        ("claude-x", "pat-star"),
        ("llama-3", "pat-llama-first"),  # equally specific: config order
    ],
)
def test_the_most_specific_pattern_wins(
    pattern_gateway: RunningGateway, fake: FakeOpenAI, model: str, expected: str
) -> None:
    assert sent_upstream(pattern_gateway, fake, model).body["model"] == expected


# -- config errors -----------------------------------------------------------------------------------------------------

MODELS = """llm:
  models:
  - name: known
    provider: openAI
    params: {apiKey: sk-x}
"""

CONFIG_ERRORS = {
    "bad-cel-in-when": (
        MODELS
        + """  virtualModels:
  - name: smart
    routing:
      conditional:
        targets:
        - when: 'json(request.body).route == == "code"'
          model: known
        - model: known
""",
        "when: 'json",
        "llm.virtualModels[0].routing.conditional.targets[0].when",
    ),
    "failover-target-matches-no-model": (
        MODELS
        + """  virtualModels:
  - name: resilient
    routing:
      failover:
        targets:
        - model: known
          priority: 0
        - model: nowhere
          priority: 1
""",
        "model: nowhere",
        "llm.virtualModels[0].routing.failover.targets[1].model",
    ),
    "weighted-target-matches-no-model": (
        MODELS
        + """  virtualModels:
  - name: spread
    routing:
      weighted:
        targets:
        - model: nowhere
          weight: 1
""",
        "model: nowhere",
        "llm.virtualModels[0].routing.weighted.targets[0].model",
    ),
    "conditional-target-matches-no-model": (
        MODELS
        + """  virtualModels:
  - name: smart
    routing:
      conditional:
        targets:
        - when: 'request.headers["x-tier"] == "gold"'
          model: nowhere
        - model: known
""",
        "model: nowhere",
        "llm.virtualModels[0].routing.conditional.targets[0].model",
    ),
    "bad-cel-in-unhealthyExpression": (
        """llm:
  models:
  - name: known
    provider: openAI
    health:
      unhealthyExpression: "response.code >="
""",
        "unhealthyExpression",
        "llm.models[0].health.unhealthyExpression",
    ),
    "reference-to-no-provider": (
        """llm:
  providers:
  - {name: shared, provider: openAI}
  models:
  - name: m
    provider:
      reference: elsewhere
""",
        "reference: elsewhere",
        "llm.models[0].provider.reference",
    ),
    "referencing-model-sets-more-than-params.model": (
        """llm:
  providers:
  - {name: shared, provider: openAI, params: {apiKey: sk-x}}
  models:
  - name: m
    provider: {reference: shared}
    params:
      model: fine
      apiKey: not-allowed-here
""",
        "apiKey: not-allowed-here",
        "llm.models[0].params.apiKey",
    ),
}
# Where naming the whole entry is as precise as the field: (case -> the entry's marker line and path)
ENTRY_LEVEL = {"referencing-model-sets-more-than-params.model": ("- name: m", "llm.models[0]")}


@pytest.mark.parametrize("case", CONFIG_ERRORS)
def test_config_errors_name_file_line_and_path(tmp_path: Path, case: str) -> None:
    text, marker, path = CONFIG_ERRORS[case]

    def line_of(marker: str) -> int:
        return next(number for number, content in enumerate(text.splitlines(), 1) if marker in content)

    config = tmp_path / "config.yaml"
    config.write_text(text)
    done = subprocess.run(
        [sys.executable, "-m", "agentgateway", "--validate-only", "-f", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0, done.stdout
    expected = [f"{config}:{line_of(marker)}: {path}: "]
    if case in ENTRY_LEVEL:
        entry_marker, entry_path = ENTRY_LEVEL[case]
        expected.append(f"{config}:{line_of(entry_marker)}: {entry_path}: ")
        assert "apiKey" in done.stderr, "the problem names the field that may not be set"
    assert any(location in done.stderr for location in expected), (expected, done.stderr)


def test_a_target_that_is_internal_is_valid(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        """llm:
  models:
  - {name: hidden, provider: openAI, visibility: internal}
  virtualModels:
  - name: v
    routing: {failover: {targets: [{model: hidden, priority: 0}]}}
"""
    )
    done = subprocess.run(
        [sys.executable, "-m", "agentgateway", "--validate-only", "-f", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
