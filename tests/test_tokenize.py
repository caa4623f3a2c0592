"""params.tokenize (issue 21): input tokens counted before admission with OpenAI's vocabularies (the core's embedded
tiktoken-rs copies), checked against OpenAI's own tiktoken library, and used by token rate limits end to end."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from agentgateway import _core
from agentgateway.config import load_config
from agentgateway.tokenize import count_input_tokens, message_texts
from conftest import TEST_KEY, RunningGateway, openai_client, start_gateway
from fakes.openai_upstream import FakeOpenAI

REPO = Path(__file__).resolve().parent.parent
VOCABULARIES = {  # tiktoken's download address of each vocabulary (its cache is keyed by the address's sha1)
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
    "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
}
TEXTS = [
    "hello world",
    "The quick brown fox jumps over the lazy dog. It's 2026-12-02, 10:15 UTC; price: $1,234.56!",
    "def f(x):\n    return {'a': [1, 2, 3], \"b\": x ** 2}  # comment\n\n\n\tindented\r\nwindows line",
    "日本語のテキストと中文文本，还有한국어 텍스트。",
    "emoji 😀👍🏽🇩🇪 and combining é (e\u0301)",
    "     leading and trailing spaces     ",
    "<|endoftext|> is plain text here, and so is <|fim_prefix|>",
    "a" * 3000,
    "1234567890" * 20,
    "",
]


@pytest.fixture(scope="module")
def tiktoken_module(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """OpenAI's tiktoken, offline: its cache is seeded with the vocabulary files the core embeds (tiktoken-rs's
    assets, found through cargo), and tiktoken checks each against the SHA-256 OpenAI publishes for it."""
    metadata = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--format-version", "1", "--offline"],
            cwd=REPO,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    (package,) = [p for p in metadata["packages"] if p["name"] == "tiktoken-rs"]
    assets = Path(package["manifest_path"]).parent / "assets"
    cache = tmp_path_factory.mktemp("tiktoken-cache")
    for name, url in VOCABULARIES.items():
        shutil.copy(assets / f"{name}.tiktoken", cache / hashlib.sha1(url.encode()).hexdigest())
    mp = pytest.MonkeyPatch()
    mp.setenv("TIKTOKEN_CACHE_DIR", str(cache))
    import tiktoken

    yield tiktoken
    mp.undo()


@pytest.mark.parametrize(("model", "vocabulary"), [("gpt-4o-mini", "o200k_base"), ("gpt-4", "cl100k_base")])
def test_counts_match_openais_tiktoken(tiktoken_module: Any, model: str, vocabulary: str) -> None:
    encoding = tiktoken_module.get_encoding(vocabulary)  # raises if the embedded file is not OpenAI's
    assert tiktoken_module.encoding_name_for_model(model) == vocabulary
    assert _core.load_tokenizer(model) == vocabulary
    for text in TEXTS:
        ours, exact = _core.count_chat_tokens(model, [text])
        assert exact
        assert ours - 4 - 3 == len(encoding.encode_ordinary(text)), text[:40]


def test_a_chat_request_counts_as_openais_cookbook_does(tiktoken_module: Any) -> None:
    """Every message 3 tokens of framing plus 1 for the role plus its text; the reply 3 more."""
    encoding = tiktoken_module.get_encoding("o200k_base")
    body = {
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": [{"type": "text", "text": "What is"}, {"type": "text", "text": "2+2?"}]},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "add", "arguments": '{"a":2}'}}],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "4"},
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
        ]
    }
    texts = message_texts(body)
    assert texts == ["You are terse.", "What is\n2+2?", 'add\n{"a":2}', "4", ""]  # images are not text
    expected = 3 + sum(4 + len(encoding.encode_ordinary(text)) for text in texts)
    assert count_input_tokens("gpt-4o", body) == expected


def test_anthropic_messages_bodies_are_counted_too() -> None:
    body = {
        "system": [{"type": "text", "text": "Be brief."}],
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "Use the tool.", "signature": "sig"},
                    {"type": "tool_use", "id": "t1", "name": "weather", "input": {"city": "Paris"}},
                ],
            },
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "sunny"}]},
        ],
        "tools": [{"name": "weather", "input_schema": {"type": "object"}}],
    }
    assert message_texts(body) == [
        "Be brief.",
        "Weather in Paris?",
        'Use the tool.\nweather{"city":"Paris"}',
        "sunny",
        '[{"name":"weather","input_schema":{"type":"object"}}]',
    ]


def test_an_embeddings_request_counts_its_input_strings() -> None:
    assert message_texts({"model": "e", "input": "one text"}) == ["one text"]
    assert message_texts({"model": "e", "input": ["a", "b", [1, 2]]}) == ["a", "b"]


def test_other_models_are_an_estimate_with_cl100k() -> None:
    tokens, exact = _core.count_chat_tokens("claude-sonnet-4-5", ["hello world"])
    assert (tokens, exact) == (_core.count_chat_tokens("gpt-4", ["hello world"])[0], False)


def test_tokenize_is_served_not_named_as_unserved() -> None:
    config = load_config(
        "llm:\n  models:\n  - {name: m, provider: openAI, params: {apiKey: k, tokenize: true}}\n", source="c.yaml"
    )
    assert config.llm.models[0].params.tokenize is True
    assert not [line for line in config.unserved if "tokenize" in line]


# -- through the gateway: the token limit reserves the counted tokens ---------------------------------------------

LIMIT = 100_000
PROMPT = "a" * 4000  # 4 000 bytes (an estimate of ~1 000 tokens), but far fewer tokens


def _config(upstream: str, max_tokens: int = LIMIT) -> str:
    limit = f"{{type: tokens, maxTokens: {max_tokens}, tokensPerFill: 1, fillInterval: 1h}}"
    return f"""
llm:
  models:
  - name: counted
    provider: openAI
    params: {{model: gpt-4o-mini, apiKey: {TEST_KEY}, baseUrl: {upstream}, tokenize: true}}
  - name: estimated
    provider: openAI
    params: {{model: gpt-4o-mini, apiKey: {TEST_KEY}, baseUrl: {upstream}}}
  virtualModels:
  - name: resilient
    routing:
      failover:
        targets: [{{model: counted}}, {{model: estimated, priority: 1}}]
  policies:
    apiKey:
      keys:
      - {{key: sk-counted, localRateLimit: [{limit}]}}
      - {{key: sk-estimated, localRateLimit: [{limit}]}}
      - {{key: sk-virtual, localRateLimit: [{limit}]}}
"""


@pytest.fixture(scope="module")
def gateway(fake_openai: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    running = start_gateway(_config(fake_openai.base_url), tmp_path_factory.mktemp("gw-tokenize"))
    yield running
    running.stop()


def _reserved(running: RunningGateway, key: str, model: str) -> int:
    client = openai_client(running.url, key)
    messages: Any = [{"role": "user", "content": PROMPT}]
    raw = client.chat.completions.with_raw_response.create(model=model, messages=messages, max_tokens=50)
    raw.parse()
    return LIMIT - int(raw.headers["x-ratelimit-remaining"])


def test_a_token_limit_reserves_the_counted_input_tokens(gateway: RunningGateway, tiktoken_module: Any) -> None:
    counted = 3 + 4 + len(tiktoken_module.get_encoding("o200k_base").encode_ordinary(PROMPT))
    assert _reserved(gateway, "sk-counted", "counted") == counted + 50
    body = orjson.dumps({"messages": [{"role": "user", "content": PROMPT}], "model": "estimated", "max_tokens": 50})
    estimated = _reserved(gateway, "sk-estimated", "estimated")
    assert estimated == len(body) // 4 + 50  # without tokenize: the byte estimate
    assert counted + 50 < estimated


def test_a_virtual_model_counts_with_its_first_tokenize_target(gateway: RunningGateway) -> None:
    assert _reserved(gateway, "sk-virtual", "resilient") == _core.count_chat_tokens("gpt-4o-mini", [PROMPT])[0] + 50
