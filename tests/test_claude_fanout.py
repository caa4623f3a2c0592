"""``n`` > 1 on the providers that answer one choice per call (issue 20, python/agentgateway/fanout.py): Anthropic,
Bedrock Converse and Claude on Vertex AI get n concurrent upstream requests (each validated by the fakes with the
providers' own types, so none carries ``n``), merged into one answer: choices 0..n-1, usage summed, interleaved
streams with one summed usage chunk and one ``[DONE]``; one call failing fails the answer and cancels the others."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai
import orjson
import pytest
from aiohttp import web
from conftest import TEST_KEY, RunningGateway, abort_stream, free_port, openai_client, start_gateway
from fakes.anthropic_upstream import (
    _NON_STREAMING,
    _STREAMING,
    USAGE,
    FakeAnthropic,
    answer,
    check_rules,
    sse,
    start_fake_anthropic,
    stream_events,
)
from fakes.bedrock_upstream import USAGE as BEDROCK_USAGE
from fakes.bedrock_upstream import FakeBedrock, start_fake_bedrock
from fakes.gemini_upstream import FakeGoogle, start_fake_google
from fakes.server import serve_in_thread
from prometheus_client.parser import text_string_to_metric_families
from test_vertex import adc_env

ACCESS_KEY = "AKIDTESTFANOUT"
SECRET_KEY = "fanout/secret+key/0123456789abcdefghij"
VERTEX_CLAUDE = "claude-sonnet-4-5@20250929"
BEDROCK_CLAUDE = "us.anthropic.claude-3-7-sonnet-20250219-v1:0"
#: what the cancelled calls of the scripted fake wait for at most before they give up (a failing test, not a pass)
GIVE_UP = 20.0

CLAUDE_PROMPT = USAGE["input_tokens"] + USAGE["cache_read_input_tokens"] + USAGE["cache_creation_input_tokens"]
BEDROCK_PROMPT = (
    BEDROCK_USAGE["inputTokens"] + BEDROCK_USAGE["cacheReadInputTokens"] + BEDROCK_USAGE["cacheWriteInputTokens"]
)


# -- a scripted Anthropic upstream: calls told apart by their order of arrival --------------------------------------


@dataclass
class Scripted:
    """``/v1/messages`` whose behaviour depends on the model and on the order in which the calls of one fan-out
    arrive (``#1`` first). Bodies are validated with the anthropic SDK's request types and the API's rules.

    - ``hold-fail``: #1 answers nothing (whole) or its message_start (stream), then waits until the gateway drops
      its connection; #2 answers 529 overloaded_error. ``silent-fail``: the same, but #1 sends nothing (not even its
      status line) in streams too.
    - ``mid-fail`` (streams): #1 sends message_start and text, then waits until its connection is dropped; #2 sends
      message_start, text and an ``error`` event.
    - ``both-hold`` (streams): every call sends message_start and text, then waits until its connection is dropped.
    - ``interleave`` (streams): #1 sends its first text (``call 1 ``) and waits until the client saw #2's text
      (``seen[2]``) before it sends the rest; #2 sends its message_start and waits until the client saw #1's text
      (``seen[1]``) before its own. Only a gateway that forwards each call's chunks as they arrive gets them through:
      otherwise a call gives up after GIVE_UP and answers ``TIMEOUT``.
    """

    arrivals: dict[str, int] = field(default_factory=dict)
    #: models whose held call's connection the gateway closed (the call was cancelled)
    cancelled: list[str] = field(default_factory=list)
    cancelled_event: threading.Event = field(default_factory=threading.Event)
    #: released once per cancelled call
    cancels: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))
    seen: dict[int, threading.Event] = field(default_factory=lambda: {1: threading.Event(), 2: threading.Event()})
    bodies: list[dict[str, Any]] = field(default_factory=list)
    origin: str = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        self.bodies.append(body)
        (_STREAMING if body.get("stream") else _NON_STREAMING).validate_python(body)
        check_rules(body)
        model = body["model"].removeprefix("scripted-")
        call = self.arrivals[model] = self.arrivals.get(model, 0) + 1
        message = answer("claude-x", body)
        message["content"] = [{"type": "text", "text": f"call {call} answers"}]
        if model in ("hold-fail", "silent-fail"):
            if call == 2:
                return web.json_response(
                    {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, status=529
                )
            response = await self._start(request) if body.get("stream") and model == "hold-fail" else None
            if response is not None:
                await response.write(stream_events(message)[0])
            return await self._hold(model, response)
        response = await self._start(request)
        events = stream_events(message)
        if model == "both-hold":
            await response.write(b"".join(events[:5]))
            return await self._hold(model, response)
        if model == "mid-fail":
            if call == 1:
                for event in events[:5]:
                    await response.write(event)
                return await self._hold(model, response)
            error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
            for event in [*events[:5], sse("error", error)]:
                await response.write(event)
        elif model == "interleave":
            # events: message_start, ping, content_block_start, "call N ", "answers", block stop, delta, stop
            head = 4 if call == 1 else 2
            await response.write(b"".join(events[:head]))
            other = self.seen[2 if call == 1 else 1]
            if not await asyncio.get_running_loop().run_in_executor(None, other.wait, GIVE_UP):
                message["content"] = [{"type": "text", "text": f"call {call} TIMEOUT"}]
                events = stream_events(message)
            await response.write(b"".join(events[head:]))
        await response.write_eof()
        return response

    @staticmethod
    async def _start(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream; charset=utf-8"})
        await response.prepare(request)
        return response

    async def _hold(self, model: str, response: web.StreamResponse | None) -> web.StreamResponse:
        try:
            await asyncio.sleep(GIVE_UP)  # a fail-safe: the gateway cancels this call long before
        except asyncio.CancelledError:  # aiohttp cancels the handler when the gateway drops the connection
            self.cancelled.append(model)
            self.cancelled_event.set()
            self.cancels.release()
            raise
        return response or web.json_response({"type": "error", "error": {"type": "api_error", "message": "held"}})


# -- fixtures -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def anthropic_fake() -> Iterator[FakeAnthropic]:
    fake, stop = start_fake_anthropic(TEST_KEY)
    yield fake
    stop()


@pytest.fixture(scope="module")
def bedrock_fake() -> Iterator[FakeBedrock]:
    fake, stop = start_fake_bedrock(keys={ACCESS_KEY: (SECRET_KEY, None)})
    yield fake
    stop()


@pytest.fixture(scope="module")
def google_fake() -> Iterator[FakeGoogle]:
    fake, stop = start_fake_google(TEST_KEY)
    yield fake
    stop()


@pytest.fixture(scope="module")
def scripted() -> Iterator[Scripted]:
    fake = Scripted()
    app = web.Application(handler_args={"lingering_time": 0})
    app.router.add_post("/v1/messages", fake.handle)
    fake.origin, stop = serve_in_thread(app, "fake-scripted-anthropic")
    yield fake
    stop()


@pytest.fixture(scope="module")
def gateway(
    anthropic_fake: FakeAnthropic,
    bedrock_fake: FakeBedrock,
    google_fake: FakeGoogle,
    scripted: Scripted,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningGateway]:
    stats = free_port()
    config = f"""
llm:
  models:
  - name: anthropic
    provider: anthropic
    params: {{model: claude-real, apiKey: {TEST_KEY}, baseUrl: "{anthropic_fake.origin}"}}
  - name: bedrock
    provider: bedrock
    params: {{model: "{BEDROCK_CLAUDE}", awsRegion: us-east-1, baseUrl: "{bedrock_fake.base_url}"}}
  - name: vertex
    provider: vertex
    params: {{model: "{VERTEX_CLAUDE}", vertexProject: test-project, vertexRegion: us-central1,
              baseUrl: "{google_fake.origin}"}}
  - name: gemini
    provider: vertex
    params: {{model: gemini-2.5-flash, vertexProject: test-project, vertexRegion: us-central1,
              baseUrl: "{google_fake.origin}"}}
  - name: "scripted-*"
    provider: anthropic
    params: {{apiKey: {TEST_KEY}, baseUrl: "{scripted.origin}"}}
  - name: scripted-with-fallback
    provider: anthropic
    params: {{model: hold-fail, apiKey: {TEST_KEY}, baseUrl: "{scripted.origin}"}}
  - name: first-error
    provider: anthropic
    params: {{model: claude-firsterror, apiKey: {TEST_KEY}, baseUrl: "{anthropic_fake.origin}"}}
  - name: fallback
    provider: anthropic
    params: {{model: claude-fallback, apiKey: {TEST_KEY}, baseUrl: "{anthropic_fake.origin}"}}
  virtualModels:
  - name: failover
    routing:
      failover: {{targets: [{{model: scripted-with-fallback, priority: 0}}, {{model: fallback, priority: 1}}]}}
  - name: stream-failover
    routing:
      failover: {{targets: [{{model: first-error, priority: 0}}, {{model: fallback, priority: 1}}]}}
config:
  statsAddr: "127.0.0.1:{stats}"
"""
    tmp = tmp_path_factory.mktemp("gw-fanout")
    env = {
        **adc_env(tmp, google_fake.service_account_info()),
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    running = start_gateway(config, tmp, env=env, unset=("AWS_SESSION_TOKEN", "AWS_PROFILE"))
    running.stats_port = stats  # type: ignore[attr-defined]
    yield running
    running.stop()


def client(gateway: RunningGateway) -> openai.OpenAI:
    return openai_client(gateway.url)


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


#: model -> (upstream calls counted by, expected text of every choice, prompt tokens and completion tokens per call)
PATHS: dict[str, tuple[str, str, int, int]] = {
    "anthropic": ("anthropic", "You said: Hi", CLAUDE_PROMPT, USAGE["output_tokens"]),
    "bedrock": ("bedrock", "Hello from Bedrock", BEDROCK_PROMPT, BEDROCK_USAGE["outputTokens"]),
    "vertex": ("vertex", "You said: Hi", CLAUDE_PROMPT, USAGE["output_tokens"]),
}


def upstream_calls(
    path: str, anthropic_fake: FakeAnthropic, bedrock_fake: FakeBedrock, google_fake: FakeGoogle
) -> Callable[[], int]:
    if path == "anthropic":
        return lambda: anthropic_fake.count("claude-real")
    if path == "bedrock":
        return lambda: bedrock_fake.count(BEDROCK_CLAUDE)
    return lambda: sum(1 for recorded in google_fake.requests if VERTEX_CLAUDE in recorded.path)


# -- whole answers ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", sorted(PATHS))
def test_plain_n_gives_n_choices_with_summed_usage(
    gateway: RunningGateway,
    anthropic_fake: FakeAnthropic,
    bedrock_fake: FakeBedrock,
    google_fake: FakeGoogle,
    model: str,
) -> None:
    _, text, prompt, completion_tokens = PATHS[model]
    calls = upstream_calls(model, anthropic_fake, bedrock_fake, google_fake)
    before = calls()
    completion = client(gateway).chat.completions.create(model=model, messages=user("Hi"), n=3)
    assert calls() - before == 3, "one upstream request per choice"
    assert [choice.index for choice in completion.choices] == [0, 1, 2]
    assert [choice.message.content for choice in completion.choices] == [text] * 3
    assert all(choice.finish_reason == "stop" for choice in completion.choices)
    assert completion.model == model
    usage = completion.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (3 * prompt, 3 * completion_tokens)
    assert usage.total_tokens == 3 * (prompt + completion_tokens) or model == "bedrock"
    if model != "bedrock":
        assert completion.id == "msg_01XFDUDYJgAACzvnptvVoYEL"  # the first call's id


def test_n_of_one_is_one_call_as_before(gateway: RunningGateway, anthropic_fake: FakeAnthropic) -> None:
    before = anthropic_fake.count("claude-real")
    completion = client(gateway).chat.completions.create(model="anthropic", messages=user("Hi"), n=1)
    assert anthropic_fake.count("claude-real") - before == 1
    assert len(completion.choices) == 1


@pytest.mark.parametrize("model", ["anthropic", "bedrock", "vertex", "gemini"])
@pytest.mark.parametrize("n", [0, 9])
def test_n_outside_one_to_eight_is_a_400_naming_n(gateway: RunningGateway, model: str, n: int) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client(gateway).chat.completions.create(model=model, messages=user("Hi"), n=n)
    assert caught.value.status_code == 400
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["param"] == "n"
    assert "between 1 and 8" in body["message"]


# -- streams ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", sorted(PATHS))
def test_stream_n_has_every_choice_one_usage_chunk_and_one_done(
    gateway: RunningGateway,
    anthropic_fake: FakeAnthropic,
    bedrock_fake: FakeBedrock,
    google_fake: FakeGoogle,
    model: str,
) -> None:
    _, text, prompt, completion_tokens = PATHS[model]
    calls = upstream_calls(model, anthropic_fake, bedrock_fake, google_fake)
    before = calls()
    chunks = list(
        client(gateway).chat.completions.create(
            model=model, messages=user("Hi"), n=2, stream=True, stream_options={"include_usage": True}
        )
    )
    assert calls() - before == 2
    texts = {0: "", 1: ""}
    finishes: dict[int, str | None] = {}
    for chunk in chunks[:-1]:
        assert chunk.usage is None
        (choice,) = chunk.choices
        texts[choice.index] += choice.delta.content or ""
        if choice.finish_reason is not None:
            finishes[choice.index] = choice.finish_reason
    assert texts == {0: text, 1: text}
    assert finishes == {0: "stop", 1: "stop"}
    assert len({chunk.id for chunk in chunks}) == 1, "one id for the merged stream"
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (2 * prompt, 2 * completion_tokens)


def test_stream_n_without_include_usage_has_no_usage_chunk_and_done_once(gateway: RunningGateway) -> None:
    body = {"model": "anthropic", "messages": user("Hi"), "n": 3, "stream": True}
    response = httpx.post(gateway.url + "/v1/chat/completions", json=body, timeout=30)
    assert response.status_code == 200
    frames = [frame for frame in response.text.split("\n\n") if frame]
    assert frames.count("data: [DONE]") == 1
    assert frames[-1] == "data: [DONE]"
    chunks = [orjson.loads(frame.removeprefix("data: ")) for frame in frames[:-1]]
    assert all("usage" not in chunk or chunk["usage"] is None for chunk in chunks)
    assert {chunk["choices"][0]["index"] for chunk in chunks} == {0, 1, 2}
    roles = [chunk["choices"][0]["index"] for chunk in chunks if chunk["choices"][0]["delta"].get("role")]
    assert sorted(roles) == [0, 1, 2], "each choice's first chunk has the role"


def test_streamed_choices_are_interleaved_as_they_arrive(gateway: RunningGateway, scripted: Scripted) -> None:
    """Each call waits for the client to have seen the other's text before it goes on (`Scripted`): only chunks
    forwarded as they arrive, interleaved, get both answers through whole."""
    for event in scripted.seen.values():
        event.clear()
    texts: dict[int, str] = {0: "", 1: ""}
    with client(gateway).chat.completions.create(
        model="scripted-interleave", messages=user("Hi"), n=2, stream=True
    ) as s:
        for chunk in s:
            (choice,) = chunk.choices
            texts[choice.index] += choice.delta.content or ""
            for call in (1, 2):
                if f"call {call}" in texts[choice.index]:
                    scripted.seen[call].set()
    assert sorted(texts.values()) == ["call 1 answers", "call 2 answers"], texts


# -- one call failing ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("stream", "model"), [(False, "hold-fail"), (True, "hold-fail"), (True, "silent-fail")])
def test_one_call_refused_is_the_answer_and_the_others_are_cancelled(
    gateway: RunningGateway, scripted: Scripted, stream: bool, model: str
) -> None:
    scripted.arrivals.pop(model, None)
    scripted.cancelled.clear()
    scripted.cancelled_event.clear()
    with pytest.raises(openai.APIStatusError) as caught:
        response = client(gateway).chat.completions.create(
            model=f"scripted-{model}", messages=user("Hi"), n=2, stream=stream
        )
        if stream:
            list(response)  # type: ignore[arg-type]
    assert caught.value.status_code == 529
    assert "Overloaded" in str(caught.value)
    assert scripted.cancelled_event.wait(GIVE_UP), "the other call was not cancelled"
    assert scripted.cancelled == [model]


def test_a_call_failing_mid_stream_ends_the_stream_with_its_error_and_cancels_the_others(
    gateway: RunningGateway, scripted: Scripted
) -> None:
    scripted.cancelled.clear()
    scripted.cancelled_event.clear()
    body = {"model": "scripted-mid-fail", "messages": user("Hi"), "n": 2, "stream": True}
    response = httpx.post(gateway.url + "/v1/chat/completions", json=body, timeout=30)
    assert response.status_code == 200
    frames = [frame for frame in response.text.split("\n\n") if frame]
    assert "data: [DONE]" not in frames
    error = orjson.loads(frames[-1].removeprefix("data: "))["error"]
    assert error["code"] == "overloaded_error"
    assert error["status"] == 529
    assert scripted.cancelled_event.wait(GIVE_UP), "the other call was not cancelled"
    assert scripted.cancelled == ["mid-fail"]


def test_a_client_that_leaves_cancels_every_call(gateway: RunningGateway, scripted: Scripted) -> None:
    scripted.cancelled.clear()
    while scripted.cancels.acquire(blocking=False):  # drop the counts of earlier tests
        pass
    body = {"model": "scripted-both-hold", "messages": user("Hi"), "n": 2, "stream": True}
    asyncio.run(abort_stream(gateway.port, body))
    for _ in range(2):
        assert scripted.cancels.acquire(timeout=GIVE_UP), f"cancelled: {scripted.cancelled}"
    assert scripted.cancelled == ["both-hold", "both-hold"]


def test_a_refused_call_fails_the_attempt_over_to_the_next_target(
    gateway: RunningGateway, scripted: Scripted, anthropic_fake: FakeAnthropic
) -> None:
    scripted.arrivals.pop("hold-fail", None)
    before = anthropic_fake.count("claude-fallback")
    completion = client(gateway).chat.completions.create(model="failover", messages=user("Hi"), n=2)
    assert [choice.message.content for choice in completion.choices] == ["You said: Hi"] * 2
    assert anthropic_fake.count("claude-fallback") - before == 2


def test_a_stream_whose_call_fails_in_its_first_event_fails_over_before_a_byte_is_sent(
    gateway: RunningGateway, anthropic_fake: FakeAnthropic
) -> None:
    before = anthropic_fake.count("claude-fallback"), anthropic_fake.count("claude-firsterror")
    chunks = list(
        client(gateway).chat.completions.create(model="stream-failover", messages=user("Hi"), n=2, stream=True)
    )
    texts = {0: "", 1: ""}
    for chunk in chunks:
        texts[chunk.choices[0].index] += chunk.choices[0].delta.content or ""
    assert texts == {0: "You said: Hi", 1: "You said: Hi"}
    assert anthropic_fake.count("claude-firsterror") - before[1] == 2
    assert anthropic_fake.count("claude-fallback") - before[0] == 2


def test_the_fanned_out_requests_carry_no_n(gateway: RunningGateway, scripted: Scripted) -> None:
    scripted.bodies.clear()
    for event in scripted.seen.values():
        event.set()
    list(client(gateway).chat.completions.create(model="scripted-interleave", messages=user("Hi"), n=2, stream=True))
    assert len(scripted.bodies) == 2
    assert all("n" not in body for body in scripted.bodies)


@pytest.mark.parametrize("stream", [False, True])
def test_metrics_see_the_summed_tokens(gateway: RunningGateway, stream: bool) -> None:
    """What settles (limits, spend, metrics, logs) is the usage of every call, as the upstream billed them."""
    labels = {"gen_ai_token_type": "input", "gen_ai_request_model": "anthropic"}
    before = token_sum(gateway, labels)
    response = client(gateway).chat.completions.create(model="anthropic", messages=user("Hi"), n=3, stream=stream)
    if stream:
        list(response)  # type: ignore[arg-type]
    expected = before + 3 * CLAUDE_PROMPT
    deadline = time.monotonic() + 30  # the exchange settles just after the answer's last byte
    while token_sum(gateway, labels) < expected and time.monotonic() < deadline:
        time.sleep(0.05)
    assert token_sum(gateway, labels) == expected


def token_sum(gateway: RunningGateway, labels: dict[str, str]) -> float:
    text = httpx.get(f"http://127.0.0.1:{gateway.stats_port}/metrics", timeout=10).text  # type: ignore[attr-defined]
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "agentgateway_gen_ai_client_token_usage_sum" and all(
                sample.labels.get(k) == v for k, v in labels.items()
            ):
                total += sample.value
    return total
