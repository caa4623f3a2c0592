"""The gemini provider end to end: the real openai clients → the gateway → a fake Gemini API that validates every
body with the google-genai package's types and the API's rules (thought signatures included), and answers in the
exact wire format (``data: …\\r\\n\\n``-framed SSE without ``[DONE]``)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest
from agentgateway.providers.gemini import THOUGHT_SEPARATOR, split_tool_call_id
from conftest import TEST_KEY, RunningGateway, openai_client, start_gateway
from fakes.gemini_upstream import USAGE, FakeGoogle, start_fake_google

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"$ref": "#/$defs/unit"}},
            "required": ["city"],
            "additionalProperties": False,
            "$defs": {"unit": {"enum": ["C", "F"]}},
        },
    },
}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeGoogle]:
    fake, stop = start_fake_google(TEST_KEY)
    yield fake
    stop()


@pytest.fixture(scope="module")
def gateway(fake: FakeGoogle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    config = f"""
llm:
  models:
  - name: aliased
    provider: gemini
    params: {{model: gemini-2.5-flash, apiKey: {TEST_KEY}, baseUrl: "{fake.origin}", apiVersion: v1, maxTokens: 77}}
  - name: "keyless-*"
    provider: gemini
    params: {{baseUrl: "{fake.origin}"}}
  - name: "*"
    provider: gemini
    params: {{apiKey: {TEST_KEY}, baseUrl: "{fake.origin}"}}
"""
    running = start_gateway(config, tmp_path_factory.mktemp("gw-gemini"))
    yield running
    running.stop()


def client(gateway: RunningGateway) -> openai.OpenAI:
    return openai_client(gateway.url)


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


# -- plain and streamed answers -------------------------------------------------------------------------------------


def test_plain_completion_maps_text_finish_usage_and_model(gateway: RunningGateway, fake: FakeGoogle) -> None:
    completion = client(gateway).chat.completions.create(model="gemini-2.5-flash", messages=user("Hello"))
    assert completion.choices[0].message.content == "You said: Hello"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "gemini-2.5-flash"
    assert completion.id == "resp-gemini-1"
    usage = completion.usage
    assert usage is not None
    completion_tokens = USAGE["candidatesTokenCount"] + USAGE["thoughtsTokenCount"]
    assert (usage.prompt_tokens, usage.completion_tokens) == (USAGE["promptTokenCount"], completion_tokens)
    assert usage.total_tokens == USAGE["promptTokenCount"] + completion_tokens
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == USAGE["cachedContentTokenCount"]
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == USAGE["thoughtsTokenCount"]
    sent = fake.last()
    assert sent.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert sent.headers["x-goog-api-key"] == TEST_KEY
    assert "authorization" not in sent.headers
    assert sent.body == {"contents": [{"role": "user", "parts": [{"text": "Hello"}]}]}


def test_params_model_and_api_version(gateway: RunningGateway, fake: FakeGoogle) -> None:
    completion = client(gateway).chat.completions.create(model="aliased", messages=user("x"))
    assert fake.last().path == "/v1/models/gemini-2.5-flash:generateContent"
    assert fake.last().body["generationConfig"] == {"maxOutputTokens": 77}  # params.maxTokens
    assert completion.model == "aliased"


def test_stream_with_usage(gateway: RunningGateway, fake: FakeGoogle) -> None:
    chunks = list(
        client(gateway).chat.completions.create(
            model="gemini-2.5-flash",
            messages=user("a streamed hello"),
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert fake.last().path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    assert fake.last().query == "alt=sse"
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "You said: a streamed hello"
    assert len({c.id for c in chunks}) == 1
    assert {c.model for c in chunks} == {"gemini-2.5-flash"}
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["stop"]
    assert chunks[-1].choices == []
    usage = chunks[-1].usage
    assert usage is not None
    # usageMetadata is cumulative: the last report, not a sum.
    assert usage.prompt_tokens == USAGE["promptTokenCount"]
    assert usage.completion_tokens == USAGE["candidatesTokenCount"] + USAGE["thoughtsTokenCount"]


def test_stream_ends_with_done_although_gemini_sends_none(gateway: RunningGateway) -> None:
    response = httpx.post(
        gateway.url + "/v1/chat/completions",
        json={"model": "gemini-2.5-flash", "messages": user("hi"), "stream": True},
    )
    assert response.status_code == 200
    frames = [f for f in response.text.split("\n\n") if f]
    assert frames[-1] == "data: [DONE]"
    assert all('"usage"' not in frame for frame in frames)


def test_async_client_plain_and_streamed(gateway: RunningGateway) -> None:
    async def run() -> tuple[str | None, str]:
        async with openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0) as aclient:
            plain = await aclient.chat.completions.create(model="gemini-2.5-flash", messages=user("async"))
            stream = await aclient.chat.completions.create(
                model="gemini-2.5-flash", messages=user("async stream"), stream=True
            )
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
            return plain.choices[0].message.content, text

    assert asyncio.run(run()) == ("You said: async", "You said: async stream")


@pytest.mark.parametrize(
    ("model", "reason"), [("gemini-x-max", "length"), ("gemini-x-safety", "content_filter"), ("gemini-x", "stop")]
)
@pytest.mark.parametrize("stream", [False, True])
def test_finish_reasons(gateway: RunningGateway, model: str, reason: str, stream: bool) -> None:
    if stream:
        chunks = list(client(gateway).chat.completions.create(model=model, messages=user("x"), stream=True))
        finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        assert finish == [reason]
    else:
        completion = client(gateway).chat.completions.create(model=model, messages=user("x"))
        assert completion.choices[0].finish_reason == reason


# -- request mapping ------------------------------------------------------------------------------------------------


def test_request_mapping(gateway: RunningGateway, fake: FakeGoogle) -> None:
    client(gateway).chat.completions.create(
        model="gemini-2.5-flash",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in English."}]},
            {"role": "user", "content": "First"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Look:"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.webp", "detail": "low"}},
                    {"type": "image_url", "image_url": {"url": "gs://bucket/dog.png"}},
                    {"type": "input_audio", "input_audio": {"data": PNG, "format": "wav"}},
                    {"type": "file", "file": {"file_data": f"data:application/pdf;base64,{PNG}", "filename": "a.pdf"}},
                ],
            },
            {"role": "assistant", "content": "Earlier answer"},
            {"role": "user", "content": "Now?"},
        ],
        max_completion_tokens=300,
        temperature=0.5,
        top_p=0.9,
        stop=["END", "STOP"],
        n=1,
        seed=7,
        presence_penalty=0.25,
        frequency_penalty=-0.5,
        user="dropped",
        parallel_tool_calls=True,
        logprobs=False,
    )
    body = fake.last().body
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}, {"text": "Answer in English."}]}
    assert body["contents"] == [
        {
            "role": "user",
            "parts": [
                {"text": "First"},
                {"text": "Look:"},
                {"inlineData": {"mimeType": "image/png", "data": PNG}},
                {"fileData": {"mimeType": "image/webp", "fileUri": "https://example.com/cat.webp"}},
                {"fileData": {"mimeType": "image/png", "fileUri": "gs://bucket/dog.png"}},
                {"inlineData": {"mimeType": "audio/wav", "data": PNG}},
                {"inlineData": {"mimeType": "application/pdf", "data": PNG}},
            ],
        },
        {"role": "model", "parts": [{"text": "Earlier answer"}]},
        {"role": "user", "parts": [{"text": "Now?"}]},
    ]
    assert body["generationConfig"] == {
        "maxOutputTokens": 300,
        "temperature": 0.5,
        "topP": 0.9,
        "seed": 7,
        "presencePenalty": 0.25,
        "frequencyPenalty": -0.5,
        "candidateCount": 1,
        "stopSequences": ["END", "STOP"],
    }
    assert set(body) == {"contents", "systemInstruction", "generationConfig"}


@pytest.mark.parametrize(
    ("tool_choice", "config"),
    [
        ("auto", {"mode": "AUTO"}),
        ("none", {"mode": "NONE"}),
        ("required", {"mode": "ANY"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            {"mode": "ANY", "allowedFunctionNames": ["get_weather"]},
        ),
    ],
)
def test_tools_and_tool_choice(gateway: RunningGateway, fake: FakeGoogle, tool_choice: Any, config: Any) -> None:
    client(gateway).chat.completions.create(
        model="gemini-2.5-flash",
        messages=user("weather?"),
        tools=[WEATHER_TOOL, {"type": "function", "function": {"name": "now"}}],
        tool_choice=tool_choice,
    )
    body = fake.last().body
    assert body["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Weather for a city",
                    # The whole JSON Schema, $ref and additionalProperties included, in the field that takes it.
                    "parametersJsonSchema": WEATHER_TOOL["function"]["parameters"],
                },
                {"name": "now"},
            ]
        }
    ]
    assert body["toolConfig"] == {"functionCallingConfig": config}


def test_response_format_json_schema(gateway: RunningGateway, fake: FakeGoogle) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]}
    completion = client(gateway).chat.completions.create(
        model="gemini-2.5-flash-json",
        messages=user("json please"),
        response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema, "strict": True}},
    )
    assert completion.choices[0].message.content == '{"answer": 42}'
    config = fake.last().body["generationConfig"]
    assert config == {"responseMimeType": "application/json", "responseJsonSchema": schema}
    client(gateway).chat.completions.create(
        model="gemini-2.5-flash-json", messages=user("json"), response_format={"type": "json_object"}
    )
    assert fake.last().body["generationConfig"] == {"responseMimeType": "application/json"}


@pytest.mark.parametrize(
    ("model", "effort", "thinking"),
    [
        ("gemini-2.5-flash", "minimal", {"thinkingBudget": 1024, "includeThoughts": True}),
        ("gemini-2.5-flash", "high", {"thinkingBudget": 16384, "includeThoughts": True}),
        ("gemini-2.5-flash", "xhigh", {"thinkingBudget": 24576, "includeThoughts": True}),
        ("gemini-2.5-flash", "none", {"thinkingBudget": 0}),
        ("gemini-2.5-pro", "none", {"thinkingBudget": 128}),
        ("gemini-3-pro-preview", "medium", {"thinkingLevel": "MEDIUM", "includeThoughts": True}),
        ("gemini-3-flash-preview", "minimal", {"thinkingLevel": "LOW", "includeThoughts": True}),
        ("gemini-3-pro-preview", "none", {"thinkingLevel": "LOW"}),
    ],
)
def test_reasoning_effort_becomes_a_thinking_config(
    gateway: RunningGateway, fake: FakeGoogle, model: str, effort: str, thinking: dict[str, Any]
) -> None:
    # Gemini 2.5: the budgets of the one table (providers/reasoning.py), clamped to the model's range; Gemini 3:
    # a thinkingLevel, which google-genai's types accept (the fake validates with them).
    client(gateway).chat.completions.create(model=model, messages=user("x"), reasoning_effort=effort)  # type: ignore[arg-type]
    assert fake.last().body["generationConfig"] == {"thinkingConfig": thinking}


def test_without_a_configured_key_the_clients_key_is_used(gateway: RunningGateway, fake: FakeGoogle) -> None:
    keyed = openai_client(gateway.url, TEST_KEY)
    with keyed:
        completion = keyed.chat.completions.create(model="keyless-gemini", messages=user("mine"))
    assert completion.choices[0].message.content == "You said: mine"
    assert fake.last().headers["x-goog-api-key"] == TEST_KEY
    with pytest.raises(openai.BadRequestError, match="API key not valid"):
        client(gateway).chat.completions.create(model="keyless-gemini", messages=user("not mine"))


# -- tools and thought signatures ------------------------------------------------------------------------------------


def _tool_turns(first: Any, results: list[str]) -> list[dict[str, Any]]:
    """The conversation a client sends after the tool calls in ``first`` (an assistant message as the SDK gives it)."""
    message = first.model_dump(exclude_none=True)
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Paris and Tokyo?"}, message]
    for call, result in zip(first.tool_calls, results, strict=True):
        messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
    messages.append({"role": "user", "content": "Thanks; summarise."})
    return messages


@pytest.mark.parametrize("model", ["gemini-3-pro-tool", "gemini-2.5-flash-tool"])
def test_multi_turn_tool_calls_plain(gateway: RunningGateway, fake: FakeGoogle, model: str) -> None:
    first = client(gateway).chat.completions.create(
        model=model, messages=user("Weather in Paris and Tokyo?"), tools=[WEATHER_TOOL]
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls
    assert calls is not None
    assert [c.function.name for c in calls] == ["get_weather", "get_weather"]  # type: ignore[union-attr]
    arguments = [orjson.loads(c.function.arguments) for c in calls]  # type: ignore[union-attr]
    assert arguments == [{"city": "Paris"}, {"city": "Tokyo", "n": [1, 2]}]
    assert len({c.id for c in calls}) == 2
    signed = model.startswith("gemini-3")
    assert (THOUGHT_SEPARATOR in calls[0].id) is signed
    assert THOUGHT_SEPARATOR not in calls[1].id

    second = client(gateway).chat.completions.create(
        model=model,
        messages=_tool_turns(choice.message, ['{"temp": 21}', "sunny"]),
        tools=[WEATHER_TOOL],
    )
    assert second.choices[0].message.content == (
        'Tool results: get_weather={"temp":21}; get_weather={"content":"sunny"}'
    )
    contents = fake.last().body["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    model_parts = contents[1]["parts"]
    assert model_parts[0]["functionCall"] == {"name": "get_weather", "args": {"city": "Paris"}}
    assert ("thoughtSignature" in model_parts[0]) is signed
    if signed:
        assert model_parts[0]["thoughtSignature"] == split_tool_call_id(calls[0].id)[1]
    assert "thoughtSignature" not in model_parts[1]
    # The results and the user's note are one user turn; each result names its function.
    assert contents[2]["parts"] == [
        {"functionResponse": {"name": "get_weather", "response": {"temp": 21}}},
        {"functionResponse": {"name": "get_weather", "response": {"content": "sunny"}}},
        {"text": "Thanks; summarise."},
    ]


def test_streamed_tool_calls_carry_the_signature_and_the_next_turn_is_accepted(
    gateway: RunningGateway, fake: FakeGoogle
) -> None:
    stream = client(gateway).chat.completions.create(
        model="gemini-3-pro-tool", messages=user("Weather in Paris and Tokyo?"), tools=[WEATHER_TOOL], stream=True
    )
    calls: dict[int, dict[str, str]] = {}
    finish = None
    for chunk in stream:
        if not chunk.choices:
            continue
        finish = chunk.choices[0].finish_reason or finish
        for delta in chunk.choices[0].delta.tool_calls or []:
            call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            call["id"] += delta.id or ""
            call["name"] += (delta.function.name if delta.function else None) or ""
            call["arguments"] += (delta.function.arguments if delta.function else None) or ""
    assert finish == "tool_calls"
    assert sorted(calls) == [0, 1]
    assert THOUGHT_SEPARATOR in calls[0]["id"]
    assistant = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
            for c in calls.values()
        ],
    }
    answer = client(gateway).chat.completions.create(
        model="gemini-3-pro-tool",
        messages=[
            {"role": "user", "content": "Weather in Paris and Tokyo?"},
            assistant,
            *({"role": "tool", "tool_call_id": c["id"], "content": "ok"} for c in calls.values()),
        ],
        tools=[WEATHER_TOOL],
        stream=True,
    )
    text = "".join(c.choices[0].delta.content or "" for c in answer if c.choices)
    assert text.startswith("Tool results: get_weather=")
    assert fake.last().body["contents"][1]["parts"][0]["thoughtSignature"] == split_tool_call_id(calls[0]["id"])[1]


def test_a_function_call_without_its_signature_is_refused_upstream(gateway: RunningGateway) -> None:
    """Gemini 3 answers 400 when a functionCall part comes back without its thoughtSignature: the fake does too,
    so the round trip above proves the signature survived (and this shows what a client that drops it gets)."""
    first = client(gateway).chat.completions.create(
        model="gemini-3-pro-tool", messages=user("Weather in Paris and Tokyo?"), tools=[WEATHER_TOOL]
    )
    message = first.choices[0].message.model_dump(exclude_none=True)
    for call in message["tool_calls"]:
        call["id"] = split_tool_call_id(call["id"])[0]  # a client that rewrote the ids
    with pytest.raises(openai.BadRequestError, match="missing a thought_signature") as caught:
        client(gateway).chat.completions.create(
            model="gemini-3-pro-tool",
            messages=[
                {"role": "user", "content": "Weather in Paris and Tokyo?"},
                message,
                *({"role": "tool", "tool_call_id": c["id"], "content": "ok"} for c in message["tool_calls"]),
            ],
            tools=[WEATHER_TOOL],
        )
    assert caught.value.code == "INVALID_ARGUMENT"


@pytest.mark.parametrize("stream", [False, True])
def test_thoughts_and_their_signatures_survive_the_round_trip(
    gateway: RunningGateway, fake: FakeGoogle, stream: bool
) -> None:
    kwargs: dict[str, Any] = {"model": "gemini-3-pro-think", "messages": user("Think first"), "reasoning_effort": "low"}
    if stream:
        reasoning, content, blocks = "", "", []
        for chunk in client(gateway).chat.completions.create(**kwargs, stream=True):
            if chunk.choices:
                delta = chunk.choices[0].delta.model_dump()
                reasoning += delta.get("reasoning_content") or ""
                content += delta.get("content") or ""
                blocks += delta.get("thinking_blocks") or []
    else:
        message = client(gateway).chat.completions.create(**kwargs).choices[0].message.model_dump()
        reasoning, content, blocks = message["reasoning_content"], message["content"], message["thinking_blocks"]
    thought = "The user sent 1 turns; answer briefly."
    assert reasoning == thought
    assert content == "You said: Think first"
    assert [b["thinking"] for b in blocks] == [thought, ""]
    assert all(b["type"] == "thinking" and b["signature"] for b in blocks)

    client(gateway).chat.completions.create(
        model="gemini-3-pro-think",
        messages=[
            {"role": "user", "content": "Think first"},
            {"role": "assistant", "content": content, "reasoning_content": reasoning, "thinking_blocks": blocks},  # type: ignore[misc]
            {"role": "user", "content": "again"},
        ],
        reasoning_effort="low",
    )
    model_turn = fake.last().body["contents"][1]
    assert model_turn["parts"] == [
        {"text": thought, "thought": True, "thoughtSignature": blocks[0]["signature"]},
        {"text": content, "thoughtSignature": blocks[1]["signature"]},
    ]


# -- blocked prompts, errors, fixtures -------------------------------------------------------------------------------


def test_blocked_prompt_is_a_content_filter_answer(gateway: RunningGateway) -> None:
    completion = client(gateway).chat.completions.create(model="gemini-x-blocked", messages=user("bad"))
    assert completion.choices[0].finish_reason == "content_filter"
    assert "PROHIBITED_CONTENT" in (completion.choices[0].message.content or "")
    chunks = list(client(gateway).chat.completions.create(model="gemini-x-blocked", messages=user("bad"), stream=True))
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "content_filter"
    ]
    assert "PROHIBITED_CONTENT" in "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


@pytest.mark.parametrize("stream", [False, True])
def test_rate_limit_keeps_status_and_turns_retry_info_into_retry_after(gateway: RunningGateway, stream: bool) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        client(gateway).chat.completions.create(model="gemini-x-429", messages=user("x"), stream=stream)
    error = caught.value
    assert error.status_code == 429
    assert error.code == "RESOURCE_EXHAUSTED"
    assert "exceeded your current quota" in error.message
    assert error.response.headers["retry-after"] == "35"  # RetryInfo 34.4s, rounded up


def test_an_error_body_with_a_success_status_is_an_error(gateway: RunningGateway) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        client(gateway).chat.completions.create(model="gemini-x-error-200", messages=user("x"))
    assert caught.value.status_code == 503
    assert caught.value.code == "UNAVAILABLE"
    assert "currently unavailable" in caught.value.message


def test_error_event_mid_stream_reaches_the_client(gateway: RunningGateway) -> None:
    stream = client(gateway).chat.completions.create(model="gemini-x-midstream-error", messages=user("x"), stream=True)
    with pytest.raises(openai.APIError, match="overloaded"):
        for _ in stream:
            pass
    response = httpx.post(
        gateway.url + "/v1/chat/completions",
        json={"model": "gemini-x-midstream-error", "messages": user("x"), "stream": True},
    )
    last = [f for f in response.text.split("\n\n") if f][-1]
    assert '"code":"UNAVAILABLE"' in last
    assert '"status":503' in last


def test_a_bare_error_object_ending_the_stream_reaches_the_client_with_its_status(gateway: RunningGateway) -> None:
    # Google ends a stream that fails after its 200 with the error pretty-printed outside any data: field; a rate
    # limit must read as one (429 RESOURCE_EXHAUSTED and Google's message), not as a broken connection.
    stream = client(gateway).chat.completions.create(model="gemini-x-bare-error", messages=user("x"), stream=True)
    text = ""
    with pytest.raises(openai.APIError, match="Resource has been exhausted") as caught:
        for chunk in stream:
            text += chunk.choices[0].delta.content or "" if chunk.choices else ""
    assert text == "You said:"
    assert caught.value.code == "RESOURCE_EXHAUSTED"
    assert caught.value.type == "rate_limit_error"
    assert isinstance(caught.value.body, dict) and caught.value.body["status"] == 429


def test_google_genai_reads_the_fakes_streams_and_its_bare_error_as_a_429(fake: FakeGoogle) -> None:
    # The fake's SSE, bare error included, is what google-genai's own stream reader reads: text, then a 429
    # RESOURCE_EXHAUSTED ClientError. The fake cannot drift from Google's wire format unnoticed.
    from google import genai
    from google.genai import errors

    sdk = genai.Client(api_key=TEST_KEY, http_options={"base_url": fake.origin, "api_version": "v1beta"})
    texts = [c.text for c in sdk.models.generate_content_stream(model="gemini-x", contents="hi")]
    assert "".join(t or "" for t in texts) == "You said: hi"
    texts = []
    with pytest.raises(errors.ClientError) as caught:
        for chunk in sdk.models.generate_content_stream(model="gemini-x-bare-error", contents="hi"):
            texts.append(chunk.text)
    assert texts == ["You said:"]
    assert caught.value.code == 429 and caught.value.status == "RESOURCE_EXHAUSTED"


def test_a_stream_without_finish_reason_is_reported_truncated(gateway: RunningGateway) -> None:
    stream = client(gateway).chat.completions.create(model="gemini-x-truncated", messages=user("x"), stream=True)
    with pytest.raises(openai.APIError, match="ended before"):
        for _ in stream:
            pass


def test_recorded_gemini3_stream_replays_into_openai_chunks(gateway: RunningGateway) -> None:
    chunks = list(
        client(gateway).chat.completions.create(
            model="gemini-x-fixture", messages=user("r?"), stream=True, stream_options={"include_usage": True}
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == 'There are **3** "r"s in strawberry.\n\nst**r**awbe**rr**y'
    blocks = [b for c in chunks if c.choices for b in (c.choices[0].delta.model_dump().get("thinking_blocks") or [])]
    assert len(blocks) == 1
    assert blocks[0]["thinking"] == ""
    assert blocks[0]["signature"].startswith("EqsFCqgF")
    assert {c.id for c in chunks} == {"bH6LaZW8Fp_3nsEPqtaSwQ4"}
    usage = chunks[-1].usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (9, 23 + 185)


@pytest.mark.parametrize(
    ("messages", "param"),
    [
        ([{"role": "tool", "tool_call_id": "call_unknown", "content": "x"}], "messages[0].tool_call_id"),
        (
            [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]}],
            "messages[0].content[0].image_url.url",
        ),
        (
            [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "x", "format": "ogg"}}]}],
            "messages[0].content[0].input_audio",
        ),
        ([{"role": "system", "content": "only a system message"}], "messages"),
    ],
)
def test_bad_requests_are_400_naming_the_field(gateway: RunningGateway, messages: Any, param: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client(gateway).chat.completions.create(model="gemini-2.5-flash", messages=messages)
    assert caught.value.param == param


def test_n_is_served_natively_as_candidates_plain(gateway: RunningGateway, fake: FakeGoogle) -> None:
    completion = client(gateway).chat.completions.create(model="gemini-2.5-flash", messages=user("hi"), n=3)
    assert fake.last().body["generationConfig"]["candidateCount"] == 3
    assert [c.index for c in completion.choices] == [0, 1, 2]
    assert [c.message.content for c in completion.choices] == ["You said: hi", "You said: hi #1", "You said: hi #2"]
    assert all(c.finish_reason == "stop" for c in completion.choices)
    assert completion.usage is not None and completion.usage.prompt_tokens == USAGE["promptTokenCount"]


def test_n_is_served_natively_as_candidates_streamed_with_choice_indexes(gateway: RunningGateway) -> None:
    chunks = list(
        client(gateway).chat.completions.create(
            model="gemini-2.5-flash-tool",
            messages=user("weather?"),
            n=2,
            stream=True,
            stream_options={"include_usage": True},
            tools=[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
        )
    )
    calls: dict[int, list[Any]] = {0: [], 1: []}
    finishes = {}
    for chunk in chunks:
        for choice in chunk.choices:
            calls[choice.index] += choice.delta.tool_calls or []
            if choice.finish_reason:
                finishes[choice.index] = choice.finish_reason
    assert finishes == {0: "tool_calls", 1: "tool_calls"}
    # Each choice numbers its own tool calls from 0, as OpenAI does.
    for index in (0, 1):
        assert [c.index for c in calls[index] if c.id] == [0, 1]
        assert [c.function.name for c in calls[index] if c.id] == ["get_weather", "get_weather"]
    assert chunks[-1].usage is not None and not chunks[-1].choices


def test_n_above_gemini_s_candidate_limit_is_a_400(gateway: RunningGateway) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client(gateway).chat.completions.create(model="gemini-2.5-flash", messages=user("x"), n=9)
    assert caught.value.param == "n"
