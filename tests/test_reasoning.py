"""One reasoning mapping (issue 20, providers/reasoning.py): the same ``reasoning_effort`` gives the same thinking
budget and ``max_tokens`` on Anthropic, Bedrock and Vertex AI's Claude, Gemini 3 a ``thinkingLevel`` and Gemini 2.5
a budget from the same table, and the README's table says what the code does."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import orjson
import pytest
from agentgateway.config import load_config
from agentgateway.errors import InvalidRequest
from agentgateway.providers import PROVIDERS, ChatRequest
from agentgateway.providers.reasoning import EFFORTS, gemini_thinking_config

README = Path(__file__).resolve().parents[1] / "README.md"

CONFIG = """
llm:
  models:
  - {name: anthropic, provider: anthropic, params: {model: claude-sonnet-4-5, apiKey: k}}
  - name: bedrock
    provider: bedrock
    params: {model: us.anthropic.claude-sonnet-4-5-20250929-v1:0, apiKey: k, awsRegion: us-east-1}
  - {name: vertex, provider: vertex, params: {model: claude-sonnet-4-5@20250929, apiKey: k}}
  - {name: gemini, provider: gemini, params: {apiKey: k}}
  - {name: nova, provider: bedrock, params: {model: us.amazon.nova-2-lite-v1:0, apiKey: k, awsRegion: us-east-1}}
"""


def sent(entry: str, body: dict[str, Any]) -> dict[str, Any]:
    """The upstream body that the configured entry ``entry`` sends for ``body``."""
    config = load_config(CONFIG)
    [model] = [m for m in config.llm.models if m.name == entry]
    provider = PROVIDERS[model.provider if isinstance(model.provider, str) else "custom"](model)
    body = {"model": entry, "messages": [{"role": "user", "content": "x"}], **body}
    raw = orjson.dumps(body)
    request = ChatRequest(raw, orjson.loads(raw), body["model"], False, False, None, [])
    upstream = asyncio.run(provider.prepare(request))
    result: dict[str, Any] = orjson.loads(upstream.body)
    return result


def claude_thinking(entry: str, body: dict[str, Any]) -> tuple[Any, Any]:
    out = sent(entry, body)
    if entry == "bedrock":
        return out.get("additionalModelRequestFields", {}).get("thinking"), out["inferenceConfig"]["maxTokens"]
    return out.get("thinking"), out["max_tokens"]


@pytest.mark.parametrize("effort", [e for e in EFFORTS if e != "none"])
@pytest.mark.parametrize("max_tokens", [None, 5000, 100_000])
def test_claude_paths_think_alike(effort: str, max_tokens: int | None) -> None:
    body: dict[str, Any] = {"reasoning_effort": effort}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    anthropic, bedrock, vertex = (claude_thinking(entry, body) for entry in ("anthropic", "bedrock", "vertex"))
    assert anthropic == bedrock == vertex
    budget = EFFORTS[effort].budget
    if max_tokens is None:
        assert anthropic == ({"type": "enabled", "budget_tokens": budget}, budget + 4096)
    elif max_tokens <= budget:
        assert anthropic == ({"type": "enabled", "budget_tokens": max_tokens - 1}, max_tokens)
    else:
        assert anthropic == ({"type": "enabled", "budget_tokens": budget}, max_tokens)


def test_none_is_no_thinking_on_every_claude_path() -> None:
    for entry in ("anthropic", "bedrock", "vertex"):
        assert claude_thinking(entry, {"reasoning_effort": "none", "max_tokens": 10})[0] is None


def test_a_max_tokens_too_small_to_think_is_the_same_400_everywhere() -> None:
    errors = []
    for entry in ("anthropic", "bedrock", "vertex"):
        with pytest.raises(InvalidRequest) as caught:
            sent(entry, {"reasoning_effort": "high", "max_tokens": 1000})
        errors.append((caught.value.param, str(caught.value)))
    assert errors[0] == errors[1] == errors[2]
    assert errors[0][0] == "max_tokens"


def test_an_unknown_effort_is_the_same_400_everywhere() -> None:
    errors = []
    for entry in ("anthropic", "bedrock", "vertex", "gemini"):
        with pytest.raises(InvalidRequest) as caught:
            sent(entry, {"reasoning_effort": "extreme"})
        errors.append((caught.value.param, caught.value.code, str(caught.value)))
    assert len(set(errors)) == 1


def test_gemini_follows_the_table() -> None:
    for effort, row in EFFORTS.items():
        gemini_3 = sent("gemini", {"model": "gemini-3-pro-preview", "reasoning_effort": effort})
        assert gemini_3["generationConfig"]["thinkingConfig"]["thinkingLevel"] == row.gemini_level
        flash = gemini_thinking_config(effort, "gemini-2.5-flash")
        assert flash.get("thinkingBudget") == min(row.budget, 24576)
        assert ("includeThoughts" in flash) == (effort != "none")


def test_bedrock_nova_follows_the_table() -> None:
    for effort, row in EFFORTS.items():
        fields = sent("nova", {"reasoning_effort": effort}).get("additionalModelRequestFields")
        if row.level is None:
            assert fields is None
        else:
            assert fields == {"reasoningConfig": {"type": "enabled", "maxReasoningEffort": row.level}}


def readme_table() -> dict[str, list[str]]:
    text = README.read_text()
    section = text[text.index("#### Reasoning effort") :]
    rows = {}
    for line in section.splitlines()[1:]:
        if line.startswith("####"):
            break
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if cells and cells[0] in EFFORTS:
            rows[cells[0]] = cells[1:]
    return rows


def test_the_readme_table_is_the_code_table() -> None:
    rows = readme_table()
    assert list(rows) == list(EFFORTS)
    for effort, row in EFFORTS.items():
        budget, adaptive, gemini_3, level = rows[effort][:4]
        assert budget == (str(row.budget) if row.budget else "off"), effort
        assert adaptive == (row.adaptive or "off"), effort
        assert gemini_3 == row.gemini_level, effort
        assert level == (row.level or "off"), effort
        assert re.fullmatch(r"\d+|off", budget)
