"""The stats and readiness servers, in the main process (granian's supervisor), never in a worker.

``/metrics`` and ``/stats/prometheus`` on ``config.statsAddr`` sum every worker's table (_table.py) on each
scrape, so one scrape sees the whole gateway, respawned workers included; ``/healthz/ready`` on
``config.readinessAddr`` answers 200 only while every worker process serves. Each runs on a thread of its own
(http.server), off the request path entirely.
"""

from __future__ import annotations

import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ._metrics import Aggregator, families

__all__ = ["StatsServers", "parse_address"]

logger = logging.getLogger("agentgateway")


def parse_address(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: Any) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)


class StatsServers:
    def __init__(self, directory: str, workers: int, version: str) -> None:
        self.aggregator = Aggregator(directory)
        self.workers = workers
        self.version = version
        #: agentgateway_config_synchronized: 0 while the last config change could not be applied.
        self.config_synchronized = 1
        self._servers: list[_Server] = []
        self._lock = threading.Lock()

    def start(self, stats: str | None, readiness: str | None) -> list[tuple[str, int]]:
        """Starts the servers that are not ``off`` (None); returns their bound addresses. A port already in use is
        logged and skipped: traffic is served even when the stats port is taken."""
        bound = []
        for address, handler in ((stats, self._stats_handler()), (readiness, self._ready_handler())):
            if address is None:
                continue
            try:
                server = _Server(parse_address(address), handler)
            except OSError as exc:
                logger.error("cannot listen on %s for %s: %s", address, handler.role, exc)
                continue
            self._servers.append(server)
            threading.Thread(target=server.serve_forever, name=f"agentgateway-{handler.role}", daemon=True).start()
            host, port = server.server_address[:2]
            bound.append((str(host), int(port)))
            logger.info("%s on http://%s", handler.role, address)
        return bound

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()

    # -- what they answer --------------------------------------------------------------------------------------

    def exposition(self) -> bytes:
        from prometheus_client import CollectorRegistry, generate_latest
        from prometheus_client.core import GaugeMetricFamily

        with self._lock:  # folding a dead worker's table must happen once
            totals, ready = self.aggregator.collect()
        servers = self

        class _Collector:
            def collect(self) -> Any:
                yield from families(totals)
                build = GaugeMetricFamily("agentgateway_build_info", "Build information", labels=["tag"])
                build.add_metric([servers.version], 1)
                yield build
                yield GaugeMetricFamily(
                    "agentgateway_config_synchronized",
                    "1 when the running config is the last one given (0: a change was refused)",
                    value=servers.config_synchronized,
                )
                yield GaugeMetricFamily("agentgateway_workers", "Worker processes configured", value=servers.workers)
                yield GaugeMetricFamily("agentgateway_workers_ready", "Worker processes serving", value=ready)

        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector())
        return bytes(generate_latest(registry))

    def ready(self) -> bool:
        with self._lock:
            _, ready = self.aggregator.collect()
        return ready >= self.workers

    def _stats_handler(self) -> Any:
        servers = self

        class Handler(_Quiet):
            role = "stats"

            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] not in ("/metrics", "/stats/prometheus"):
                    self._answer(404, b"not found: /metrics or /stats/prometheus\n", "text/plain")
                    return
                from prometheus_client import CONTENT_TYPE_LATEST

                self._answer(200, servers.exposition(), CONTENT_TYPE_LATEST)

        return Handler

    def _ready_handler(self) -> Any:
        servers = self

        class Handler(_Quiet):
            role = "readiness"

            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] != "/healthz/ready":
                    self._answer(404, b"not found: /healthz/ready\n", "text/plain")
                elif servers.ready():
                    self._answer(200, b"ready\n", "text/plain")
                else:
                    self._answer(503, b"not ready: not every worker serves yet\n", "text/plain")

        return Handler


class _Quiet(BaseHTTPRequestHandler):
    role = ""

    def _answer(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # scrapes every few seconds would drown the log
