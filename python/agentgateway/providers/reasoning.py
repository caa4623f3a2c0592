"""One reading of ``reasoning_effort`` for every provider (issue 20): the same request means the same thinking on
Anthropic, Bedrock and Vertex AI's Claude (one budget table), and the nearest setting on Gemini (a budget from the
same table on Gemini 2.5, a ``thinkingLevel`` on Gemini 3) and on Bedrock's other reasoning models. The README's
"Reasoning effort" table is this table (tests/test_reasoning.py checks that they agree).

Claude budgets (``thinking: {type: enabled, budget_tokens}``, Anthropic API 2023-06-01, Bedrock, Vertex AI): the
budget must be at least 1024 and below ``max_tokens``. With no ``max_tokens`` from the client, ``max_tokens`` is the
budget plus the answer's room (``params.maxTokens``, else 4096); with one at or below the budget, the budget shrinks
to ``max_tokens - 1`` and a ``max_tokens`` that leaves less than 1024 is a 400. xhigh's budget plus 4096 stays
within the 32000 output tokens of the smallest Claude 4 model. Newer Anthropic API versions take adaptive thinking
with ``output_config.effort`` instead (the ``adaptive`` column).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidRequest

__all__ = [
    "EFFORTS",
    "MIN_CLAUDE_BUDGET",
    "Effort",
    "claude_thinking",
    "gemini_thinking_config",
    "read_effort",
]


@dataclass(frozen=True, slots=True)
class Effort:
    """What one ``reasoning_effort`` value becomes on each family of models."""

    #: Claude's ``budget_tokens`` (Anthropic 2023-06-01, Bedrock, Vertex AI) and Gemini 2.5's ``thinkingBudget``
    #: (clamped to the model's range); 0: thinking off.
    budget: int
    #: Anthropic's ``output_config.effort`` with adaptive thinking (API versions from 2026-10-21); None: off.
    adaptive: str | None
    #: Gemini 3's ``thinkingLevel``, spelt as google-genai sends it. Gemini 3 cannot turn thinking off (``none`` is
    #: LOW with the thoughts hidden), and LOW / HIGH are the levels every Gemini 3 model takes (MINIMAL is Flash's
    #: only): minimal is LOW, xhigh HIGH.
    gemini_level: str
    #: Bedrock's Nova ``maxReasoningEffort`` and gpt-oss ``reasoning_effort``; None: off.
    level: str | None


#: The table. ``max`` is Anthropic's adaptive top level; elsewhere it means xhigh.
EFFORTS: dict[str, Effort] = {
    "none": Effort(0, None, "LOW", None),
    "minimal": Effort(1024, "low", "LOW", "low"),
    "low": Effort(2048, "low", "LOW", "low"),
    "medium": Effort(8192, "medium", "MEDIUM", "medium"),
    "high": Effort(16384, "high", "HIGH", "high"),
    "xhigh": Effort(24576, "xhigh", "HIGH", "high"),
    "max": Effort(24576, "max", "HIGH", "high"),
}
MIN_CLAUDE_BUDGET = 1024
#: Room for the answer beside the thinking budget when the client gives no ``max_tokens``.
ANSWER_TOKENS = 4096
# Gemini 2.5 budget ranges: Pro 128-32768 (cannot turn thinking off), Flash 0-24576, Flash-Lite 512-24576.
_GEMINI_PRO_BUDGET = (128, 32768)
_GEMINI_FLASH_BUDGET = (512, 24576)
_GEMINI_3 = re.compile(r"(?:^|/)gemini-(?:[3-9]|\d\d)")


def read_effort(body: dict[str, Any]) -> str | None:
    """The request's ``reasoning_effort`` (None when absent), with one 400 for every provider."""
    effort = body.get("reasoning_effort")
    if effort is None:
        return None
    if not isinstance(effort, str) or effort not in EFFORTS:
        raise InvalidRequest(
            f"Invalid value for 'reasoning_effort': {effort!r}. Supported values are: 'none', 'minimal', 'low', "
            "'medium', 'high', 'xhigh' and 'max'.",
            code="invalid_value",
            param="reasoning_effort",
        )
    return effort


def claude_thinking(effort: str, max_tokens: int | None, default_max_tokens: int | None) -> tuple[int, int]:
    """``(budget_tokens, max_tokens)`` for Claude's extended thinking at ``effort`` (not ``none``). ``max_tokens``
    is the client's (None when it sent none), ``default_max_tokens`` the configured one."""
    budget = EFFORTS[effort].budget
    if max_tokens is None:
        return budget, budget + (default_max_tokens or ANSWER_TOKENS)
    if max_tokens <= budget:
        # Claude requires budget < max_tokens: keep the client's limit and think within it.
        budget = max_tokens - 1
        if budget < MIN_CLAUDE_BUDGET:
            raise InvalidRequest(
                f"With 'reasoning_effort', 'max_tokens' must be above {MIN_CLAUDE_BUDGET} (Claude's smallest "
                "thinking budget).",
                code="invalid_value",
                param="max_tokens",
            )
    return budget, max_tokens


def is_gemini_3(model: str) -> bool:
    """Whether ``model`` is Gemini 3 or later (``thinkingLevel`` rather than a budget)."""
    return _GEMINI_3.search(model) is not None


def gemini_thinking_config(effort: str, model: str) -> dict[str, Any]:
    """``generationConfig.thinkingConfig`` for ``effort`` on Gemini ``model``."""
    row = EFFORTS[effort]
    if is_gemini_3(model):
        config: dict[str, Any] = {"thinkingLevel": row.gemini_level}
        if effort != "none":
            config["includeThoughts"] = True
        return config
    low, high = _GEMINI_PRO_BUDGET if "-pro" in model else _GEMINI_FLASH_BUDGET
    if row.budget == 0:
        # Gemini 2.5 Pro cannot turn thinking off: its least, with the thoughts left out.
        return {"thinkingBudget": low} if "-pro" in model else {"thinkingBudget": 0}
    return {"thinkingBudget": min(max(row.budget, low), high), "includeThoughts": True}
