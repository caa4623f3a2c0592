"""The fakes speak the providers' real wire format, checked by the providers' own SDKs (DESIGN.md section 5: "Fakes'
answers are also parsed by the providers' own SDKs, so a fake cannot drift from the real wire format unnoticed").

google-genai already reads the Gemini fake's streams (tests/test_gemini.py); here the ``anthropic`` SDK reads the
Anthropic fake directly -- whole messages, event streams with text, thinking (and its signature) and tool use, and
the error event a failing stream ends with -- and google-genai reads the Gemini fake's new stream faults.
"""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import pytest
from conftest import TEST_KEY
from fakes.anthropic_upstream import USAGE, FakeAnthropic, start_fake_anthropic
from fakes.gemini_upstream import FakeGoogle, start_fake_google

WEATHER = {"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}


@pytest.fixture(scope="module")
def claude() -> Iterator[FakeAnthropic]:
    fake, stop = start_fake_anthropic(TEST_KEY)
    yield fake
    stop()


@pytest.fixture
def sdk(claude: FakeAnthropic) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=claude.origin, api_key=TEST_KEY, max_retries=0) as client:
        yield client


def test_the_anthropic_sdk_reads_the_fakes_whole_message(sdk: anthropic.Anthropic) -> None:
    message = sdk.messages.create(model="claude-x", max_tokens=50, messages=[{"role": "user", "content": "hi"}])
    assert message.type == "message" and message.role == "assistant"
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == "You said: hi"  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens == USAGE["input_tokens"]


def test_the_anthropic_sdk_reads_the_fakes_text_stream_to_the_same_message(sdk: anthropic.Anthropic) -> None:
    with sdk.messages.stream(model="claude-x", max_tokens=50, messages=[{"role": "user", "content": "hi"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "You said: hi"
    assert final.content[0].text == text  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == USAGE["output_tokens"]


def test_the_anthropic_sdk_reads_the_fakes_thinking_and_tool_use_stream(sdk: anthropic.Anthropic) -> None:
    with sdk.messages.stream(
        model="claude-x-think-tool",
        max_tokens=4000,
        thinking={"type": "enabled", "budget_tokens": 1024},
        tools=[WEATHER],  # type: ignore[list-item]
        messages=[{"role": "user", "content": "weather in Paris?"}],
    ) as stream:
        final = stream.get_final_message()
    kinds = [block.type for block in final.content]
    assert kinds[0] == "thinking" and "tool_use" in kinds, kinds
    thinking = final.content[0]
    assert thinking.thinking and thinking.signature  # type: ignore[union-attr]
    calls = [block for block in final.content if block.type == "tool_use"]
    assert all(isinstance(call.input, dict) for call in calls)  # the input_json_delta pieces parse to objects
    assert final.stop_reason == "tool_use"


def test_the_anthropic_sdk_raises_the_error_event_a_failing_stream_ends_with(sdk: anthropic.Anthropic) -> None:
    texts: list[str] = []
    with (
        pytest.raises(anthropic.APIStatusError) as caught,
        sdk.messages.stream(
            model="claude-x-overloaded", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
        ) as stream,
    ):
        texts.extend(stream.text_stream)
    assert texts, "text came before the error"
    assert caught.value.body == {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}


@pytest.fixture(scope="module")
def google() -> Iterator[FakeGoogle]:
    fake, stop = start_fake_google(TEST_KEY)
    yield fake
    stop()


def test_google_genai_reads_the_gemini_fakes_stream_faults(google: FakeGoogle) -> None:
    from google import genai
    from google.genai import errors

    sdk = genai.Client(api_key=TEST_KEY, http_options={"base_url": google.origin, "api_version": "v1beta"})
    texts: list[str | None] = []
    with pytest.raises(errors.UnknownApiResponseError) as caught:
        for chunk in sdk.models.generate_content_stream(model="gemini-x-garbage", contents="hi"):
            texts.append(chunk.text)
    assert texts == ["You said:"], "the first event is valid: read before the garbage"
    assert "<html>502 Bad Gateway</html>" in str(caught.value)
