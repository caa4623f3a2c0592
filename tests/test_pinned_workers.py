"""``--workers 2``: two worker processes both serve (README: "--workers (default: number of CPUs)").

Worker identity is observed from outside, not from anything the gateway says: the fake upstream looks up, while
it answers, which process holds the other end of the connection it was called on (its peer port in
/proc/net/tcp, that socket's inode among the gateway processes' file descriptors). Each client request comes on
a connection of its own, which the kernel hands to either worker; the test stops as soon as both served.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web
from conftest import RunningGateway, openai_client, process_tree, start_gateway
from fakes.server import serve_in_thread

ANSWER = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}


def _inode_of_local_port(port: int) -> str | None:
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                return fields[9]
    return None


def _owner(port: int, pids: list[int]) -> int | None:
    """The process among ``pids`` holding the socket whose local port is ``port``."""
    inode = _inode_of_local_port(port)
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for pid in pids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except FileNotFoundError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) == target:
                    return pid
            except FileNotFoundError:
                continue
    return None


class Upstream:
    def __init__(self) -> None:
        self.gateway_pid = 0
        self.seen: list[tuple[int, int | None]] = []  # (peer port, the gateway process on that side)

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        peer = request.transport.get_extra_info("peername") if request.transport is not None else None
        port = int(peer[1]) if peer else 0
        self.seen.append((port, _owner(port, process_tree(self.gateway_pid))))
        return web.json_response(ANSWER)


@pytest.fixture
def upstream() -> Iterator[tuple[Upstream, str]]:
    fake = Upstream()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", fake.handle)
    origin, stop = serve_in_thread(app, "fake-worker-identity")
    yield fake, origin
    stop()


@pytest.fixture
def gateway(upstream: tuple[Upstream, str], tmp_path: Path) -> Iterator[RunningGateway]:
    fake, origin = upstream
    config = f"llm: {{models: [{{name: m, provider: openAI, params: {{apiKey: k, baseUrl: '{origin}/v1'}}}}]}}"
    running = start_gateway(config, tmp_path, workers=2)
    fake.gateway_pid = running.process.pid
    yield running
    running.stop()


def test_two_workers_both_serve_each_on_its_own_connections(
    gateway: RunningGateway, upstream: tuple[Upstream, str]
) -> None:
    fake, _ = upstream
    workers = set(process_tree(gateway.process.pid)) - {gateway.process.pid}
    assert len(workers) >= 2, "two worker processes run"
    for _ in range(64):  # a new client connection each time: the kernel picks the worker
        with openai_client(gateway.url) as client:
            answer = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
        assert answer.choices[0].message.content == "hi"
        if len({pid for _, pid in fake.seen}) >= 2:
            break
    owners = {pid for _, pid in fake.seen}
    assert None not in owners, f"a call came from outside the gateway's processes: {fake.seen}"
    assert len(owners) == 2, f"only one worker served: {fake.seen}"
    assert owners <= workers and gateway.process.pid not in owners, "the workers serve, not the main process"
    # Distinct connections: no upstream connection is shared by the two workers.
    ports_by_owner = {pid: {port for port, owner in fake.seen if owner == pid} for pid in owners}
    first, second = ports_by_owner.values()
    assert not first & second
