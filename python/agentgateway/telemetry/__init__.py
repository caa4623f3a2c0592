"""What operators see (OPERATIONS.md section 5, issue 18): metrics, traces, the access log and cost.

Everything reads the settled exchange (exchange.py) through one observer, `Telemetry.observe`, called once per
request on every exit path; nothing here runs while a request is in flight except `Telemetry.begin` (its request
id and, when tracing samples it, its trace ids) and the ``traceparent`` an attempt sends upstream.

- _metrics.py: the metric families, their labels and buckets; the per-worker recorder and the main process's sum.
- _table.py: the per-worker memory-mapped tables the main process sums (the aggregation over workers).
- _server.py: the ``/metrics`` and ``/healthz/ready`` servers of the main process.
- _access_log.py: one line per request.
- _tracing.py: OTLP spans (opentelemetry-sdk, imported only when ``config.tracing`` is set).
- _catalog.py: ``config.modelCatalog`` prices.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any

from ..config import GatewayConfig, TracingConfig, parse_log_level
from ..errors import ConfigError
from ._access_log import AccessLog
from ._catalog import Catalog, Tokens
from ._fields import LogFields
from ._metrics import FAMILIES, STATS_DIR_ENV, Recorder, provider_label
from ._table import WorkerTable

if TYPE_CHECKING:
    from ..exchange import Exchange
    from ..router import Router
    from ._tracing import Tracer

__all__ = ["FAMILIES", "STATS_ADDR_ENV", "STATS_DIR_ENV", "Telemetry", "apply_log_level", "stats_address"]

logger = logging.getLogger("agentgateway")

#: Wins over ``config.statsAddr`` (as agentgateway's).
STATS_ADDR_ENV = "STATS_ADDR"

_MAX_CLIENT_ID = 200


def stats_address(config: GatewayConfig) -> str:
    """The effective stats address: ``STATS_ADDR`` when set, else ``config.statsAddr``; ``off`` disables."""
    return os.environ.get(STATS_ADDR_ENV) or config.config.stats_addr


def apply_log_level(level: int | None) -> None:
    """``config.logging.level``: the level of the gateway's own log (None: as the command line set it)."""
    logging.getLogger("agentgateway").setLevel(logging.NOTSET if level is None else level)


class Telemetry:
    """One per worker process (the Gateway's)."""

    def __init__(self, config: GatewayConfig, router: Router) -> None:
        configured = {*router.exact_names, *router.patterns, *router.virtual_names}
        self.recorder: Recorder | None = None
        # Whether there is a recorder is the stats address's, which only a restart changes (reload.py warns).
        if stats_address(config) != "off":
            self.recorder = Recorder(configured, caller="caller" in config.config.metrics.fields)
        self.access_log: AccessLog | None = None
        #: accessLog.filter / add / remove compiled (_fields.py); None: the plain line, nothing evaluated.
        self.fields: LogFields | None = None
        self.catalog = Catalog(())
        self._catalog_entries: tuple[Any, ...] = ()
        self._tracing: TracingConfig | None = None
        self.tracer: Tracer | None = None
        self._levels: tuple[int | None, bool] = (None, True)
        self._running = False
        self._readiness: WorkerTable | None = None
        self._id_prefix = ""
        self._id_count = 0
        #: exchanges settled in this loop iteration, with when: recorded at its end (observe).
        self._pending: list[tuple[Exchange, float]] = []
        self._settle = self.settle_pending  # bound once (observe schedules it every loop iteration)
        self._configure(config)

    def _configure(self, config: GatewayConfig) -> None:
        """What of ``config:`` may change while serving: the access log (format, level, fields), the metrics'
        opt-in labels, tracing and the model catalog (README: "Reloading the config")."""
        section = config.config
        tracing = section.tracing
        if tracing is not None and importlib.util.find_spec("opentelemetry.sdk") is None:
            raise ConfigError(
                "config.tracing needs opentelemetry-sdk and its OTLP exporters: pip install 'agentgateway-llm[tracing]'"
            )
        logging_ = section.logging
        self._levels = parse_log_level(logging_.level)
        fields = LogFields.of(config)
        fmt = logging_.format
        if logging_.access_log and self._levels[1]:
            remove = fields.remove if fields is not None else frozenset()
            current = self.access_log
            if current is None or current.format != fmt or current.remove != remove:
                if current is not None:
                    current.flush()
                self.access_log = AccessLog(fmt, remove=remove)
        else:
            if self.access_log is not None:
                self.access_log.flush()
            self.access_log = None
        self.fields = fields
        entries = tuple(section.model_catalog)
        if entries != self._catalog_entries:
            self.catalog, self._catalog_entries = Catalog(entries), entries
        if tracing != self._tracing:
            old, self.tracer, self._tracing = self.tracer, None, tracing
            if old is not None:
                # Its queued spans are exported (or given up) on a thread of their own: never on the event loop.
                threading.Thread(target=old.shutdown, name="agentgateway-otlp-old", daemon=True).start()
            if self._running and tracing is not None:
                self._start_tracer()

    def reconfigure(self, config: GatewayConfig, router: Router) -> None:
        """A reloaded config (reload.py): metric labels follow its model names and ``config.metrics.fields``;
        the access log, tracing and catalog follow ``config:`` (a new exporter when tracing changed). The
        metric tables are kept: counts go on. The stats and readiness addresses are the main process's, bound at
        start-up (its watcher logs that a change of them needs a restart)."""
        self.settle_pending()  # what settled before the change is recorded as it was configured then
        self._configure(config)
        if self.recorder is not None:
            self.recorder.reconfigure(
                {*router.exact_names, *router.patterns, *router.virtual_names},
                caller="caller" in config.config.metrics.fields,
            )
        if self._running:
            apply_log_level(self._levels[0])

    def _new_prefix(self) -> None:
        self._id_prefix = os.urandom(6).hex()
        self._id_count = 0

    @property
    def active(self) -> bool:
        return self.recorder is not None or self.access_log is not None or self._tracing is not None

    def _start_tracer(self) -> None:
        from ._tracing import Tracer

        assert self._tracing is not None
        self.tracer = Tracer(self._tracing, self._spans_dropped)

    def startup(self) -> None:
        """In the worker, once its loop runs (lifespan start-up)."""
        self._running = True
        apply_log_level(self._levels[0])
        if self._tracing is not None and self.tracer is None:
            self._start_tracer()
        if self.recorder is not None:
            self.recorder.ready(True)
        elif self._readiness is None and os.environ.get(STATS_DIR_ENV):
            # Metrics off, readiness on: the table only says that this worker serves.
            self._readiness = WorkerTable(os.environ[STATS_DIR_ENV])
            self._readiness.set_ready(True)

    def shutdown(self) -> None:
        self.settle_pending()
        if self.access_log is not None:
            self.access_log.flush()
        if self.recorder is not None:
            self.recorder.close()
        if self._readiness is not None:
            self._readiness.set_ready(False)
        if self.tracer is not None:
            self.tracer.shutdown()

    # -- counters other parts of the gateway report ------------------------------------------------------------

    def rate_limited(self, limit: str) -> None:
        """A request refused by a rate limit (``limit``: which one, a bounded name such as ``requests``)."""
        if self.recorder is not None:
            self.recorder.count("agentgateway_rate_limit_rejections", ("limit",), (limit,))

    def redis_failed(self, failure_mode: str) -> None:
        """A Redis command that failed or timed out (``failure_mode``: failOpen | failClosed)."""
        if self.recorder is not None:
            self.recorder.count("agentgateway_redis_failures", ("failure_mode",), (failure_mode,))

    def _spans_dropped(self, count: int) -> None:
        if self.recorder is not None:
            self.recorder.count("agentgateway_trace_spans_dropped", (), (), count)

    # -- per request -------------------------------------------------------------------------------------------

    def begin(self, exchange: Exchange) -> None:
        """As the request starts: its request id (the client's own ``x-request-id`` kept) and trace."""
        request_id = None
        headers = exchange.request_headers
        for name, value in headers:
            if name == b"x-request-id":
                if 0 < len(value) <= _MAX_CLIENT_ID and value.isascii() and b" " not in value:
                    request_id = value.decode("ascii")
                break
        if request_id is None:
            if not self._id_prefix:  # per process, drawn in the worker (and again after a fork)
                self._id_prefix = os.urandom(6).hex()
                os.register_at_fork(after_in_child=self._new_prefix)
            self._id_count += 1
            request_id = f"{self._id_prefix}{self._id_count:08x}"
        exchange.request_id = request_id
        tracer = self.tracer
        if tracer is None and self._tracing is not None:
            self.startup()  # the app run in-process, without lifespan
            tracer = self.tracer
        if tracer is not None:
            exchange.trace = tracer.start(headers)

    def observe(self, exchange: Exchange) -> None:
        """The observer: metrics, the access-log line and spans of one settled exchange. They are made at the end
        of the event-loop iteration, for every exchange that settled in it (``settle_pending``): one pass over the
        same tables and code while they are still in the caches, and one ``write()`` of the access-log lines
        (benches/README.md, 2026-12-01). Without a running loop (the app called in-process), at once."""
        pending = self._pending
        pending.append((exchange, time.monotonic()))
        if len(pending) == 1:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.settle_pending()
                return
            loop.call_soon(self._settle)

    def settle_pending(self) -> None:
        """Records the exchanges observed since the last call."""
        pending = self._pending
        if not pending:
            return
        self._pending = []
        observe = self._observe
        for exchange, ended in pending:
            try:
                observe(exchange, ended)
            except Exception:
                logger.exception("an observer failed while settling a request")
        if self.access_log is not None:
            self.access_log.flush()

    def _observe(self, exchange: Exchange, ended: float) -> None:
        elapsed = ended - exchange.started
        facts = exchange.facts
        usage = facts.usage
        attempts = exchange.attempts
        last = attempts[-1] if attempts else None
        # Facts.usage: (prompt, completion, total, cached, cache write, reasoning); not reported: 0. Passed on as
        # plain ints (a Tokens only where one is read: CEL fields, spans, the catalog's general case).
        cost: float | None = None
        if usage is None:
            prompt: int | None = None
            completion = cached = written = reasoning = 0
        else:
            prompt, completion = usage[0], usage[1]
            if len(usage) < 6:
                cached = written = reasoning = 0
            else:
                cached, written, reasoning = usage[3] or 0, usage[4] or 0, usage[5] or 0
            lookup = self.catalog.lookup
            if last is not None and lookup is not None:
                price = lookup((last.backend.entry.params.model, last.model, exchange.client_model))
                if price is not None:
                    cost = Catalog.cost_of(price, prompt, completion, cached, written, reasoning)
        recorder = self.recorder
        if recorder is not None:
            recorder.record(
                exchange, elapsed, prompt, completion, cached, written, cost,
                recorder.caller_label(exchange) if recorder.caller else "",
            )  # fmt: skip
        access_log = self.access_log
        if access_log is not None:
            added: list[tuple[str, Any]] | None = None
            fields = self.fields
            if fields is not None:
                tokens = None if prompt is None else Tokens(prompt, completion, cached, written, reasoning)
                added = fields.line(fields.activation(exchange, tokens))
                if added is None:
                    access_log = None
                elif not fields.add:
                    added = None
        if access_log is not None:
            identity = exchange.identity
            access_log.write(
                exchange.request_id,
                exchange.upstream_request_id,
                getattr(identity, "name", None) if identity is not None else None,
                exchange.client_model,
                last.backend.entry.name if last is not None else None,
                len(attempts),
                exchange.status,
                prompt,
                completion,
                cached,
                reasoning,
                cost,
                elapsed,
                facts.ttft,
                "client_closed" if exchange.status == 499 else facts.error_type,
                added,
            )
        trace = exchange.trace
        if trace is not None and self.tracer is not None:
            tokens = None if prompt is None else Tokens(prompt, completion, cached, written, reasoning)
            self.tracer.finish(exchange, trace, self._span_attributes(exchange, last, tokens), ended)

    def _span_attributes(self, exchange: Exchange, last: Any, tokens: Tokens | None) -> dict[str, Any]:
        facts = exchange.facts
        operation = {"messages": "chat"}.get(exchange.api, exchange.api)
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": operation,
            "http.request.method": exchange.method,
            "url.path": exchange.path,
            "http.response.status_code": exchange.status,
            "agentgateway.request_id": exchange.request_id,
            "agentgateway.attempts": len(exchange.attempts),
        }
        if exchange.client_model:
            attributes["gen_ai.request.model"] = exchange.client_model
        if last is not None:
            provider = provider_label(last.backend)
            attributes["gen_ai.provider.name"] = provider
            attributes["gen_ai.system"] = provider
            attributes["gen_ai.response.model"] = last.backend.entry.params.model or last.model
        if tokens is not None:
            attributes["gen_ai.usage.input_tokens"] = tokens.input
            attributes["gen_ai.usage.output_tokens"] = tokens.output
        if facts.finish_reason is not None:
            attributes["gen_ai.response.finish_reasons"] = [facts.finish_reason]
        if exchange.status == 499:
            attributes["error.type"] = "client_closed"
        elif facts.error_type is not None:
            attributes["error.type"] = facts.error_type
        if exchange.upstream_request_id:
            attributes["agentgateway.upstream_request_id"] = exchange.upstream_request_id
        return attributes
