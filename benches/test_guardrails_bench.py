"""Micro benches of agentgateway.guardrails: what a regex guard on the request and on the response adds to one plain
chat request (issue 21 budget: at most 10 µs of CPU together).

Run: ``python -m pytest benches/test_guardrails_bench.py --benchmark-enable``. The guards are those of
tests/test_guardrails.py (request: reject ssn, mask email and a key pattern; response: mask creditCard and
phoneNumber, reject a pattern), on a request with a system prompt and a 300-character question and a 300-character
answer that match nothing (the usual case: every rule scans everything). ``whole_request`` is all the gateway adds
per plain request with guards on: the request check, the ``send`` wrapper's two calls and the answer check. The
coroutines never suspend (regex guards make no calls), so each is driven with one ``send(None)``.
"""

from __future__ import annotations

from typing import Any

import orjson
from agentgateway.config import PromptGuard
from agentgateway.guardrails import Guardrails, guard_responses
from agentgateway.providers import ChatRequest
from pytest_benchmark.fixture import BenchmarkFixture

GUARDS = Guardrails(
    PromptGuard.model_validate(
        {
            "request": [
                {"regex": {"action": "reject", "rules": [{"builtin": "ssn"}]}},
                {"regex": {"action": "mask", "rules": [{"builtin": "email"}, {"pattern": "sk-[a-z0-9]{8}"}]}},
            ],
            "response": [
                {"regex": {"action": "mask", "rules": [{"builtin": "creditCard"}, {"builtin": "phoneNumber"}]}},
                {"regex": {"action": "reject", "rules": [{"pattern": "FORBIDDEN-WORD"}]}},
            ],
        }
    )
)
QUESTION = ("How do I write a function that reverses a list in place, and what is its cost in time and memory? " * 3)[
    :300
]
BODY = {
    "model": "guarded",
    "messages": [
        {"role": "system", "content": "You are a helpful assistant who answers briefly."},
        {"role": "user", "content": QUESTION},
    ],
}
REQUEST = ChatRequest(orjson.dumps(BODY), BODY, "guarded", False, False, None, [])
ANSWER = orjson.dumps(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "guarded",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": ("Use two indices. " * 20)[:300]},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 80, "completion_tokens": 70, "total_tokens": 150},
    }
)
ROUNDS = 20000


def _run(coroutine: Any) -> Any:
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    raise AssertionError("a regex guard suspended")


class _Exchange:
    """What the guards read of an exchange."""

    api = "chat"
    streamed = False
    method = "POST"
    path = "/v1/chat/completions"
    request = REQUEST
    client_model = "guarded"
    status = 0

    def __init__(self) -> None:
        backend = type("B", (), {"guardrails": GUARDS})()
        self.attempts = [type("A", (), {"backend": backend})()]
        self.facts = type("F", (), {"error": None, "error_type": None})()


async def _sink(message: Any) -> None:
    return None


START = {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
BODY_MESSAGE = {"type": "http.response.body", "body": ANSWER}


def test_request_guard(benchmark: BenchmarkFixture) -> None:
    exchange: Any = _Exchange()

    def check() -> ChatRequest:
        return _run(GUARDS.check_request(REQUEST, exchange, None))  # type: ignore[arg-type]

    assert benchmark.pedantic(check, rounds=ROUNDS, warmup_rounds=200) is REQUEST


def test_response_guard(benchmark: BenchmarkFixture) -> None:
    exchange: Any = _Exchange()

    def check() -> bytes:
        return _run(GUARDS.check_answer(ANSWER, REQUEST, exchange, None))

    assert benchmark.pedantic(check, rounds=ROUNDS, warmup_rounds=200) is ANSWER


def test_whole_request(benchmark: BenchmarkFixture) -> None:
    exchange: Any = _Exchange()

    def one() -> None:
        _run(GUARDS.check_request(REQUEST, exchange, None))  # type: ignore[arg-type]
        send = guard_responses(exchange, _sink, None)
        _run(send(START))
        _run(send(BODY_MESSAGE))

    benchmark.pedantic(one, rounds=ROUNDS, warmup_rounds=200)


def test_baseline_send_without_guards(benchmark: BenchmarkFixture) -> None:
    """The two sends of a plain answer with no wrapper, to subtract from ``whole_request``."""

    def one() -> None:
        _run(_sink(START))
        _run(_sink(BODY_MESSAGE))

    benchmark.pedantic(one, rounds=ROUNDS, warmup_rounds=200)


DIGITS_QUESTION = ("Python 3.12 came out in 2023 and runs about 25% faster on 64-bit machines; is 3.13 better? " * 4)[
    :300
]
DIGITS_BODY = {"model": "guarded", "messages": [BODY["messages"][0], {"role": "user", "content": DIGITS_QUESTION}]}
DIGITS_REQUEST = ChatRequest(orjson.dumps(DIGITS_BODY), DIGITS_BODY, "guarded", False, False, None, [])
DIGITS_ANSWER = ANSWER.replace(b"Use two indices. ", b"Try 3.13: 2x in 10 ms. ")


def test_whole_request_with_digits(benchmark: BenchmarkFixture) -> None:
    """The same with digits in the question and the answer (so the number builtins scan them too)."""
    exchange: Any = _Exchange()
    answer = {"type": "http.response.body", "body": DIGITS_ANSWER}

    def one() -> None:
        assert _run(GUARDS.check_request(DIGITS_REQUEST, exchange, None)) is DIGITS_REQUEST  # type: ignore[arg-type]
        send = guard_responses(exchange, _sink, None)
        _run(send(START))
        _run(send(answer))

    benchmark.pedantic(one, rounds=ROUNDS, warmup_rounds=200)


MESSAGES_BODY = {
    "model": "guarded",
    "max_tokens": 256,
    "system": "You are a helpful assistant who answers briefly.",
    "messages": [{"role": "user", "content": QUESTION}],
}
MESSAGES_REQUEST = ChatRequest(orjson.dumps(MESSAGES_BODY), MESSAGES_BODY, "guarded", False, True, None, [], "messages")
MESSAGES_ANSWER = orjson.dumps(
    {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "guarded",
        "content": [{"type": "text", "text": ("Use two indices. " * 20)[:300]}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 80, "output_tokens": 70},
    }
)


class _MessagesExchange(_Exchange):
    api = "messages"
    path = "/v1/messages"
    request = MESSAGES_REQUEST


def test_whole_messages_request(benchmark: BenchmarkFixture) -> None:
    """The same guards on a /v1/messages request and its Anthropic ``message`` answer (issues 19, 21)."""
    exchange: Any = _MessagesExchange()
    answer = {"type": "http.response.body", "body": MESSAGES_ANSWER}

    def one() -> None:
        assert _run(GUARDS.check_request(MESSAGES_REQUEST, exchange, None)) is MESSAGES_REQUEST  # type: ignore[arg-type]
        send = guard_responses(exchange, _sink, None)
        _run(send(START))
        _run(send(answer))

    benchmark.pedantic(one, rounds=ROUNDS, warmup_rounds=200)
