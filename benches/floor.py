"""Where the floor is: what granian alone, forwarding alone and the gateway cost, in CPU µs per request.

    python benches/floor.py            (ROUNDS, DURATION and CONNS as for load.sh; needs nginx and wrk)

Loads, in alternating rounds, every target below with wrk at $CONNS connections, in front of the same nginx mock
upstream that benches/load.py uses, and prints the median CPU µs per request of each target's process tree:

* nginx ``proxy_pass`` to the mock upstream;
* a bare granian ASGI app that answers without any upstream call (benches/floor_apps.py ``bare``);
* a minimal proxy: that app forwarding each request with the gateway's own upstream client (``proxy``);
* the same minimal proxy with an upstream client in Rust, hyper on tokio, driven from asyncio -- only when
  benches/rust_client is installed (``pip install ./benches/rust_client``);
* the gateway, OpenAI model, plain and streamed, asked directly and through a virtual model with two failover
  targets (the same process; the first target always answers).

Every granian target runs one worker on uvloop, as the gateway does. Results go to stdout only.
"""

from __future__ import annotations

import importlib.util
import os
import statistics
import sys
from pathlib import Path

from load import (
    REPO,
    STREAM_CASE,
    UPSTREAMS,
    BenchError,
    Processes,
    Target,
    free_port,
    gateway_config,
    measure,
    mock_upstream_conf,
    proxy_conf,
    versions,
    wait_ready,
    with_processes,
)

HERE = Path(__file__).resolve().parent
CASES = ("plain", STREAM_CASE)


def granian(app: str, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "granian",
        "--interface",
        "asgi",
        "--loop",
        "uvloop",
        "--workers",
        "1",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        app,
    ]


def main() -> int:
    rounds = int(os.environ.get("ROUNDS", "3"))
    seconds = int(os.environ.get("DURATION", "8"))
    conns = int(os.environ.get("CONNS", "32"))
    return with_processes("agentgateway-floor-", lambda processes, root: _run(processes, root, rounds, seconds, conns))


def _run(processes: Processes, root: Path, rounds: int, seconds: int, conns: int) -> int:
    openai = UPSTREAMS["openai"]
    upstream_port = free_port()
    upstream = processes.start(
        "upstream", ["nginx", "-c", str(mock_upstream_conf(root / "upstream", upstream_port, ["openai"]))]
    )
    plain_path = f"/openai/plain/v1{openai.path}"
    stream_path = f"/openai/stream/v1{openai.stream_path}"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), str(REPO / "python"), os.environ.get("PYTHONPATH")])),
        "FLOOR_UPSTREAM": f"http://127.0.0.1:{upstream_port}{plain_path}",
    }
    targets: list[Target] = []

    completions = "/v1/chat/completions"
    app_paths = dict.fromkeys(CASES, completions)
    any_model = dict.fromkeys(CASES, "bench")

    def add(
        name: str,
        args: list[str],
        port: int,
        ready_path: str,
        paths: dict[str, str],
        models: dict[str, str],
        **extra: str,
    ) -> None:
        """Start a target and wait until it answers; it is loaded with the cases ``paths`` names."""
        process = processes.start(f"target{len(targets)}", args, {**env, **extra})
        base = f"http://127.0.0.1:{port}"
        wait_ready(processes, base + ready_path)
        urls = {case: base + path for case, path in paths.items()}
        targets.append(Target(name, process.pid, urls, models, openai.stream_file))

    port = free_port()
    nginx = ["nginx", "-c", str(proxy_conf(root / "proxy", 1, port, upstream_port))]
    add("nginx proxy_pass", nginx, port, plain_path, {"plain": plain_path, STREAM_CASE: stream_path}, any_model)
    port = free_port()
    add("bare granian app", granian("floor_apps:bare", port), port, "/", app_paths, any_model)
    port = free_port()
    proxy_paths = {"plain": completions}  # the minimal proxies forward to the plain answer only
    add(
        "minimal proxy, asyncio client",
        granian("floor_apps:proxy", port),
        port,
        "/",
        proxy_paths,
        any_model,
        FLOOR_CLIENT="asyncio",
    )
    if importlib.util.find_spec("agentgateway_bench_hyper") is not None:
        port = free_port()
        add(
            "minimal proxy, hyper client",
            granian("floor_apps:proxy", port),
            port,
            "/",
            proxy_paths,
            any_model,
            FLOOR_CLIENT="hyper",
        )
    else:
        print("benches/rust_client is not installed (pip install ./benches/rust_client): no hyper client row")
    port = free_port()
    gateway_args = ["-c", gateway_config(upstream_port, ["openai"]), "--workers", "1", "--log-level", "warning"]
    add(
        "gateway (OpenAI model)",
        [sys.executable, "-m", "agentgateway", *gateway_args, "--host", "127.0.0.1", "--port", str(port)],
        port,
        "/readyz",
        app_paths,
        {"plain": "bench-openai-plain", STREAM_CASE: "bench-openai-stream"},
    )
    # The same gateway process, through a virtual model with two failover targets (the first always answers):
    # what failover routing costs on the hot path.
    gateway = targets[-1]
    targets.append(
        Target(
            "gateway (virtual model, 2 failover targets)",
            gateway.pid,
            gateway.urls,
            {"plain": "bench-openai-plain-failover", STREAM_CASE: "bench-openai-stream-failover"},
            gateway.stream_file,
        )
    )

    figures: dict[tuple[str, str], list[float]] = {}
    for index in range(rounds):
        order = targets if index % 2 == 0 else targets[::-1]  # alternate: the VM's speed drifts within minutes
        for case in CASES:
            for target in order:
                if case not in target.urls:
                    continue
                row = measure(case, target, upstream.pid, conns, seconds)
                processes.check_alive()
                if row.errors or row.non2xx or not row.requests:
                    raise BenchError(f"{target.name}, {case}: {row.errors} errors, {row.non2xx} non-2xx answers")
                figures.setdefault((case, target.name), []).append(row.cpu_us)
                print(f"round {index + 1}: {case:6} {target.name:32} {row.cpu_us:7.1f} CPU µs/req", flush=True)

    nginx = {case: statistics.median(figures[(case, "nginx proxy_pass")]) for case in CASES}
    print(f"\n{versions()}; wrk -t1 -c{conns} -d{seconds}s, {rounds} alternating round(s), median shown.\n")
    print("| case | target | CPU µs/req | ratio to nginx | all rounds |")
    print("|---|---|---:|---:|---|")
    for (case, name), values in figures.items():
        median = statistics.median(values)
        rounds_text = ", ".join(f"{value:.1f}" for value in values)
        print(f"| {case} | {name} | {median:.1f} | {median / nginx[case]:.1f}x | {rounds_text} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
