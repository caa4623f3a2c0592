"""agentgateway.cel: the CEL forms of agentgateway's llm configs, evaluated as agentgateway evaluates them."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from agentgateway.cel import CelEvaluationError, compile_expression, request_activation, response_activation

# examples/llm-cost-routing/config.yaml (llm.policies.transformations.request.set.x-gateway-cost-class)
COST_CLASS = (
    'default(json(request.body).metadata.cost_tier, "") != "" ? default(json(request.body).metadata.cost_tier, "")'
    ' : (default(json(request.body).max_tokens, 1024) > 4096 ? "premium"'
    ' : default(json(request.body).max_tokens, 1024) > 1024 ? "balanced" : "economy")'
)
UNHEALTHY = "response.code >= 500 || response.code == 429"


def req(body: Any = None, headers: list[tuple[bytes, bytes]] | None = None, raw: bytes | None = None) -> dict[str, Any]:
    data = raw if raw is not None else orjson.dumps(body if body is not None else {})
    parsed = body if raw is None else None
    return request_activation("POST", "/v1/chat/completions?debug=1", headers or [], data, parsed)


def ev(source: str, activation: dict[str, Any]) -> Any:
    return compile_expression(source).evaluate(activation)


# --- the configs' expression forms --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"metadata": {"cost_tier": "premium"}, "max_tokens": 10}, "premium"),  # caller's tier wins
        ({"metadata": {"cost_tier": ""}, "max_tokens": 5000}, "premium"),  # empty tier: derived
        ({"max_tokens": 5000}, "premium"),
        ({"max_tokens": 2000}, "balanced"),
        ({"max_tokens": 1024}, "economy"),
        ({"metadata": {}}, "economy"),  # nothing: max_tokens defaults to 1024
        ({}, "economy"),
        ({"max_tokens": None}, "economy"),  # null counts as missing, as in agentgateway
    ],
)
def test_cost_routing_example(body: dict[str, Any], expected: str) -> None:
    assert ev(COST_CLASS, req(body)) == expected


@pytest.mark.parametrize(("route", "expected"), [("code", True), ("fast", False)])
def test_conditional_json_body_route(route: str, expected: bool) -> None:
    expr = compile_expression('json(request.body).route == "code"')
    assert expr.variables == {"request"}
    assert expr.evaluate_bool(req({"route": route, "model": "smart"})) is expected


def test_conditional_json_body_route_missing_is_false_not_a_match() -> None:
    expr = compile_expression('json(request.body).route == "code"')
    with pytest.raises(CelEvaluationError, match="no such key: route"):
        expr.evaluate(req({"model": "smart"}))
    assert expr.evaluate_bool(req({"model": "smart"})) is False


def test_json_of_invalid_body_is_an_error() -> None:
    expr = compile_expression('json(request.body).route == "code"')
    with pytest.raises(CelEvaluationError, match=r"json\(request.body\)"):
        expr.evaluate(req(raw=b"{not json"))
    # not a missing key: default() does not hide it (agentgateway only falls back on NoSuchKey / undeclared)
    with pytest.raises(CelEvaluationError, match=r"json\(request.body\)"):
        ev('default(json(request.body).route, "x")', req(raw=b"{not json"))


def test_json_function_on_strings_and_bytes() -> None:
    assert ev("json('{\"a\": [1, 2]}').a[1]", {}) == 2
    assert ev("json(b'{\"a\": true}').a", {}) is True


@pytest.mark.parametrize(
    ("max_tokens", "expected"),
    [(None, True), (512, True), (1024, True), (1025, False), (0, True)],
)
def test_default_max_tokens_when(max_tokens: int | None, expected: bool) -> None:
    expr = compile_expression("default(llmRequest.max_tokens, 1024) <= 1024")
    assert expr.variables == {"llmRequest"}
    body: dict[str, Any] = {"model": "smart"} if max_tokens is None else {"model": "smart", "max_tokens": max_tokens}
    assert expr.evaluate_bool(request_activation("POST", "/", [], orjson.dumps(body), body)) is expected


def test_transformation_strip_prefix() -> None:
    expr = compile_expression('llmRequest.model.stripPrefix("anthropic/")')
    assert expr.evaluate(req({"model": "anthropic/claude-haiku"})) == "claude-haiku"
    assert expr.evaluate(req({"model": "claude-haiku"})) == "claude-haiku"
    assert ev('llmRequest.model.stripPrefix("foo/")', req({"model": "foo/bar"})) == "bar"
    assert ev('"model-latest".stripSuffix("-latest")', {}) == "model"
    assert ev('"model".stripSuffix("-latest")', {}) == "model"


def test_standard_string_functions() -> None:
    act = req({"model": "gpt-4o-mini"})
    assert ev('llmRequest.model.startsWith("gpt-")', act) is True
    assert ev('llmRequest.model.endsWith("-mini")', act) is True
    assert ev('llmRequest.model.contains("4o")', act) is True
    assert ev('llmRequest.model.matches("^gpt-[0-9]o")', act) is True
    assert ev("size(llmRequest.model) == 11 && llmRequest.model.size() == 11", act) is True
    assert ev('llmRequest.model.split("-")', act) == ["gpt", "4o", "mini"]
    assert ev('"GPT".lowerAscii() + " x ".trim()', {}) == "gptx"


# --- default() ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, "", False, [], {}])
def test_default_returns_present_falsy_values(value: Any) -> None:
    assert ev('default(llmRequest.a.b, "fallback")', req({"a": {"b": value}})) == value


@pytest.mark.parametrize(
    "body",
    [{}, {"metadata": {}}, {"metadata": {"x": 1}}, {"metadata": {"cost_tier": None}}],
    ids=["no-parent", "empty-parent", "other-key", "null-value"],
)
def test_default_on_missing_nested_fields(body: dict[str, Any]) -> None:
    assert ev('default(json(request.body).metadata.cost_tier, "std")', req(body)) == "std"
    assert ev('default(llmRequest.metadata.cost_tier, "std")', req(body)) == "std"


def test_default_on_a_field_of_null_is_a_type_error() -> None:
    # documented limit: selecting a field of null is the library's no-such-overload error, not a missing key
    with pytest.raises(CelEvaluationError, match="No such overload"):
        ev('default(llmRequest.metadata.cost_tier, "std")', req({"metadata": None}))


def test_default_on_index_expressions() -> None:
    act = req({"tags": {"a": "x"}}, headers=[(b"x-tier", b"gold")])
    assert ev('default(llmRequest.tags["a"], "none")', act) == "x"
    assert ev('default(llmRequest.tags["b"], "none")', act) == "none"
    assert ev('default(request.headers["x-tier"], "silver")', act) == "gold"
    assert ev('default(request.headers["x-missing"], "silver")', act) == "silver"


def test_default_on_undeclared_variable() -> None:
    # no llmRequest in the activation: agentgateway's UndeclaredReference also falls back
    assert ev("default(llmRequest.max_tokens, 7)", request_activation("GET", "/", [], b"", None)) == 7


def test_default_propagates_other_errors() -> None:
    # a type error is not "missing": agentgateway's default() returns it
    with pytest.raises(CelEvaluationError, match="No such overload"):
        ev("default(llmRequest.max_tokens + 'a', 1)", req({"max_tokens": 1}))


def test_default_fallback_is_lazy_and_nests() -> None:
    # the fallback is only evaluated when needed: a failing fallback does not matter when the value is there
    assert ev('default(llmRequest.a, fail("never"))', req({"a": 1})) == 1
    with pytest.raises(CelEvaluationError, match="fail\\(\\) called: now"):
        ev('default(llmRequest.a, fail("now"))', req({}))
    assert ev("default(default(llmRequest.a, llmRequest.b), 7)", req({"b": 2})) == 2
    # the inner fallback's missing key is a missing key for the outer default (agentgateway: NoSuchKey)
    assert ev("default(default(llmRequest.a, llmRequest.b), 7)", req({})) == 7
    assert ev("default(llmRequest.a, default(llmRequest.b, 3)) + 1", req({})) == 4


def test_default_on_calls_and_inside_comprehensions() -> None:
    act = req({"model": "anthropic/x", "messages": [{"role": "user", "name": "bob"}, {"role": "system"}]})
    assert ev('default(llmRequest.model.stripPrefix("anthropic/"), "")', act) == "x"
    assert ev('default(llmRequest.nope.stripPrefix("anthropic/"), "")', act) == ""
    # the loop variable m reaches the default's own programs
    assert ev("llmRequest.messages.map(m, default(m.name, m.role))", act) == ["bob", "system"]
    assert ev('llmRequest.messages.exists(m, default(m.name, "") == "bob")', act) is True


def test_default_arity_is_checked_at_compile_time() -> None:
    with pytest.raises(ValueError, match=r"default\(\) takes 2 arguments"):
        compile_expression("default(llmRequest.a)")


# --- variables ----------------------------------------------------------------------------------------------------


def test_request_headers_method_path() -> None:
    act = request_activation(
        "POST",
        "/v1/chat/completions?x=1",
        [(b"x-tier", b"gold"), (b"accept", b"a"), (b"accept", b"b")],
        b"{}",
        None,
    )
    assert ev('request.headers["x-tier"] == "gold"', act) is True
    assert ev('request.headers["X-Tier"] == "gold"', act) is True  # header names are case-insensitive
    assert ev("request.headers.accept", act) == ["a", "b"]  # repeated header: a list, as agentgateway
    assert ev('request.method == "POST" && request.path == "/v1/chat/completions"', act) is True
    assert ev("request.pathAndQuery", act) == "/v1/chat/completions?x=1"
    assert ev("request.body", act) == b"{}"
    assert compile_expression('request.headers["x-tier"] == "gold"').evaluate_bool(req({})) is False


@pytest.mark.parametrize(("code", "expected"), [(200, False), (429, True), (500, True), (503, True), (404, False)])
def test_unhealthy_expression(code: int, expected: bool) -> None:
    expr = compile_expression(UNHEALTHY)
    assert expr.variables == {"response"}
    assert expr.evaluate_bool(response_activation(code, [(b"retry-after", b"3")])) is expected


def test_response_headers() -> None:
    act = response_activation(429, [(b"Retry-After", b"3")])
    assert ev('response.headers["retry-after"] == "3"', act) is True


def test_variables_reports_only_what_is_read() -> None:
    assert compile_expression("1 == 1").variables == frozenset()
    assert compile_expression("[1, 2].all(x, x > 0)").variables == frozenset()
    assert compile_expression("request.path == '/' && llmRequest.model == 'a'").variables == {
        "request",
        "llmRequest",
    }


def test_only_the_read_parts_are_handed_over() -> None:
    # pruning must not change what is read, including has() and whole-value uses
    act = req({"a": {"b": 1, "c": 2}, "d": 3})
    assert ev("has(llmRequest.a.b) && !has(llmRequest.a.x)", act) is True
    assert ev("size(llmRequest.a) == 2 && llmRequest.a.b == 1", act) is True
    assert ev("size(llmRequest) == 2", act) is True
    assert ev("llmRequest.a == {'b': 1, 'c': 2}", act) is True


# --- evaluate_bool, errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["1", "'true'", "llmRequest.model", "null", "[true]"])
def test_evaluate_bool_on_non_bool_is_false(source: str) -> None:
    assert compile_expression(source).evaluate_bool(req({"model": "m"})) is False


def test_evaluate_bool_on_error_is_false_and_never_raises() -> None:
    assert compile_expression("1 / 0 == 1").evaluate_bool({}) is False
    assert compile_expression("llmRequest.x.y").evaluate_bool({}) is False
    assert compile_expression("true").evaluate_bool({}) is True


def test_evaluation_errors_are_value_errors() -> None:
    with pytest.raises(ValueError, match="no such key: nope"):
        ev("llmRequest.nope", req({}))
    assert issubclass(CelEvaluationError, ValueError)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("response.code >=", "line 1 column 17: Syntax error"),
        ("default(", "Syntax error"),
        ("reqest.path == '/'", "unknown variable 'reqest'"),
        ("llmRequest.model.stripPrefx('a')", "unknown function 'stripPrefx'"),
        ("", "empty CEL expression"),
    ],
)
def test_compile_errors_are_readable(source: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        compile_expression(source)
    assert type(info.value) is ValueError
    assert "Traceback" not in str(info.value)
    assert "\n" not in str(info.value)
