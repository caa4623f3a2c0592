"""The official ``openai`` npm package against the gateway: plain, streamed (with usage) and an error."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import orjson
import pytest
from conftest import RunningGateway
from fakes.openai_upstream import STORY

JS_DIR = Path(__file__).parent / "js"


def test_openai_npm_package_plain_stream_and_error(gateway: RunningGateway) -> None:
    node = shutil.which("node")
    if node is None or not (JS_DIR / "node_modules" / "openai").is_dir():
        if os.environ.get("CI"):
            pytest.fail("node or tests/js/node_modules is missing: .ci/run must npm install it")
        pytest.skip("node or the openai npm package is not installed (npm install --prefix tests/js)")
    result = subprocess.run(
        [node, str(JS_DIR / "openai_sdk.mjs"), gateway.url], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    seen = orjson.loads(result.stdout.strip().splitlines()[-1])
    story = " ".join(STORY)
    assert seen["plain"] == story
    assert seen["plainModel"] == "gpt-4o-mini"
    assert seen["streamed"] == story
    assert seen["streamModels"] == ["gpt-4o-mini"]
    assert seen["finishReason"] == "stop"
    assert seen["usage"] == {"prompt_tokens": 12, "completion_tokens": len(STORY), "total_tokens": 12 + len(STORY)}
    assert seen["notFound"] == {"status": 404, "code": "model_not_found", "name": "NotFoundError"}
