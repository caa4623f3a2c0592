"""Live config changes (issue 16, OPERATIONS.md section 6): the real ``agentgateway -f`` with two workers, the file
edited under it, and everything observed through the openai SDK.

Two tagged OpenAI-compatible upstreams (A and B) answer with their tag, so every answer says which config served
it. The upstream model ``gated`` streams its first chunk and then waits until the test opens the gate: a stream
started before a change that is still running after it, with no timing involved.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest
from aiohttp import web
from conftest import TEST_KEY, RunningGateway, free_port, openai_client, start_gateway
from fakes.bedrock_upstream import FakeBedrock, start_fake_bedrock
from fakes.gemini_upstream import start_fake_google
from fakes.openai_upstream import FakeOpenAI
from fakes.server import serve_in_thread
from prometheus_client.parser import text_string_to_metric_families
from test_bedrock import AWS_ENV_VARS, aws_env
from test_bedrock_credentials import no_files, start_container_endpoint
from test_vertex import adc_env

# A change reaches new requests within 2 s (a product property); the tests wait longer so that a loaded machine
# does not fail them, and report how long it took.
DEADLINE = 20.0


@dataclass
class Tagged:
    tag: str
    gate: threading.Event = field(default_factory=threading.Event)
    models: list[str] = field(default_factory=list)
    origin: str = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        model = body["model"]
        self.models.append(model)
        text = f"{self.tag}:{model}"
        if not body.get("stream"):
            return web.json_response(
                {
                    "id": "x",
                    "object": "chat.completion",
                    "created": 1,
                    "model": model,
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                    ],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                }
            )
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            payload = {
                "id": "x",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            return b"data: " + orjson.dumps(payload) + b"\n\n"

        await response.write(chunk({"role": "assistant", "content": text}))
        if model == "gated":
            await asyncio.get_running_loop().run_in_executor(None, self.gate.wait)
        for word in (" and", " the", " end"):
            await response.write(chunk({"content": word}))
        await response.write(chunk({}, "stop") + b"data: [DONE]\n\n")
        await response.write_eof()
        return response


def start_tagged(tag: str) -> tuple[Tagged, Callable[[], None]]:
    fake = Tagged(tag)
    app = web.Application()
    app.router.add_post("/v1/chat/completions", fake.handle)
    fake.origin, stop = serve_in_thread(app, f"tagged-{tag}")
    return fake, stop


@pytest.fixture(scope="module")
def upstreams() -> Iterator[tuple[Tagged, Tagged]]:
    a, stop_a = start_tagged("A")
    b, stop_b = start_tagged("B")
    yield a, b
    a.gate.set()
    b.gate.set()
    stop_a()
    stop_b()


def entry(name: str, upstream: Tagged, model: str | None = None) -> str:
    model_line = f"\n      model: {model}" if model else ""
    return f"""
  - name: {name}
    provider:
      custom: {{formats: [{{type: completions}}]}}
    params:
      baseUrl: {upstream.origin}/v1
      apiKey: {TEST_KEY}{model_line}"""


def config(*entries: str) -> str:
    return "llm:\n  models:" + "".join(entries) + "\n"


def write(path: Path, text: str) -> None:
    """As deploy tools and editors do: the whole new file renamed into place."""
    temporary = path.with_suffix(".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def answer(client: openai.OpenAI, model: str) -> str:
    completion = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
    return completion.choices[0].message.content or ""


def wait_for(what: str, check: Callable[[], bool], gateway: RunningGateway, deadline: float = DEADLINE) -> float:
    """Polls ``check`` until it holds; returns how long that took."""
    started = time.monotonic()
    while time.monotonic() - started < deadline:
        if check():
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {deadline} s\n{gateway.log()}")


def answers_with(gateway: RunningGateway, model: str, expected: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return answer(openai_client(gateway.url), model) == expected  # a new connection each time
        except openai.APIError:
            return False

    return check


def worker_generations(gateway: RunningGateway) -> dict[int, int]:
    """The config generation each worker process last said it serves."""
    seen: dict[int, int] = {}
    for match in re.finditer(r"worker (\d+) serves config generation (\d+)", gateway.log()):
        seen[int(match.group(1))] = int(match.group(2))
    return seen


@pytest.fixture
def gateway_file(tmp_path: Path, upstreams: tuple[Tagged, Tagged]) -> Iterator[tuple[RunningGateway, Path]]:
    a, _ = upstreams
    path = tmp_path / "config.yaml"
    path.write_text(config(entry("m", a), entry("stay", a), entry("gone", a), entry("gated", a, "gated")))
    gateway = start_gateway(None, tmp_path, "-f", str(path), workers=2)
    yield gateway, path
    a.gate.set()
    gateway.stop()


def test_a_change_is_served_by_both_workers_while_a_stream_started_before_ends_on_the_old_config(
    gateway_file: tuple[RunningGateway, Path], upstreams: tuple[Tagged, Tagged]
) -> None:
    gateway, path = gateway_file
    a, b = upstreams
    a.gate.clear()
    client = openai_client(gateway.url)
    assert answer(client, "m") == "A:m"
    stream = client.chat.completions.create(model="gated", messages=[{"role": "user", "content": "hi"}], stream=True)
    first = next(iter(stream))
    assert first.choices[0].delta.content == "A:gated"

    # m moves to B, gone is removed, new is added; stay and gated are unchanged.
    write(path, config(entry("m", b), entry("stay", a), entry("new", b), entry("gated", a, "gated")))
    took = wait_for("m answered by B", answers_with(gateway, "m", "B:m"), gateway)
    print(f"the change was served after {took:.2f} s")
    wait_for("both workers on generation 2", lambda: sorted(worker_generations(gateway).values()) == [2, 2], gateway)
    for _ in range(10):  # new connections, whichever worker takes them
        fresh = openai_client(gateway.url)
        assert answer(fresh, "m") == "B:m"
        assert answer(fresh, "new") == "B:new"
        assert answer(fresh, "stay") == "A:stay"
        with pytest.raises(openai.NotFoundError):
            answer(fresh, "gone")
    assert "gone" not in [model.id for model in openai_client(gateway.url).models.list().data]
    # Both workers kept the unchanged entries (stay, gated) and built the changed and new ones.
    assert len(re.findall(r"serves config generation 2 \(2 model entries kept, 2 new\)", gateway.log())) == 2

    # The stream that started on the old config ends on it, from the same upstream, in full.
    a.gate.set()
    rest = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert rest == " and the end"
    assert a.models.count("gated") == 1


def test_a_bad_change_keeps_the_last_good_config_is_logged_once_and_a_fix_is_served(
    gateway_file: tuple[RunningGateway, Path], upstreams: tuple[Tagged, Tagged]
) -> None:
    gateway, path = gateway_file
    a, b = upstreams
    good = config(entry("m", a))
    write(path, good)
    wait_for("gone removed", lambda: sorted(worker_generations(gateway).values()) == [2, 2], gateway)

    # Line 8 holds the bad value; the key on line 7 must not show up in the log.
    bad = good + "  timeouts: {connect: -1}\n"
    write(path, bad)
    wait_for("the refusal logged", lambda: "config change refused" in gateway.log(), gateway)
    log = gateway.log()
    assert re.search(rf"{re.escape(str(path))}:\d+: llm\.timeouts\.connect: Input should be greater than 0", log)
    assert TEST_KEY not in log
    # Still served, by every worker: nothing of the bad change reached them.
    for _ in range(5):
        assert answer(openai_client(gateway.url), "m") == "A:m"
    # The same bad text seen again (touched, or SIGHUP) is not logged again.
    write(path, bad)
    gateway.process.send_signal(signal.SIGHUP)
    marker = "checked after the repeat"
    fixed = config(entry("m", b)) + f"# {marker}\n"
    write(path, fixed)
    wait_for("the fix served", answers_with(gateway, "m", "B:m"), gateway)
    assert gateway.log().count("config change refused") == 1
    # Invalid YAML too: file:line and the problem.
    write(path, fixed + "  models: [\n")
    wait_for("the YAML error logged", lambda: gateway.log().count("config change refused") == 2, gateway)
    assert re.search(rf"{re.escape(str(path))}:\d+: invalid YAML", gateway.log())
    assert answer(openai_client(gateway.url), "m") == "B:m"
    assert "gracefully respawning" not in gateway.log()


def test_sighup_reloads_a_change_the_file_watch_cannot_see(
    gateway_file: tuple[RunningGateway, Path], upstreams: tuple[Tagged, Tagged]
) -> None:
    gateway, path = gateway_file
    a, _ = upstreams
    # The same size, inode and modification time: only SIGHUP tells the gateway to look.
    text = config(entry("m", a), entry("stay", a), entry("gone", a), entry("gated", a, "gated"))
    assert path.read_text() == text
    before = os.stat(path)
    changed = text.replace("name: gone\n", "name: gon2\n")
    assert len(changed) == len(text) and changed != text
    with open(path, "r+") as handle:
        handle.write(changed)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)
    gateway.process.send_signal(signal.SIGHUP)
    wait_for("gon2 served after SIGHUP", answers_with(gateway, "gon2", "A:gon2"), gateway)
    # granian's own SIGHUP handling (restart every worker) was not used: the workers are the same processes.
    assert "gracefully respawning" not in gateway.log()
    assert len(worker_generations(gateway)) == 2


def test_a_worker_started_after_a_change_serves_the_validated_config_not_the_file(
    gateway_file: tuple[RunningGateway, Path], upstreams: tuple[Tagged, Tagged]
) -> None:
    from conftest import process_tree

    gateway, path = gateway_file
    _, b = upstreams
    write(path, config(entry("m", b)))
    wait_for("generation 2", lambda: sorted(worker_generations(gateway).values()) == [2, 2], gateway)
    write(path, "llm: {models: [{name: m, provider: nonsense}]}\n")  # refused: the file now differs from what is served
    wait_for("the refusal logged", lambda: "config change refused" in gateway.log(), gateway)
    workers = [pid for pid in process_tree(gateway.process.pid) if pid != gateway.process.pid]
    victim = next(pid for pid in workers if pid in worker_generations(gateway))
    os.kill(victim, signal.SIGKILL)

    def respawned() -> bool:
        pids = set(process_tree(gateway.process.pid)) - {gateway.process.pid}
        return victim not in pids and len(pids) >= 2

    wait_for("the worker respawned", respawned, gateway)
    # Every worker, the new one included, serves generation 2 (m on B); none read the broken file.
    for _ in range(20):
        assert answer(openai_client(gateway.url), "m") == "B:m"


# -- credentials of unchanged cloud entries survive a change -------------------------------------------------------


def test_unchanged_vertex_and_bedrock_entries_fetch_no_new_token(
    tmp_path: Path, upstreams: tuple[Tagged, Tagged]
) -> None:
    a, b = upstreams
    google, stop_google = start_fake_google(TEST_KEY)
    bedrock: FakeBedrock
    bedrock, stop_bedrock = start_fake_bedrock(region="eu-west-3")
    container, stop_container = start_container_endpoint(bedrock, 3600)
    try:
        cloud = f"""
  - name: vertex-model
    provider: vertex
    params: {{model: gemini-2.5-flash, vertexProject: test-project, vertexRegion: us-central1,
              baseUrl: "{google.origin}"}}
  - name: bedrock-model
    provider: bedrock
    params: {{model: "anthropic.claude-3-haiku-20240307-v1:0", awsRegion: eu-west-3, baseUrl: "{bedrock.base_url}"}}"""
        path = tmp_path / "config.yaml"
        path.write_text(config(cloud, entry("m", a)))
        env = {
            **adc_env(tmp_path, google.service_account_info()),
            **aws_env(
                AWS_CONTAINER_CREDENTIALS_FULL_URI=container.url,
                AWS_CONTAINER_AUTHORIZATION_TOKEN="container-auth-token",
                **no_files(tmp_path),
            ),
        }
        gateway = start_gateway(None, tmp_path, "-f", str(path), workers=1, env=env, unset=AWS_ENV_VARS)
        try:
            client = openai_client(gateway.url)
            for model in ("vertex-model", "bedrock-model"):
                client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
            google_tokens, aws_credentials = len(google.token_requests), len(container.issued)
            assert google_tokens >= 1 and aws_credentials >= 1

            write(path, config(cloud, entry("m", b), entry("added", b)))
            wait_for("m answered by B", answers_with(gateway, "m", "B:m"), gateway)
            for model in ("vertex-model", "bedrock-model"):
                client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
            assert len(google.token_requests) == google_tokens
            assert len(container.issued) == aws_credentials

            # A changed entry is a new backend (the others are kept); Vertex entries share one token cache per
            # credential source (providers/vertex.py), so even it fetches no new token.
            write(path, config(cloud.replace("us-central1", "europe-west4"), entry("m", b)))
            wait_for("generation 3", lambda: list(worker_generations(gateway).values()) == [3], gateway)
            assert "serves config generation 3 (2 model entries kept, 1 new)" in gateway.log()
            client.chat.completions.create(model="vertex-model", messages=[{"role": "user", "content": "hi"}])
            assert "/locations/europe-west4/" in google.requests[-1].path
            assert len(google.token_requests) == google_tokens
            assert len(container.issued) == aws_credentials
        finally:
            gateway.stop()
    finally:
        stop_container()
        stop_bedrock()
        stop_google()


def test_validate_only_is_unchanged(tmp_path: Path, upstreams: tuple[Tagged, Tagged]) -> None:
    import subprocess
    import sys

    a, _ = upstreams
    path = tmp_path / "config.yaml"
    path.write_text(config(entry("m", a)))
    done = subprocess.run(
        [sys.executable, "-m", "agentgateway", "-f", str(path), "--validate-only"], capture_output=True, text=True
    )
    assert done.returncode == 0 and "OK (1 model entries)" in done.stdout
    path.write_text("llm: {models: [{name: m, provider: nonsense}]}\n")
    done = subprocess.run(
        [sys.executable, "-m", "agentgateway", "-f", str(path), "--validate-only"], capture_output=True, text=True
    )
    assert done.returncode == 1 and f"{path}:1: llm.models[0].provider" in done.stderr


def test_config_synchronized_and_model_labels_follow_reloads(tmp_path: Path, upstreams: tuple[Tagged, Tagged]) -> None:
    """agentgateway_config_synchronized is 0 while the file holds a refused change and 1 again once a good one is
    served; after a reload put another entry at an index, its attempts are counted under its own name."""
    a, _ = upstreams
    stats = free_port()
    section = f'config: {{statsAddr: "127.0.0.1:{stats}", readinessAddr: "off"}}\n'
    path = tmp_path / "config.yaml"
    path.write_text(config(entry("m", a)) + section)
    gateway = start_gateway(None, tmp_path, "-f", str(path), workers=1)

    def metric(name: str, **labels: str) -> float:
        text = httpx.get(f"http://127.0.0.1:{stats}/metrics", timeout=10).text
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
        )

    try:
        assert metric("agentgateway_config_synchronized") == 1
        assert answer(openai_client(gateway.url), "m") == "A:m"  # llm.models[0] is m
        write(path, config(entry("m", a)) + "  timeouts: {connect: -1}\n" + section)
        wait_for("the refusal counted", lambda: metric("agentgateway_config_synchronized") == 0, gateway)
        write(path, config(entry("added", a), entry("m", a)) + section)  # llm.models[0] is now added
        wait_for("the fix counted", lambda: metric("agentgateway_config_synchronized") == 1, gateway)
        wait_for("added served", answers_with(gateway, "added", "A:added"), gateway)
        wait_for(
            "added counted under its own name",
            lambda: metric("agentgateway_upstream_attempts_total", backend="added") >= 1,
            gateway,
        )
        assert metric("agentgateway_upstream_attempts_total", backend="m") == 1
    finally:
        gateway.stop()


# -- files the config refers to: secrets and the model catalog (issue 21: params.apiKey {file}) ------------------


def upstream_key(fake: FakeOpenAI, model: str) -> str:
    """The Authorization header of the last request the fake received for the upstream model ``model``."""
    headers = fake.for_model(model)[-1].headers
    return next(value for name, value in headers.items() if name.lower() == "authorization")


def uses_key(gateway: RunningGateway, fake: FakeOpenAI, model: str, key: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            answer(openai_client(gateway.url), "secret")
        except openai.APIError:
            return False
        return upstream_key(fake, model) == f"Bearer {key}"

    return check


def test_a_changed_secret_file_alone_is_picked_up_by_every_worker_and_sighup_reads_it_again(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    model = f"secret-{uuid.uuid4().hex[:8]}"
    key_file = tmp_path / "openai.key"
    write(key_file, "sk-first-0001\n")
    path = tmp_path / "config.yaml"
    path.write_text(
        f"""llm:
  models:
  - name: secret
    provider: openAI
    params: {{model: {model}, baseUrl: "{fake_openai.base_url}", apiKey: {{file: {key_file}}}}}
"""
    )
    config_stat = os.stat(path)
    gateway = start_gateway(None, tmp_path, "-f", str(path), workers=2)
    try:
        client = openai_client(gateway.url)
        assert answer(client, "secret")
        assert upstream_key(fake_openai, model) == "Bearer sk-first-0001"

        # Only the secret changes (as a Kubernetes Secret volume does: a new file renamed into place).
        write(key_file, "sk-second-002\n")
        wait_for("the new key sent", uses_key(gateway, fake_openai, model, "sk-second-002"), gateway)
        wait_for(
            "both workers on generation 2", lambda: sorted(worker_generations(gateway).values()) == [2, 2], gateway
        )
        for _ in range(10):  # whichever worker answers
            answer(openai_client(gateway.url), "secret")
            assert upstream_key(fake_openai, model) == "Bearer sk-second-002"
        assert os.stat(path).st_mtime_ns == config_stat.st_mtime_ns, "the config file itself was not touched"

        # Changed in place with its size, inode and modification time kept: only SIGHUP makes the gateway look.
        before = os.stat(key_file)
        with open(key_file, "r+") as handle:
            handle.write("sk-third-0003\n")
        os.utime(key_file, ns=(before.st_atime_ns, before.st_mtime_ns))
        gateway.process.send_signal(signal.SIGHUP)
        wait_for("the key after SIGHUP", uses_key(gateway, fake_openai, model, "sk-third-0003"), gateway)

        # A secret file that goes away is a refused change: logged once with file:line: path, the last good key
        # is still used, and no key is ever logged.
        key_file.unlink()
        wait_for("the refusal logged", lambda: "config change refused" in gateway.log(), gateway)
        assert re.search(
            rf"{re.escape(str(path))}:5: llm\.models\[0\]\.params\.apiKey: cannot read the key file", gateway.log()
        )
        answer(openai_client(gateway.url), "secret")
        assert upstream_key(fake_openai, model) == "Bearer sk-third-0003"
        write(key_file, "sk-fourth-004")
        wait_for("the key back", uses_key(gateway, fake_openai, model, "sk-fourth-004"), gateway)
        assert gateway.log().count("config change refused") == 1
        log = gateway.log()
        for secret in ("sk-first-0001", "sk-second-002", "sk-third-0003", "sk-fourth-004"):
            assert secret not in log
        assert "gracefully respawning" not in log
    finally:
        gateway.stop()


def test_an_inbound_key_file_change_is_picked_up(tmp_path: Path, upstreams: tuple[Tagged, Tagged]) -> None:
    a, _ = upstreams
    key_file = tmp_path / "team.key"
    write(key_file, "team-key-one\n")
    path = tmp_path / "config.yaml"
    path.write_text(
        config(entry("m", a))
        + f"  policies:\n    apiKey:\n      keys: [{{key: {{file: {key_file}}}, metadata: {{name: t}}}}]\n"
    )
    gateway = start_gateway(None, tmp_path, "-f", str(path), workers=1)
    try:
        assert answer(openai_client(gateway.url, "team-key-one"), "m") == "A:m"
        write(key_file, "team-key-two\n")

        def new_key_works() -> bool:
            try:
                return answer(openai_client(gateway.url, "team-key-two"), "m") == "A:m"
            except openai.AuthenticationError:
                return False

        wait_for("the new inbound key accepted", new_key_works, gateway)
        with pytest.raises(openai.AuthenticationError):
            answer(openai_client(gateway.url, "team-key-one"), "m")
    finally:
        gateway.stop()


# -- config: changes live (issue 16): logging, metrics fields, the catalog; addresses need a restart -------------


def at_latest(gateway: RunningGateway, least: int) -> bool:
    """Whether every worker serves the generation the main process published last, and that it is ``least`` or
    later."""
    published = [int(n) for n in re.findall(r"generation (\d+) published to the workers", gateway.log())]
    generations = list(worker_generations(gateway).values())
    return bool(published) and published[-1] >= least and generations.count(published[-1]) == 2


def access_line(gateway: RunningGateway, request_id: str) -> str:
    deadline = time.monotonic() + DEADLINE
    while True:
        for line in gateway.log().splitlines():
            if f'"id":"{request_id}"' in line or f" id={request_id} " in line:
                return line
        assert time.monotonic() < deadline, f"no access-log line for {request_id}\n{gateway.log()}"
        time.sleep(0.05)


def test_logging_metrics_fields_and_the_catalog_change_live_and_metric_counts_go_on(
    tmp_path: Path, upstreams: tuple[Tagged, Tagged]
) -> None:
    a, _ = upstreams
    stats = free_port()
    catalog = tmp_path / "prices.json"
    write(catalog, orjson.dumps([{"name": "m", "input": 1, "output": 0}]).decode())  # USD per 1M tokens
    keys = "  policies:\n    apiKey:\n      keys: [{key: team-key, metadata: {name: team-a}}]\n"

    def section(logging: str, metrics: str = "[]") -> str:
        return (
            f'config:\n  statsAddr: "127.0.0.1:{stats}"\n  readinessAddr: "off"\n  modelCatalog: {{file: {catalog}}}\n'
            f"  logging: {logging}\n  metrics: {{fields: {metrics}}}\n"
        )

    path = tmp_path / "config.yaml"
    path.write_text(config(entry("m", a)) + keys + section("{format: text}"))
    gateway = start_gateway(None, tmp_path, "-f", str(path), workers=2)
    client = openai_client(gateway.url, "team-key")
    made: list[str] = []

    def request(**headers: str) -> str:
        made.append("")
        raw = client.chat.completions.with_raw_response.create(
            model="m", messages=[{"role": "user", "content": "hi"}], extra_headers=headers
        )
        raw.parse()
        return raw.headers["x-request-id"]

    def requests_total(**labels: str) -> float:
        text = httpx.get(f"http://127.0.0.1:{stats}/metrics", timeout=10).text
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "agentgateway_requests_total"
            and all(sample.labels.get(k) == v for k, v in labels.items())
        )

    try:
        line = access_line(gateway, request())
        assert " cost=1e-06 " in line, line  # 1 input token at 1 USD per 1M
        wait_for("counted", lambda: requests_total() == 1, gateway)

        # format json, a CEL field, the caller as a label, and new prices -- in one edit, served by both workers.
        path.write_text(
            config(entry("m", a))
            + keys
            + section("""{format: json, fields: {add: {team: 'request.headers["x-team"]'}}}""", "[caller]")
        )
        write(catalog, orjson.dumps([{"name": "m", "input": 2, "output": 0}]).decode())
        wait_for(
            "the catalog file's new price served",
            lambda: (
                access_line(gateway, request(**{"x-team": "ml"})).startswith("{")
                and orjson.loads(access_line(gateway, request(**{"x-team": "ml"}))).get("cost") == 2e-06
            ),
            gateway,
        )
        wait_for("both workers on the last generation published", lambda: at_latest(gateway, 2), gateway)
        for _ in range(6):  # whichever worker answers
            found = orjson.loads(access_line(gateway, request(**{"x-team": "ml"})))
            assert (found["team"], found["cost"], found["caller"]) == ("ml", 2e-06, "team-a")
        # The counts made before the change are kept; the new series carry the caller.
        wait_for("every request counted", lambda: requests_total() == len(made), gateway)
        assert requests_total(caller="team-a") >= 6
        assert requests_total() - requests_total(caller="team-a") >= 1, "the series made before the change kept theirs"

        # level warn turns the access log off (agentgateway's: its lines are info records of "request"); the
        # gateway's own log (agentgateway=info) says when the workers switched.
        path.write_text(config(entry("m", a)) + keys + section("{format: json, level: 'warn,agentgateway=info'}"))
        generation = max(worker_generations(gateway).values())
        wait_for(
            "next generation", lambda: sorted(worker_generations(gateway).values()) == [generation + 1] * 2, gateway
        )
        quiet = [request() for _ in range(4)]
        path.write_text(
            config(entry("m", a)) + keys + section("{format: json, level: 'warn,request=info,agentgateway=info'}")
        )
        wait_for(
            "next generation", lambda: sorted(worker_generations(gateway).values()) == [generation + 2] * 2, gateway
        )
        access_line(gateway, request())
        for request_id in quiet:
            assert request_id not in gateway.log()
    finally:
        gateway.stop()


def test_a_changed_stats_or_readiness_address_is_one_warning_that_a_restart_is_needed_and_serving_goes_on(
    tmp_path: Path, upstreams: tuple[Tagged, Tagged]
) -> None:
    a, b = upstreams
    stats, ready, other = free_port(), free_port(), free_port()
    path = tmp_path / "config.yaml"

    def text(stats_port: int, *entries: str) -> str:
        return (
            config(*entries) + f'config: {{statsAddr: "127.0.0.1:{stats_port}", readinessAddr: "127.0.0.1:{ready}"}}\n'
        )

    path.write_text(text(stats, entry("m", a)))
    gateway = start_gateway(None, tmp_path, "-f", str(path), workers=1)
    try:
        write(path, text(other, entry("m", b)))
        wait_for("the rest of the change served", answers_with(gateway, "m", "B:m"), gateway)
        wait_for("the warning", lambda: "needs a restart" in gateway.log(), gateway)
        warnings = [line for line in gateway.log().splitlines() if "needs a restart" in line]
        assert len(warnings) == 1, warnings
        assert f"config.statsAddr changed to 127.0.0.1:{other}" in warnings[0]
        assert f"keeps listening on 127.0.0.1:{stats}" in warnings[0]
        assert "WARNING" in warnings[0]
        # Still served where it was bound; nothing listens on the new address.
        assert httpx.get(f"http://127.0.0.1:{stats}/metrics", timeout=10).status_code == 200
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{other}/metrics", timeout=2)
        # Back to the bound address: no new warning.
        write(path, text(stats, entry("m", a)))
        wait_for("served again", answers_with(gateway, "m", "A:m"), gateway)
        assert sum("needs a restart" in line for line in gateway.log().splitlines()) == 1
        assert "gracefully respawning" not in gateway.log()
    finally:
        gateway.stop()


def test_restart_needed_names_each_address_bound_at_start_up_once_and_the_way_back() -> None:
    from agentgateway.config import load_config
    from agentgateway.reload import restart_needed

    def loaded(stats: str, ready: str, port: str = "") -> Any:
        return load_config(
            f"llm:\n  {port}models: [{{name: m, provider: openAI}}]\n"
            f'config: {{statsAddr: "{stats}", readinessAddr: "{ready}"}}\n'
        )

    start = loaded("127.0.0.1:1", "127.0.0.1:2", "port: 3000\n  ")
    bound = {"config.statsAddr": "127.0.0.1:1", "config.readinessAddr": "127.0.0.1:2", "llm.port": "3000"}
    assert restart_needed(bound, start, start) == []
    moved = loaded("127.0.0.1:5", "off", "port: 3001\n  ")
    lines = restart_needed(bound, start, moved)
    assert [line.split(" ", 1)[0] for line in lines] == ["config.statsAddr", "config.readinessAddr", "llm.port"]
    assert all("needs a restart" in line for line in lines)
    assert "keeps listening on 127.0.0.1:2" in lines[1] and "changed to off" in lines[1]
    assert restart_needed(bound, moved, moved) == [], "said once, not on every later change"
    back = restart_needed(bound, moved, start)
    assert all("again: the address the gateway listens on" in line for line in back) and len(back) == 3


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        (None, (None, True)),
        ("info", (20, True)),
        ("debug", (10, True)),
        ("warn", (30, False)),
        ("error,request=info", (40, True)),
        ("warn,agentgateway=debug", (10, False)),
        ("info,rmcp=warn", (20, True)),
        ("off", (100, False)),
    ],
)
def test_logging_level_reads_agentgateways_filter_syntax(level: str | None, expected: tuple[int | None, bool]) -> None:
    from agentgateway.config import parse_log_level

    assert parse_log_level(level) == expected


def test_an_unknown_logging_level_is_a_config_error_with_its_path() -> None:
    from agentgateway.config import load_config
    from agentgateway.errors import ConfigError

    with pytest.raises(ConfigError, match=r"x.yaml:2: config\.logging\.level: unknown log level 'loud'"):
        load_config("llm: {models: [{name: m, provider: openAI}]}\nconfig: {logging: {level: loud}}\n", "x.yaml")


def test_a_rotated_jwks_file_is_picked_up(tmp_path: Path, upstreams: tuple[Tagged, Tagged]) -> None:
    import json

    from jwt.algorithms import RSAAlgorithm
    from test_auth import _OTHER, _PRIVATE, AUDIENCE, ISSUER, _token

    def jwks(key: Any, kid: str) -> str:
        jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
        jwk.update(kid=kid, alg="RS256", use="sig")
        return json.dumps({"keys": [jwk]})

    a, _ = upstreams
    jwks_file = tmp_path / "jwks.json"
    write(jwks_file, jwks(_PRIVATE, "k1"))
    path = tmp_path / "config.yaml"
    policy = f"  policies:\n    jwtAuth: {{issuer: {ISSUER}, audiences: [{AUDIENCE}], jwks: {{file: {jwks_file}}}}}\n"
    path.write_text(config(entry("m", a)) + policy)
    gateway = start_gateway(None, tmp_path, "-f", str(path), workers=2)
    old, new = _token(_PRIVATE, "k1"), _token(_OTHER, "k2")
    try:
        assert answer(openai_client(gateway.url, old), "m") == "A:m"
        with pytest.raises(openai.AuthenticationError):
            answer(openai_client(gateway.url, new), "m")
        write(jwks_file, jwks(_OTHER, "k2"))  # the identity provider rotated its key; the config is untouched

        def new_key_works() -> bool:
            try:
                return answer(openai_client(gateway.url, new), "m") == "A:m"
            except openai.AuthenticationError:
                return False

        wait_for("the rotated key accepted", new_key_works, gateway)
        wait_for("both workers on generation 2", lambda: at_latest(gateway, 2), gateway)
        for _ in range(6):  # whichever worker answers
            assert answer(openai_client(gateway.url, new), "m") == "A:m"
            with pytest.raises(openai.AuthenticationError):
                answer(openai_client(gateway.url, old), "m")
    finally:
        gateway.stop()
