"""Config loading: every error names the source, the line, the path in the document and the problem."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from agentgateway.config import BUILTIN_PROVIDERS, load_config
from agentgateway.errors import ConfigError, ModelNotFound
from agentgateway.providers import PROVIDERS
from agentgateway.router import Router

VALID = """
llm:
  port: 4000
  models:
  - name: gpt-4o-mini
    provider: openAI
    params: {model: gpt-4o-mini-2024-07-18, apiKey: "$TEST_OPENAI_KEY"}
  - name: "local-*"
    provider: {custom: {formats: [{type: completions}]}}
    params: {baseUrl: "http://127.0.0.1:8000/v1/"}
  - name: "*"
    provider: openai
"""


def test_valid_config_with_env_substitution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_OPENAI_KEY", "sk-abc")
    config = load_config(VALID, "valid.yaml")
    assert config.llm.port == 4000
    first, second, third = config.llm.models
    assert first.params.api_key is not None and first.params.api_key.get_secret_value() == "sk-abc"
    assert "sk-abc" not in repr(config), "secrets must not show in reprs (logs)"
    assert second.provider_name == "custom"
    assert second.params.base_url == "http://127.0.0.1:8000/v1"
    assert third.provider == "openAI", "provider names are matched case-insensitively and normalised"
    assert config.llm.timeouts.first_byte == 600


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "llm:\n  models:\n  - name: a\n    provider: bogus\n",
            "x.yaml:4: llm.models[0].provider: unknown provider 'bogus'",
        ),
        ("llm:\n  models:\n  - name: a\n", "x.yaml:3: llm.models[0].provider: Field required"),
        ("llm:\n  models: []\n", "x.yaml:2: llm.models: List should have at least 1 item"),
        (
            "llm:\n  port: 70000\n  models:\n  - {name: a, provider: openAI}\n",
            "x.yaml:2: llm.port: Input should be less than or equal to 65535",
        ),
        (
            "llm:\n  models:\n  - name: a\n    provider: openAI\n    params:\n      apikey: k\n",
            "x.yaml:6: llm.models[0].params.apikey: Extra inputs are not permitted",
        ),
        (
            "llm:\n  models:\n  - name: a\n    provider: openAI\n    params: {baseUrl: 'ftp://h'}\n",
            "x.yaml:5: llm.models[0].params.baseUrl: must be an http:// or https:// URL",
        ),
        (
            "llm:\n  models:\n  - name: a\n    provider: {custom: {}}\n",
            "x.yaml:3: llm.models[0]: params.baseUrl is required for a custom provider",
        ),
        (
            "llm:\n  models:\n  - name: a\n    provider: openAI\n    params: {apiKey: '${UNSET_VAR_FOR_TEST}'}\n",
            "x.yaml:5: llm.models[0].params.apiKey: environment variable UNSET_VAR_FOR_TEST is not set",
        ),
        (
            'llm:\n  models:\n  - name: a\n    provider: openAI\n    params: {apiKey: "sk-1\\n"}\n',
            "x.yaml:5: llm.models[0].params.apiKey: contains a line break",
        ),
        (
            "llm:\n  models:\n  - name: a\n    provider: openAI\n  timeouts: {idle: 0}\n",
            "x.yaml:5: llm.timeouts.idle: Input should be greater than 0",
        ),
        ("llm: [\n", "x.yaml:2: invalid YAML"),
        ("models: []\n", "x.yaml: the config must be a mapping with an 'llm:' section"),
        ("", "x.yaml: the config is empty"),
    ],
)
def test_config_errors_point_at_the_problem(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(text, "x.yaml")
    assert expected in str(caught.value)


def test_all_problems_are_reported_at_once() -> None:
    text = "llm:\n  models:\n  - {name: a, provider: nope}\n  - {name: b, provider: openAI, params: {x: 1}}\n"
    with pytest.raises(ConfigError) as caught:
        load_config(text, "x.yaml")
    message = str(caught.value)
    assert "llm.models[0].provider" in message and "llm.models[1].params.x" in message


def test_dollar_dollar_is_a_literal_dollar(monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_config("llm:\n  models:\n  - {name: a, provider: openAI, params: {apiKey: 'pa$$word'}}\n")
    key = config.llm.models[0].params.api_key
    assert key is not None and key.get_secret_value() == "pa$word"


def test_router_matches_exact_names_first_then_the_most_specific_pattern_then_config_order() -> None:
    config = load_config(
        "llm:\n  models:\n"
        "  - {name: '*', provider: openAI, params: {model: catch-all}}\n"
        "  - {name: 'gpt-*', provider: openAI, params: {model: gpt-family}}\n"
        "  - {name: 'gpt-4o*', provider: openAI, params: {model: gpt-4o-family}}\n"
        "  - {name: gpt-4o, provider: openAI, params: {model: exact}}\n"
        "  - {name: 'claude-*', provider: openAI, params: {model: first-claude}}\n"
        "  - {name: 'claude-*', provider: openAI, params: {model: second-claude}}\n"
    )
    router = Router(config)

    def upstream_model(model: str) -> str | None:
        [(backend, _)] = router.route(model).targets(None)  # type: ignore[arg-type]
        return backend.provider.upstream_model

    assert upstream_model("gpt-4o") == "exact"
    assert upstream_model("gpt-4o-mini") == "gpt-4o-family"
    assert upstream_model("gpt-5") == "gpt-family"
    assert upstream_model("claude-x") == "first-claude"  # equally specific: config order
    assert upstream_model("llama") == "catch-all"


def test_an_unknown_model_lists_the_served_names_and_patterns() -> None:
    config = load_config(
        "llm:\n  models:\n"
        "  - {name: 'gpt-*', provider: openAI}\n"
        "  - {name: gpt-4o, provider: openAI}\n"
        "  - {name: claude-x, provider: openAI}\n"
        "  - {name: hidden, provider: openAI, visibility: internal}\n"
    )
    router = Router(config)
    with pytest.raises(ModelNotFound) as caught:
        router.route("claude-y")
    assert "gpt-4o, claude-x" in caught.value.message and "gpt-*" in caught.value.message
    assert "hidden" not in caught.value.message
    with pytest.raises(ModelNotFound):
        router.route("hidden")  # internal: only through a virtual model


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("{name: b, provider: bedrock}", "x.yaml:4: llm.models[1]: params.awsRegion is required for bedrock"),
        ("{name: b, provider: vertex}", "x.yaml:4: llm.models[1]: params.vertexProject is required for vertex"),
        (
            "{name: b, provider: bedrock, params: {awsRegion: 'us-east-1/x'}}",
            "x.yaml:4: llm.models[1].params.awsRegion: must be letters, digits",
        ),
        ("{name: b, provider: gemini, params: {apiVersion: v2}}", "llm.models[1].params.apiVersion: "),
    ],
)
def test_provider_params_are_checked(entry: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(f"llm:\n  models:\n  - {{name: a, provider: openAI}}\n  - {entry}\n", "x.yaml")
    assert message in str(caught.value)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agentgateway", *args], capture_output=True, text=True, timeout=60)


def test_cli_validate_only(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("llm:\n  models:\n  - {name: a, provider: openAI}\n")
    result = run_cli("-f", str(good), "--validate-only")
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout

    bad = tmp_path / "bad.yaml"
    bad.write_text("llm:\n  models:\n  - name: a\n    provider: openAI\n    params: {baseUrl: nope}\n")
    result = run_cli("-f", str(bad), "--validate-only")
    assert result.returncode == 1
    assert f"{bad}:5: llm.models[0].params.baseUrl: must be an http:// or https:// URL" in result.stderr

    result = run_cli("-f", str(tmp_path / "missing.yaml"), "--validate-only")
    assert result.returncode == 1
    assert "missing.yaml: cannot read the config file" in result.stderr

    result = run_cli("-c", "llm: {models: [{name: a, provider: nope}]}", "--validate-only")
    assert result.returncode == 1 and "<inline config>:1: llm.models[0].provider" in result.stderr


def test_cli_without_config_says_what_to_pass() -> None:
    result = run_cli("--validate-only")
    assert result.returncode == 1
    assert "pass -f FILE or -c" in result.stderr


def test_version_matches_the_core() -> None:
    import agentgateway

    result = run_cli("--version")
    assert result.stdout.strip() == f"agentgateway {agentgateway.__version__}"


@pytest.mark.parametrize("path", sorted((Path(__file__).parent.parent / "examples").glob("*.yaml")), ids=str)
def test_every_example_config_is_valid(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = path.read_text()
    for name in re.findall(r"\$\{?([A-Z_][A-Z0-9_]*)", text):  # the keys a user would export
        monkeypatch.setenv(name, "example-value")
    Router(load_config(text, str(path)), str(path))


def test_the_bundled_demo_config_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    from agentgateway.demo import DEMO_UPSTREAM_ENV, demo_config_text

    monkeypatch.setenv(DEMO_UPSTREAM_ENV, "http://127.0.0.1:9/v1")
    Router(load_config(demo_config_text(), "demo.yaml"))


def test_every_provider_name_the_config_accepts_has_a_provider() -> None:
    assert set(PROVIDERS) == {*BUILTIN_PROVIDERS, "custom"}


def test_a_provider_refusing_its_params_names_the_source_and_entry() -> None:
    config = load_config(
        "llm:\n  models:\n  - {name: b, provider: bedrock, params: {awsRegion: us-east-1, model: '..'}}\n"
    )
    with pytest.raises(ConfigError) as caught:
        Router(config, "x.yaml")
    assert str(caught.value).startswith("x.yaml: llm.models[0]: ")
    assert "not a Bedrock model id" in str(caught.value)
