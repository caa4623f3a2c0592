"""Instructions per request of the whole Python request path, counted by valgrind (issue 22).

    python benches/path_instructions.py [case ...]      (needs nginx and valgrind; ~40 s a case)

Wall time on this shared 2-core VM swings by ±20 % between rounds, so a change of a few µs per request is invisible
to ``ab.py``. Instructions repeat to within a few hundred from run to run. Each case drives an ASGI app in-process
(the ASGI messages granian would hand over, four requests in flight) against the nginx mock upstream of load.py,
over real loopback sockets, and counts the user-space instructions of the process (the kernel's share of the socket
work is not counted) for 400 and for 2000 requests after a warm-up; the difference / 1600 is one request.

Cases: ``proxy`` (benches/floor_apps.py's minimal proxy: the gateway's upstream client, no checks), and the gateway
with its OpenAI model: ``plain`` / ``stream`` (the defaults: metrics and the access log on, the log to /dev/null),
``plain-quiet`` / ``stream-quiet`` (metrics and the access log off), ``plain-ops`` (the defaults plus key auth and
a request limit, as ab.py's ``-ops``). Default: all. ``TREE=/path/to/checkout`` counts that tree's gateway instead.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from ab import OPS  # noqa: E402
from load import free_port, gateway_config, mock_upstream_conf, with_processes  # noqa: E402

CASES = ("proxy", "plain-quiet", "plain", "plain-ops", "stream-quiet", "stream")
QUIET = "config: {logging: {accessLog: false}}\n"
BODY = b'{"model":"%s","messages":[{"role":"user","content":"Say hello"}]%s}'
FEW, MANY = 400, 2000


def _app(case: str, upstream_port: int) -> tuple[Any, str, bool]:
    if case == "proxy":
        os.environ["FLOOR_UPSTREAM"] = f"http://127.0.0.1:{upstream_port}/openai/plain/v1/chat/completions"
        import floor_apps

        floor_apps.proxy.startup()
        return floor_apps.proxy, "bench", False
    from agentgateway.app import Gateway
    from agentgateway.config import load_config

    text = gateway_config(upstream_port, ["openai"])
    if case.endswith("-ops"):
        text = text.replace("llm:\n", "llm:\n" + OPS, 1)
    if case.endswith("-quiet"):
        os.environ["STATS_ADDR"] = "off"
        text += QUIET
    gateway = Gateway(load_config(text), "<bench>")
    if gateway.telemetry.access_log is not None:
        gateway.telemetry.access_log._fd = os.open(os.devnull, os.O_WRONLY)
    stream = case.startswith("stream")
    return gateway, "bench-openai-stream" if stream else "bench-openai-plain", stream


async def _drive(app: Any, model: str, stream: bool, count: int) -> None:
    body = BODY % (model.encode(), b',"stream":true' if stream else b"")
    headers = [
        (b"host", b"gateway"),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"authorization", b"Bearer sk-bench"),  # the key of OPS
    ]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions", "query_string": b"",
             "headers": headers, "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2)}  # fmt: skip

    async def one() -> None:
        sent: list[dict[str, Any]] = []
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop()
            await asyncio.Future()  # the client stays
            raise AssertionError

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await app(scope, receive, send)
        if sent[0]["status"] != 200:
            raise RuntimeError(f"the bench request failed: {sent}")

    async def client(requests: int) -> None:
        for _ in range(requests):
            await one()

    await asyncio.gather(*(client(count // 4) for _ in range(4)))


def drive(case: str, upstream_port: int, count: int) -> None:
    """The child valgrind runs: warm up, then ``count`` requests."""
    import uvloop

    async def main() -> None:
        app, model, stream = _app(case, upstream_port)
        if case != "proxy":
            await app.startup()  # the Gateway's lifespan start-up (the proxy's ran in _app)
        await _drive(app, model, stream, 200)
        await _drive(app, model, stream, count)

    uvloop.run(main())


def instructions(case: str, upstream_port: int, count: int) -> int:
    # TREE: another checkout's python/ to count (a worktree of an older commit, its _core.abi3.so copied in).
    path = os.pathsep.join([str(HERE), str(Path(os.environ.get("TREE", HERE.parent)) / "python")])
    out = subprocess.run(
        ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null", sys.executable,
         __file__, "--drive", case, str(upstream_port), str(count)],
        env={**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": path},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"the {case} run failed:\n{out.stderr[-3000:]}")
    for line in out.stderr.splitlines():
        if "I refs:" in line or "I   refs:" in line:
            return int(line.rsplit(None, 1)[-1].replace(",", ""))
    raise RuntimeError(f"valgrind failed for {case}:\n{out.stderr[-2000:]}")


def main() -> int:
    cases = sys.argv[1:] or list(CASES)
    unknown = set(cases) - set(CASES)
    if unknown:
        print(f"unknown case(s) {sorted(unknown)}; cases: {', '.join(CASES)}", file=sys.stderr)
        return 2

    def run(processes: Any, root: Path) -> int:
        port = free_port()
        processes.start("upstream", ["nginx", "-c", str(mock_upstream_conf(root / "upstream", port, ["openai"]))])
        time.sleep(0.5)
        print("| case | instructions per request |\n|---|---:|")
        for case in cases:
            few, many = instructions(case, port, FEW), instructions(case, port, MANY)
            print(f"| {case} | {(many - few) // (MANY - FEW):,} |", flush=True)
        return 0

    return with_processes("agentgateway-instructions-", run)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--drive":
        drive(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        sys.exit(main())
