"""providers/gemini.py's request translation on its own: the cases the end-to-end tests do not reach (ids Gemini
gave, the legacy function role, reasoning from another provider), checked against google-genai's types too."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from agentgateway.errors import InvalidRequest
from agentgateway.providers import ChatRequest
from agentgateway.providers.gemini import error_from_google_body, split_tool_call_id, translate_request
from fakes.gemini_upstream import WireRequest

SIGNATURE = "c2lnbmF0dXJl"


def translate(body: dict[str, Any]) -> dict[str, Any]:
    raw = orjson.dumps(body)
    request = ChatRequest(raw, orjson.loads(raw), body["model"], False, False, None, [])
    out = translate_request(request)
    WireRequest.model_validate_json(orjson.dumps(out))  # what Gemini's own types accept
    return out


def test_split_tool_call_id() -> None:
    assert split_tool_call_id("call_0123456789abcdef01234567") == ("call_0123456789abcdef01234567", None)
    assert split_tool_call_id(f"fc_1__thought__{SIGNATURE}") == ("fc_1", SIGNATURE)
    assert split_tool_call_id("fc_1__thought__") == ("fc_1", None)


def test_ids_gemini_gave_go_back_and_generated_ones_do_not() -> None:
    generated = f"call_0123456789abcdef01234567__thought__{SIGNATURE}"
    out = translate(
        {
            "model": "m",
            "messages": [
                {"role": "user", "content": "go"},
                {
                    "role": "assistant",
                    "content": [{"type": "text", "text": "Calling "}, {"type": "text", "text": "both."}],
                    "tool_calls": [
                        {"id": generated, "type": "function", "function": {"name": "a", "arguments": "{}"}},
                        {"id": "vertex-id-7", "type": "function", "function": {"name": "b", "arguments": '{"x":1}'}},
                    ],
                },
                {"role": "tool", "tool_call_id": generated, "content": [{"type": "text", "text": "[1, 2]"}]},
                {"role": "tool", "tool_call_id": "vertex-id-7", "content": '{"ok": true}'},
            ],
        }
    )
    assert out["contents"][1]["parts"] == [
        {"text": "Calling both."},
        {"functionCall": {"name": "a", "args": {}}, "thoughtSignature": SIGNATURE},
        {"functionCall": {"name": "b", "args": {"x": 1}, "id": "vertex-id-7"}},
    ]
    assert out["contents"][2]["parts"] == [
        {"functionResponse": {"name": "a", "response": {"content": "[1, 2]"}}},
        {"functionResponse": {"name": "b", "response": {"ok": True}, "id": "vertex-id-7"}},
    ]


def test_legacy_function_role_and_foreign_reasoning() -> None:
    out = translate(
        {
            "model": "m",
            "messages": [
                {"role": "user", "content": "go"},
                {
                    "role": "assistant",
                    "content": "ok",
                    "thinking_blocks": [
                        {"type": "redacted_thinking", "data": "xyz"},
                        {"type": "thinking", "thinking": "unsigned"},
                    ],
                },
                {"role": "function", "name": "lookup", "content": "42"},
            ],
        }
    )
    assert out["contents"][1] == {"role": "model", "parts": [{"text": "ok"}]}
    assert out["contents"][2] == {
        "role": "user",
        "parts": [{"functionResponse": {"name": "lookup", "response": {"content": "42"}}}],
    }


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"reasoning_effort": "extreme"}, "reasoning_effort"),
        ({"tool_choice": "sometimes", "tools": [{"type": "function", "function": {"name": "f"}}]}, "tool_choice"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
            "response_format.json_schema.schema",
        ),
        ({"tools": [{"type": "function", "function": {"name": ""}}]}, "tools[0].function.name"),
        ({"max_tokens": 0}, "max_tokens"),
    ],
)
def test_invalid_fields_name_themselves(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        translate({"model": "m", "messages": [{"role": "user", "content": "x"}], **body})
    assert caught.value.param == param


def test_google_errors_keep_status_and_name_and_an_existing_retry_after() -> None:
    body = orjson.dumps({"error": {"code": 403, "message": "Permission denied.", "status": "PERMISSION_DENIED"}})
    error = error_from_google_body(403, body, [])
    assert (error.status, error.type, error.code, error.message) == (
        403,
        "permission_error",
        "PERMISSION_DENIED",
        "Permission denied.",
    )
    retry = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "3s"}
    body = orjson.dumps(
        {"error": {"code": 429, "message": "slow down", "status": "RESOURCE_EXHAUSTED", "details": [retry]}}
    )
    assert error_from_google_body(429, body, []).headers == [(b"retry-after", b"3")]
    assert error_from_google_body(429, body, [(b"retry-after", b"9")]).headers == [(b"retry-after", b"9")]
    assert error_from_google_body(502, b"<html>bad gateway</html>", []).message.startswith("upstream returned HTTP 502")


def test_a_detail_with_a_null_type_keeps_the_429() -> None:
    details = [
        {"@type": None},
        {"@type": 7},
        "text",
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "2s"},
    ]
    body = orjson.dumps(
        {"error": {"code": 429, "message": "slow down", "status": "RESOURCE_EXHAUSTED", "details": details}}
    )
    error = error_from_google_body(429, body, [])
    assert (error.status, error.code, error.message) == (429, "RESOURCE_EXHAUSTED", "slow down")
    assert error.headers == [(b"retry-after", b"2")]


def test_reasoning_in_the_flat_fields_of_other_gateways_becomes_a_signed_thought_part() -> None:
    out = translate(
        {
            "model": "m",
            "messages": [
                {"role": "user", "content": "go"},
                {
                    "role": "assistant",
                    "content": "done",
                    "reasoning_content": "thinking it over",
                    "reasoning_signature": SIGNATURE,
                },
                {"role": "user", "content": "again"},
            ],
        }
    )
    assert out["contents"][1]["parts"] == [
        {"text": "thinking it over", "thought": True, "thoughtSignature": SIGNATURE},
        {"text": "done"},
    ]


def test_unsigned_reasoning_content_is_not_sent_back() -> None:
    out = translate(
        {
            "model": "m",
            "messages": [
                {"role": "user", "content": "go"},
                {"role": "assistant", "content": "done", "reasoning_content": "another provider's"},
                {"role": "user", "content": "again"},
            ],
        }
    )
    assert out["contents"][1]["parts"] == [{"text": "done"}]
