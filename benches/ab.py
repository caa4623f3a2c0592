"""A/B of gateway builds in one run (issue 22): nginx proxy_pass, then the gateway from each source tree, direct
and through a 2-target failover virtual model, alternating rounds, CPU µs per request of each process tree.

    TREES="before=/tmp/wt-old,after=/work/main,after-quiet=/work/main" ROUNDS=3 DURATION=5 python benches/ab.py

A tree is ``name=path`` (an old tree: ``git worktree add /tmp/wt-X <commit>`` and copy
``python/agentgateway/_core.abi3.so`` into it). The name's ending picks what is on: ``-quiet`` metrics, readiness and
the access log off; ``-nolog`` the access log off; ``-nometrics`` metrics and readiness off; ``-ops`` the defaults
plus key auth (the key wrk sends) and one request limit that never refuses; ``-guards`` the defaults plus a regex
guard on every request (reject ssn, mask email) and every answer (mask creditCard and phoneNumber; streams too);
``-traced`` the defaults plus OTLP/http tracing at 100 % sampling, exported to the mock upstream (which answers 404).
``NOVIRTUAL=1`` skips the virtual-model rows, ``CASES=plain`` the streams.
"""

import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load import (
    STREAM_CASE,
    UPSTREAMS,
    BenchError,
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

CASES = tuple(os.environ.get("CASES", "plain," + STREAM_CASE).split(","))
TREES = [t.split("=") for t in os.environ.get("TREES", "").split(",") if t]
#: key auth with the key data/post.lua sends, and one request limit that never refuses.
OPS = """  policies:
    apiKey:
      keys: [{key: sk-bench, metadata: {name: bench}}]
    localRateLimit: [{type: requests, maxTokens: 1000000000, tokensPerFill: 1000000000, fillInterval: 1s}]
"""

#: a regex guard on every request and every answer (issue 21's budget: at most 10 µs per plain request together).
GUARDS = """  policies:
    guardrails:
      request:
      - regex: {action: reject, rules: [{builtin: ssn}]}
      - regex: {action: mask, rules: [{builtin: email}]}
      response:
      - regex: {action: mask, rules: [{builtin: creditCard}, {builtin: phoneNumber}]}
      streaming: enabled
"""


def run(processes, root):
    rounds = int(os.environ.get("ROUNDS", "3"))
    seconds = int(os.environ.get("DURATION", "6"))
    conns = 32
    openai = UPSTREAMS["openai"]
    up_port = free_port()
    upstream = processes.start(
        "upstream", ["nginx", "-c", str(mock_upstream_conf(root / "upstream", up_port, ["openai"]))]
    )
    plain_path = f"/openai/plain/v1{openai.path}"
    stream_path = f"/openai/stream/v1{openai.stream_path}"
    targets = []
    port = free_port()
    p = processes.start("nginx", ["nginx", "-c", str(proxy_conf(root / "proxy", 1, port, up_port))])
    base = f"http://127.0.0.1:{port}"
    wait_ready(processes, base + plain_path)
    targets.append(
        Target(
            "nginx",
            p.pid,
            {"plain": base + plain_path, STREAM_CASE: base + stream_path},
            {"plain": "bench", STREAM_CASE: "bench"},
            openai.stream_file,
        )
    )
    config = gateway_config(up_port, ["openai"])
    for name, tree in TREES:
        port = free_port()
        quiet = name.endswith("-quiet")
        nometrics = quiet or name.endswith("-nometrics")
        nolog = quiet or name.endswith("-nolog")
        env = {
            **os.environ,
            "PYTHONPATH": f"{tree}/python",
            **({"STATS_ADDR": "off", "READINESS_ADDR": "off"} if nometrics else {}),
        }
        own = config.split("  virtualModels:")[0] if name == "before" else config
        if nolog:
            own += "config: {logging: {accessLog: false}}\n"
        if name.endswith("-ops"):
            own = own.replace("llm:\n", "llm:\n" + OPS, 1)
        if name.endswith("-traced"):
            own += (
                f"config: {{tracing: {{otlpEndpoint: 'http://127.0.0.1:{up_port}/v1/traces', otlpProtocol: http, "
                "randomSampling: true}}\n"
            )
        if name.endswith("-guards"):
            own = own.replace("llm:\n", "llm:\n" + GUARDS, 1)
        args = [
            sys.executable,
            "-m",
            "agentgateway",
            "-c",
            own,
            "--workers",
            "1",
            "--log-level",
            "warning",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
        p = processes.start(name, args, env)
        base = f"http://127.0.0.1:{port}"
        wait_ready(processes, base + "/readyz")
        urls = {c: base + "/v1/chat/completions" for c in CASES}
        targets.append(
            Target(
                f"{name} direct",
                p.pid,
                urls,
                {"plain": "bench-openai-plain", STREAM_CASE: "bench-openai-stream"},
                openai.stream_file,
            )
        )
        if name != "before" and not os.environ.get("NOVIRTUAL"):
            targets.append(
                Target(
                    f"{name} virtual",
                    p.pid,
                    urls,
                    {"plain": "bench-openai-plain-failover", STREAM_CASE: "bench-openai-stream-failover"},
                    openai.stream_file,
                )
            )
    figures = {}
    for index in range(rounds):
        order = targets if index % 2 == 0 else targets[::-1]
        for case in CASES:
            for t in order:
                row = measure(case, t, upstream.pid, conns, seconds)
                if row.errors or row.non2xx or not row.requests:
                    raise BenchError(f"{t.name} {case}: {row.errors} errors {row.non2xx} non-2xx")
                figures.setdefault((case, t.name), []).append(row.cpu_us)
                print(f"round {index + 1} {case:6} {t.name:24} {row.cpu_us:7.1f}", flush=True)
    print(versions())
    for (case, name), values in figures.items():
        ng = statistics.median(figures[(case, "nginx")])
        m = statistics.median(values)
        print(f"| {case} | {name} | {m:.1f} | {m / ng:.1f}x | {', '.join(f'{v:.1f}' for v in values)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(with_processes("ab-", run))
