"""CEL fields of the access log (issue 21): agentgateway's ``frontendPolicies.accessLog`` (``filter``, ``add``,
``remove``) and its older spelling ``config.logging`` (``filter``, ``fields.add``, ``fields.remove``).

``add`` is a map of field name -> CEL expression, written in its order after the gateway's own fields (a name that
is also one of the gateway's replaces that field); ``remove`` drops fields of the gateway's own by name (a name the
line does not have is ignored, as agentgateway ignores names it does not know); ``filter`` is a boolean expression:
only requests for which it is ``true`` are logged (an error or a non-bool value: not logged, agentgateway's
``eval_bool``). Metrics and traces see every request whatever the filter says.

Every expression is compiled once when the config loads (a compile error is a config error naming its path) and
evaluated when the request settles, only when one is configured: a gateway without them pays one ``is None`` test
per line. An expression that fails for a request (a header the request lacks, a claim a token lacks) gives
``null`` for its field (``-`` in text), never a failed request or a lost line.

Variables, agentgateway's names (``crates/agentgateway/src/cel/types.rs``), built only as far as an expression
reads them:

* ``request``: ``method``, ``path``, ``pathAndQuery``, ``headers`` (lower-case names; the caller's credentials --
  ``authorization``, ``x-api-key``, ``proxy-authorization``, ``api-key``, ``x-goog-api-key``, ``cookie`` -- are
  never shown, so no key reaches the log).
* ``response``: ``code`` (the status sent to the client, 499 when it went away first).
* ``llm``: ``requestModel`` (the client's model), ``responseModel`` (the model the upstream was asked for:
  ``params.model``, else the name routed),
  ``provider`` (gen_ai.provider.name), ``streaming``, ``inputTokens``, ``cachedInputTokens``,
  ``cacheCreationInputTokens``, ``outputTokens``, ``reasoningTokens``, ``totalTokens`` (token fields only when the
  upstream reported usage); set once the request names a model.
* ``backend``: ``name`` (the model entry used), ``type`` (``ai``), ``protocol`` (``llm``); set once an upstream was
  tried.
* ``jwt`` (the verified token's claims; ``jwt.sub``), ``apiKey`` (the caller's key ``metadata``; never the key).
* ``llmRequest``: the request body as JSON (only the parts an expression reads are converted).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ..cel import Expression, compile_expression
from ._metrics import provider_label

if TYPE_CHECKING:
    from ..exchange import Exchange
    from ._catalog import Tokens

__all__ = ["FIELD_NAME", "LINE_FIELDS", "LogFields"]

#: A field name a line can carry as ``name=value`` and as a JSON key: agentgateway's names (``http.path``,
#: ``gen_ai.request.model``) fit.
FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
#: The gateway's own fields, in line order (``remove`` takes these names).
LINE_FIELDS = ("id", "upstream_id", "caller", "model", "backend", "attempts", "status", "input", "output", "cached",
               "reasoning", "cost", "duration", "ttft", "error")  # fmt: skip
#: Request headers an expression never sees: they carry the caller's credentials.
_HIDDEN_HEADERS = frozenset(
    (b"authorization", b"proxy-authorization", b"x-api-key", b"api-key", b"x-goog-api-key", b"cookie")
)
_VARIABLES = ("request", "response", "llm", "backend", "jwt", "apiKey", "llmRequest")
#: A plain path: ``llm.requestModel``, ``request.headers["x-team"]``, ``jwt.sub`` -- most fields are one.
_PATH = re.compile(r"""\s*([A-Za-z_]\w*)((?:\s*\.\s*[A-Za-z_]\w*|\s*\[\s*(?:"[^"\\]*"|'[^'\\]*')\s*\])*)\s*""")
_STEP = re.compile(r"""\.\s*([A-Za-z_]\w*)|\[\s*(?:"([^"\\]*)"|'([^'\\]*)')\s*\]""")


class _Missing(Exception):
    pass


def _path(source: str) -> tuple[str, ...] | None:
    """The keys of a plain path expression over a variable of the access log, or None for any other expression.
    Such a field is looked up in Python: a call into the CEL library costs 5-9 µs (it converts the nested
    variables), a lookup well under one, with the same result (a missing key: the field is null)."""
    match = _PATH.fullmatch(source)
    if match is None or match.group(1) not in _VARIABLES:
        return None
    keys = [match.group(1)]
    for step in _STEP.finditer(match.group(2)):
        key = step.group(1) or step.group(2) or step.group(3) or ""
        if step.group(1) is None and len(keys) == 2 and keys[0] in ("request", "response") and keys[1] == "headers":
            key = key.lower()  # header names are case-insensitive (cel.py does the same)
        elif step.group(1) is not None and step.group(1) in ("true", "false", "null", "in"):
            return None
        keys.append(key)
    return tuple(keys)


def _lookup(activation: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    value: Any = activation
    for key in keys:
        if type(value) is not dict or key not in value:
            raise _Missing(key)
        value = value[key]
    return value


class LogFields:
    """The compiled filter, additions and removals of one config (one per worker, rebuilt on reload)."""

    __slots__ = ("_paths", "add", "filter", "needs", "remove")

    def __init__(self, filter_: str | None, add: Mapping[str, str], remove: Iterable[str]) -> None:
        self.filter: Expression | None = compile_expression(filter_) if filter_ else None
        self.add: tuple[tuple[str, Expression], ...] = tuple(
            (name, compile_expression(source)) for name, source in add.items()
        )
        #: own fields left out: those named in ``remove`` and those an addition replaces.
        self.remove = frozenset(remove) | frozenset(name for name, _ in self.add)
        read: set[str] = set()
        for expression in (self.filter, *(expression for _, expression in self.add)):
            if expression is not None:
                read |= expression.variables
        #: the variables some expression reads: only these are built per request.
        self.needs = tuple(name for name in _VARIABLES if name in read)
        self._paths = tuple(_path(expression.source) for _, expression in self.add)

    @classmethod
    def of(cls, config: Any) -> LogFields | None:
        """From a loaded GatewayConfig (``config.logging`` and ``frontendPolicies.accessLog``, the latter winning
        name by name); None when neither sets anything (the access log's fast path)."""
        logging = config.config.logging
        policy = getattr(config.frontend_policies, "access_log", None)
        add: dict[str, str] = dict(logging.fields.add)
        remove: set[str] = set(logging.fields.remove)
        filter_ = logging.filter
        if policy is not None:
            add.update(policy.add)
            remove |= set(policy.remove)
            if policy.filter is not None:
                filter_ = policy.filter
        if not add and not remove and filter_ is None:
            return None
        return cls(filter_, add, remove)

    def activation(self, exchange: Exchange, tokens: Tokens | None) -> dict[str, Any]:
        """The variables the expressions read, for one settled exchange."""
        activation: dict[str, Any] = {}
        attempts = exchange.attempts
        last = attempts[-1] if attempts else None
        for name in self.needs:
            if name == "request":
                headers: dict[str, Any] = {}
                for raw_name, raw_value in exchange.request_headers:
                    key = raw_name.lower()
                    if key in _HIDDEN_HEADERS:
                        continue
                    try:
                        header, value = key.decode("latin-1"), raw_value.decode()
                    except UnicodeDecodeError:
                        continue
                    previous = headers.get(header)
                    if previous is None:
                        headers[header] = value
                    elif isinstance(previous, list):
                        previous.append(value)
                    else:
                        headers[header] = [previous, value]
                activation["request"] = {
                    "method": exchange.method,
                    "path": exchange.path,
                    "pathAndQuery": exchange.path,
                    "headers": headers,
                }
            elif name == "response":
                activation["response"] = {"code": exchange.status}
            elif name == "llm" and exchange.client_model is not None:
                llm: dict[str, Any] = {"requestModel": exchange.client_model, "streaming": exchange.streamed}
                if last is not None:
                    llm["provider"] = provider_label(last.backend)
                    llm["responseModel"] = last.backend.entry.params.model or last.model
                if tokens is not None:
                    llm["inputTokens"] = tokens.input
                    llm["outputTokens"] = tokens.output
                    llm["totalTokens"] = tokens.input + tokens.output
                    llm["cachedInputTokens"] = tokens.cached
                    llm["cacheCreationInputTokens"] = tokens.cache_write
                    llm["reasoningTokens"] = tokens.reasoning
                activation["llm"] = llm
            elif name == "backend" and last is not None:
                activation["backend"] = {"name": last.backend.entry.name, "type": "ai", "protocol": "llm"}
            elif name in ("jwt", "apiKey"):
                identity = exchange.identity
                if identity is not None and getattr(identity, "kind", None) == name:
                    activation[name] = dict(identity.metadata)
            elif name == "llmRequest":
                request = exchange.request
                body = getattr(request, "body", None) if request is not None else None
                if isinstance(body, dict):
                    activation["llmRequest"] = body
        return activation

    def line(self, activation: Mapping[str, Any]) -> list[tuple[str, Any]] | None:
        """The added fields of the line (in order; None for one that failed), or None when the filter drops it.
        Each expression is its own call into the library: one list expression of all of them measured no faster
        (benches/test_telemetry_bench.py: the cost is converting the nested variables, per call either way)."""
        if not self.keep(activation):
            return None
        return self.values(activation)

    def keep(self, activation: Mapping[str, Any]) -> bool:
        """Whether the line is written (no filter: always)."""
        return self.filter is None or self.filter.evaluate_bool(activation)

    def values(self, activation: Mapping[str, Any]) -> list[tuple[str, Any]]:
        """The added fields, in order; None for an expression that failed (or gave null)."""
        out: list[tuple[str, Any]] = []
        for (name, expression), path in zip(self.add, self._paths, strict=True):
            try:
                value = expression.evaluate(activation) if path is None else _lookup(activation, path)
            except Exception:  # a failed expression is a null field, never a failed request
                value = None
            out.append((name, value))
        return out
