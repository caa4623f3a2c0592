"""Micro benches of agentgateway.cel: one evaluation of a compiled expression, as the gateway does per request.

Run: ``python -m pytest benches/test_cel_bench.py --benchmark-enable``. The activation is built outside the timed
call for the conditional (one activation serves every target of a request); the health check builds its own, as
it is made per response. The request body is a chat request with five 1 KB messages.
"""

from __future__ import annotations

import orjson
from agentgateway.cel import compile_expression, request_activation, response_activation
from pytest_benchmark.fixture import BenchmarkFixture

BODY = orjson.dumps(
    {
        "model": "smart",
        "max_tokens": 2000,
        "route": "code",
        "messages": [{"role": "user", "content": "hello " * 170}] * 5,
    }
)
HEADERS = [(b"content-type", b"application/json"), (b"authorization", b"Bearer x"), (b"x-tier", b"gold")]
ROUNDS = 20000


def test_when_default_llm_request(benchmark: BenchmarkFixture) -> None:
    expr = compile_expression("default(llmRequest.max_tokens, 1024) <= 1024")
    activation = request_activation("POST", "/v1/chat/completions", HEADERS, BODY, orjson.loads(BODY))
    assert benchmark.pedantic(expr.evaluate_bool, (activation,), rounds=ROUNDS, warmup_rounds=100) is False


def test_when_json_body(benchmark: BenchmarkFixture) -> None:
    expr = compile_expression('json(request.body).route == "code"')
    activation = request_activation("POST", "/v1/chat/completions", HEADERS, BODY, orjson.loads(BODY))
    assert benchmark.pedantic(expr.evaluate_bool, (activation,), rounds=ROUNDS, warmup_rounds=100) is True


def test_when_header(benchmark: BenchmarkFixture) -> None:
    expr = compile_expression('request.headers["x-tier"] == "gold"')
    activation = request_activation("POST", "/v1/chat/completions", HEADERS, BODY, orjson.loads(BODY))
    assert benchmark.pedantic(expr.evaluate_bool, (activation,), rounds=ROUNDS, warmup_rounds=100) is True


def test_unhealthy_expression(benchmark: BenchmarkFixture) -> None:
    expr = compile_expression("response.code >= 500 || response.code == 429")
    headers = [(b"content-type", b"application/json"), (b"retry-after", b"3")]

    def check() -> bool:
        return expr.evaluate_bool(response_activation(503, headers))

    assert benchmark.pedantic(check, rounds=ROUNDS, warmup_rounds=100) is True
