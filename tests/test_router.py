"""Routes: which targets a request may try, in which order, as health changes (an injectable clock, no sleeps).

End-to-end failover through the real gateway and SDKs is in test_failover.py and test_routing.py; this file pins
the router's decisions themselves, where eviction and restore can be driven by a fake clock.
"""

from __future__ import annotations

import asyncio
import math
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from agentgateway.config import load_config
from agentgateway.errors import ConfigError, ModelNotFound
from agentgateway.providers import ChatRequest
from agentgateway.router import Router

MODELS = """
llm:
  models:
  - {name: primary, provider: openAI, params: {apiKey: k, baseUrl: "http://127.0.0.1:9/v1"}}
  - {name: second, provider: openAI, params: {apiKey: k, baseUrl: "http://127.0.0.1:9/v1"}}
  - {name: third, provider: openAI, params: {apiKey: k, baseUrl: "http://127.0.0.1:9/v1"}}
  - name: "internal/*"
    visibility: internal
    provider: openAI
    params: {apiKey: k, baseUrl: "http://127.0.0.1:9/v1"}
  - name: tiered
    matches: [{headers: [{name: x-tier, value: {exact: gold}}]}]
    provider: openAI
    params: {model: gold-model, apiKey: k, baseUrl: "http://127.0.0.1:9/v1"}
  - name: tiered
    matches: [{headers: [{name: x-tier, value: {regex: "silver|bronze"}}]}]
    provider: openAI
    params: {model: metal-model, apiKey: k, baseUrl: "http://127.0.0.1:9/v1"}
"""


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _router(virtual: str, clock: Clock | None = None) -> Router:
    return Router(load_config(MODELS + "  virtualModels:\n" + virtual), clock=clock or Clock())


def _exchange(headers: dict[str, str] | None = None, body: dict[str, Any] | None = None) -> Any:
    body = body or {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    raw = orjson.dumps(body)
    return SimpleNamespace(
        request_headers=[(k.encode(), v.encode()) for k, v in (headers or {}).items()],
        request=SimpleNamespace(raw=raw, body=body),
        method="POST",
        path="/v1/chat/completions",
    )


def _names(router: Router, model: str, **exchange: Any) -> list[str]:
    return [model_name for _, model_name in router.route(model).targets(_exchange(**exchange))]


FAILOVER = """
  - name: resilient
    routing:
      failover:
        targets:
        - {model: primary, priority: 0}
        - {model: second, priority: 1}
        - {model: third, priority: 1}
"""


def _backend(router: Router, name: str) -> Any:
    return next(b for b in router.backends if b.entry.name == name)


def test_failover_tries_priority_groups_in_order() -> None:
    router = _router(FAILOVER)
    assert _names(router, "resilient") == ["primary", "second", "third"]


def test_an_evicted_target_is_skipped_until_its_eviction_ends() -> None:
    clock = Clock()
    router = _router(FAILOVER, clock)
    assert _backend(router, "primary").health.record_failure(retry_after=30.0)
    assert _names(router, "resilient") == ["second", "third"]
    clock.now += 29.9
    assert _names(router, "resilient") == ["second", "third"]
    clock.now += 0.2
    assert _names(router, "resilient") == ["primary", "second", "third"]


def test_without_retry_after_the_default_eviction_is_3s_and_grows_with_repeats() -> None:
    clock = Clock()
    router = _router(FAILOVER, clock)
    primary = _backend(router, "primary").health
    primary.record_failure()
    clock.now += 3.01
    assert "primary" in _names(router, "resilient")
    primary.record_failure()  # again, with no success between: longer
    clock.now += 3.01
    assert "primary" not in _names(router, "resilient")
    clock.now += 3.0
    assert "primary" in _names(router, "resilient")


def test_when_every_target_is_evicted_the_one_evicted_longest_ago_is_still_tried() -> None:
    clock = Clock()
    router = _router(FAILOVER, clock)
    _backend(router, "second").health.record_failure(retry_after=10.0)
    clock.now += 1
    _backend(router, "primary").health.record_failure(retry_after=60.0)
    _backend(router, "third").health.record_failure(retry_after=20.0)
    assert _names(router, "resilient") == ["second"]


def test_within_a_priority_group_the_faster_member_goes_first() -> None:
    router = _router(FAILOVER)
    _backend(router, "second").health.record_success(2.0)
    _backend(router, "third").health.record_success(0.2)
    assert _names(router, "resilient") == ["primary", "third", "second"]
    for _ in range(5):
        _backend(router, "third").health.record_success(4.0)
    assert _names(router, "resilient") == ["primary", "second", "third"]


def test_a_configured_health_policy_evicts_only_after_consecutive_failures() -> None:
    clock = Clock()
    config = MODELS.replace(
        "  - {name: primary, provider: openAI,",
        "  - {name: primary, health: {eviction: {duration: 30s, consecutiveFailures: 3}}, provider: openAI,",
    )
    router = Router(load_config(config + "  virtualModels:\n" + FAILOVER), clock=clock)
    primary = _backend(router, "primary").health
    assert not primary.record_failure()
    assert not primary.record_failure()
    assert "primary" in _names(router, "resilient")
    assert primary.record_failure()
    assert "primary" not in _names(router, "resilient")
    clock.now += 30.1
    assert "primary" in _names(router, "resilient")


def test_weighted_routing_draws_the_first_target_by_weight_and_keeps_the_others_as_fallbacks() -> None:
    router = _router(
        """
  - name: spread
    routing:
      weighted: {targets: [{model: primary, weight: 3}, {model: second, weight: 1}, {model: third, weight: 0}]}
"""
    )
    firsts = [_names(router, "spread") for _ in range(4000)]
    assert all(sorted(plan) == ["primary", "second"] for plan in firsts)  # weight 0: never tried
    share = sum(plan[0] == "primary" for plan in firsts) / len(firsts)
    sigma = math.sqrt(0.75 * 0.25 / len(firsts))
    assert abs(share - 0.75) < 5 * sigma


def test_weighted_routing_skips_an_evicted_target() -> None:
    router = _router(
        """
  - name: spread
    routing:
      weighted: {targets: [{model: primary, weight: 99}, {model: second, weight: 1}]}
"""
    )
    _backend(router, "primary").health.record_failure(retry_after=60.0)
    assert all(_names(router, "spread") == ["second"] for _ in range(50))


CONDITIONAL = """
  - name: smart
    routing:
      conditional:
        targets:
        - {when: 'json(request.body).route == "code"', model: internal/coder}
        - {when: 'request.headers["x-tier"] == "gold"', model: second}
        - {when: 'default(llmRequest.max_tokens, 1024) > 4096', model: third}
        - {model: primary}
"""


@pytest.mark.parametrize(
    ("headers", "fields", "expected"),
    [
        ({}, {"route": "code"}, ["internal/coder"]),
        ({"x-tier": "gold"}, {}, ["second"]),
        ({}, {"max_tokens": 8000}, ["third"]),
        ({}, {"max_tokens": 100}, ["primary"]),
        ({}, {}, ["primary"]),  # no max_tokens: default() gives 1024
    ],
)
def test_conditional_routing_takes_the_first_target_whose_condition_holds(
    headers: dict[str, str], fields: dict[str, Any], expected: list[str]
) -> None:
    router = _router(CONDITIONAL)
    body = {"model": "smart", "messages": [{"role": "user", "content": "x"}], **fields}
    assert _names(router, "smart", headers=headers, body=body) == expected


def test_matches_choose_between_entries_of_one_name_by_header() -> None:
    router = Router(load_config(MODELS))

    def upstream(headers: dict[str, str]) -> str | None:
        [(backend, _)] = router.route("tiered").targets(_exchange(headers=headers))
        return backend.provider.upstream_model

    assert upstream({"x-tier": "gold"}) == "gold-model"
    assert upstream({"x-tier": "bronze"}) == "metal-model"
    with pytest.raises(ModelNotFound):
        upstream({"x-tier": "iron"})
    with pytest.raises(ModelNotFound):
        upstream({})


def test_internal_entries_serve_virtual_models_but_not_direct_requests() -> None:
    router = _router(CONDITIONAL)
    with pytest.raises(ModelNotFound):
        router.route("internal/coder")
    body = {"model": "smart", "messages": [{"role": "user", "content": "x"}], "route": "code"}
    [(backend, model)] = router.route("smart").targets(_exchange(body=body))
    assert backend.entry.name == "internal/*"
    assert model == "internal/coder"


def test_a_transformation_rewrites_the_model_a_virtual_model_target_sends() -> None:
    config = load_config(
        """
llm:
  models:
  - name: "anthropic/*"
    visibility: internal
    provider: openAI
    params: {apiKey: k, baseUrl: "http://127.0.0.1:9/v1"}
    transformation:
      model: llmRequest.model.stripPrefix("anthropic/")
      max_tokens: 'default(llmRequest.max_tokens, 0) > 1000 ? 1000 : default(llmRequest.max_tokens, 256)'
  virtualModels:
  - name: fast
    routing: {failover: {targets: [{model: anthropic/haiku, priority: 0}]}}
"""
    )
    router = Router(config)
    body = {"model": "fast", "messages": [{"role": "user", "content": "x"}], "max_tokens": 5000}
    exchange = _exchange(body=body)
    [(backend, model)] = router.route("fast").targets(exchange)
    request = ChatRequest(orjson.dumps(body), body, "fast", False, False, None, [])
    derived = backend.request_for(request, model)
    assert derived.model == "haiku"
    assert derived.body["max_tokens"] == 1000
    assert body["max_tokens"] == 5000, "the client's request is never edited"


def test_an_api_key_can_come_from_a_file(tmp_path: Any) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("sk-from-file\n")
    config = load_config(
        f"llm:\n  models:\n  - {{name: a, provider: openAI, params: {{apiKey: {{file: {key_file}}}}}}}\n"
    )
    key = config.llm.models[0].params.api_key
    assert key is not None and key.get_secret_value() == "sk-from-file"
    with pytest.raises(ConfigError) as caught:
        load_config(
            "llm:\n  models:\n  - {name: a, provider: openAI, params: {apiKey: {file: /nonexistent/key}}}\n", "x.yaml"
        )
    assert "x.yaml:3: llm.models[0].params.apiKey: cannot read the key file '/nonexistent/key'" in str(caught.value)


def test_a_virtual_model_whose_targets_match_no_entry_for_these_headers_is_a_404_not_a_bug() -> None:
    router = _router(
        """
  - name: gold-only
    routing:
      failover: {targets: [{model: tiered, priority: 0}]}
"""
    )
    exchange = _exchange(headers={"x-tier": "iron"})
    exchange.attempts = []
    route = router.route("gold-only")
    assert route.targets(exchange) == []
    from agentgateway.exchange import Exchange

    real = Exchange({"method": "POST", "path": "/v1/chat/completions", "headers": [(b"x-tier", b"iron")]}, [])
    body = {"model": "gold-only", "messages": [{"role": "user", "content": "x"}]}
    request = ChatRequest(orjson.dumps(body), body, "gold-only", False, False, None, real.request_headers)
    with pytest.raises(ModelNotFound):
        asyncio.run(real.serve(None, route, request, None))  # type: ignore[arg-type]
