"""The one shared request model (issue 19, DESIGN.md section 3): a Chat Completions request and the Anthropic
Messages request that says the same thing are read into the same model (providers/messages_input.py `read_chat`,
`read_messages`), so a provider builds one upstream body from either, while each API's 400s keep naming the
client's own fields."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from agentgateway.errors import InvalidRequest
from agentgateway.providers import bedrock
from agentgateway.providers.gemini import CHAT_TARGET
from agentgateway.providers.messages_input import converse_body, gemini_body, read_chat, read_messages
from botocore.validate import ParamValidator
from fakes.bedrock_upstream import INPUT_SHAPES, _blobs_to_bytes, _check_rules
from fakes.gemini_upstream import WireRequest

SIGNATURE = "c2lnbmF0dXJl"
PNG = "iVBORw0KGgo="
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}}

CHAT: dict[str, Any] = {
    "model": "m",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Weather here?"},
                {"type": "image_url", "image_url": {"url": f"data:image/jpg;base64,{PNG}"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "thinking_blocks": [{"type": "thinking", "thinking": "Look it up.", "signature": SIGNATURE}],
            "tool_calls": [
                {
                    "id": f"fc_1__thought__{SIGNATURE}",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": f"fc_1__thought__{SIGNATURE}", "content": '{"temp": 21}'},
        {"role": "user", "content": "Thanks."},
    ],
    "tools": [{"type": "function", "function": {"name": "get_weather", "description": "W", "parameters": SCHEMA}}],
    "tool_choice": "required",
    "max_tokens": 200,
    "temperature": 0.5,
    "top_p": 0.9,
    "stop": ["END"],
    "response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": SCHEMA}},
}

MESSAGES: dict[str, Any] = {
    "model": "m",
    "system": "Be brief.",
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Weather here?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": PNG}},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "Look it up.", "signature": SIGNATURE},
                {
                    "type": "tool_use",
                    "id": f"fc_1__thought__{SIGNATURE}",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": f"fc_1__thought__{SIGNATURE}", "content": '{"temp": 21}'},
                {"type": "text", "text": "Thanks."},
            ],
        },
    ],
    "tools": [{"name": "get_weather", "description": "W", "input_schema": SCHEMA}],
    "tool_choice": {"type": "any"},
    "max_tokens": 200,
    "temperature": 0.5,
    "top_p": 0.9,
    "stop_sequences": ["END"],
    "output_config": {"format": {"type": "json_schema", "schema": SCHEMA}},
}


def gemini(out: dict[str, Any]) -> dict[str, Any]:
    WireRequest.model_validate_json(orjson.dumps(out))  # what Gemini's own types accept
    return out


def test_a_chat_request_and_the_same_messages_request_build_one_gemini_body() -> None:
    from_chat = gemini(gemini_body(read_chat(CHAT, CHAT_TARGET), "gemini-2.5-flash"))
    from_messages = gemini(gemini_body(read_messages(MESSAGES), "gemini-2.5-flash"))
    assert from_chat == from_messages
    assert from_chat["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert from_chat["contents"][1]["parts"] == [
        {"text": "Look it up.", "thought": True, "thoughtSignature": SIGNATURE},
        {
            "functionCall": {"name": "get_weather", "args": {"city": "Paris"}, "id": "fc_1"},
            "thoughtSignature": SIGNATURE,
        },
    ]
    # The tool result and the next user message are one user turn.
    assert from_chat["contents"][2]["parts"] == [
        {"functionResponse": {"name": "get_weather", "response": {"temp": 21}, "id": "fc_1"}},
        {"text": "Thanks."},
    ]
    assert from_chat["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}
    assert from_chat["generationConfig"] == {
        "maxOutputTokens": 200,
        "temperature": 0.5,
        "topP": 0.9,
        "stopSequences": ["END"],
        "responseMimeType": "application/json",
        "responseJsonSchema": SCHEMA,
    }


def test_chat_only_fields_reach_the_model_and_the_body() -> None:
    body = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "hi"},
            {
                "role": "assistant",
                "content": "hello",
                # A signature without thought text is the one Gemini put on its answer's text.
                "thinking_blocks": [{"type": "thinking", "thinking": "", "signature": SIGNATURE}],
            },
            {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": PNG, "format": "mp3"}}]},
        ],
        "n": 3,
        "seed": 7,
        "presence_penalty": 0.1,
        "frequency_penalty": 0.2,
        "response_format": {"type": "json_object"},
    }
    request = read_chat(body, CHAT_TARGET)
    assert (request.api, request.n, request.json_object, request.schema) == ("chat", 3, True, None)
    out = gemini(gemini_body(request, "gemini-2.5-flash"))
    assert out["contents"][1]["parts"] == [{"text": "hello", "thoughtSignature": SIGNATURE}]
    assert out["contents"][2]["parts"] == [{"inlineData": {"mimeType": "audio/mp3", "data": PNG}}]
    assert out["generationConfig"] == {
        "seed": 7,
        "presencePenalty": 0.1,
        "frequencyPenalty": 0.2,
        "candidateCount": 3,
        "responseMimeType": "application/json",
    }


@pytest.mark.parametrize(
    ("messages", "param", "message"),
    [
        (
            [{"role": "tool", "tool_call_id": "call_x", "content": "r"}],
            "messages[0].tool_call_id",
            "answers no tool call of an earlier assistant message",
        ),
        (
            [{"role": "system", "content": "s"}, {"role": "user", "content": ""}],
            "messages",
            "'messages' must contain at least one user or assistant message besides system messages.",
        ),
        (
            [{"role": "user", "content": [{"type": "video_url", "video_url": "x"}]}],
            "messages[0].content[0].type",
            "for Gemini models: use 'text', 'image_url', 'input_audio' or 'file'.",
        ),
        (
            [{"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "[1]"}}]}],
            "messages[0].tool_calls[0].function.arguments",
            "must be a JSON object",
        ),
    ],
)
def test_chat_errors_name_the_openai_fields(messages: list[dict[str, Any]], param: str, message: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        gemini_body(read_chat({"model": "m", "messages": messages}, CHAT_TARGET), "gemini-2.5-flash")
    assert caught.value.param == param
    assert message in caught.value.message


def test_messages_errors_keep_their_own_naming() -> None:
    body = {
        "model": "m",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_x", "content": "r"}]}],
    }
    with pytest.raises(InvalidRequest) as caught:
        gemini_body(read_messages(body), "gemini-2.5-flash")
    assert caught.value.param == "messages.0.content.0.tool_use_id"


def test_a_tool_choice_without_tools_is_not_read() -> None:
    """As before the shared model: only "none" means anything without tools, so nothing else is checked."""
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": "sometimes"}
    assert "toolConfig" not in gemini_body(read_chat(body, CHAT_TARGET), "gemini-2.5-flash")
    out = gemini_body(read_chat({**body, "tool_choice": "none"}, CHAT_TARGET), "gemini-2.5-flash")
    assert out["toolConfig"] == {"functionCallingConfig": {"mode": "NONE"}}


def test_a_chat_request_for_claude_keeps_its_cache_points_and_every_signed_block() -> None:
    from agentgateway.providers.anthropic import CHAT_TARGET as CLAUDE
    from agentgateway.providers.anthropic import claude_input_body

    cache = {"type": "ephemeral"}
    body = {
        "model": "m",
        "messages": [
            {"role": "system", "content": [{"type": "text", "text": "Rules.", "cache_control": cache}]},
            {"role": "user", "content": [{"type": "text", "text": "go", "cache_control": cache}]},
            {
                "role": "assistant",
                "content": "ok",
                "thinking_blocks": [
                    {"type": "thinking", "thinking": "", "signature": SIGNATURE},
                    {"type": "redacted_thinking", "data": "xyz"},
                ],
                "tool_calls": [{"id": "toolu_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
            },
            {"role": "user", "content": "and"},
            {"role": "tool", "tool_call_id": "toolu_1", "content": ""},
        ],
        "tools": [{"type": "function", "function": {"name": "f"}, "cache_control": cache}],
        "parallel_tool_calls": False,
    }
    out = claude_input_body(read_chat(body, CLAUDE), model="claude", version="2023-06-01")
    assert out["system"] == [{"type": "text", "text": "Rules.", "cache_control": cache}]
    assert out["messages"][0]["content"] == [{"type": "text", "text": "go", "cache_control": cache}]
    # Claude refuses a turn whose reasoning lost a signature: every block goes back, first and unchanged.
    assert out["messages"][1]["content"] == [
        {"type": "thinking", "thinking": "", "signature": SIGNATURE},
        {"type": "redacted_thinking", "data": "xyz"},
        {"type": "text", "text": "ok"},
        {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}},
    ]
    # The result comes first in its (merged) user turn, without an empty content.
    assert out["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_1"},
        {"type": "text", "text": "and"},
    ]
    assert out["tools"] == [{"name": "f", "input_schema": {"type": "object", "properties": {}}, "cache_control": cache}]
    assert out["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    with pytest.raises(InvalidRequest) as caught:
        read_chat({"model": "m", "messages": [{"role": "function", "name": "f", "content": "x"}]}, CLAUDE)
    assert caught.value.param == "messages[0].role"


PDF = "JVBERi0xLjQK"
BEDROCK_CHAT: dict[str, Any] = {
    "model": "m",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Weather in this report?"},
                {"type": "file", "file": {"file_data": f"data:application/pdf;base64,{PDF}", "filename": "Q3_v2.pdf"}},
                {"type": "image_url", "image_url": {"url": f"data:image/jpg;base64,{PNG}"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "thinking_blocks": [{"type": "thinking", "thinking": "Look it up.", "signature": SIGNATURE}],
            "tool_calls": [
                {"id": "t1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "t1", "content": '{"temp": 21}'},
        {"role": "user", "content": "Thanks."},
    ],
    "tools": [
        {
            "type": "function",
            "function": {"name": "get_weather", "description": "W", "parameters": SCHEMA, "strict": True},
        }
    ],
    "tool_choice": "required",
    "max_tokens": 200,
    "temperature": 0.5,
    "top_p": 0.9,
    "stop": ["END"],
    "reasoning_effort": "medium",
}
BEDROCK_MESSAGES: dict[str, Any] = {
    "model": "m",
    "system": "Be brief.",
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Weather in this report?"},
                {
                    "type": "document",
                    "title": "Q3_v2",
                    "source": {"type": "base64", "media_type": "application/pdf", "data": PDF},
                },
                {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": PNG}},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "Look it up.", "signature": SIGNATURE},
                {"type": "tool_use", "id": "t1", "name": "get_weather", "input": {"city": "Paris"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": '{"temp": 21}'},
                {"type": "text", "text": "Thanks."},
            ],
        },
    ],
    "tools": [{"name": "get_weather", "description": "W", "input_schema": SCHEMA, "strict": True}],
    "tool_choice": {"type": "any"},
    "thinking": {"type": "enabled", "budget_tokens": 8192},
    "max_tokens": 200,
    "temperature": 0.5,
    "top_p": 0.9,
    "stop_sequences": ["END"],
}


def test_a_chat_request_and_the_same_messages_request_build_one_converse_body() -> None:
    model = "amazon.nova-pro-v1:0"
    from_chat = bedrock.converse_body(BEDROCK_CHAT, model)
    from_messages = converse_body(read_messages(BEDROCK_MESSAGES), model)
    assert from_chat == from_messages
    checked = orjson.loads(orjson.dumps(from_chat))
    _blobs_to_bytes(checked)
    report = ParamValidator().validate({**checked, "modelId": model}, INPUT_SHAPES["converse"])
    assert not report.has_errors(), report.generate_report()
    _check_rules(checked)
    assert from_chat["messages"][0]["content"][1] == {
        "document": {"format": "pdf", "name": "Q3 v2 (2)", "source": {"bytes": PDF}}
    }
    assert from_chat["messages"][1]["content"][0] == {
        "reasoningContent": {"reasoningText": {"text": "Look it up.", "signature": SIGNATURE}}
    }
    assert from_chat["messages"][2]["content"] == [
        {"toolResult": {"toolUseId": "t1", "content": [{"text": '{"temp": 21}'}]}},
        {"text": "Thanks."},
    ]
    assert from_chat["toolConfig"] == {
        "tools": [
            {"toolSpec": {"name": "get_weather", "description": "W", "inputSchema": {"json": SCHEMA}, "strict": True}}
        ],
        "toolChoice": {"any": {}},
    }
    assert from_chat["additionalModelRequestFields"] == {
        "reasoningConfig": {"type": "enabled", "maxReasoningEffort": "medium"}
    }
    assert from_chat["inferenceConfig"] == {"maxTokens": 200, "temperature": 0.5, "topP": 0.9, "stopSequences": ["END"]}
