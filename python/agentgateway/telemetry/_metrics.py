"""The metrics: agentgateway's names and the OpenTelemetry GenAI conventions, recorded per settled exchange.

Names, so that agentgateway's dashboards work (``crates/agentgateway/src/telemetry/metrics.rs`` there):

- ``agentgateway_requests_total`` and ``agentgateway_request_duration_seconds`` (HTTP labels: backend, protocol,
  method, status, gen_ai_* of the request; ``error_type`` on the duration);
- ``agentgateway_gen_ai_client_token_usage`` (``gen_ai_token_type``: input, output, input_cache_read,
  input_cache_write), ``agentgateway_gen_ai_server_request_duration`` (with ``error_type``),
  ``agentgateway_gen_ai_server_time_to_first_token``, ``agentgateway_gen_ai_server_time_per_output_token`` and
  ``agentgateway_gen_ai_client_cost_usd_total`` (GenAI labels: operation, provider, system, request and response
  model);
- ``agentgateway_retries_total``, ``agentgateway_build_info``, ``agentgateway_config_synchronized``;
- ours: ``agentgateway_upstream_attempts_total`` (backend, provider, outcome, status),
  ``agentgateway_backend_evictions_total``, ``agentgateway_rate_limit_rejections_total`` (limit),
  ``agentgateway_redis_failures_total`` (failure_mode), ``agentgateway_model_catalog_unpriced_requests_total``,
  ``agentgateway_trace_spans_dropped_total``.

Buckets are the GenAI conventions' advice (token usage, request duration, time to first token, time per output
token; with agentgateway's extra 1 ms bucket for fast models) and agentgateway's for HTTP durations.

Cardinality is bounded by the config, never by what clients send: models are configured names (a pattern entry
is labelled with its pattern; a model nothing serves is ``other``), backends are entry names, error types come
from the error vocabulary (anything else ``other``), statuses are HTTP statuses. No key, user or path label; the
caller's name only with ``config.metrics.fields: [caller]``, at most 256 names.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._core import ERROR_KINDS, STATS_BUCKETS, error_kind
from ._table import SeriesKey, WorkerTable, read_table

if TYPE_CHECKING:
    from ..backend import Backend
    from ..exchange import Attempt, Exchange

__all__ = ["FAMILIES", "Aggregator", "Family", "Recorder", "provider_label"]

# https://opentelemetry.io/docs/specs/semconv/gen-ai/gen-ai-metrics/
TOKEN_BUCKETS = (1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
                 16777216.0, 67108864.0)  # fmt: skip
GENAI_DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
TPOT_BUCKETS = (0.001, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
HTTP_DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 80.0)


@dataclass(frozen=True)
class Family:
    name: str  # as exported (counters get ``_total``)
    kind: str  # counter | histogram | gauge
    help: str
    buckets: tuple[float, ...] = ()

    @property
    def slots(self) -> int:
        # Histograms: one count per bucket and +Inf (not cumulative: one increment per observation), then the sum.
        return len(self.buckets) + 2 if self.kind == "histogram" else 1


_LIST = [
    Family("agentgateway_requests", "counter", "Requests served, by status and model"),
    Family("agentgateway_request_duration_seconds", "histogram", "Duration of requests (s)", HTTP_DURATION_BUCKETS),
    Family("agentgateway_gen_ai_client_token_usage", "histogram", "Tokens used per request", TOKEN_BUCKETS),
    Family(
        "agentgateway_gen_ai_server_request_duration",
        "histogram",
        "Duration of generative AI requests (s)",
        GENAI_DURATION_BUCKETS,
    ),
    Family(
        "agentgateway_gen_ai_server_time_to_first_token",
        "histogram",
        "Time to the first token of a streamed answer (s)",
        TTFT_BUCKETS,
    ),
    Family(
        "agentgateway_gen_ai_server_time_per_output_token",
        "histogram",
        "Time per output token after the first, streamed answers (s)",
        TPOT_BUCKETS,
    ),
    Family("agentgateway_gen_ai_client_cost_usd", "counter", "Cost of requests in USD (config.modelCatalog)"),
    Family("agentgateway_retries", "counter", "Upstream attempts that were retried (failover or renewed credentials)"),
    Family("agentgateway_upstream_attempts", "counter", "Upstream attempts, by outcome"),
    Family("agentgateway_backend_evictions", "counter", "Backends evicted after failures (per worker process)"),
    Family("agentgateway_rate_limit_rejections", "counter", "Requests refused by a rate limit, by limit"),
    Family("agentgateway_redis_failures", "counter", "Redis commands that failed or timed out"),
    Family(
        "agentgateway_model_catalog_unpriced_requests",
        "counter",
        "Requests with usage whose model is not in config.modelCatalog (counted as costing nothing)",
    ),
    Family("agentgateway_trace_spans_dropped", "counter", "Spans dropped because the export queue was full"),
]
FAMILIES = {family.name: family for family in _LIST}

_HTTP = ("backend", "protocol", "method", "status", "gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_system",
         "gen_ai_request_model")  # fmt: skip
_GENAI = ("gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_system", "gen_ai_request_model",
          "gen_ai_response_model")  # fmt: skip

#: gen_ai.provider.name (and gen_ai.system) per configured provider; ``custom`` speaks OpenAI's API.
_PROVIDERS = {
    "openAI": "openai",
    "custom": "openai",
    "anthropic": "anthropic",
    "bedrock": "aws.bedrock",
    "gemini": "gcp.gemini",
    "vertex": "gcp.vertex_ai",
    "azure": "azure.ai.openai",
    # The presets (provider_presets.py): the OpenTelemetry well-known value where there is one, else the name.
    "cohere": "cohere",
    "deepseek": "deepseek",
    "groq": "groq",
    "mistral": "mistral_ai",
    "xai": "x_ai",
    "ollama": "ollama",
    "baseten": "baseten",
    "cerebras": "cerebras",
    "deepinfra": "deepinfra",
    "huggingface": "huggingface",
    "openrouter": "openrouter",
    "togetherai": "togetherai",
    "fireworks": "fireworks",
}
#: gen_ai.operation.name per inbound API.
_OPERATIONS = {"chat": "chat", "messages": "chat", "embeddings": "embeddings"}

_ERROR_NAMES = {
    *ERROR_KINDS,
    *(part for kind in ERROR_KINDS for part in error_kind(kind)[1:] if part),
    # OpenAI's own types and codes, and those of the access-control and limits work (OPERATIONS.md 2, 3).
    "invalid_request_error", "authentication_error", "permission_error", "not_found_error", "rate_limit_error",
    "server_error", "api_error", "overloaded_error", "rate_limit_exceeded", "insufficient_quota",
    "context_length_exceeded", "invalid_api_key", "missing_api_key", "model_not_allowed", "not_ready",
    "method_not_allowed", "request_too_large", "unsupported_media_type", "unknown_url", "client_closed",
}  # fmt: skip
KNOWN_ERRORS = frozenset(_ERROR_NAMES)
_CALLER_LIMIT = 256
#: attempt outcomes that may have evicted the backend (``_attempt`` checks).
_FAILED = frozenset(("failover", "failed"))
#: in a group's key instead of the outcome of its one attempt: none, several, or one that failed.
_SEVERAL = object()


def outcome_of(attempt: Attempt, last: Attempt | None) -> str:
    """The attempt's outcome (the exchange marks ``failover`` only when another attempt followed)."""
    return attempt.outcome or "aborted"


def provider_label(backend: Backend) -> str:
    return _PROVIDERS.get(backend.entry.provider_name, "unknown")


class Recorder:
    """Writes settled exchanges into this worker's table. One per worker process (the Gateway's)."""

    def __init__(self, configured_models: Iterable[str], *, caller: bool = False, directory: str | None = None):
        self._directory = directory if directory is not None else os.environ.get(STATS_DIR_ENV)
        self._table: WorkerTable | None = None
        self._configured = frozenset(configured_models)
        self.caller = caller
        self._callers: set[str] = set()
        #: label group -> the index of its slots in the table's core recorder (``native.add_group``)
        self._groups: dict[tuple[Any, ...], int] = {}
        self._attempts: dict[tuple[int, str, int | None], tuple[int, int]] = {}
        self._evicted_until: dict[int, float] = {}
        self._counters: dict[tuple[str, tuple[str, ...], tuple[str, ...]], int] = {}
        self._http_names = (*_HTTP, "caller") if caller else _HTTP
        self._genai_names = (*_GENAI, "caller") if caller else _GENAI

    def reconfigure(self, configured_models: Iterable[str], *, caller: bool | None = None) -> None:
        """A reloaded config: its model names bound the labels now (and ``caller``, when given, whether the caller
        is one: ``config.metrics.fields``), and the series cached per backend and per model-entry index (which now
        name other entries) are looked up again. The table stays: series made before keep their counts."""
        self._configured = frozenset(configured_models)
        if caller is not None and caller != self.caller:
            self.caller = caller
            self._callers.clear()
            self._http_names = (*_HTTP, "caller") if caller else _HTTP
            self._genai_names = (*_GENAI, "caller") if caller else _GENAI
        self._clear_groups()
        self._attempts.clear()
        self._evicted_until.clear()

    @property
    def table(self) -> WorkerTable:
        table = self._table
        if table is None:
            # Created on first use, in the worker: the main process builds a Gateway too (to check the config).
            table = self._table = WorkerTable(self._directory)
        return table

    def ready(self, serving: bool) -> None:
        self.table.set_ready(serving)

    def close(self) -> None:
        if self._table is not None:
            self._table.set_ready(False)

    # -- per request -------------------------------------------------------------------------------------------

    def model_label(self, exchange: Exchange, backend: Backend | None) -> str:
        route = exchange.route
        if route is not None and route.name in self._configured:
            return route.name
        return backend.entry.name if backend is not None else "other"

    def response_model_label(self, backend: Backend, model: str) -> str:
        upstream = backend.entry.params.model
        if upstream is not None:
            return upstream
        return model if model in self._configured else backend.entry.name

    def caller_label(self, exchange: Exchange) -> str:
        identity = exchange.identity
        name = getattr(identity, "name", None) if identity is not None else None
        if not isinstance(name, str) or not name:
            return ""
        if name not in self._callers:
            if len(self._callers) >= _CALLER_LIMIT:
                return "other"
            self._callers.add(name)
        return name

    def record(
        self,
        exchange: Exchange,
        elapsed: float,
        input_tokens: int | None,
        output_tokens: int,
        cached_tokens: int,
        cache_write_tokens: int,
        cost: float | None,
        caller: str,
    ) -> None:
        """``input_tokens``: None when there was no usage (the other counts are then ignored); ``cost``: None when
        the model has no price."""
        attempts = exchange.attempts
        if attempts:
            last: Attempt | None = attempts[-1]
            backend: Backend | None = last.backend  # type: ignore[union-attr]
        else:
            last = backend = None
        facts = exchange.facts
        status = exchange.status
        error = facts.error_type
        if status == 499:
            error = "client_closed"
        elif error is not None and error not in KNOWN_ERRORS:
            error = "other"
        route = exchange.route
        # One attempt (the usual case) that did not fail: its counter is one of the group's (the key names its
        # outcome and status). Failures (evictions to check) and several attempts are counted below.
        name = route.name if route is not None else None
        key: tuple[Any, ...]
        if last is not None and len(attempts) == 1 and last.outcome not in _FAILED:
            single = True
            key = (exchange.api, backend, name, status, error, caller, last.outcome, last.status)
        else:
            single = False
            key = (exchange.api, backend, name, status, error, caller, _SEVERAL, None)
        group = self._groups.get(key)
        if group is None:
            if len(self._groups) >= 8192:  # keys hold route names: bounded like the router's memo
                self._clear_groups()
            group = self._group(
                exchange, backend, last.model if last is not None else "", status, error or "", caller,
                last if single else None,
            )  # fmt: skip
            self._groups[key] = group
        table = self._table
        if table is None:
            table = self.table
        # Every series of the group in one call (rust/sse_core/src/stats.rs): the buckets and sums as the Python
        # recorder wrote them (benches/README.md, 2026-12-02).
        table.native.record(
            group, elapsed, exchange.streamed, facts.ttft, input_tokens, output_tokens, cached_tokens,
            cache_write_tokens, cost,
        )  # fmt: skip
        if single or not attempts:
            return
        values = table.values
        for attempt in attempts:
            self._attempt(values, attempt.backend, attempt.outcome or "aborted", attempt.status)

    def _attempt_slots(self, backend: Backend, outcome: str, status: int | None) -> tuple[int, int]:
        """The attempt counter of (backend, outcome, status) and its retry counter (-1: not a retry)."""
        key = (backend.index, outcome, status)
        slots = self._attempts.get(key)
        if slots is None:
            table = self.table
            name = backend.entry.name
            attempts = table.slot(
                "agentgateway_upstream_attempts",
                ("backend", "gen_ai_provider_name", "outcome", "status"),
                (name, provider_label(backend), outcome or "aborted", "" if status is None else str(status)),
            )
            retries = (
                table.slot("agentgateway_retries", ("backend", "reason"), (name, outcome))
                if outcome in ("failover", "renewed")
                else -1
            )
            slots = self._attempts[key] = (attempts, retries)
        return slots

    def _attempt(self, values: Any, backend: Backend, outcome: str, status: int | None) -> None:
        """One attempt's counts, and the eviction it caused (``record``: the usual single attempt is counted by
        its group)."""
        slots = self._attempt_slots(backend, outcome, status)
        values[slots[0]] += 1.0
        if slots[1] >= 0:
            values[slots[1]] += 1.0
        if outcome in ("failover", "failed"):
            # An eviction sets a new end; a failure while evicted does not (health.py): a new end is a new eviction.
            until = backend.health.evicted_until
            if until > self._evicted_until.get(backend.index, 0.0):
                self._evicted_until[backend.index] = until
                self.count("agentgateway_backend_evictions", ("backend",), (backend.entry.name,))

    def count(self, family: str, names: tuple[str, ...], labels: tuple[str, ...], amount: float = 1.0) -> None:
        """Adds to a counter of this worker (rate-limit rejections, Redis failures, dropped spans)."""
        key = (family, names, labels)
        slot = self._counters.get(key)
        if slot is None:
            slot = self._counters[key] = self.table.slot(family, names, labels)
        self.table.values[slot] += amount

    def _clear_groups(self) -> None:
        self._groups.clear()
        if self._table is not None:
            self._table.native.clear_groups()

    def _group(
        self,
        exchange: Exchange,
        backend: Backend | None,
        model: str,
        status: int,
        error: str,
        caller: str,
        attempt: Attempt | None,
    ) -> int:
        """The group's slots, handed to the core once: the index ``native.record`` takes. ``attempt``: the one
        attempt its exchanges made, counted with them."""
        table = self.table
        extra = (caller,) if self.caller else ()
        operation = _OPERATIONS.get(exchange.api, exchange.api)
        provider = provider_label(backend) if backend is not None else "unknown"
        request_model = self.model_label(exchange, backend)
        http = (
            backend.entry.name if backend is not None else "unknown",
            "llm",
            exchange.method,
            str(status),
            operation,
            provider,
            provider,
            request_model,
            *extra,
        )
        requests = table.slot("agentgateway_requests", self._http_names, http)
        duration = _histogram(table, "agentgateway_request_duration_seconds", (*self._http_names, "error_type"),
                              (*http, error))  # fmt: skip
        counters: tuple[int, ...] = ()
        if attempt is not None:
            counters = tuple(
                slot for slot in self._attempt_slots(attempt.backend, attempt.outcome or "aborted", attempt.status)
                if slot >= 0
            )  # fmt: skip
        if backend is None:
            return table.native.add_group(requests, duration, None, counters)
        genai = (operation, provider, provider, request_model, self.response_model_label(backend, model), *extra)
        names = self._genai_names
        token_names = ("gen_ai_token_type", *names)

        def tokens(kind: str) -> int:
            return _histogram(table, "agentgateway_gen_ai_client_token_usage", token_names, (kind, *genai))

        genai_slots = (
            _histogram(table, "agentgateway_gen_ai_server_request_duration", (*names, "error_type"), (*genai, error)),
            tokens("input"),
            tokens("output"),
            tokens("input_cache_read"),
            tokens("input_cache_write"),
            _histogram(table, "agentgateway_gen_ai_server_time_to_first_token", names, genai),
            _histogram(table, "agentgateway_gen_ai_server_time_per_output_token", names, genai),
            table.slot("agentgateway_gen_ai_client_cost_usd", names, genai),
            table.slot("agentgateway_model_catalog_unpriced_requests", ("gen_ai_response_model",), (genai[4],)),
        )
        return table.native.add_group(requests, duration, genai_slots, counters)


#: The directory of the worker tables, handed by the CLI to granian's workers.
STATS_DIR_ENV = "AGENTGATEWAY_STATS_DIR"


def _histogram(table: WorkerTable, family: str, names: tuple[str, ...], labels: tuple[str, ...]) -> int:
    return table.slot(family, names, labels, FAMILIES[family].slots)


# The core's buckets (rust/sse_core/src/stats.rs) are these: checked once, as the module loads.
if STATS_BUCKETS != (HTTP_DURATION_BUCKETS, GENAI_DURATION_BUCKETS, TOKEN_BUCKETS, TTFT_BUCKETS, TPOT_BUCKETS):
    raise RuntimeError("agentgateway._core's histogram buckets differ from telemetry/_metrics.py's")


# -- the main process: one scrape over every worker ------------------------------------------------------------------


class Aggregator:
    """Sums the worker tables in ``directory``. Tables of workers that are gone are folded into ``retired`` and
    removed, so a respawned worker adds to the totals instead of resetting them, and files do not pile up."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.retired: dict[SeriesKey, list[float]] = {}

    def collect(self) -> tuple[dict[SeriesKey, list[float]], int]:
        """Every series summed, and how many live workers are serving."""
        totals = {key: list(values) for key, values in self.retired.items()}
        ready = 0
        try:
            names = sorted(os.listdir(self.directory))
        except FileNotFoundError:
            names = []
        for name in names:
            if not (name.startswith("w-") and name.endswith(".db")):
                continue
            path = os.path.join(self.directory, name)
            try:
                with open(path, "rb") as handle:
                    data = handle.read()
                pid, serving, series = read_table(data)
            except (OSError, ValueError):
                continue
            alive = _alive(pid)
            for key, values in series:
                _add(totals, key, values)
                if not alive:
                    _add(self.retired, key, values)
            if alive:
                ready += serving
            else:
                os.unlink(path)
        return totals, ready


def _add(totals: dict[SeriesKey, list[float]], key: SeriesKey, values: tuple[float, ...]) -> None:
    sums = totals.get(key)
    if sums is None:
        totals[key] = list(values)
    elif len(sums) == len(values):
        for index, value in enumerate(values):
            sums[index] += value


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (dead, not yet reaped by granian) still answers kill(0): its table is complete either way, and
    # counting it live until it is reaped adds nothing twice.
    return True


def families(totals: dict[SeriesKey, list[float]]) -> Iterator[Any]:
    """prometheus-client metric families of the summed series (for its text exposition). A family's series may
    have different label names (``config.metrics.fields`` changed by a reload: the series made before keep theirs
    and their counts)."""
    from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

    grouped: dict[str, list[tuple[tuple[str, ...], tuple[str, ...], list[float]]]] = {}
    for (name, names, labels), values in totals.items():
        grouped.setdefault(name, []).append((names, labels, values))
    for family in _LIST:
        rows = grouped.get(family.name, [])
        if family.kind == "counter":
            counter = CounterMetricFamily(family.name, family.help)
            for names, labels, values in rows:
                counter.add_sample(family.name + "_total", dict(zip(names, labels, strict=True)), values[0])
            yield counter
        else:
            histogram = HistogramMetricFamily(family.name, family.help)
            for names, labels, values in rows:
                base = dict(zip(names, labels, strict=True))
                cumulative = 0.0
                for bound, count in zip((*family.buckets, float("inf")), values, strict=False):
                    cumulative += count
                    histogram.add_sample(family.name + "_bucket", {**base, "le": _bound(bound)}, cumulative)
                histogram.add_sample(family.name + "_count", base, cumulative)
                histogram.add_sample(family.name + "_sum", base, values[-1])
            yield histogram


def _bound(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))
