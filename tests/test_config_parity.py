"""agentgateway config parity (issue 21, first half): a config of our own that uses every key this half brings
(provider presets, azure, top-level sections outside an LLM gateway, gateways.<name>.port, llm.gateways, cors,
authorization, transformations, finalTransformation) passes ``agentgateway --validate-only``; what is accepted but
not served is named once at start-up; a provider deliberately not supported is refused by name, with why."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from agentgateway.config import load_config
from agentgateway.errors import ConfigError

EVERY_KEY = """
gateways:
  default:
    port: 3999
    listeners: [{name: web, protocol: HTTP}]
mcp: {port: 3001, targets: []}
ui: {}
binds: []
frontendPolicies:
  accessLog: {add: {user: 'request.headers["user-agent"]'}}
llm:
  gateways: [default]
  policies:
    cors: {allowOrigins: [http://localhost:15000], allowMethods: [POST], allowHeaders: [content-type], maxAge: 60s}
    authorization: {rules: ['jwt.email.endsWith("@example.com")', 'apiKey.tier == "gold"']}
    transformations:
      request:
        set: {x-tier: 'default(json(request.body).max_tokens, 1) > 10 ? "big" : "small"'}
        add: {x-seen: '"yes"'}
        remove: [x-private]
  models:
  - name: gpt-7-max
    provider: azure
    params: {model: gpt-35, azureResourceName: my-resource, azureResourceType: openAI, azureApiVersion: v1}
  - name: foundry-model
    provider: azure
    params: {apiKey: k, azureResourceName: r, azureResourceType: foundry, azureProjectName: p}
  - name: dated
    provider: azure
    params: {apiKey: k, azureResourceName: r, azureResourceType: azureOpenAI, azureApiVersion: 2024-10-21}
  - {name: "ollama/*", provider: ollama}
  - {name: cohere-model, provider: cohere, params: {apiKey: k}}
  - {name: baseten-model, provider: baseten, params: {apiKey: k}}
  - {name: cerebras-model, provider: cerebras, params: {apiKey: k}}
  - {name: deepinfra-model, provider: deepinfra, params: {apiKey: k}}
  - {name: deepseek-model, provider: deepseek, params: {apiKey: k}}
  - {name: groq-model, provider: groq, params: {apiKey: k}}
  - {name: hf-model, provider: huggingface, params: {apiKey: k}}
  - {name: mistral-model, provider: mistral, params: {apiKey: k}}
  - {name: openrouter-model, provider: openrouter, params: {apiKey: k}}
  - {name: together-model, provider: togetherai, params: {apiKey: k}}
  - {name: grok, provider: xAI, params: {apiKey: k}}
  - name: fireworks-model
    provider: fireworks
    params: {apiKey: k}
    authorization: {rules: ['request.headers["x-team"] == "ml"']}
    transformation: {max_tokens: 'default(llmRequest.max_tokens, 256)'}
    finalTransformation: {user: '"gateway"'}
    matches: [{headers: [{name: x-tier, value: {exact: big}}]}]
"""


def validate(text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return subprocess.run(
        [sys.executable, "-m", "agentgateway", "--validate-only", "-f", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_config_with_every_key_of_this_half_validates(tmp_path: Path) -> None:
    done = validate(EVERY_KEY, tmp_path)
    assert done.returncode == 0, done.stderr
    warned = [line for line in done.stderr.splitlines() if "accepted but not served" in line]
    for key in ("mcp", "ui", "binds", "gateways.default.listeners"):
        assert sum(f": {key}: accepted but not served" in line for line in warned) == 1, (key, done.stderr)
    assert "frontendPolicies.accessLog" not in done.stderr, "served (telemetry/_fields.py, tests/test_access_log.py)"
    assert f"{tmp_path / 'config.yaml'}:6: mcp" in done.stderr  # file:line: path


def test_the_serving_port_comes_from_the_named_gateway() -> None:
    assert load_config(EVERY_KEY).llm.port == 3999
    one = "gateways: {default: {port: 3100}}\nllm: {models: [{name: m, provider: openAI}]}"
    assert load_config(one).llm.port == 3100
    own = "gateways: {default: {port: 3100}}\nllm: {port: 4000, models: [{name: m, provider: openAI}]}"
    assert load_config(own).llm.port == 4000
    with pytest.raises(ConfigError, match=r"llm.gateways\[0\]: no gateway named 'other'"):
        load_config("gateways: {a: {port: 1}}\nllm: {gateways: [other], models: [{name: m, provider: openAI}]}")
    with pytest.raises(ConfigError, match="more than one gateway has a port"):
        load_config("gateways: {a: {port: 1}, b: {port: 2}}\nllm: {models: [{name: m, provider: openAI}]}")


def test_copilot_is_refused_by_name_with_why_and_what_is_supported(tmp_path: Path) -> None:
    done = validate("llm:\n  models:\n  - {name: gpt-5.4, provider: copilot}\n", tmp_path)
    assert done.returncode == 1
    assert "config.yaml:3: llm.models[0].provider: provider 'copilot' is not supported" in done.stderr
    assert "OAuth" in done.stderr and "azure, cohere, ollama" in done.stderr


def test_an_unknown_provider_lists_the_supported_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown provider 'nope'; use one of openAI, .*groq"):
        load_config("llm: {models: [{name: m, provider: nope}]}")


@pytest.mark.parametrize(
    ("policy", "problem"),
    [
        ("transformations: {response: {set: {a: '1'}}}", "response transformations are not supported"),
        ("transformations: {request: {set: {'bad header': '1'}}}", "not a valid header name"),
        ("authorization: {rules: ['request.(']}", "invalid CEL expression"),
        ("cors: {allowMethods: ['GET POST']}", "not a valid method or header name"),
    ],
)
def test_policy_mistakes_are_config_errors_with_their_path(policy: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=r"llm.policies") as caught:
        load_config(f"llm: {{policies: {{{policy}}}, models: [{{name: m, provider: openAI}}]}}")
    assert problem in str(caught.value)
