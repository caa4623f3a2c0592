"""agentgateway's own ``llm:`` example configs load here unchanged (``agentgateway --validate-only -f file``).

The files are copied from the agentgateway repository into tests/data/agentgateway/ (Apache-2.0; NOTICE there names
the source commit of each). The ones that use only what issue 15 builds (providers, models, virtualModels, matches,
visibility, defaults/overrides, request/response headers, health) must load now. The others use features outside
issue 15; each is listed with what it needs, as a strict xfail: when one starts loading, its xfail turns into a
failure, and it moves to LOADS.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data" / "agentgateway"
LOCAL_TESTS = "crates/agentgateway/src/types/local_tests"
LOADS = [
    # virtualModels (weighted, failover, conditional) with models[].transformation and params.apiKey: {file: ...}
    f"{LOCAL_TESTS}/llm_virtual_model_config.yaml",
    f"{LOCAL_TESTS}/llm_virtual_model_failover_config.yaml",
    f"{LOCAL_TESTS}/llm_virtual_model_conditional_config.yaml",
    "examples/llm-iflytek/config.yaml",
    "examples/llm-iflytek/astron-maas-config.yaml",
    "examples/llm-iflytek/token-plan-config.yaml",
    "examples/llm-vertex-gemini/config.yaml",
    # llm.policies.transformations (request headers set by CEL before matches; issue 21)
    "examples/llm-cost-routing/config.yaml",
    # models[].guardrails: a webhook with messageFormat: raw, path and minSizeBytes (issue 21, guardrails.py)
    "examples/llm-context-compression/config.yaml",
    # an inline JWKS with no keys (loads, refuses every token), guardrails on one entry only, tokenize, matches
    f"{LOCAL_TESTS}/llm_simple_config.yaml",
]

# file -> the keys it uses that this gateway deliberately does not serve (config.NOT_SUPPORTED; README "keys not
# served"): it fails to load, and the error names each key and why
UNSUPPORTED = {
    "examples/llm-ollama-postgres/config.yaml": ["config.database"],
    "examples/llm-active-health/config.yaml": ["llm.models[0].health.active", "llm.models[1].health.active"],
    "examples/llm-server-tools/config.yaml": ["llm.models[0].serverTools"],
    "examples/llm-semantic-routing/response-cache/standalone/agentgateway.yaml": ["llm.policies.extProc"],
    f"{LOCAL_TESTS}/llm_active_health_config.yaml": [
        "llm.providers[0].defaults.health.active",
        "llm.models[1].health.active",
    ],
    f"{LOCAL_TESTS}/llm_copilot_config.yaml": ["llm.models[0].provider"],
    f"{LOCAL_TESTS}/llm_timeout_config.yaml": ["llm.policies.timeout"],
    f"{LOCAL_TESTS}/llm_server_tools_config.yaml": ["llm.models[0].serverTools"],
}


def validate(relative: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``agentgateway --validate-only -f`` on the copied file, with what it references provided: every environment
    variable it names set, and ``HOME`` a temporary folder holding the ``apiKey: {file: $HOME/...}`` files."""
    path = DATA / relative
    text = path.read_text()
    env = {**os.environ, "HOME": str(tmp_path)}
    for name in re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", text):
        if name != "HOME":
            env[name] = "example-value"
    for secret in re.findall(r"file:\s*\$HOME/(\S+)", text):
        target = tmp_path / secret
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("sk-example-key\n")
    return subprocess.run(
        [sys.executable, "-m", "agentgateway", "--validate-only", "-f", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
    )


def test_every_copied_file_is_listed_once() -> None:
    copied = {str(path.relative_to(DATA)) for path in DATA.rglob("*.yaml")}
    assert copied == set(LOADS) | set(UNSUPPORTED)
    assert not set(LOADS) & set(UNSUPPORTED)


@pytest.mark.parametrize("relative", LOADS)
def test_agentgateway_example_loads(relative: str, tmp_path: Path) -> None:
    done = validate(relative, tmp_path)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("relative", list(UNSUPPORTED))
def test_agentgateway_example_with_a_key_not_served_names_it_and_why(relative: str, tmp_path: Path) -> None:
    done = validate(relative, tmp_path)
    assert done.returncode != 0
    problems = [line for line in done.stderr.splitlines() if ": " in line and not line.startswith("agentgateway:")]
    assert [line.split(": ")[1] for line in problems] == UNSUPPORTED[relative], done.stderr
    for line in problems:
        assert "not supported" in line, line
        assert "Extra inputs are not permitted" not in line
