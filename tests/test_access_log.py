"""The access log and request ids (issue 18): one line per request, text or JSON, with no secrets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest
from conftest import TEST_KEY, RunningGateway, abort_stream, gateway_config, openai_client, start_gateway
from fakes.openai_upstream import FakeOpenAI

MESSAGES = [{"role": "user", "content": "Hello"}]
CATALOG = "\nconfig:\n  logging: {format: %s}\n  modelCatalog: [{name: upstream-model, input: 1, output: 2}]\n"


def _lines(gateway: RunningGateway) -> list[str]:
    return gateway.log().splitlines()


def json_line(gateway: RunningGateway, request_id: str) -> dict[str, Any]:
    """The access-log line of ``request_id``, once written (the request settles after its answer went out)."""
    deadline = time.monotonic() + 30
    while True:
        for line in _lines(gateway):
            if line.startswith("{") and f'"id":"{request_id}"' in line:
                found: dict[str, Any] = orjson.loads(line)
                return found
        assert time.monotonic() < deadline, f"no access-log line for {request_id}:\n{gateway.log()[-3000:]}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def json_gateway(fake_openai: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    running = start_gateway(
        gateway_config(fake_openai.base_url) + CATALOG % "json", tmp_path_factory.mktemp("log"), workers=2
    )
    yield running
    running.stop()


def test_one_json_line_per_request_with_its_ids_tokens_and_cost(json_gateway: RunningGateway) -> None:
    raw = openai_client(json_gateway.url).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES
    )
    raw.parse()
    request_id = raw.headers["x-request-id"]
    assert raw.headers["x-upstream-request-id"] == "req_fake_123", "the upstream's own id, for support tickets"
    line = json_line(json_gateway, request_id)
    assert line["upstream_id"] == "req_fake_123"
    assert line["model"] == "gpt-4o-mini"
    assert line["backend"] == "gpt-4o-mini"
    assert line["attempts"] == 1
    assert line["status"] == 200
    assert line["input"] == 12
    assert line["output"] > 0
    assert line["cost"] == pytest.approx((12 * 1 + line["output"] * 2) / 1e6)
    assert line["duration"] >= line["ttft"] > 0
    assert line["time"].endswith("Z")
    assert sum(f'"id":"{request_id}"' in text for text in _lines(json_gateway)) == 1, "exactly one line"


def test_a_clients_own_request_id_is_kept_and_streams_errors_and_aborts_are_logged(
    json_gateway: RunningGateway,
) -> None:
    client = openai_client(json_gateway.url)
    stream = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, extra_headers={"x-request-id": "client-chosen-1"}
    )
    for _ in stream.parse():
        pass
    assert stream.headers["x-request-id"] == "client-chosen-1"
    assert json_line(json_gateway, "client-chosen-1")["ttft"] > 0

    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="nothing-serves-this", messages=MESSAGES)
    request_id = caught.value.response.headers["x-request-id"]
    line = json_line(json_gateway, request_id)
    assert (line["status"], line["error"], line["model"], line["attempts"]) == (
        404,
        "model_not_found",
        "nothing-serves-this",
        0,
    )

    with pytest.raises(openai.InternalServerError) as refused:
        client.chat.completions.create(model="unreachable", messages=MESSAGES)
    line = json_line(json_gateway, refused.value.response.headers["x-request-id"])
    assert (line["status"], line["error"], line["backend"]) == (502, "upstream_unreachable", "unreachable")
    asyncio.run(abort_stream(json_gateway.port, {"model": "passthrough-hang", "messages": MESSAGES, "stream": True}))
    deadline = time.monotonic() + 30
    while not any('"status":499' in text for text in _lines(json_gateway)):
        assert time.monotonic() < deadline, "the aborted stream was never logged"
        time.sleep(0.05)


def test_no_secret_reaches_the_log(json_gateway: RunningGateway) -> None:
    client = openai_client(json_gateway.url)  # its key is sk-client
    client.chat.completions.create(model="passthrough-x", messages=MESSAGES)  # forwards the client's key
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # the configured key
    response = httpx.post(
        json_gateway.url + "/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": MESSAGES},
        headers={"authorization": "Bearer sk-another-secret-999"},
        timeout=10,
    )
    json_line(json_gateway, response.headers["x-request-id"])
    log = json_gateway.log()
    for secret in (TEST_KEY, "sk-client", "sk-another-secret-999", "Hello"):
        assert secret not in log, secret


def test_text_lines_quote_what_clients_send(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    gateway = start_gateway(gateway_config(fake_openai.base_url) + CATALOG % "text", tmp_path)
    try:
        response = httpx.post(
            gateway.url + "/v1/chat/completions",
            json={"model": 'evil\nmodel status=200 "x"', "messages": MESSAGES},
            timeout=10,
        )
        assert response.status_code == 404
        request_id = response.headers["x-request-id"]
        deadline = time.monotonic() + 30
        while not (lines := [text for text in _lines(gateway) if f"id={request_id}" in text]):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert len(lines) == 1
        line = lines[0]
        assert ' model="evil\\nmodel status=200 \\"x\\"" ' in line, line
        assert " status=404 " in line
        assert not any(text.startswith("model status=200") for text in _lines(gateway)), "no forged line"
    finally:
        gateway.stop()
