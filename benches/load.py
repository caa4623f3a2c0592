"""Load bench: the gateway against an nginx reverse proxy, both in front of the same nginx mock upstream.

    bash benches/load.sh            (or: python benches/load.py, make bench)

Starts on 127.0.0.1, each on a free port:

* a mock OpenAI upstream (nginx, one worker) that serves fixed answers: ``POST /v1/chat/completions`` ->
  data/completion.json, ``POST /stream/v1/chat/completions`` -> data/stream.sse (33 chunks, a usage chunk and
  ``[DONE]``);
* an nginx ``proxy_pass`` to it ($WORKERS workers, keep-alive upstream pool, no buffering for streams): the floor
  for a proxy on this machine;
* the gateway (``python -m agentgateway --workers $WORKERS``), model ``bench`` -> .../v1 and ``bench-stream`` ->
  .../stream/v1.

With ``MESSAGES=<providers>`` (e.g. ``anthropic,openai,bedrock``), rows for the Anthropic Messages API in
(issue 19) are added to the same run: wrk posts data/messages.lua to ``/v1/messages`` for the same models, so
``messages → anthropic`` (the Claude pass-through) sits next to ``agentgateway anthropic`` (chat completions in,
the same Anthropic upstream decoded), and ``messages → openai`` / ``messages → bedrock`` show the decoded paths
through the core's Anthropic encoder.

Every target must answer one plain and one streamed request correctly before it is loaded. Then, for $ROUNDS
rounds (targets alternating), wrk (data/post.lua, one thread) loads each target at $CONNS connections for
$DURATION seconds after a 2 s warm-up, and the CPU time (utime + stime from /proc) of the target's whole process
tree is read before and after. CPU microseconds per request is the figure to compare: on a shared 2-core
machine, where wrk and the upstream compete for the same cores, it is much steadier than requests per second.
Each row is the median round by CPU µs/request; the table is printed and written to benches/results.md.

Then two more phases: latency at a fixed rate (vegeta sends $RATE requests per second, open loop, to each target
and to the mock upstream directly, whose figures are subtracted; skipped when vegeta is missing or RATE=0), and,
with MEMORY_REQUESTS=N, N requests through the gateway with the worker's RSS sampled every 10 s.

Exit status: 0 when every request succeeded, 1 on any failed check, error or non-2xx answer.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
REPO = HERE.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
WARMUP_SECONDS = 2
MAX_OTHER_LOAD = 0.1  # cores used by processes outside the bench, above which a run is flagged
STREAM_CASE = "stream"
RESULT_LINE = re.compile(
    r"RESULT requests=(\d+) errors=(\d+) non2xx=(\d+) rps=([\d.]+) p50_ms=([\d.]+) p99_ms=([\d.]+)"
)


class BenchError(Exception):
    """A check failed: the bench stops, cleans up and exits 1."""


# -- processes -----------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants (granian's main process and its workers; nginx's master and workers)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += children.get(pid, [])
    return tree


def cpu_ticks(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime, in clock ticks
    return total


def rss_mb(pids: list[int]) -> float:
    total_kb = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total_kb += int(line.split()[1])
    return total_kb / 1024


def _die_with_parent() -> None:
    # Runs in the child before exec: if this script is killed outright (SIGKILL), the kernel kills the child too.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class Processes:
    """Every process the bench starts, each in its own process group, all stopped by ``stop_all``."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.started: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with (self.logs / f"{name}.log").open("wb") as log:
            process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 (this script starts no threads)
            )
        self.started.append((name, process))
        return process

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.logs / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def check_alive(self) -> None:
        for name, process in self.started:
            if process.poll() is not None:
                raise BenchError(f"{name} exited with status {process.returncode}:\n{self.log_tail(name)}")

    def stop_all(self) -> None:
        # SIGTERM: granian drains and stops its workers; nginx shuts down fast. Then SIGKILL whatever is left in
        # each process group (a group is the started process's own id: start_new_session).
        for _, process in reversed(self.started):
            _signal_group(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for _, process in self.started:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(max(0.1, deadline - time.monotonic()))
            _signal_group(process.pid, signal.SIGKILL)
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                print(f"warning: process {process.pid} did not stop", file=sys.stderr)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _exit_on_signal(signum: int, _frame: Any) -> NoReturn:
    raise SystemExit(128 + signum)


# -- configs -------------------------------------------------------------------------------------------------------


def nginx_conf(root: Path, workers: int, body: str) -> Path:
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    conf = root / "nginx.conf"
    conf.write_text(
        f"""daemon off;
worker_processes {workers};
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 120s;
  client_body_temp_path {root}/body;
  proxy_temp_path {root}/proxy;
  fastcgi_temp_path {root}/fastcgi;
  uwsgi_temp_path {root}/uwsgi;
  scgi_temp_path {root}/scgi;
  {body}
}}
"""
    )
    return conf


@dataclass(frozen=True)
class Upstream:
    """One provider's wire format as the mock serves it: a whole answer and a stream, from static files."""

    provider: str  # the config's provider name
    path: str  # the request path the provider appends to its baseUrl root (for a whole answer)
    stream_path: str  # the same for a stream (most providers use one path for both)
    base_suffix: str  # what baseUrl holds beyond the mock's root (OpenAI's baseUrl includes /v1)
    plain_file: str
    plain_type: str
    stream_file: str
    stream_type: str
    describe: str  # what the stream holds, for the report
    # Whether the provider keeps baseUrl's path (Bedrock keeps only scheme, host and port): then each provider's
    # files live under /<provider>/<plain|stream>; else at the provider's own paths, which differ per kind.
    prefixed: bool = True


UPSTREAMS = {
    "openai": Upstream(
        provider="openAI",
        path="/chat/completions",
        stream_path="/chat/completions",
        base_suffix="/v1",
        plain_file="completion.json",
        plain_type="application/json",
        stream_file="stream.sse",
        stream_type="text/event-stream",
        describe="33 chunks, a usage chunk and [DONE] (35 SSE events), passed through",
    ),
    "anthropic": Upstream(
        provider="anthropic",
        path="/v1/messages",
        stream_path="/v1/messages",
        base_suffix="",
        plain_file="anthropic_message.json",
        plain_type="application/json",
        stream_file="anthropic_stream.sse",
        stream_type="text/event-stream",
        describe="a Messages stream of 46 events (40 text deltas) translated into 44 OpenAI chunks",
    ),
    # The model is part of Gemini's path: the gateway config pins it to "bench" (params.model).
    "gemini": Upstream(
        provider="gemini",
        path="/v1beta/models/bench:generateContent",
        stream_path="/v1beta/models/bench:streamGenerateContent",
        base_suffix="",
        plain_file="gemini_response.json",
        plain_type="application/json",
        stream_file="gemini_stream.sse",
        stream_type="text/event-stream",
        describe="40 generateContent chunks (cumulative usage, no [DONE]) translated into OpenAI chunks",
    ),
    # SigV4-signed (the gateway gets AWS keys from its environment); the model id is in the path.
    "bedrock": Upstream(
        provider="bedrock",
        path="/model/bench/converse",
        stream_path="/model/bench/converse-stream",
        base_suffix="",
        plain_file="bedrock_response.json",
        plain_type="application/json",
        stream_file="bedrock_stream.bin",
        stream_type="application/vnd.amazon.eventstream",
        describe="43 binary eventstream messages (40 text deltas, usage in metadata after messageStop) translated"
        " into OpenAI chunks",
        prefixed=False,
    ),
}


def mock_upstream_conf(root: Path, port: int, providers: list[str]) -> Path:
    """The cheapest possible upstream for each provider (as shared/bench/gen_nginx.py writes it): the answer is a
    static file at /<provider>/plain<base_suffix><path>, the stream at /<provider>/stream<base_suffix><stream_path>."""
    files = root / "files"
    locations = []
    for name in providers:
        upstream = UPSTREAMS[name]
        for kind, source, content_type, provider_path in (
            ("plain", upstream.plain_file, upstream.plain_type, upstream.path),
            ("stream", upstream.stream_file, upstream.stream_type, upstream.stream_path),
        ):
            path = f"/{name}/{kind}{upstream.base_suffix}{provider_path}" if upstream.prefixed else provider_path
            (files / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(DATA / source, files / path.lstrip("/"))
            locations.append(f"location = {path} {{ default_type {content_type}; }}")
    # nginx's static module answers POST with 405; error_page turns that into a GET of the same file.
    return nginx_conf(
        root,
        1,
        f"""server {{
    listen 127.0.0.1:{port} reuseport backlog=4096;
    root {files};
    error_page 405 =200 $uri;
    {chr(10).join("    " + location for location in locations).strip()}
  }}""",
    )


def proxy_conf(root: Path, workers: int, port: int, upstream_port: int) -> Path:
    """A plain reverse proxy: HTTP/1.1 with a keep-alive pool to the upstream, streams passed on unbuffered."""
    proxy = 'proxy_pass http://mock; proxy_http_version 1.1; proxy_set_header Connection "";'
    return nginx_conf(
        root,
        workers,
        f"""upstream mock {{ server 127.0.0.1:{upstream_port}; keepalive 128; keepalive_requests 1000000; }}
  server {{
    listen 127.0.0.1:{port} reuseport backlog=4096;
    location / {{ {proxy} }}
    location ~ ^/[a-z]+/stream/ {{ {proxy} proxy_buffering off; }}
  }}""",
    )


def gateway_config(upstream_port: int, providers: list[str]) -> str:
    """Two entries per provider and case (``bench-<provider>-<case>`` and its ``-standby``), and a virtual model
    ``bench-<provider>-<case>-failover`` that tries the first, then the standby: the cost of failover routing."""
    lines = ["llm:", "  models:"]
    virtual = ["  virtualModels:"]
    for name in providers:
        upstream = UPSTREAMS[name]
        for kind in ("plain", "stream"):
            base = f"http://127.0.0.1:{upstream_port}"
            if upstream.prefixed:
                base += f"/{name}/{kind}{upstream.base_suffix}"
            # Bedrock signs with AWS keys (the cost a real deployment pays); the others send an API key.
            credentials = "awsRegion: us-east-1" if name == "bedrock" else "apiKey: sk-bench"
            for suffix in ("", "-standby"):
                lines += [
                    f"  - name: bench-{name}-{kind}{suffix}",
                    f"    provider: {upstream.provider}",
                    f'    params: {{model: bench, {credentials}, baseUrl: "{base}"}}',
                ]
            virtual += [
                f"  - name: bench-{name}-{kind}-failover",
                "    routing:",
                "      failover:",
                f"        targets: [{{model: bench-{name}-{kind}, priority: 0}}, "
                f"{{model: bench-{name}-{kind}-standby, priority: 1}}]",
            ]
    return "\n".join(lines + virtual) + "\n"


# -- checks --------------------------------------------------------------------------------------------------------


def post(url: str, model: str, stream: bool) -> bytes:
    body = json.dumps(
        {"model": model, "messages": [{"role": "user", "content": "Tell me a short story."}], "stream": stream}
    ).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json", "Authorization": "Bearer x"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.read()  # type: ignore[no-any-return]
    except urllib.error.HTTPError as exc:
        raise BenchError(f"POST {url} (model {model}) answered {exc.code}: {exc.read()[:500]!r}") from None
    except OSError as exc:
        raise BenchError(f"POST {url} (model {model}) failed: {exc}") from None


def streamed_text(transcript: bytes) -> str:
    """The content a client would show for an SSE transcript (what must survive the proxy), in OpenAI's format or
    (for the mock's own files) Anthropic's or Gemini's."""
    text = []
    for event in transcript.replace(b"\r\n", b"\n").split(b"\n\n"):
        data = next((line[6:] for line in event.split(b"\n") if line.startswith(b"data: {")), None)
        if data is None:
            continue
        payload = json.loads(data)
        for choice in payload.get("choices", []):
            text.append((choice.get("delta") or {}).get("content") or "")
        if payload.get("type") == "content_block_delta":
            text.append(payload["delta"].get("text") or "")
        for candidate in payload.get("candidates", []):
            text += [part.get("text") or "" for part in candidate.get("content", {}).get("parts", [])]
    return "".join(text)


def eventstream_text(data: bytes) -> str:
    """The text of a Bedrock ConverseStream answer (binary eventstream messages; the CRCs are the core's job)."""
    text = []
    while data:
        total, headers = int.from_bytes(data[0:4], "big"), int.from_bytes(data[4:8], "big")
        payload = json.loads(data[12 + headers : total - 4] or b"{}")
        text.append(payload.get("delta", {}).get("text") or "")
        data = data[total:]
    return "".join(text)


def post_messages(url: str, model: str, stream: bool) -> bytes:
    """POST the Messages request data/messages.lua sends."""
    body = json.dumps(
        {
            "model": model,
            "system": "You are terse.",
            "messages": [{"role": "user", "content": "Tell me a short story about a gateway."}],
            "max_tokens": 64,
            "stream": stream,
        }
    ).encode()
    headers = {"Content-Type": "application/json", "Authorization": "Bearer x", "anthropic-version": "2023-06-01"}
    request = urllib.request.Request(url, body, headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.read()  # type: ignore[no-any-return]
    except urllib.error.HTTPError as exc:
        raise BenchError(f"POST {url} (model {model}) answered {exc.code}: {exc.read()[:500]!r}") from None
    except OSError as exc:
        raise BenchError(f"POST {url} (model {model}) failed: {exc}") from None


def expected_text(stream_file: str) -> str:
    upstream_stream = (DATA / stream_file).read_bytes()
    return eventstream_text(upstream_stream) if stream_file.endswith(".bin") else streamed_text(upstream_stream)


def check_messages_target(target: Target) -> None:
    """A Messages row: a ``message`` with text, and a stream that ends with ``message_stop`` carrying the upstream's
    text."""
    answer = post_messages(target.urls["plain"], target.models["plain"], False)
    try:
        message = json.loads(answer)
    except ValueError:
        message = {}
    if message.get("type") != "message" or not any(b.get("text") for b in message.get("content", [])):
        raise BenchError(f"{target.name}: the plain answer is not a message with text: {answer[:500]!r}")
    transcript = post_messages(target.urls[STREAM_CASE], target.models[STREAM_CASE], True)
    if not transcript.rstrip().endswith(b'data: {"type":"message_stop"}'):
        raise BenchError(f"{target.name}: the stream does not end with message_stop: ...{transcript[-300:]!r}")
    if streamed_text(transcript) != expected_text(target.stream_file):
        raise BenchError(f"{target.name}: the streamed text differs from the upstream's: {transcript[:500]!r}")


def check_target(
    name: str, plain_url: str, plain_model: str, stream_url: str, stream_model: str, stream_file: str
) -> None:
    answer = post(plain_url, plain_model, False)
    try:
        choices = json.loads(answer).get("choices")
    except ValueError:
        choices = None
    if not choices:
        raise BenchError(f"{name}: the plain answer has no choices: {answer[:500]!r}")
    transcript = post(stream_url, stream_model, True)
    if not transcript.rstrip().endswith(b"data: [DONE]"):
        raise BenchError(f"{name}: the stream does not end with data: [DONE]: ...{transcript[-300:]!r}")
    if streamed_text(transcript) != expected_text(stream_file):
        raise BenchError(f"{name}: the streamed text differs from the upstream's: {transcript[:500]!r}")


def wait_ready(processes: Processes, url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        processes.check_alive()
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise BenchError(f"{url} did not answer 200 within {timeout:g}s")


# -- measuring -----------------------------------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    pid: int
    urls: dict[str, str]  # case -> url
    models: dict[str, str]  # case -> model
    stream_file: str  # the upstream's stream transcript (its text must come through)
    script: str = "post.lua"  # the wrk script: the request's inbound API (messages.lua: Anthropic Messages)


@dataclass
class Row:
    case: str
    target: str
    requests: int
    errors: int
    non2xx: int
    rps: float
    p50: float
    p99: float
    cpu_us: float
    rss_mb: float
    largest_rss_mb: float  # the largest single process: granian's worker, for the gateway
    other_cores: float  # CPU used meanwhile by processes outside the bench, in cores


def run_wrk(url: str, model: str, stream: bool, conns: int, seconds: int, script: str = "post.lua") -> str:
    env = {**os.environ, "MODEL": model, "STREAM": "1" if stream else "0", "KEY": "sk-bench"}
    args = ["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--timeout", "5s", "-s", str(DATA / script), url]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=seconds + 30)
    if done.returncode != 0:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stderr}")
    return done.stdout


def busy_ticks() -> int:
    """CPU time the whole machine spent busy (all cores, every process), in clock ticks."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return user + nice + system + irq + softirq + steal


def measure(case: str, target: Target, upstream_pid: int, conns: int, seconds: int) -> Row:
    stream = case == STREAM_CASE
    url, model = target.urls[case], target.models[case]
    run_wrk(url, model, stream, conns, WARMUP_SECONDS, target.script)
    upstream_before = cpu_ticks(process_tree(upstream_pid))
    wrk_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    machine_before = busy_ticks()
    before = cpu_ticks(process_tree(target.pid))
    started = time.monotonic()
    output = run_wrk(url, model, stream, conns, seconds, target.script)
    elapsed = time.monotonic() - started
    tree = process_tree(target.pid)  # the same processes: a worker that died would show as errors
    after = cpu_ticks(tree)
    machine = busy_ticks() - machine_before
    wrk_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    upstream = cpu_ticks(process_tree(upstream_pid)) - upstream_before
    wrk_cpu = wrk_after.ru_utime + wrk_after.ru_stime - wrk_before.ru_utime - wrk_before.ru_stime
    # Whatever else ran meanwhile (other people's builds and tests on a shared machine) skews every figure.
    other = ((machine - upstream - (after - before)) / CLOCK_TICKS - wrk_cpu) / elapsed
    match = RESULT_LINE.search(output)
    if match is None:
        raise BenchError(f"wrk printed no RESULT line:\n{output}")
    requests = int(match[1])
    return Row(
        case=case,
        target=target.name,
        requests=requests,
        errors=int(match[2]),
        non2xx=int(match[3]),
        rps=float(match[4]),
        p50=float(match[5]),
        p99=float(match[6]),
        cpu_us=(after - before) / CLOCK_TICKS * 1e6 / max(requests, 1),
        rss_mb=rss_mb(tree),
        largest_rss_mb=max(rss_mb([pid]) for pid in tree),
        other_cores=max(0.0, other),
    )


def report(
    rounds: dict[tuple[str, str], list[Row]],
    settings: dict[str, int],
    versions: str,
    anomalies: list[str],
    streams: list[str],
) -> str:
    rows = [sorted(runs, key=lambda r: r.cpu_us)[len(runs) // 2] for runs in rounds.values()]
    floor = {r.case: r.cpu_us for r in rows if r.target.startswith("nginx")}
    nproc = os.cpu_count()
    lines = [
        f"Load bench, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC: nproc={nproc}"
        f" ({platform.processor() or platform.machine()}), wrk -t1 -c{settings['conns']} -d{settings['duration']}s"
        f" after a {WARMUP_SECONDS}s warm-up, {settings['rounds']} round(s), median round shown; {versions}.",
        "",
        "**CPU µs/req is the figure to compare**: the CPU time (user + system) of the target's whole process tree"
        " divided by the requests it served. RPS and latency depend on what else the 2 cores run (wrk, the mock"
        " upstream). Other load: the most CPU (in cores) that processes outside the bench used during a round;"
        f" above {MAX_OTHER_LOAD} the machine was not quiet and the figures are skewed. The ratio is to nginx"
        " proxying the OpenAI files. Streams: " + "; ".join(streams) + ".",
        "",
        "| case | target | RPS | p50 ms | p99 ms | CPU µs/req | ratio to nginx | RSS MB (all / largest process)"
        " | CPU µs/req min-max"
        " | errors + non-2xx | other load (cores) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        runs = rounds[(r.case, r.target)]
        failures = sum(x.errors + x.non2xx for x in runs)
        lines.append(
            f"| {r.case} | {r.target} | {r.rps:,.0f} | {r.p50:.2f} | {r.p99:.2f} | {r.cpu_us:.1f}"
            f" | {r.cpu_us / floor[r.case]:.1f}x | {r.rss_mb:.0f} / {r.largest_rss_mb:.0f}"
            f" | {min(x.cpu_us for x in runs):.0f}-"
            f"{max(x.cpu_us for x in runs):.0f} | {failures} | {max(x.other_cores for x in runs):.2f} |"
        )
    if anomalies:
        lines += ["", "Anomalies:", *(f"- {a}" for a in anomalies)]
    return "\n".join(lines) + "\n"


def versions() -> str:
    code = "import agentgateway, granian, platform; print(agentgateway.__version__, granian.__version__)"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "python"), os.environ.get("PYTHONPATH")])),
    }
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    gateway, _, granian = done.stdout.strip().partition(" ")
    nginx = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip().partition("/")[2]
    return f"agentgateway {gateway}, granian {granian}, Python {platform.python_version()}, nginx {nginx}"


# -- latency at a fixed request rate --------------------------------------------------------------------------------
#
# wrk sends as fast as answers come back (a closed loop), so its latencies mostly measure queueing. The latency a
# user adds by putting the gateway in the path is measured open-loop instead: vegeta sends RATE requests per second
# on schedule whatever the answers do (no coordinated omission), against the target and against the mock upstream
# directly; the difference is what the hop adds.


def find_vegeta() -> str | None:
    found = shutil.which("vegeta")
    if found is None and (Path.home() / "go" / "bin" / "vegeta").exists():
        found = str(Path.home() / "go" / "bin" / "vegeta")
    return found


def mock_url(upstream_port: int, name: str, case: str) -> str:
    """The mock upstream's own URL for one provider's answer (what the gateway fetches for it)."""
    upstream = UPSTREAMS[name]
    kind = "stream" if case == STREAM_CASE else "plain"
    path = upstream.stream_path if case == STREAM_CASE else upstream.path
    prefix = f"/{name}/{kind}{upstream.base_suffix}" if upstream.prefixed else ""
    return f"http://127.0.0.1:{upstream_port}{prefix}{path}"


@dataclass
class LatencyRow:
    case: str
    target: str
    p50: float  # ms
    p99: float
    max: float
    failures: int
    baseline_p50: float  # the same answer fetched from the mock upstream directly
    baseline_p99: float


def run_vegeta(
    vegeta: str, root: Path, url: str, model: str, stream: bool, rate: int, seconds: float
) -> dict[str, Any]:
    body = root / "latency-body.json"
    body.write_bytes(
        json.dumps(
            {
                "model": model,
                "messages": [
                    {"role": "system", "content": "You are terse."},
                    {"role": "user", "content": "Tell me a short story about a gateway."},
                ],
                "max_tokens": 64,
                **({"stream": True} if stream else {}),
            }
        ).encode()
    )
    targets = root / "latency-targets.txt"
    targets.write_text(f"POST {url}\nContent-Type: application/json\nAuthorization: Bearer sk-bench\n@{body}\n")
    attack = subprocess.run(
        [
            vegeta,
            "attack",
            "-targets",
            str(targets),
            "-rate",
            str(rate),
            "-duration",
            f"{seconds}s",
            "-connections",
            "32",
            "-max-connections",
            "32",
            "-timeout",
            "10s",
        ],
        capture_output=True,
        timeout=seconds + 60,
    )
    if attack.returncode != 0:
        raise BenchError(f"vegeta attack failed: {attack.stderr.decode(errors='replace')}")
    summary = subprocess.run(
        [vegeta, "report", "-type", "json"], input=attack.stdout, capture_output=True, timeout=60, check=True
    )
    result: dict[str, Any] = json.loads(summary.stdout)
    return result


def measure_latency(
    vegeta: str, root: Path, case: str, target: Target, baseline_url: str, rate: int, seconds: float
) -> LatencyRow:
    stream = case == STREAM_CASE
    url, model = target.urls[case], target.models[case]
    figures = []
    for where in (baseline_url, url):
        run_vegeta(vegeta, root, where, model, stream, rate, WARMUP_SECONDS)
        result = run_vegeta(vegeta, root, where, model, stream, rate, seconds)
        codes = result.get("status_codes") or {}
        failures = result["requests"] - codes.get("200", 0)
        latencies = result["latencies"]
        figures.append((latencies["50th"] / 1e6, latencies["99th"] / 1e6, latencies["max"] / 1e6, failures))
    (base_p50, base_p99, _, base_failures), (p50, p99, worst, failures) = figures
    return LatencyRow(case, target.name, p50, p99, worst, failures + base_failures, base_p50, base_p99)


def latency_report(rows: list[LatencyRow], rate: int, seconds: float) -> str:
    lines = [
        f"Latency at a fixed {rate:,} requests/s (vegeta, open loop, 32 connections, {seconds:g}s after a"
        f" {WARMUP_SECONDS}s warm-up). Added = the target's figure minus the same answer fetched from the mock"
        " upstream directly in the same run (a stream: until its last byte).",
        "",
        "| case | target | p50 ms | p99 ms | max ms | added p50 ms | added p99 ms | failed requests |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.case} | {r.target} | {r.p50:.2f} | {r.p99:.2f} | {r.max:.1f} | {r.p50 - r.baseline_p50:.2f}"
            f" | {r.p99 - r.baseline_p99:.2f} | {r.failures} |"
        )
    return "\n".join(lines) + "\n"


# -- memory across many requests -------------------------------------------------------------------------------------


def memory_run(targets: list[Target], total: int, conns: int) -> tuple[str, list[str]]:
    """``total`` requests through the gateway, cycling over its targets and both cases in 10 s wrk slices; the RSS
    of its largest process (the worker) after each slice. Flat means no per-request leak."""
    gateway_targets = [t for t in targets if t.name.startswith("agentgateway")]
    samples: list[tuple[int, float]] = []
    failures: list[str] = []
    served = 0
    slices = [(t, case) for t in gateway_targets for case in ("plain", STREAM_CASE)]
    index = 0
    while served < total:
        target, case = slices[index % len(slices)]
        index += 1
        output = run_wrk(target.urls[case], target.models[case], case == STREAM_CASE, conns, 10, target.script)
        match = RESULT_LINE.search(output)
        if match is None:
            raise BenchError(f"wrk printed no RESULT line:\n{output}")
        served += int(match[1])
        if int(match[2]) or int(match[3]):
            failures.append(f"memory run, {case}, {target.name}: {match[2]} errors, {match[3]} non-2xx")
        tree = process_tree(target.pid)
        samples.append((served, max(rss_mb([pid]) for pid in tree)))
        print(f"memory run: {served:>9,} requests, worker RSS {samples[-1][1]:.1f} MB", flush=True)
    first, last = samples[0][1], samples[-1][1]
    peak = max(rss for _, rss in samples)
    text = (
        f"Memory across {served:,} requests (every provider, plain and streamed, wrk -c{conns} in 10 s slices): the"
        f" worker's RSS was {first:.1f} MB after the first {samples[0][0]:,} requests, {last:.1f} MB at the end,"
        f" {peak:.1f} MB at most.\n"
    )
    return text, failures


# -- main ----------------------------------------------------------------------------------------------------------


def main() -> int:
    for tool in ("nginx", "wrk"):
        if shutil.which(tool) is None:
            print(f"{tool} not found: apt-get install -y nginx wrk", file=sys.stderr)
            return 1
    settings = {
        "duration": int(os.environ.get("DURATION", "8")),
        "conns": int(os.environ.get("CONNS", "32")),
        "workers": int(os.environ.get("WORKERS", "1")),
        "rounds": int(os.environ.get("ROUNDS", "3")),
        # Requests per second of the fixed-rate latency phase (0 skips it; it needs vegeta, see load.sh).
        "rate": int(os.environ.get("RATE", "1000")),
        "latency_seconds": int(os.environ.get("LATENCY_SECONDS", "10")),
        # Requests of the memory run after everything else (0 skips it).
        "memory_requests": int(os.environ.get("MEMORY_REQUESTS", "0")),
    }
    providers = [p.strip() for p in os.environ.get("PROVIDERS", ",".join(UPSTREAMS)).split(",") if p.strip()]
    unknown = set(providers) - set(UPSTREAMS)
    if unknown or not providers:
        print(f"PROVIDERS: choose from {', '.join(UPSTREAMS)} (got {sorted(unknown) or 'none'})", file=sys.stderr)
        return 1
    # The Messages API rows (issue 19): the providers behind /v1/messages (none unless asked for).
    messages = [p.strip() for p in os.environ.get("MESSAGES", "").split(",") if p.strip()]
    if set(messages) - set(UPSTREAMS):
        print(f"MESSAGES: choose from {', '.join(UPSTREAMS)} (got {messages})", file=sys.stderr)
        return 1
    return with_processes(
        "agentgateway-bench-", lambda processes, root: _run(processes, root, settings, providers, messages)
    )


def with_processes(prefix: str, run: Callable[[Processes, Path], int]) -> int:
    """Calls ``run`` with a fresh Processes and its temporary directory; stops every process and removes the
    directory however it ends (a BenchError is printed and exits 1; SIGINT/SIGTERM/SIGHUP end it cleanly)."""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _exit_on_signal)
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o755)  # nginx's workers run as an unprivileged user and must read the mock's files
    processes = Processes(root)
    try:
        return run(processes, root)
    except BenchError as exc:
        print(f"\nFAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not interrupt the clean-up
        processes.stop_all()
        shutil.rmtree(root, ignore_errors=True)


def _run(
    processes: Processes, root: Path, settings: dict[str, int], providers: list[str], messages: list[str] | None = None
) -> int:
    workers = settings["workers"]
    messages = messages or []
    upstream_port, proxy_port, gateway_port = free_port(), free_port(), free_port()
    # The nginx proxy is the yardstick for every row: it always fronts the OpenAI files.
    served = [*providers, *(p for p in messages if p not in providers)]
    mock_providers = ["openai", *(p for p in served if p != "openai")]
    upstream = processes.start(
        "upstream", ["nginx", "-c", str(mock_upstream_conf(root / "upstream", upstream_port, mock_providers))]
    )
    proxy = processes.start(
        "proxy", ["nginx", "-c", str(proxy_conf(root / "proxy", workers, proxy_port, upstream_port))]
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "python"), os.environ.get("PYTHONPATH")])),
        # Bedrock rows: static keys from the environment, signed with SigV4 on every request.
        "AWS_ACCESS_KEY_ID": "AKIDBENCHEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "bench/secret/example/key",
        "AWS_BEARER_TOKEN_BEDROCK": "",
    }
    gateway_args = ["--host", "127.0.0.1", "--port", str(gateway_port), "--workers", str(workers)]
    gateway = processes.start(
        "gateway",
        [sys.executable, "-m", "agentgateway", "-c", gateway_config(upstream_port, served), *gateway_args],
        env=env,
    )
    wait_ready(processes, f"http://127.0.0.1:{gateway_port}/readyz")

    proxy_url, gateway_url = f"http://127.0.0.1:{proxy_port}", f"http://127.0.0.1:{gateway_port}/v1/chat/completions"
    worker_label = f"{workers} worker{'s' if workers > 1 else ''}"
    openai = UPSTREAMS["openai"]
    targets = [
        Target(
            "nginx proxy_pass",
            proxy.pid,
            {
                case: f"{proxy_url}/openai/{kind}/v1{openai.path}"
                for case, kind in (("plain", "plain"), (STREAM_CASE, "stream"))
            },
            {"plain": "bench", STREAM_CASE: "bench"},
            openai.stream_file,
        ),
        *(
            Target(
                f"agentgateway {name} ({worker_label})",
                gateway.pid,
                {"plain": gateway_url, STREAM_CASE: gateway_url},
                {"plain": f"bench-{name}-plain", STREAM_CASE: f"bench-{name}-stream"},
                UPSTREAMS[name].stream_file,
            )
            for name in providers
        ),
    ]
    messages_url = f"http://127.0.0.1:{gateway_port}/v1/messages"
    messages_targets = [
        Target(
            f"agentgateway messages→{name} ({worker_label})",
            gateway.pid,
            {"plain": messages_url, STREAM_CASE: messages_url},
            {"plain": f"bench-{name}-plain", STREAM_CASE: f"bench-{name}-stream"},
            UPSTREAMS[name].stream_file,
            "messages.lua",
        )
        for name in messages
    ]
    for target in messages_targets:
        check_messages_target(target)
    #: the chat targets with the provider whose mock answer each fetches (the latency phase's baseline)
    chat_targets = list(zip(targets, ["openai", *providers], strict=True))
    for target in targets:
        check_target(
            target.name,
            target.urls["plain"],
            target.models["plain"],
            target.urls[STREAM_CASE],
            target.models[STREAM_CASE],
            target.stream_file,
        )
    targets += messages_targets
    tree = process_tree(gateway.pid)
    print(f"gateway up on :{gateway_port}, process tree {tree}; nginx proxy :{proxy_port}; upstream :{upstream_port}")

    rounds: dict[tuple[str, str], list[Row]] = {}
    anomalies: list[str] = []
    failures: list[str] = []
    for index in range(settings["rounds"]):
        for case in ("plain", STREAM_CASE):
            for target in targets:
                row = measure(case, target, upstream.pid, settings["conns"], settings["duration"])
                processes.check_alive()
                rounds.setdefault((case, target.name), []).append(row)
                print(
                    f"round {index + 1}: {case:22} {target.name:26} {row.rps:9,.0f} rps  p50 {row.p50:6.2f} ms"
                    f"  p99 {row.p99:7.2f} ms  {row.cpu_us:7.1f} CPU µs/req  errors {row.errors}"
                    f"  non-2xx {row.non2xx}  other load {row.other_cores:.2f} cores",
                    flush=True,
                )
                if row.errors or row.non2xx or not row.requests:
                    failures.append(
                        f"round {index + 1}, {case}, {target.name}: {row.requests} requests,"
                        f" {row.errors} socket errors/timeouts, {row.non2xx} non-2xx answers"
                    )
                if row.other_cores > MAX_OTHER_LOAD:
                    anomalies.append(
                        f"round {index + 1}, {case}, {target.name}: other processes used {row.other_cores:.2f}"
                        " cores meanwhile (the machine was not quiet: numbers are skewed)"
                    )
                if row.p99 > 10 * row.p50:
                    anomalies.append(
                        f"round {index + 1}, {case}, {target.name}: p99 {row.p99:.1f} ms is over 10x"
                        f" p50 {row.p50:.2f} ms"
                    )
    gateway_log = [
        line
        for line in processes.log_tail("gateway", 10_000).splitlines()
        if re.search(r"WARNING|ERROR|Traceback", line)
    ]
    if gateway_log:
        anomalies.append(f"the gateway logged {len(gateway_log)} warning/error line(s), e.g. {gateway_log[0]!r}")

    streams = [f"{name}: {UPSTREAMS[name].describe}" for name in providers]
    streams += [
        f"messages→{name}: the {name} stream "
        + ("passed through, model rewritten" if name == "anthropic" else "written as Anthropic Messages events")
        for name in messages
    ]
    table = report(rounds, settings, versions(), failures + anomalies, streams)

    if settings["rate"]:
        vegeta = find_vegeta()
        if vegeta is None:
            table += "\nLatency at a fixed rate: not measured (vegeta not found; see benches/load.sh).\n"
        else:
            latency_rows = []
            for case in ("plain", STREAM_CASE):
                for target, provider in chat_targets:
                    row = measure_latency(
                        vegeta,
                        root,
                        case,
                        target,
                        mock_url(upstream_port, provider, case),
                        settings["rate"],
                        settings["latency_seconds"],
                    )
                    print(
                        f"latency at {settings['rate']} rps: {case:6} {target.name:34} p50 {row.p50:6.2f} ms"
                        f"  p99 {row.p99:6.2f} ms  added p99 {row.p99 - row.baseline_p99:5.2f} ms"
                        f"  failed {row.failures}",
                        flush=True,
                    )
                    latency_rows.append(row)
                    if row.failures:
                        failures.append(f"latency, {case}, {target.name}: {row.failures} failed requests")
            table += "\n" + latency_report(latency_rows, settings["rate"], settings["latency_seconds"])

    if settings["memory_requests"]:
        text, memory_failures = memory_run(targets, settings["memory_requests"], settings["conns"])
        failures += memory_failures
        table += "\n" + text
    print("\n" + table)
    (HERE / "results.md").write_text(table)
    if failures:
        print("FAILED: requests did not all succeed:\n" + "\n".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
