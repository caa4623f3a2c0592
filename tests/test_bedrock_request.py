"""The OpenAI -> Converse request translation (providers/bedrock.py ``converse_body``) checked against botocore's
bedrock-runtime ``Converse`` input shape and the service's own rules (the same checks as the fake upstream), for the
mappings the end-to-end tests do not reach."""

from __future__ import annotations

import base64
import copy
from typing import Any

import pytest
from agentgateway.errors import InvalidRequest
from agentgateway.providers.bedrock import JSON_TOOL_NAME, converse_body
from botocore.validate import ParamValidator
from fakes.bedrock_upstream import INPUT_SHAPES, Invalid, _blobs_to_bytes, _check_rules

CLAUDE = "anthropic.claude-3-5-sonnet-20240620-v1:0"
TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}


def valid(body: dict[str, Any], model_id: str = CLAUDE) -> dict[str, Any]:
    out = converse_body(body, model_id)
    checked = copy.deepcopy(out)
    _blobs_to_bytes(checked)
    report = ParamValidator().validate({**checked, "modelId": model_id}, INPUT_SHAPES["converse"])
    assert not report.has_errors(), report.generate_report()
    try:
        _check_rules(checked)
    except Invalid as exc:  # pragma: no cover - the assertion message is the point
        pytest.fail(str(exc))
    return out


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def test_json_object_is_a_forced_tool_with_an_object_schema() -> None:
    out = valid({"messages": user("x"), "response_format": {"type": "json_object"}})
    assert out["toolConfig"]["toolChoice"] == {"tool": {"name": JSON_TOOL_NAME}}
    assert out["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"] == {"json": {"type": "object"}}


def test_json_schema_with_user_tools_lets_the_model_choose_a_tool_or_the_answer() -> None:
    body = {
        "messages": user("x"),
        "tools": [TOOL],
        "response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": {"type": "object"}}},
    }
    out = valid(body)
    assert [t["toolSpec"]["name"] for t in out["toolConfig"]["tools"]] == ["f", JSON_TOOL_NAME]
    assert out["toolConfig"]["toolChoice"] == {"any": {}}


def test_the_reserved_tool_name_is_refused() -> None:
    tool = {"type": "function", "function": {"name": JSON_TOOL_NAME}}
    with pytest.raises(InvalidRequest) as caught:
        converse_body({"messages": user("x"), "tools": [tool]}, CLAUDE)
    assert caught.value.param == "tools[0].function.name"


@pytest.mark.parametrize(
    ("model_id", "effort", "fields"),
    [
        (
            "us.amazon.nova-2-lite-v1:0",
            "minimal",
            {"reasoningConfig": {"type": "enabled", "maxReasoningEffort": "low"}},
        ),
        ("openai.gpt-oss-120b-1:0", "high", {"reasoning_effort": "high"}),
        ("meta.llama3-70b-instruct-v1:0", "high", None),
    ],
)
def test_reasoning_effort_per_model_family(model_id: str, effort: str, fields: Any) -> None:
    out = valid({"messages": user("x"), "reasoning_effort": effort}, model_id)
    assert out.get("additionalModelRequestFields") == fields


def test_reasoning_effort_must_be_known() -> None:
    for effort in ("extreme", ["high"]):
        with pytest.raises(InvalidRequest) as caught:
            converse_body({"messages": user("x"), "reasoning_effort": effort}, CLAUDE)
        assert caught.value.param == "reasoning_effort"


def test_redacted_thinking_and_empty_tool_results_round_trip() -> None:
    data = base64.b64encode(b"encrypted").decode()
    messages = [
        *user("x"),
        {
            "role": "assistant",
            "content": None,
            "reasoning_content": "dropped: no signature",
            "thinking_blocks": [{"type": "redacted_thinking", "data": data}],
            "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "f", "arguments": ""}}],
        },
        {"role": "tool", "tool_call_id": "t1", "content": ""},
    ]
    out = valid({"messages": messages, "tools": [TOOL]})
    assert out["messages"][1]["content"] == [
        {"reasoningContent": {"redactedContent": data}},
        {"toolUse": {"toolUseId": "t1", "name": "f", "input": {}}},
    ]
    assert out["messages"][2]["content"] == [{"toolResult": {"toolUseId": "t1", "content": []}}]


def test_stop_list_and_max_completion_tokens() -> None:
    out = valid({"messages": user("x"), "stop": ["a", "", "b"], "max_completion_tokens": 9, "max_tokens": 5})
    assert out["inferenceConfig"] == {"stopSequences": ["a", "b"], "maxTokens": 9}


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("data:image/bmp;base64,AAAA", "has media type 'image/bmp'"),
        ("data:image/png;base64,not base64!", "not valid base64"),
        ("data:image/png;base64," + base64.b64encode(b"x" * 3_750_001).decode(), "at most"),
    ],
)
def test_bad_images_are_400s(url: str, problem: str) -> None:
    body = {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]}
    with pytest.raises(InvalidRequest) as caught:
        converse_body(body, CLAUDE)
    assert problem in caught.value.message
    assert caught.value.param == "messages[0].content[0].image_url.url"


def test_jpeg_and_webp_formats() -> None:
    payload = base64.b64encode(b"\xff\xd8\xff").decode()
    for mime, fmt in (("image/jpeg", "jpeg"), ("image/webp", "webp"), ("image/gif", "gif")):
        content = [{"type": "image_url", "image_url": {"url": f"data:{mime};base64,{payload}"}}]
        out = valid({"messages": [{"role": "user", "content": content}]})
        assert out["messages"][0]["content"][0]["image"]["format"] == fmt


@pytest.mark.parametrize(
    "extra",
    [
        {"tools": [TOOL], "tool_choice": "required"},
        {"tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "f"}}},
        {"response_format": {"type": "json_object"}},
    ],
)
def test_claude_cannot_think_while_forced_to_call_a_tool(extra: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest) as caught:
        converse_body({"messages": user("x"), "reasoning_effort": "low", **extra}, CLAUDE)
    assert caught.value.param == "reasoning_effort"
    # Other families have no such rule, and auto is fine for Claude.
    valid({"messages": user("x"), "reasoning_effort": "low", **extra}, "us.amazon.nova-2-lite-v1:0")
    valid({"messages": user("x"), "reasoning_effort": "low", "tools": [TOOL], "tool_choice": "auto"})


def test_tool_choice_none_with_response_format_still_forces_the_json_tool() -> None:
    body = {"messages": user("x"), "tools": [TOOL], "tool_choice": "none", "response_format": {"type": "json_object"}}
    out = valid(body)
    assert [t["toolSpec"]["name"] for t in out["toolConfig"]["tools"]] == [JSON_TOOL_NAME]
    assert out["toolConfig"]["toolChoice"] == {"tool": {"name": JSON_TOOL_NAME}}


def test_claude_thinking_leaves_sampling_settings_out() -> None:
    out = valid({"messages": user("x"), "reasoning_effort": "low", "temperature": 0.2, "top_p": 0.5, "stop": "X"})
    assert out["inferenceConfig"] == {"stopSequences": ["X"], "maxTokens": 2048 + 4096}
    out = valid({"messages": user("x"), "temperature": 0.2, "top_p": 0.5})
    assert out["inferenceConfig"] == {"temperature": 0.2, "topP": 0.5}


def test_file_parts_become_documents_with_safe_unique_names() -> None:
    pdf = base64.b64encode(b"%PDF-1.4 fake").decode()
    content = [
        {"type": "text", "text": "Compare these."},
        {
            "type": "file",
            "file": {"file_data": f"data:application/pdf;base64,{pdf}", "filename": "Q3 report_v2.final.pdf"},
        },
        {"type": "file", "file": {"file_data": f"data:text/csv;base64,{pdf}"}},
    ]
    out = valid({"messages": [{"role": "user", "content": content}]})
    documents = [b["document"] for b in out["messages"][0]["content"] if "document" in b]
    assert documents == [
        {"format": "pdf", "name": "Q3 report v2 final (2)", "source": {"bytes": pdf}},
        {"format": "csv", "name": "document (3)", "source": {"bytes": pdf}},
    ]
    with pytest.raises(InvalidRequest) as caught:
        converse_body({"messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "f"}}]}]}, CLAUDE)
    assert caught.value.param == "messages[0].content[0].file.file_data"
