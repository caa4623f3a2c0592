"""params.tokenize (issue 21): accepted so that agentgateway configs load, and named once at start-up as not served
(input tokens are not counted before sending: tiktoken's wheel carries no encodings, it downloads them on first use,
and the gateway runs offline); token limits keep the documented estimate, settled with the reported usage."""

from __future__ import annotations

from agentgateway.config import load_config


def test_tokenize_loads_and_is_named_as_not_served() -> None:
    config = load_config(
        "llm:\n  models:\n  - {name: m, provider: openAI, params: {apiKey: k, tokenize: true}}\n", source="c.yaml"
    )
    assert config.llm.models[0].params.tokenize is True
    notices = [line for line in config.unserved if "tokenize" in line]
    assert len(notices) == 1
    assert notices[0].startswith("c.yaml:3: llm.models[0].params.tokenize: accepted but not served")
    assert "estimate" in notices[0]


def test_without_tokenize_nothing_is_said() -> None:
    config = load_config("llm: {models: [{name: m, provider: openAI, params: {apiKey: k}}]}")
    assert not [line for line in config.unserved if "tokenize" in line]
