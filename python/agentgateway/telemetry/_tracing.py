"""``config.tracing``: OpenTelemetry spans over OTLP (grpc or http), the GenAI span conventions.

One SERVER span per request and one CLIENT span per upstream attempt (so a failover shows as sibling attempts),
named ``{gen_ai.operation.name} {model}``. A client's W3C ``traceparent`` continues its trace (and its sampled
flag decides); each attempt sends its own ``traceparent`` upstream. No prompt or completion text is recorded.

Spans are built when the request settles, from the exchange's own timings (one clock read per request, no span
objects alive while it runs), as opentelemetry-sdk ``ReadableSpan`` objects handed to the SDK's OTLP exporters.
Export runs on one background thread from a bounded queue: a slow or dead collector never blocks or slows a
request; when the queue is full, spans are dropped and counted (``agentgateway_trace_spans_dropped_total``).
opentelemetry-sdk is imported only when tracing is configured (``pip install agentgateway-llm[tracing]``).
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..config import TracingConfig
from ..upstream import UpstreamRequest

if TYPE_CHECKING:
    from ..exchange import Exchange

__all__ = ["Trace", "Tracer", "parse_traceparent"]

logger = logging.getLogger("agentgateway")

_BATCH = 512
_EXPORT_EVERY = 1.0  # seconds between exports when fewer than _BATCH spans wait
_RANDOM = int.from_bytes


def parse_traceparent(value: bytes) -> tuple[int, int, bool] | None:
    """``(trace id, parent span id, sampled)`` of a W3C traceparent (version 00 and later), None if malformed."""
    parts = value.strip().split(b"-")
    if len(parts) < 4 or len(parts[0]) != 2 or len(parts[1]) != 32 or len(parts[2]) != 16 or len(parts[3]) != 2:
        return None
    if parts[0] == b"ff" or (parts[0] == b"00" and len(parts) != 4):
        return None
    try:
        trace_id, span_id, flags = int(parts[1], 16), int(parts[2], 16), int(parts[3], 16)
    except ValueError:
        return None
    if not trace_id or not span_id:
        return None
    return trace_id, span_id, bool(flags & 1)


def _new_id(size: int) -> int:
    while True:
        value = _RANDOM(os.urandom(size), "big")
        if value:
            return value


class Trace:
    """A sampled request's ids: set on the exchange when it starts, read again when it settles."""

    __slots__ = ("attempts", "parent", "remote", "span_id", "trace_id")

    def __init__(self, trace_id: int, parent: int | None, remote: bool) -> None:
        self.trace_id = trace_id
        self.parent = parent
        self.remote = remote
        self.span_id = _new_id(8)
        #: per attempt index: (span id, upstream host)
        self.attempts: dict[int, tuple[int, str]] = {}

    def inject(self, request: UpstreamRequest, index: int) -> UpstreamRequest:
        """``request`` with this attempt's ``traceparent`` header (replacing one the client sent)."""
        import dataclasses

        span_id = _new_id(8)
        self.attempts[index] = (span_id, request.endpoint.host)
        line = b"traceparent: 00-%032x-%016x-01\r\n" % (self.trace_id, span_id)
        headers = request.headers
        if b"traceparent:" in headers.lower():
            headers = b"".join(
                line + b"\r\n"
                for line in headers.split(b"\r\n")
                if line and not line.lower().startswith(b"traceparent:")
            )
        return dataclasses.replace(request, headers=headers + line)


class Tracer:
    def __init__(self, config: TracingConfig, on_dropped: Callable[[int], None]) -> None:
        from opentelemetry.sdk.resources import Resource

        from .. import __version__

        self._config = config
        sampling = config.random_sampling
        self._ratio = (1.0 if sampling else 0.0) if isinstance(sampling, bool) else float(sampling)
        self._resource = Resource.create({"service.name": "agentgateway", "service.version": __version__})
        self._exporter = _exporter(config)
        self._queue: collections.deque[Any] = collections.deque()
        self._limit = config.max_queue_size
        self._on_dropped = on_dropped
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._offset = time.time_ns() - time.monotonic_ns()

    # -- per request -------------------------------------------------------------------------------------------

    def start(self, headers: list[tuple[bytes, bytes]]) -> Trace | None:
        """The trace of a request, or None when it is not sampled."""
        for name, value in headers:
            if name == b"traceparent":
                parsed = parse_traceparent(value)
                if parsed is not None:
                    trace_id, parent, sampled = parsed
                    return Trace(trace_id, parent, True) if sampled else None
                break
        ratio = self._ratio
        if ratio <= 0.0 or (ratio < 1.0 and _RANDOM(os.urandom(4), "big") >= ratio * 2**32):
            return None
        return Trace(_new_id(16), None, False)

    def finish(self, exchange: Exchange, trace: Trace, attributes: dict[str, Any], ended: float) -> None:
        from opentelemetry.sdk.trace import ReadableSpan
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope
        from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

        flags = TraceFlags(TraceFlags.SAMPLED)
        scope = InstrumentationScope("agentgateway")
        server = SpanContext(trace.trace_id, trace.span_id, False, flags)
        parent = SpanContext(trace.trace_id, trace.parent, trace.remote, flags) if trace.parent is not None else None
        offset = self._offset
        error = attributes.get("error.type")
        spans = [
            ReadableSpan(
                name=f"{attributes['gen_ai.operation.name']} {attributes.get('gen_ai.request.model', '')}".strip(),
                context=server,
                parent=parent,
                resource=self._resource,
                attributes=attributes,
                kind=SpanKind.SERVER,
                instrumentation_scope=scope,
                status=Status(StatusCode.ERROR) if error and exchange.status >= 500 else Status(StatusCode.UNSET),
                start_time=offset + int(exchange.started * 1e9),
                end_time=offset + int(ended * 1e9),
            )
        ]
        operation = attributes["gen_ai.operation.name"]
        from ._metrics import outcome_of, provider_label

        last = exchange.attempts[-1] if exchange.attempts else None
        for index, attempt in enumerate(exchange.attempts):
            span_id, host = trace.attempts.get(index) or (_new_id(8), "")
            provider = provider_label(attempt.backend)
            outcome = outcome_of(attempt, last)
            attempt_attributes: dict[str, Any] = {
                "gen_ai.operation.name": operation,
                "gen_ai.provider.name": provider,
                "gen_ai.system": provider,
                "gen_ai.request.model": attempt.backend.entry.params.model or attempt.model,
                "agentgateway.backend": attempt.backend.entry.name,
                "agentgateway.attempt.outcome": outcome,
            }
            if host:
                attempt_attributes["server.address"] = host
            if attempt.status is not None:
                attempt_attributes["http.response.status_code"] = attempt.status
            if outcome != "ok":
                attempt_attributes["error.type"] = (
                    (attempt.error.code or attempt.error.type) if attempt.error is not None else attempt.outcome
                ) or outcome
            spans.append(
                ReadableSpan(
                    name=f"{operation} {attempt.model}",
                    context=SpanContext(trace.trace_id, span_id, False, flags),
                    parent=server,
                    resource=self._resource,
                    attributes=attempt_attributes,
                    kind=SpanKind.CLIENT,
                    instrumentation_scope=scope,
                    status=Status(StatusCode.ERROR) if outcome != "ok" else Status(StatusCode.UNSET),
                    start_time=offset + int(attempt.started * 1e9),
                    end_time=offset + int((attempt.ended or ended) * 1e9),
                )
            )
        self._enqueue(spans)

    # -- export ------------------------------------------------------------------------------------------------

    def _enqueue(self, spans: list[Any]) -> None:
        if self._pid != os.getpid():
            self._start_thread()
        queue = self._queue
        room = self._limit - len(queue)
        if room < len(spans):
            self._on_dropped(len(spans) - max(room, 0))
            spans = spans[: max(room, 0)]
        queue.extend(spans)
        if len(queue) >= _BATCH:
            self._wake.set()

    def _start_thread(self) -> None:
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._run, name="agentgateway-otlp", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            self._wake.wait(_EXPORT_EVERY)
            self._wake.clear()
            self._export_all()
            if self._stopping:
                return

    def _export_all(self) -> None:
        queue = self._queue
        while queue:
            batch = [queue.popleft() for _ in range(min(_BATCH, len(queue)))]
            try:
                self._exporter.export(batch)
            except Exception:
                logger.warning("exporting %d spans failed", len(batch), exc_info=True)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Exports what waits (up to ``timeout``), then stops the exporter."""
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        try:
            self._exporter.shutdown()
        except Exception:
            logger.debug("the span exporter failed to shut down", exc_info=True)


def _exporter(config: TracingConfig) -> Any:
    headers = {name: value.get_secret_value() for name, value in config.headers.items()}
    endpoint = config.otlp_endpoint
    if config.otlp_protocol == "http":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

        if "://" not in endpoint:
            endpoint = "http://" + endpoint
        rest = endpoint.partition("://")[2]
        if "/" not in rest.rstrip("/"):
            endpoint = endpoint.rstrip("/") + "/v1/traces"
        return HttpExporter(endpoint=endpoint, headers=headers, timeout=5)
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

    insecure = not endpoint.startswith("https://")
    target = endpoint.split("://", 1)[-1].rstrip("/")
    return GrpcExporter(endpoint=target, insecure=insecure, headers=headers, timeout=5)
