"""Micro benches of the Bedrock path, called from Python as the gateway calls it.

- stream translation: a ConverseStream transcript of binary event stream messages (messageStart, 32 text deltas,
  messageStop, metadata), fed whole (a fast upstream) or one message per call (token by token);
- SigV4: the core's signer against botocore's ``SigV4Auth.add_auth`` for the same request (the reason signing
  moved into the core);
- request translation: ``converse_body`` + ``orjson.dumps`` for a short chat with a system prompt and a tool.
"""

from __future__ import annotations

import sys
from pathlib import Path

import orjson
import pytest
from agentgateway._core import SigV4Signer, StreamTranslator, translate_response
from agentgateway.providers.bedrock import converse_body
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from pytest_benchmark.fixture import BenchmarkFixture

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
from fakes.bedrock_upstream import USAGE, event

WORDS = "Once upon a time there was a small gateway that translated every chunk it saw".split() * 2
MESSAGES = [
    event("messageStart", {"role": "assistant"}),
    *[event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": " " + w}}) for w in WORDS[:32]],
    event("contentBlockStop", {"contentBlockIndex": 0}),
    event("messageStop", {"stopReason": "end_turn"}),
    event("metadata", {"usage": USAGE, "metrics": {"latencyMs": 42}}),
]
TRANSCRIPT = b"".join(MESSAGES)
RESPONSE = orjson.dumps(
    {
        "output": {"message": {"role": "assistant", "content": [{"text": " ".join(WORDS)}]}},
        "stopReason": "end_turn",
        "usage": USAGE,
        "metrics": {"latencyMs": 42},
    }
)
PATH = "/model/us.anthropic.claude-3-7-sonnet-20250219-v1%3A0/converse-stream"
HOST = "bedrock-runtime.us-east-1.amazonaws.com"
KEY = (
    "ASIAEXAMPLE",
    "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQ==",
)
BODY = {
    "model": "claude",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is the weather in Paris?"},
    ],
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather in a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            },
        }
    ],
    "max_tokens": 512,
    "temperature": 0.2,
}
REQUEST_BODY = orjson.dumps(converse_body(BODY, "us.anthropic.claude-3-7-sonnet-20250219-v1:0"))


@pytest.mark.parametrize("include_usage", [True, False])
def test_stream_whole_transcript(benchmark: BenchmarkFixture, include_usage: bool) -> None:
    out = benchmark.pedantic(
        lambda t: t.feed(TRANSCRIPT),
        setup=lambda: ((StreamTranslator("bedrock", "claude", include_usage),), {}),
        rounds=3000,
        warmup_rounds=100,
    )
    assert out.endswith(b"data: [DONE]\n\n")


def test_stream_one_message_per_read(benchmark: BenchmarkFixture) -> None:
    def feed(translator: StreamTranslator) -> bytes:
        return b"".join([translator.feed(message) for message in MESSAGES])

    out = benchmark.pedantic(
        feed, setup=lambda: ((StreamTranslator("bedrock", "claude", True),), {}), rounds=2000, warmup_rounds=100
    )
    assert out.endswith(b"data: [DONE]\n\n")


def test_whole_response(benchmark: BenchmarkFixture) -> None:
    _body, usage = benchmark(translate_response, "bedrock", RESPONSE, "claude")
    assert usage == (15, 5, 20)


def test_sigv4_core(benchmark: BenchmarkFixture) -> None:
    signer = SigV4Signer("us-east-1", "bedrock", HOST, "application/json")
    assert benchmark(signer.headers, PATH, REQUEST_BODY, *KEY).startswith(b"X-Amz-Date: ")


def test_sigv4_botocore(benchmark: BenchmarkFixture) -> None:
    signer = SigV4Auth(Credentials(*KEY), "bedrock", "us-east-1")

    def sign() -> str:
        request = AWSRequest(
            method="POST", url=f"https://{HOST}{PATH}", data=REQUEST_BODY, headers={"Content-Type": "application/json"}
        )
        signer.add_auth(request)
        return str(request.headers["Authorization"])

    assert benchmark(sign).startswith("AWS4-HMAC-SHA256 ")


def test_request_translation(benchmark: BenchmarkFixture) -> None:
    model = "us.anthropic.claude-3-7-sonnet-20250219-v1:0"
    assert benchmark(lambda: orjson.dumps(converse_body(BODY, model))) == REQUEST_BODY
