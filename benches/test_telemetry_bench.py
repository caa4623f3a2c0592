"""What metrics, the access log and tracing cost per request (issue 18): the work `Telemetry.begin` and
`Telemetry.observe` do for one settled exchange, plain and streamed (a stream's chunks cost telemetry nothing: it
reads the facts once, at settle). The worker table is a real file-backed mmap; the access log writes to /dev/null.
As in the worker, an event loop is running: `observe` queues the exchange and `settle_pending` (the end of the loop
iteration) records it, one request per iteration here (under load several settle in one iteration and share it).

    python -m pytest benches/test_telemetry_bench.py --benchmark-enable -p no:cacheprovider
    python benches/test_telemetry_bench.py          # CPU µs per request of each case, and minus ``off``
    python benches/test_telemetry_bench.py parts    # timeit of the observer's parts (the streamed exchange)
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from agentgateway.app import Gateway
from agentgateway.config import load_config
from agentgateway.exchange import Attempt, Exchange

CONFIG = """
llm:
  models:
  - {name: gpt-4o-mini, provider: openAI, params: {model: upstream-model, apiKey: k, baseUrl: "http://127.0.0.1:9/v1"}}
config:
  modelCatalog: [{name: upstream-model, input: 0.15, output: 0.6}]
%s
"""
SCOPE = {
    "type": "http",
    "method": "POST",
    "path": "/v1/chat/completions",
    "headers": [
        (b"host", b"gw"),
        (b"content-type", b"application/json"),
        (b"authorization", b"Bearer sk-x"),
        (b"x-team", b"ml"),
    ],
}


@pytest.fixture
def stats_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with tempfile.TemporaryDirectory() as directory:
        monkeypatch.setenv("AGENTGATEWAY_STATS_DIR", directory)
        yield directory


def _gateway(section: str) -> Gateway:
    gateway = Gateway(load_config(CONFIG % section))
    if gateway.telemetry.access_log is not None:
        gateway.telemetry.access_log._fd = os.open(os.devnull, os.O_WRONLY)
    gateway.telemetry.startup()
    return gateway


def _one(gateway: Gateway, stream: bool, batch: int = 1) -> Callable[[], None]:
    route = gateway.router.route("gpt-4o-mini")
    backend = route.targets(None)[0][0]  # type: ignore[arg-type]

    def one() -> None:
        exchange = Exchange(SCOPE, gateway.observers)
        gateway.telemetry.begin(exchange)
        exchange.client_model = "gpt-4o-mini"
        exchange.route = route
        exchange.streamed = stream
        attempt = Attempt(backend, "gpt-4o-mini", exchange.started, exchange.started + 0.001, 200, "ok")
        exchange.attempts.append(attempt)
        facts = exchange.facts
        facts.usage = (12, 40, 52, None, None, None)  # type: ignore[assignment]
        facts.finish_reason = "stop"
        facts.ttft = 0.0005
        exchange.status = 200
        exchange.settle()

    loop = asyncio.get_running_loop()

    def run() -> None:
        """``batch`` requests settled in one loop iteration, then its end (the callback observe scheduled)."""
        for _ in range(batch):
            one()
        gateway.telemetry.settle_pending()
        loop._ready.clear()  # type: ignore[attr-defined]  # the scheduled settle_pending, already run

    return run


@pytest.fixture(autouse=True)
def running_loop() -> Iterator[None]:
    """A running loop, as in the worker (``observe`` defers to the end of its iteration); never run here."""
    loop = asyncio.new_event_loop()
    asyncio.events._set_running_loop(loop)
    yield
    asyncio.events._set_running_loop(None)
    loop.close()


CASES = {
    "off": "  statsAddr: 'off'\n  logging: {accessLog: false}",
    "metrics": "  logging: {accessLog: false}",
    "metrics+log": "",
    "metrics+log json": "  logging: {format: json}",
    # frontendPolicies.accessLog (issue 21): two CEL fields on every line, and a filter that drops the line.
    "+accessLog.add 2": "  logging: {format: json}\nfrontendPolicies:\n  accessLog:\n    add: {team: 'request.headers"
    '["x-team"]\', asked: llm.requestModel}',
    "+accessLog.filter": "  logging: {format: json}\nfrontendPolicies:\n  accessLog: {filter: 'response.code >= 400'}",
}


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("case", list(CASES))
def test_settle(benchmark: Any, stats_dir: str, case: str, stream: bool) -> None:
    benchmark(_one(_gateway(CASES[case]), stream))


def main() -> None:
    """Without pytest: CPU µs per request of each case, and each case minus ``off``."""
    os.environ["AGENTGATEWAY_STATS_DIR"] = tempfile.mkdtemp()
    asyncio.events._set_running_loop(asyncio.new_event_loop())
    rounds = 200_000
    for batch in (1, 5):
        for stream in (False, True):
            results = {}
            for case, section in CASES.items():
                run = _one(_gateway(section), stream, batch)
                for _ in range(10_000 // batch):
                    run()
                best = float("inf")
                for _ in range(3):
                    started = time.process_time()
                    for _ in range(rounds // batch):
                        run()
                    best = min(best, (time.process_time() - started) / rounds * 1e6)
                results[case] = best
            for case, micros in results.items():
                kind = "stream" if stream else "plain"
                print(
                    f"{kind:6} {batch} per loop iteration {case:18} {micros:6.2f} µs  (+{micros - results['off']:.2f})"
                )


def parts() -> None:
    """``timeit`` (best of 5) of each part of the observer for the bench's streamed exchange: the recorder's one
    call per exchange, the access-log line (text, JSON) without its write, the flush with one line waiting (its
    ``write()`` to /dev/null), and `Telemetry._observe` with each case's configuration."""
    import timeit

    os.environ["AGENTGATEWAY_STATS_DIR"] = tempfile.mkdtemp()
    asyncio.events._set_running_loop(asyncio.new_event_loop())

    def exchange_of(gateway: Gateway) -> Exchange:
        route = gateway.router.route("gpt-4o-mini")
        backend = route.targets(None)[0][0]  # type: ignore[arg-type]
        exchange = Exchange(SCOPE, [])
        gateway.telemetry.begin(exchange)
        exchange.client_model, exchange.route, exchange.streamed, exchange.status = "gpt-4o-mini", route, True, 200
        exchange.attempts.append(Attempt(backend, "gpt-4o-mini", exchange.started, exchange.started + 0.001, 200, "ok"))
        exchange.facts.usage = (12, 40, 52, None, None, None)
        exchange.facts.ttft = 0.0005
        return exchange

    def report(label: str, fn: Callable[[], object], number: int = 200_000) -> None:
        best = min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6
        print(f"{label:38} {best:6.3f} µs")

    text, json = _gateway(CASES["metrics+log"]), _gateway(CASES["metrics+log json"])
    exchange = exchange_of(text)
    recorder, text_log, json_log = text.telemetry.recorder, text.telemetry.access_log, json.telemetry.access_log
    assert recorder is not None and text_log is not None and json_log is not None
    line = (exchange.request_id, None, None, "gpt-4o-mini", "gpt-4o-mini", 1, 200, 12, 40, 0, 0, 2.4e-05, 0.0123,
            0.0005, None)  # fmt: skip
    report("Recorder.record", lambda: recorder.record(exchange, 0.0123, 12, 40, 0, 0, 2.4e-05, ""))
    for label, log in (("text", text_log), ("json", json_log)):

        def write(log: Any = log) -> None:
            log.write(*line)

        report(f"AccessLog.write {label} (no write)", write)
        log.flush()

    def flush() -> None:
        text_log.write(*line)
        text_log.flush()

    report("AccessLog.write text + flush", flush)
    for case in ("metrics", "metrics+log", "metrics+log json"):
        gateway = _gateway(CASES[case])
        one = exchange_of(gateway)
        telemetry = gateway.telemetry

        def observe(telemetry: Any = telemetry, one: Exchange = one) -> None:
            telemetry._observe(one, one.started + 0.0123)
            if telemetry.access_log is not None:
                telemetry.access_log.flush()

        report(f"Telemetry._observe ({case})", observe)


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["parts"]:
        parts()
    else:
        main()
