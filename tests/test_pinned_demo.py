"""The demo upstream (``agentgateway --demo``) takes a client leaving a stream early in its stride (issue 20).

The gateway drops the upstream connection when its client goes away; the demo upstream used to log aiohttp's
"Error handling request" with a ConnectionResetError traceback for it, on the first run a new user makes.
"""

from __future__ import annotations

import time
from pathlib import Path

from conftest import openai_client, start_gateway

LEFT_EARLY = "demo upstream: a client left a stream early"


def test_a_client_leaving_a_demo_stream_early_leaves_no_traceback(tmp_path: Path) -> None:
    gateway = start_gateway(None, tmp_path, "--demo")
    try:
        client = openai_client(gateway.url)
        long_question = " ".join(f"word{i}" for i in range(400))  # the answer repeats it: ~8 s of streaming
        for _ in range(2):
            stream = client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": long_question}], stream=True
            )
            first = next(iter(stream))
            assert first.choices[0].delta.role == "assistant"
            stream.close()  # leave early
        # The demo upstream says when it saw each stream's reader go: the point to look at its log.
        deadline = time.monotonic() + 30
        while gateway.log().count(LEFT_EARLY) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        log = gateway.log()
        assert log.count(LEFT_EARLY) == 2, log
        assert "Traceback" not in log and "Error handling request" not in log, log
    finally:
        assert gateway.stop() == 0
    assert "Traceback" not in gateway.log(), gateway.log()
