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


# -- CEL fields: frontendPolicies.accessLog (issue 21) -------------------------------------------------------------

ACCESS_LOG = """
frontendPolicies:
  accessLog:
    add:
      team: 'request.headers["X-Team"]'
      asked: llm.requestModel
      tokens: 'llm.inputTokens + llm.outputTokens'
      sub: jwt.sub
      missing: 'request.headers["x-not-sent"]'
      credentials: 'request.headers["authorization"]'
      route: '{"backend": backend.name, "status": response.code}'
      model: '"replaced: " + llm.requestModel'
    remove: [upstream_id, cost, no-such-field]
"""


def _jwt_gateway(fake_openai: FakeOpenAI, tmp_path: Path, fmt: str, extra: str) -> RunningGateway:
    from test_auth import AUDIENCE, ISSUER, _jwks

    (tmp_path / "jwks.json").write_text(_jwks())
    policies = f"""
  policies:
    jwtAuth: {{issuer: {ISSUER}, audiences: [{AUDIENCE}], jwks: {{file: {tmp_path / "jwks.json"}}}}}
"""
    return start_gateway(gateway_config(fake_openai.base_url) + policies + CATALOG % fmt + extra, tmp_path)


def _text_line(gateway: RunningGateway, request_id: str) -> str:
    deadline = time.monotonic() + 30
    while not (lines := [text for text in _lines(gateway) if f"id={request_id} " in text]):
        assert time.monotonic() < deadline, f"no access-log line for {request_id}:\n{gateway.log()[-3000:]}"
        time.sleep(0.05)
    assert len(lines) == 1
    return lines[0]


def test_access_log_add_puts_cel_fields_on_json_lines_and_a_failed_expression_is_null(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    from test_auth import _token

    gateway = _jwt_gateway(fake_openai, tmp_path, "json", ACCESS_LOG)
    try:
        token = _token(sub="alice")
        raw = openai_client(gateway.url, token).chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=MESSAGES, extra_headers={"x-team": "ml-platform"}
        )
        completion = raw.parse()
        line = json_line(gateway, raw.headers["x-request-id"])
        usage = completion.usage
        assert usage is not None
        assert line["team"] == "ml-platform"
        assert line["asked"] == "gpt-4o-mini"
        assert line["tokens"] == usage.prompt_tokens + usage.completion_tokens
        assert line["sub"] == "alice"
        assert line["route"] == {"backend": "gpt-4o-mini", "status": 200}
        assert line["model"] == "replaced: gpt-4o-mini", "an added field replaces the gateway's own of that name"
        # A header the request lacks: the field is there, null; the request was served all the same.
        assert "missing" in line and line["missing"] is None
        # The caller's credentials are never visible to the expressions: no token in the log.
        assert line["credentials"] is None
        assert token not in gateway.log()
        # remove: the own fields named are gone (a name the line does not have is ignored).
        assert "upstream_id" not in line and "cost" not in line
        assert line["status"] == 200 and line["input"] == usage.prompt_tokens

        # A request refused before any upstream: llm has no tokens, backend is not set -- null fields, one line.
        with pytest.raises(openai.NotFoundError) as caught:
            openai_client(gateway.url, token).chat.completions.create(model="nothing-serves-this", messages=MESSAGES)
        line = json_line(gateway, caught.value.response.headers["x-request-id"])
        assert (line["asked"], line["tokens"], line["route"], line["status"]) == (
            "nothing-serves-this",
            None,
            None,
            404,
        )
    finally:
        gateway.stop()


def test_access_log_add_in_text_lines_and_the_filter_keeps_only_what_it_selects(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    extra = """
frontendPolicies:
  accessLog:
    filter: 'response.code >= 400 || request.headers["x-log"] == "yes"'
    add:
      team: 'request.headers["x-team"]'
      n: llm.outputTokens
      gone: 'request.headers["x-not-sent"]'
"""
    gateway = start_gateway(gateway_config(fake_openai.base_url) + CATALOG % "text" + extra, tmp_path)
    try:
        client = openai_client(gateway.url)
        quiet = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
        quiet.parse()
        logged = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=MESSAGES, extra_headers={"x-log": "yes", "x-team": 'ml "core"'}
        )
        logged.parse()
        line = _text_line(gateway, logged.headers["x-request-id"])
        assert line.endswith(' team="ml \\"core\\"" n=' + line.rsplit(" n=", 1)[1].split(" ")[0] + " gone=-"), line
        assert int(line.rsplit(" n=", 1)[1].split(" ")[0]) > 0
        assert " status=200 " in line and " model=gpt-4o-mini " in line
        with pytest.raises(openai.NotFoundError) as caught:
            client.chat.completions.create(model="nothing-serves-this", messages=MESSAGES)
        error_line = _text_line(gateway, caught.value.response.headers["x-request-id"])
        assert " status=404 " in error_line and error_line.endswith(" team=- n=- gone=-")
        # The quiet request settled before the logged ones started: its line would be there by now.
        assert f"id={quiet.headers['x-request-id']} " not in gateway.log()
    finally:
        gateway.stop()


def test_config_logging_fields_are_agentgateways_older_spelling_of_the_same(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    extra = """
  logging:
    format: json
    filter: 'request.headers["x-log"] == "yes"'
    fields:
      add: {team: 'request.headers["x-team"]'}
      remove: [ttft]
"""
    config = gateway_config(fake_openai.base_url) + "\nconfig:" + extra
    gateway = start_gateway(config, tmp_path)
    try:
        client = openai_client(gateway.url)
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=MESSAGES, extra_headers={"x-log": "yes", "x-team": "a"}
        )
        raw.parse()
        line = json_line(gateway, raw.headers["x-request-id"])
        assert line["team"] == "a" and "ttft" not in line
    finally:
        gateway.stop()


def test_an_access_log_expression_that_does_not_compile_is_a_config_error_with_file_line_and_path(
    tmp_path: Path,
) -> None:
    import subprocess
    import sys

    path = tmp_path / "config.yaml"
    path.write_text(
        "llm:\n  models: [{name: m, provider: openAI}]\nfrontendPolicies:\n  accessLog:\n    add:\n"
        "      team: 'request.headers[\"x-team\"'\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "agentgateway", "-f", str(path), "--validate-only"], capture_output=True, text=True
    )
    assert done.returncode == 1
    assert f"{path}:6: frontendPolicies.accessLog.add.team: invalid CEL expression" in done.stderr, done.stderr
    path.write_text(
        "llm:\n  models: [{name: m, provider: openAI}]\nconfig:\n  logging: {fields: {add: {'a b': '1'}}}\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "agentgateway", "-f", str(path), "--validate-only"], capture_output=True, text=True
    )
    assert done.returncode == 1
    assert f"{path}:4: config.logging.fields.add: 'a b' is not a field name" in done.stderr, done.stderr
