"""guardrails (issue 21, guardrails.py): regex guards on prompts and answers (plain and streamed, masks split across
chunks), the guardrail webhook (pass, mask, reject, failureMode, forwarded and CEL headers), openAIModeration,
llm.policies.guardrails and named guards. The real gateway and the openai SDK, against loopback fakes: an echo
upstream (it answers with the last user message, streamed a few characters per chunk, so the test controls the
answer), a webhook guard server and a moderation endpoint, all recording what they got."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai
import orjson
import pytest
from agentgateway.config import GuardRejection, RegexGuard, load_config
from agentgateway.errors import ConfigError
from agentgateway.guardrails import (
    HOLD_BACK,
    WEBHOOK_OVERLAP,
    WEBHOOK_WINDOW,
    GuardRejected,
    MessagesStreamGuard,
    RegexRules,
    StreamGuard,
)
from aiohttp import web
from conftest import TEST_KEY, RunningGateway, openai_client, start_gateway
from fakes.server import serve_in_thread


@dataclass
class Fakes:
    chats: list[Any] = field(default_factory=list)
    hooks: list[tuple[str, dict[str, str], Any]] = field(default_factory=list)
    moderations: list[tuple[dict[str, str], Any]] = field(default_factory=list)
    url: str = ""


def _chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> bytes:
    chunk = {"id": "chatcmpl-echo", "object": "chat.completion.chunk", "created": 1700000000, "model": model,
             "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}  # fmt: skip
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def _app(fakes: Fakes) -> web.Application:
    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        fakes.chats.append(body)
        text = body["messages"][-1]["content"]
        text = text if isinstance(text, str) else "".join(p.get("text", "") for p in text)
        model = body["model"]
        usage = {"prompt_tokens": 11, "completion_tokens": 22, "total_tokens": 33}
        if not body.get("stream"):
            return web.json_response({
                "id": "chatcmpl-echo", "object": "chat.completion", "created": 1700000000, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": usage,
            })  # fmt: skip
        piece = int(model.rsplit("-", 1)[1])
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(_chunk(model, {"role": "assistant", "content": ""}))
        for start in range(0, len(text), piece):
            await response.write(_chunk(model, {"content": text[start : start + piece]}))
        await response.write(_chunk(model, {}, "stop"))
        if (body.get("stream_options") or {}).get("include_usage"):
            final = {"id": "chatcmpl-echo", "object": "chat.completion.chunk", "created": 1700000000,
                     "model": model, "choices": [], "usage": usage}  # fmt: skip
            await response.write(b"data: " + orjson.dumps(final) + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    def verdict(text: str, kind: str) -> dict[str, Any]:
        if "REJECTME" in text:
            return {"action": {"body": "the webhook refused it", "status_code": 422, "reason": "test"}}
        if "secret" in text:
            if kind == "request":
                return {
                    "action": {"body": {"messages": [{"role": "user", "content": text.replace("secret", "[hidden]")}]}}
                }
            return {
                "action": {
                    "body": {
                        "choices": [{"message": {"role": "assistant", "content": text.replace("secret", "[gone]")}}]
                    }
                }
            }
        return {"action": {"reason": "fine"}}

    async def hook_request(request: web.Request) -> web.Response:
        body = await request.json()
        fakes.hooks.append((request.path, dict(request.headers), body))
        return web.json_response(verdict(body["body"]["messages"][-1]["content"], "request"))

    async def hook_response(request: web.Request) -> web.Response:
        body = await request.json()
        fakes.hooks.append((request.path, dict(request.headers), body))
        return web.json_response(verdict(body["body"]["choices"][0]["message"]["content"], "response"))

    async def moderation(request: web.Request) -> web.Response:
        body = await request.json()
        fakes.moderations.append((dict(request.headers), body))
        flagged = [("violent" in text) for text in body["input"]]
        results = [{"flagged": f, "categories": {}, "category_scores": {}} for f in flagged]
        return web.json_response({"id": "modr-1", "model": body["model"], "results": results})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/request", hook_request)
    app.router.add_post("/response", hook_response)
    app.router.add_post("/v1/moderations", moderation)
    return app


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def fakes() -> Iterator[Fakes]:
    state = Fakes()
    state.url, stop = serve_in_thread(_app(state), "guard-fakes")
    yield state
    stop()


@pytest.fixture(scope="module")
def gateway(fakes: Fakes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    host = fakes.url.removeprefix("http://")
    down = f"127.0.0.1:{_closed_port()}"
    params = f'apiKey: {TEST_KEY}, baseUrl: "{fakes.url}/v1"'
    config = f"""
llm:
  policies:
    guardrails:
      request:
      - regex: {{action: reject, rules: [{{pattern: "GLOBAL-BAN"}}]}}
  guardrails:
    pii:
      streaming: enabled
      request:
      - regex: {{action: reject, rules: [{{builtin: ssn}}]}}
        rejection: {{status: 400, body: "no SSNs please", headers: {{set: {{x-guard: pii}}}}}}
      - regex: {{action: mask, rules: [{{builtin: email}}, {{pattern: "sk-[a-z0-9]{{8}}"}}]}}
      response:
      - regex: {{action: mask, rules: [{{builtin: creditCard}}, {{builtin: phoneNumber}}]}}
      - regex: {{action: reject, rules: [{{pattern: "FORBIDDEN-WORD"}}]}}
  models:
  - {{name: guarded, provider: openAI, params: {{{params}, model: echo-3}}, guardrails: pii}}
  - {{name: guarded-1, provider: openAI, params: {{{params}, model: echo-1}}, guardrails: pii}}
  - name: no-stream-guard
    provider: openAI
    params: {{{params}, model: echo-4}}
    guardrails:
      response:
      - regex: {{action: mask, rules: [{{builtin: creditCard}}]}}
  - name: hooked
    provider: openAI
    params: {{{params}, model: echo-5}}
    guardrails:
      request:
      - webhook:
          target: {{host: "{host}"}}
          forwardHeaderMatches: [{{name: x-tenant, value: {{exact: acme}}}}]
          headers: {{x-model: llmRequest.model}}
      - openAIModeration:
          baseUrl: "{fakes.url}"
          policies: {{backendAuth: {{key: mod-secret-key}}}}
      response:
      - webhook: {{target: {{host: "{host}"}}}}
  - name: hooked-down
    provider: openAI
    params: {{{params}, model: echo-5}}
    guardrails: {{request: [{{webhook: {{target: {{host: "{down}"}}}}}}]}}
  - name: hooked-open
    provider: openAI
    params: {{{params}, model: echo-5}}
    guardrails: {{request: [{{webhook: {{target: {{host: "{down}"}}, failureMode: failOpen}}}}]}}
  - name: hooked-stream
    provider: openAI
    params: {{{params}, model: echo-7}}
    guardrails: {{streaming: enabled, response: [{{webhook: {{target: {{host: "{host}"}}}}}}]}}
  - {{name: plain, provider: openAI, params: {{{params}, model: echo-5}}}}
"""
    running = start_gateway(config, tmp_path_factory.mktemp("gw-guard"))
    yield running
    running.stop()
    assert "mod-secret-key" not in running.log()


def _ask(gateway: RunningGateway, model: str, text: str, **extra: Any) -> Any:
    return openai_client(gateway.url).chat.completions.create(
        model=model, messages=[{"role": "user", "content": text}], **extra
    )


def _streamed(gateway: RunningGateway, model: str, text: str) -> tuple[list[str], Any]:
    pieces: list[str] = []
    usage = None
    stream = openai_client(gateway.url).chat.completions.create(
        model=model, messages=[{"role": "user", "content": text}], stream=True, stream_options={"include_usage": True}
    )
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
    return pieces, usage


CARD = "4111 1111 1111 1111"


def _message(error: openai.APIStatusError) -> str:
    body = error.body
    assert isinstance(body, dict), body
    return str(body["message"])


# -- regex guards on prompts -----------------------------------------------------------------------------------------


def test_a_prompt_with_an_ssn_is_rejected_with_the_configured_status_body_and_headers(
    gateway: RunningGateway, fakes: Fakes
) -> None:
    before = len(fakes.chats)
    with pytest.raises(openai.BadRequestError) as caught:
        _ask(gateway, "guarded", "my ssn is 123-45-6789")
    assert caught.value.status_code == 400
    assert _message(caught.value) == "no SSNs please"
    assert caught.value.code == "guardrail_rejected"
    assert caught.value.response.headers["x-guard"] == "pii"
    assert len(fakes.chats) == before  # never sent upstream


def test_a_prompt_with_an_email_is_masked_before_it_is_sent(gateway: RunningGateway, fakes: Fakes) -> None:
    answer = _ask(gateway, "guarded", "write to john.doe@example.com with key sk-abcd1234 today")
    sent = fakes.chats[-1]["messages"][-1]["content"]
    assert sent == "write to <EMAIL_ADDRESS> with key <masked> today"
    assert answer.choices[0].message.content == sent


def test_llm_policies_guardrails_apply_to_every_model(gateway: RunningGateway) -> None:
    for model in ("plain", "guarded"):
        with pytest.raises(openai.PermissionDeniedError) as caught:
            _ask(gateway, model, "this says GLOBAL-BAN")
        assert caught.value.status_code == 403  # agentgateway's default rejection
        assert "rejected due to inappropriate content" in caught.value.message
    assert _ask(gateway, "plain", "card " + CARD).choices[0].message.content == "card " + CARD  # no guard of its own


# -- regex guards on answers -----------------------------------------------------------------------------------------


def test_a_plain_answer_is_masked(gateway: RunningGateway) -> None:
    answer = _ask(gateway, "guarded", f"pay with {CARD} or call (555) 123-4567; not 4111 1111 1111 1112")
    assert answer.choices[0].message.content == "pay with <CREDIT_CARD> or call <PHONE_NUMBER>; not 4111 1111 1111 1112"
    assert answer.usage is not None and answer.usage.total_tokens == 33


@pytest.mark.parametrize("model", ["guarded", "guarded-1"])
def test_a_streamed_answer_is_masked_across_chunk_boundaries(gateway: RunningGateway, model: str) -> None:
    text = f"pay with {CARD} now, or call (555) 123-4567 later."
    pieces, usage = _streamed(gateway, model, text)
    assert "".join(pieces) == "pay with <CREDIT_CARD> now, or call <PHONE_NUMBER> later."
    assert not any("1111" in piece or "4567" in piece for piece in pieces)
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (11, 22)  # the upstream's, exact


def test_a_streamed_answer_is_not_held_whole(gateway: RunningGateway) -> None:
    text = " ".join(f"word{i}" for i in range(200))  # ~1 200 characters, 400 chunks of 3
    pieces, _ = _streamed(gateway, "guarded", text)
    assert "".join(pieces) == text
    assert len(pieces) > 100  # released as it comes, only HOLD_BACK characters behind
    assert max(len(piece) for piece in pieces) <= HOLD_BACK + 3


def test_a_forbidden_answer_is_rejected_plain_and_ends_a_stream_with_the_rejection(gateway: RunningGateway) -> None:
    with pytest.raises(openai.PermissionDeniedError) as caught:
        _ask(gateway, "guarded", "the answer has FORBIDDEN-WORD in it")
    assert caught.value.code == "guardrail_rejected"
    text = "x" * 300 + " then FORBIDDEN-WORD and more text after it"
    pieces: list[str] = []
    with pytest.raises(openai.APIError) as streamed:
        for chunk in openai_client(gateway.url).chat.completions.create(
            model="guarded", messages=[{"role": "user", "content": text}], stream=True
        ):
            pieces.extend(c.delta.content or "" for c in chunk.choices)
    assert "rejected due to inappropriate content" in streamed.value.message
    assert "FORBIDDEN" not in "".join(pieces)
    assert "".join(pieces) == "x" * len("".join(pieces))  # what went out before the match, nothing of it


def test_response_guards_leave_streams_alone_unless_streaming_is_enabled(gateway: RunningGateway) -> None:
    assert _ask(gateway, "no-stream-guard", "card " + CARD).choices[0].message.content == "card <CREDIT_CARD>"
    pieces, _ = _streamed(gateway, "no-stream-guard", "card " + CARD)
    assert "".join(pieces) == "card " + CARD  # agentgateway's default: streaming: disabled


# -- webhook and moderation ------------------------------------------------------------------------------------------


def test_the_webhook_sees_the_messages_and_its_pass_lets_the_request_through(
    gateway: RunningGateway, fakes: Fakes
) -> None:
    client = openai_client(gateway.url)
    answer = client.chat.completions.create(
        model="hooked", messages=[{"role": "user", "content": "hello there"}], extra_headers={"x-tenant": "acme"}
    )
    assert answer.choices[0].message.content == "hello there"
    _, headers, body = next(h for h in reversed(fakes.hooks) if h[0] == "/request")
    assert body == {"body": {"messages": [{"role": "user", "content": "hello there"}]}}
    assert headers["x-tenant"] == "acme" and headers["x-model"] == "hooked"
    assert fakes.hooks[-1][0] == "/response"
    assert fakes.hooks[-1][2]["body"]["choices"][0]["message"]["content"] == "hello there"


def test_the_webhook_masks_the_prompt_and_the_answer(gateway: RunningGateway, fakes: Fakes) -> None:
    answer = _ask(gateway, "hooked", "my secret plan")
    assert fakes.chats[-1]["messages"][-1]["content"] == "my [hidden] plan"
    assert answer.choices[0].message.content == "my [hidden] plan"
    plain = _ask(gateway, "hooked", "a secret answer".replace("secret", "se" + "cret"))
    assert plain.choices[0].message.content == "a [hidden] answer"


def test_the_webhook_rejects_with_its_own_status_and_body(gateway: RunningGateway) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        _ask(gateway, "hooked", "please REJECTME")
    assert _message(caught.value) == "the webhook refused it"


def _raw_stream(gateway: RunningGateway, model: str, text: str) -> bytes:
    body = {"model": model, "stream": True, "messages": [{"role": "user", "content": text}]}
    with httpx.stream("POST", gateway.url + "/v1/chat/completions", json=body, timeout=30) as response:
        assert response.status_code == 200
        return response.read()


def test_a_streaming_webhook_sees_the_answer_in_windows_and_passes_it(gateway: RunningGateway, fakes: Fakes) -> None:
    text = "".join(f"sentence {i} of a long answer. " for i in range(80))  # about 2 500 characters: 3 windows
    before = len(fakes.hooks)
    pieces, _ = _streamed(gateway, "hooked-stream", text)
    assert "".join(pieces) == text
    windows = [h[2]["body"]["choices"][0]["message"]["content"] for h in fakes.hooks[before:] if h[0] == "/response"]
    assert len(windows) == 3
    assert windows[0] == text[: len(windows[0])] and len(windows[0]) >= WEBHOOK_WINDOW
    # each later window starts with the last WEBHOOK_OVERLAP characters of the one before it
    assert windows[1].startswith(windows[0][-WEBHOOK_OVERLAP:])
    assert "".join([windows[0], *(w[WEBHOOK_OVERLAP:] for w in windows[1:])]) == text


def test_a_streaming_webhook_rejects_a_window_and_its_text_is_never_sent(gateway: RunningGateway) -> None:
    text = "x" * 1500 + " please REJECTME now"
    raw = _raw_stream(gateway, "hooked-stream", text).decode()
    frames = [f for f in raw.split("\n\n") if f]
    sent = "".join(
        (choice["delta"].get("content") or "")
        for frame in frames
        if frame.startswith("data: {") and '"choices"' in frame
        for choice in orjson.loads(frame[6:])["choices"]
    )
    assert "REJECTME" not in sent and sent == text[: len(sent)]
    assert len(sent) >= WEBHOOK_WINDOW  # the first window passed and went out before the rejection
    error = orjson.loads(frames[-1][6:])["error"]
    assert error["message"] == "the webhook refused it" and error["code"] == "guardrail_rejected"
    short = _raw_stream(gateway, "hooked-stream", "REJECTME").decode()
    assert short.count("data: ") == 1 and "the webhook refused it" in short  # nothing but the error


def test_a_streaming_webhook_does_not_apply_a_mask(gateway: RunningGateway) -> None:
    pieces, _ = _streamed(gateway, "hooked-stream", "a secret answer")
    assert "".join(pieces) == "a secret answer"


def test_moderation_rejects_a_flagged_prompt_and_passes_the_key(gateway: RunningGateway, fakes: Fakes) -> None:
    with pytest.raises(openai.PermissionDeniedError):
        _ask(gateway, "hooked", "something violent")
    headers, body = fakes.moderations[-1]
    assert headers["Authorization"] == "Bearer mod-secret-key"
    assert body == {"model": "omni-moderation-latest", "input": ["something violent"]}
    assert _ask(gateway, "hooked", "something calm").choices[0].message.content == "something calm"


def test_an_unreachable_webhook_fails_closed_by_default_and_open_when_configured(gateway: RunningGateway) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        _ask(gateway, "hooked-down", "hi")
    assert caught.value.status_code == 503
    assert caught.value.code == "guardrail_unavailable"
    assert "guardrail webhook" in caught.value.message
    assert _ask(gateway, "hooked-open", "hi").choices[0].message.content == "hi"


# -- config ----------------------------------------------------------------------------------------------------------

_MODEL = "{name: m, provider: openAI, params: {apiKey: k}, guardrails: %s}"


@pytest.mark.parametrize(
    ("guards", "problem"),
    [
        ("{request: [{bedrockGuardrails: {guardrailIdentifier: g, guardrailVersion: '1', region: us-east-1}}]}",
         "bedrockGuardrails is not supported"),
        ("{request: [{googleModelArmor: {templateId: t, projectId: p}}]}", "googleModelArmor is not supported"),
        ("{response: [{azureContentSafety: {endpoint: e}}]}", "azureContentSafety is not supported"),
        ("{response: [{openAIModeration: {}}]}", "openAIModeration checks prompts only"),
        ("{request: [{regex: {rules: [{pattern: '(('}]}}]}", "invalid regex"),
        ("{request: [{regex: {rules: [{builtin: iban}]}}]}", "builtin"),
        ("missing", "no guardrails named 'missing'"),
    ],
)  # fmt: skip
def test_guard_config_errors_name_the_problem(guards: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config("llm: {models: [%s]}" % (_MODEL % guards))
    assert problem in str(caught.value)
    assert "llm.models[0].guardrails" in str(caught.value)


# -- the regex rules and the stream guard, unit by unit --------------------------------------------------------------


def _rules(*rules: dict[str, str], action: str = "mask") -> RegexRules:
    return RegexRules(RegexGuard.model_validate({"action": action, "rules": list(rules)}))


@pytest.mark.parametrize(
    ("rule", "text", "masked"),
    [
        ({"builtin": "email"}, "mail john@example.com or jane@other.com", "mail <EMAIL_ADDRESS> or <EMAIL_ADDRESS>"),
        ({"builtin": "ssn"}, "My ssn is 123-45-6789 ok", "My ssn is <SSN> ok"),
        ({"builtin": "creditCard"}, "Card number: 4111-1111-1111-1111", "Card number: <CREDIT_CARD>"),
        ({"builtin": "phoneNumber"}, "call +1 415-555-0100 now", "call <PHONE_NUMBER> now"),
        ({"builtin": "caSin"}, "SIN 046 454 286 here", "SIN <CA_SIN> here"),
    ],
)  # fmt: skip
def test_builtins_mask_as_agentgateway_names_them(rule: dict[str, str], text: str, masked: str) -> None:
    assert _rules(rule).mask(text) == masked


def test_builtins_check_their_numbers() -> None:
    assert _rules({"builtin": "creditCard"}).mask("4111-1111-1111-1112") is None  # fails Luhn
    assert _rules({"builtin": "ssn"}).mask("000-12-3456") is None
    assert _rules({"builtin": "caSin"}).mask("046 454 287") is None


def _stream_frames(text: str, piece: int) -> bytes:
    frames = _chunk("m", {"role": "assistant", "content": ""})
    for start in range(0, len(text), piece):
        frames += _chunk("m", {"content": text[start : start + piece]})
    return frames + _chunk("m", {}, "stop") + b"data: [DONE]\n\n"


def _content(frames: bytes) -> str:
    out = ""
    for frame in frames.split(b"\n\n"):
        if frame.startswith(b"data: {"):
            for choice in orjson.loads(frame[6:])["choices"]:
                out += choice["delta"].get("content") or ""
    return out


@pytest.mark.parametrize("piece", [1, 2, 5, 17])
def test_the_stream_guard_masks_the_same_whatever_the_chunking(piece: int) -> None:
    rules = _rules({"builtin": "email"}, {"builtin": "creditCard"}, {"pattern": "secret-[0-9]+"})
    text = f"mail a.b@example.org, pay {CARD}; code secret-12345 end " + "filler " * 40 + "z@q.io"
    frames = _stream_frames(text, piece)
    expected = rules.mask(text)
    for split in range(0, len(frames), max(1, len(frames) // 40)):
        guard = StreamGuard([(rules, None)])  # type: ignore[list-item]
        # the core hands over whole frames; here every read boundary of frames a frame split would give
        cut = frames.rfind(b"\n\n", 0, split) + 2 if split else 0
        out = guard.feed(frames[:cut]) + guard.feed(frames[cut:]) + guard.finish()
        assert _content(out) == expected
        assert out.endswith(b"data: [DONE]\n\n")


def _messages_frames(blocks: list[str], piece: int) -> bytes:
    """An Anthropic Messages stream with one text block per entry of ``blocks`` (a tool_use block between them), the
    text in ``piece``-character ``text_delta`` events."""

    def event(name: str, payload: dict[str, Any]) -> bytes:
        return b"event: " + name.encode() + b"\ndata: " + orjson.dumps({"type": name, **payload}) + b"\n\n"

    out = event("message_start", {"message": {"id": "msg_1"}}) + event("ping", {})
    index = 0
    for text in blocks:
        out += event("content_block_start", {"index": index, "content_block": {"type": "text", "text": ""}})
        for start in range(0, len(text), piece):
            delta = {"type": "text_delta", "text": text[start : start + piece]}
            out += event("content_block_delta", {"index": index, "delta": delta})
        out += event("content_block_stop", {"index": index})
        tool = {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}
        out += event("content_block_start", {"index": index + 1, "content_block": tool})
        json_delta = {"type": "input_json_delta", "partial_json": '{"card": "4111 1111 1111 1111"}'}
        out += event("content_block_delta", {"index": index + 1, "delta": json_delta})
        out += event("content_block_stop", {"index": index + 1})
        index += 2
    delta = {"delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {"output_tokens": 5}}
    return out + event("message_delta", delta) + event("message_stop", {})


def _block_texts(frames: bytes) -> dict[int, str]:
    """Each block's text from the ``text_delta`` events, checking each arrives before its block's stop."""
    texts: dict[int, str] = {}
    stopped: set[int] = set()
    for frame in frames.split(b"\n\n"):
        if not frame:
            continue
        event = orjson.loads(frame.partition(b"\ndata: ")[2])
        if event["type"] == "content_block_stop":
            stopped.add(event["index"])
        elif event["type"] == "content_block_delta" and event["delta"]["type"] == "text_delta":
            assert event["index"] not in stopped, "text after its block's content_block_stop"
            assert event["delta"]["text"], "an empty text_delta was sent"
            texts[event["index"]] = texts.get(event["index"], "") + event["delta"]["text"]
    return texts


@pytest.mark.parametrize("piece", [1, 3, 7, 40])
def test_the_messages_stream_guard_masks_text_deltas_the_same_whatever_the_chunking(piece: int) -> None:
    rules = _rules({"builtin": "email"}, {"builtin": "creditCard"})
    first = f"mail a.b@example.org, pay {CARD}; " + "filler " * 30 + "and z@q.io"
    second = f"again {CARD}"
    frames = _messages_frames([first, second], piece)
    expected = {0: rules.mask(first), 2: rules.mask(second)}
    for split in range(0, len(frames), max(1, len(frames) // 30)):
        guard = MessagesStreamGuard([(rules, None)])  # type: ignore[list-item]
        cut = frames.rfind(b"\n\n", 0, split) + 2 if split else 0
        out = guard.feed(frames[:cut]) + guard.feed(frames[cut:]) + guard.finish()
        assert _block_texts(out) == expected
        assert out.count(b'"partial_json":"{\\"card\\": \\"4111 1111 1111 1111\\"}"') == 2  # tool input untouched
        assert out.endswith(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')


def test_the_messages_stream_guard_rejects_before_the_match_is_sent() -> None:
    rules = _rules({"pattern": "FORBIDDEN-WORD"}, action="reject")
    frames = _messages_frames(["it says FORBIDDEN-WORD here"], 3)
    guard = MessagesStreamGuard([(rules, GuardRejection())])
    sent = b""
    with pytest.raises(GuardRejected):
        for frame in frames.split(b"\n\n"):
            sent += guard.feed(frame + b"\n\n")
    assert b"FORBIDDEN" not in sent and b"FORB" not in sent


def test_the_needles_never_change_what_the_builtins_find() -> None:
    """The prefilter (needles in the text's shape) only skips rules that cannot match: random digit-heavy texts
    give the same spans with it as with every rule run."""
    import random

    builtins = ["ssn", "creditCard", "phoneNumber", "email", "caSin"]
    rules = _rules(*({"builtin": name} for name in builtins))
    every = tuple(rule for rule, _, _ in rules._rules)
    generator = random.Random(21)
    separators = [" ", "-", ".", "", "(", ")", "+", " x@y.io ", "a"]
    for _ in range(20000):
        parts = []
        for _ in range(generator.randint(1, 6)):
            parts.append("".join(generator.choice("0123456789") for _ in range(generator.randint(1, 4))))
            parts.append(generator.choice(separators))
        text = "".join(parts)
        assert rules.spans(text) == rules.spans(text, every), text
