"""The official ``openai`` npm package against the gateway: plain, streamed (with usage) and an error."""

from __future__ import annotations

from conftest import RunningGateway, run_openai_npm
from fakes.openai_upstream import STORY


def test_openai_npm_package_plain_stream_and_error(gateway: RunningGateway) -> None:
    seen = run_openai_npm(gateway.url)
    story = " ".join(STORY)
    assert seen["plain"] == story
    assert seen["plainModel"] == "gpt-4o-mini"
    assert seen["streamed"] == story
    assert seen["streamModels"] == ["gpt-4o-mini"]
    assert seen["finishReason"] == "stop"
    assert seen["usage"] == {"prompt_tokens": 12, "completion_tokens": len(STORY), "total_tokens": 12 + len(STORY)}
    assert seen["error"] == {"status": 404, "code": "model_not_found", "name": "NotFoundError"}
