"""The shared request model of Anthropic Messages requests (providers/messages_input.py) and what each non-Claude
target builds from it, field by field (issue 19)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from agentgateway.errors import InvalidRequest
from agentgateway.messages import parse_messages_request
from agentgateway.providers.messages_input import (
    chat_body,
    converse_body,
    effort_for_budget,
    estimate_input_tokens,
    gemini_body,
    read_messages,
)

PDF = "JVBERi0xLjQK"
BODY: dict[str, Any] = {
    "model": "m",
    "max_tokens": 300,
    "system": [{"type": "text", "text": "Sys.", "cache_control": {"type": "ephemeral"}}],
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Hi"},
                {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": PDF}},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "boom", "is_error": True}],
        },
        {"role": "system", "content": "Mid-conversation note."},
        {"role": "user", "content": "And now?"},
    ],
    "tools": [{"name": "get_weather", "input_schema": {"type": "object"}, "cache_control": {"type": "ephemeral"}}],
    "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
    "thinking": {"type": "enabled", "budget_tokens": 5000},
    "stop_sequences": ["END"],
    "temperature": 0.5,
    "top_k": 5,
    "metadata": {"user_id": "u-1"},
    "context_management": {"edits": []},
}


def test_budgets_map_to_the_nearest_effort_of_the_one_table() -> None:
    assert [effort_for_budget(b) for b in (1024, 2000, 5000, 16384, 30000)] == [
        "minimal",
        "low",
        "medium",
        "high",
        "xhigh",
    ]


def test_openai_chat_body_is_field_faithful() -> None:
    out = chat_body(read_messages(BODY), "gpt-5", openai=True)
    assert out["messages"][0] == {"role": "system", "content": "Sys."}
    assert out["messages"][1]["content"][1]["type"] == "file"
    assert out["messages"][2]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}
    assert out["messages"][3] == {"role": "tool", "tool_call_id": "toolu_1", "content": "Error: boom"}
    assert out["messages"][4] == {"role": "system", "content": "Mid-conversation note."}
    assert out["max_completion_tokens"] == 300 and out["reasoning_effort"] == "medium"
    assert out["parallel_tool_calls"] is False and out["user"] == "u-1" and out["stop"] == ["END"]
    assert "top_k" not in out and "context_management" not in out
    assert chat_body(read_messages(BODY), "llama", openai=False)["top_k"] == 5


def test_gemini_body_is_field_faithful() -> None:
    out = gemini_body(read_messages(BODY), "gemini-2.5-flash")
    assert out["systemInstruction"]["parts"] == [{"text": "Sys."}, {"text": "Mid-conversation note."}]
    model_turn = out["contents"][1]
    assert model_turn["role"] == "model"
    assert model_turn["parts"][0] == {"thoughtSignature": "sig", "text": "hmm", "thought": True}
    assert model_turn["parts"][1]["functionCall"] == {"name": "get_weather", "args": {"city": "Paris"}, "id": "toolu_1"}
    result = out["contents"][2]["parts"][0]["functionResponse"]
    assert result["name"] == "get_weather" and result["response"] == {"error": "boom"}
    config = out["generationConfig"]
    assert config["thinkingConfig"] == {"thinkingBudget": 5000, "includeThoughts": True}
    assert (config["topK"], config["maxOutputTokens"], config["stopSequences"]) == (5, 300, ["END"])


def test_converse_body_is_field_faithful() -> None:
    out = converse_body(read_messages(BODY), "amazon.nova-pro-v1:0")
    assert out["system"] == [{"text": "Sys."}, {"text": "Mid-conversation note."}]
    assert out["messages"][0]["content"][1]["document"]["format"] == "pdf"
    assert out["messages"][1]["content"][0]["reasoningContent"]["reasoningText"]["signature"] == "sig"
    result = out["messages"][2]["content"][0]["toolResult"]
    assert result["status"] == "error" and result["content"] == [{"text": "boom"}]
    assert out["inferenceConfig"] == {"maxTokens": 300, "temperature": 0.5, "stopSequences": ["END"]}
    assert out["additionalModelRequestFields"]["reasoningConfig"]["maxReasoningEffort"] == "medium"
    assert out["toolConfig"]["tools"][0]["toolSpec"]["name"] == "get_weather"


def test_what_a_target_cannot_serve_is_a_400_naming_the_field() -> None:
    body = {**BODY, "output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}}}
    with pytest.raises(InvalidRequest) as refused:
        converse_body(read_messages(body), "amazon.nova-pro-v1:0")
    assert refused.value.param == "output_config.format"
    url_image = {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}
    with pytest.raises(InvalidRequest) as refused:
        converse_body(read_messages({**BODY, "messages": [{"role": "user", "content": [url_image]}]}), "amazon.nova")
    assert refused.value.param == "messages.0.content.0.source"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "m", "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
        ({"model": "m", "max_tokens": 1, "messages": []}, "messages"),
        ({"model": "m", "max_tokens": 1, "messages": [{"role": "bot", "content": "x"}]}, "messages.0.role"),
        (
            {"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": [{"type": "text"}]}]},
            "messages.0.content.0.text",
        ),
        (
            {
                "model": "m",
                "max_tokens": 1,
                "messages": [{"role": "user", "content": "x"}],
                "tool_choice": {"type": "x"},
            },
            "tool_choice",
        ),
    ],
)
def test_request_checks_name_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        parse_messages_request(orjson.dumps(body), [])
    assert refused.value.param == param


def test_the_documented_estimate() -> None:
    messages = [{"role": "user", "content": "x" * 400}]
    assert estimate_input_tokens({"messages": messages}) == len(orjson.dumps(messages)) // 4
