"""Shared fixtures: a fake OpenAI upstream, and the real ``agentgateway`` command serving a config that points at it.

The gateway runs as a subprocess exactly as a user starts it (granian, uvloop, worker processes), so the tests
cover the CLI, config hand-over to workers, and the HTTP server, not just the ASGI callable.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fakes.openai_upstream import FakeOpenAI, start_fake_openai

TEST_KEY = "sk-test-secret-key-0123456789"
_OPEN_CLIENTS: list[openai.OpenAI] = []


def openai_client(base_url: str, api_key: str = "sk-client", **options: Any) -> openai.OpenAI:
    """A real openai client (no retries, so upstream errors show as they are), closed after the test: a client left
    to the garbage collector leaks its sockets, and their ResourceWarning fails whichever test runs then."""
    client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, **options)
    _OPEN_CLIENTS.append(client)
    return client


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--soak", action="store_true", help="also run the long soak test (tests/test_soak.py)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--soak"):
        return
    skip = pytest.mark.skip(reason="a long run: pass --soak to include it")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _close_openai_clients() -> Iterator[None]:
    yield
    while _OPEN_CLIENTS:
        _OPEN_CLIENTS.pop().close()


def run_openai_npm(base_url: str, *args: str) -> dict[str, Any]:
    """Run tests/js/openai_sdk.mjs (the openai npm package) against the gateway: what it saw, as JSON."""
    node = shutil.which("node")
    script = Path(__file__).parent / "js" / "openai_sdk.mjs"
    if node is None or not (script.parent / "node_modules" / "openai").is_dir():
        if os.environ.get("CI"):
            pytest.fail("node or tests/js/node_modules is missing: .ci/run must npm install it")
        pytest.skip("node or the openai npm package is not installed (npm install --prefix tests/js)")
    done = subprocess.run([node, str(script), base_url, *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    seen: dict[str, Any] = orjson.loads(done.stdout.strip().splitlines()[-1])
    return seen


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningGateway:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout)


def start_gateway(
    config: str | None,
    tmp: Path,
    *extra: str,
    workers: int = 1,
    env: dict[str, str] | None = None,
    unset: tuple[str, ...] = (),
) -> RunningGateway:
    port = free_port()
    log_path = tmp / f"gateway-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "agentgateway",
                *(["-c", config] if config is not None else []),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                str(workers),
                *extra,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**{k: v for k, v in os.environ.items() if k not in unset}, **(env or {})},
        )
    gateway = RunningGateway(process, port, log_path)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the gateway exited with {process.returncode}:\n{gateway.log()}")
        try:
            if httpx.get(gateway.url + "/readyz", timeout=1).status_code == 200:
                return gateway
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    gateway.stop(signal.SIGKILL)
    raise RuntimeError(f"the gateway did not become ready:\n{gateway.log()}")


def gateway_config(upstream: str, *, timeouts: str = "") -> str:
    return f"""
llm:
  models:
  - name: gpt-4o-mini
    provider: openAI
    params:
      model: upstream-model
      apiKey: {TEST_KEY}
      baseUrl: {upstream}
  - name: unreachable
    provider: openAI
    params:
      apiKey: {TEST_KEY}
      baseUrl: http://127.0.0.1:{free_port()}/v1
  - name: "passthrough-*"
    provider:
      custom:
        formats: [{{type: completions}}]
    params:
      baseUrl: {upstream}
  {timeouts}
"""


@pytest.fixture(scope="session")
def fake_openai() -> Iterator[FakeOpenAI]:
    fake, stop = start_fake_openai()
    yield fake
    stop()


@pytest.fixture(scope="session")
def gateway(fake_openai: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    running = start_gateway(gateway_config(fake_openai.base_url), tmp_path_factory.mktemp("gw"))
    yield running
    running.stop()


@pytest.fixture(scope="session")
def impatient_gateway(fake_openai: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    """Short upstream timeouts, to see 504s and idle-timeout error events quickly."""
    config = gateway_config(fake_openai.base_url, timeouts="timeouts: {connect: 1, firstByte: 1, idle: 1}")
    running = start_gateway(config, tmp_path_factory.mktemp("gw-impatient"))
    yield running
    running.stop()


# -- looking at the gateway's processes from outside ---------------------------------------------------------------


def process_tree(pid: int) -> list[int]:
    pids = [pid]
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except FileNotFoundError:  # the process ended meanwhile
        return pids
    for task in tasks:
        try:
            children = (task / "children").read_text().split()
        except FileNotFoundError:  # a thread (or the process) ended between the listing and the read
            continue
        for child in children:
            pids += process_tree(int(child))
    return pids


def open_sockets(pids: list[int]) -> int:
    count = 0
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if os.readlink(fd).startswith("socket:"):
                    count += 1
            except FileNotFoundError:
                pass
    return count


def rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


async def abort_stream(port: int, request: dict[str, Any]) -> None:
    """Start a streamed completion, wait for its first chunk, and hang up without a goodbye (a killed client)."""
    body = orjson.dumps(request)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    await writer.drain()
    received = b""
    while b"data: " not in received:  # the first chunk of the stream arrived
        data = await reader.read(4096)
        assert data, "the gateway closed the stream before its first chunk"
        received += data
    writer.transport.abort()  # hang up without a goodbye, as a killed client does
