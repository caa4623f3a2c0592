"""A backend: one configured model entry, ready to serve attempts.

It joins the provider (endpoint, credentials, wire format: ``providers/<name>.py``) with what the entry adds in
agentgateway's config: ``matches`` on request headers, ``defaults`` / ``overrides`` of body fields,
``requestHeaders`` / ``responseHeaders``, ``visibility`` and ``health`` (eviction state, per worker process).

Building a request is pure: `request_for` returns a new request when anything changes and never edits the
client's, so the next attempt of a failover starts from the same input.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from typing import Any

from .authorization import Authorization
from .cel import CelEvaluationError, Expression, compile_expression, request_activation, response_activation
from .config import HeaderModifier, HealthConfig, ModelEntry
from .errors import InvalidRequest
from .guardrails import Guardrails
from .health import BackendHealth, Clock, EvictionPolicy, is_failure_status
from .providers import ChatRequest, Provider
from .upstream import UpstreamRequest, encode_headers

__all__ = ["Backend", "HeaderEdits"]

logger = logging.getLogger("agentgateway")

Headers = list[tuple[bytes, bytes]]


class HeaderEdits:
    """A compiled ``requestHeaders`` / ``responseHeaders``: ``remove`` and ``set`` drop existing headers of those
    names, then ``set`` and ``add`` are appended."""

    __slots__ = ("_append", "_append_lines", "_drop")

    def __init__(self, modifier: HeaderModifier) -> None:
        self._drop = frozenset(name.lower().encode("latin-1") for name in (*modifier.remove, *modifier.set))
        pairs = [*modifier.set.items(), *modifier.add.items()]
        self._append: Headers = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in pairs]
        self._append_lines = encode_headers(dict(modifier.set)) + b"".join(
            encode_headers({name: value}) for name, value in modifier.add.items()
        )

    def apply(self, headers: Headers) -> Headers:
        """Edits a list of (lower-case name, value) pairs, as ASGI responses carry them."""
        kept = [(name, value) for name, value in headers if name not in self._drop] if self._drop else headers
        return [*kept, *self._append]

    def apply_lines(self, lines: bytes) -> bytes:
        """Edits encoded header lines (``Name: value\\r\\n`` each), as upstream requests carry them."""
        if self._drop:
            kept = [
                line
                for line in lines.split(b"\r\n")
                if line and line.partition(b":")[0].strip().lower() not in self._drop
            ]
            lines = b"".join(line + b"\r\n" for line in kept)
        return lines + self._append_lines


class _HeaderCondition:
    __slots__ = ("exact", "name", "regex")

    def __init__(self, name: str, exact: str | None, regex: str | None) -> None:
        self.name = name.lower().encode("latin-1")
        self.exact = exact.encode("latin-1") if exact is not None else None
        self.regex = re.compile(regex.encode("latin-1")) if regex is not None else None

    def holds(self, headers: Headers) -> bool:
        for name, value in headers:
            if name == self.name:
                if self.exact is not None:
                    return value == self.exact
                return self.regex is not None and self.regex.fullmatch(value) is not None
        return False


class Backend:
    """One model entry of the config and its provider. Anything that depends only on the config is done here,
    once; per request only what the entry configures costs anything."""

    __slots__ = (
        "_defaults",
        "_final_transformation",
        "_matches",
        "_overrides",
        "_request_headers",
        "_transformation",
        "authorization",
        "entry",
        "guardrails",
        "health",
        "index",
        "internal",
        "name",
        "provider",
        "response_headers",
        "tls",
        "unhealthy",
    )

    def __init__(self, entry: ModelEntry, provider: Provider, index: int, clock: Clock = time.monotonic) -> None:
        self.entry = entry
        self.provider = provider
        self.index = index
        #: names the entry in logs: its name may be a pattern, or shared by entries told apart by ``matches``.
        self.name = f"{entry.name} (llm.models[{index}])"
        self.internal = entry.visibility == "internal"
        self._matches = [
            [_HeaderCondition(h.name, h.value.exact, h.value.regex) for h in match.headers] for match in entry.matches
        ]
        self._defaults = entry.defaults or None
        self._overrides = entry.overrides or None
        self._transformation = (
            [(name, compile_expression(source)) for name, source in entry.transformation.items()]
            if entry.transformation
            else None
        )
        self._final_transformation = (
            [(name, compile_expression(source)) for name, source in entry.final_transformation.items()]
            if entry.final_transformation
            else None
        )
        #: ``authorization.rules`` of the entry (the exchange asks it before sending); None: everyone
        self.authorization = (
            Authorization(entry.authorization, f"llm.models[{index}]") if entry.authorization is not None else None
        )
        #: the entry's guardrails with llm.policies.guardrails ahead (guardrails.py), compiled once; None: none
        guards = entry.guardrails
        self.guardrails = Guardrails(guards) if guards is not None and not isinstance(guards, str) else None
        self._request_headers = HeaderEdits(entry.request_headers) if entry.request_headers else None
        #: the entry's backend TLS (``tls`` / ``backendTLS``), built when the config loaded; None: the default trust
        self.tls = entry.tls.client if entry.tls is not None else None
        self.response_headers = HeaderEdits(entry.response_headers) if entry.response_headers else None
        self.unhealthy: Expression | None = None
        self.health = BackendHealth(_eviction_policy(entry.health), clock)
        if entry.health is not None and entry.health.unhealthy_expression is not None:
            self.unhealthy = compile_expression(entry.health.unhealthy_expression)

    def renumber(self, index: int) -> None:
        """The entry moved to ``llm.models[index]`` in a reloaded config (the Backend itself is kept)."""
        self.index = index
        self.name = f"{self.entry.name} (llm.models[{index}])"

    @property
    def has_matches(self) -> bool:
        return bool(self._matches)

    def matches(self, headers: Headers) -> bool:
        """Whether the entry's ``matches`` let it serve a request with these headers (none configured: yes)."""
        if not self._matches:
            return True
        return any(all(condition.holds(headers) for condition in match) for match in self._matches)

    def request_for(self, request: ChatRequest, model: str, path: str = "/v1/chat/completions") -> ChatRequest:
        """The request this backend is asked to serve: ``model`` is the name the route resolved (a virtual model's
        target; the client's model otherwise), with ``defaults``, ``overrides`` and ``transformation`` applied (in
        that order, as agentgateway). A new object whenever anything differs; ``raw`` is emptied when the body no
        longer matches the client's bytes. ``path`` is the client's request path (CEL's ``request.path``)."""
        defaults, overrides, transformation = self._defaults, self._overrides, self._transformation
        final = self._final_transformation
        if defaults is None and overrides is None and transformation is None and final is None:
            return request if model == request.model else request.derive(model)
        body: dict[str, Any] = dict(request.body)
        if defaults is not None:
            for key, value in defaults.items():
                if body.get(key) is None:
                    body[key] = value
        if overrides is not None:
            body.update(overrides)
        if transformation is not None:
            model = self._transform(body, model, request, path, transformation, "transformation")
        if final is not None:
            model = self._transform(body, model, request, path, final, "finalTransformation")
        # Whether the client gets a stream is the client's choice: a configured field cannot change it.
        body.pop("stream", None)
        if request.stream:
            body["stream"] = True
        return request.derive(model, body)

    def _transform(
        self,
        body: dict[str, Any],
        model: str,
        request: ChatRequest,
        path: str,
        fields: list[tuple[str, Expression]],
        key: str,
    ) -> str:
        """Sets each field of ``transformation`` (or ``finalTransformation``: ``key``) from its expression, over the
        body as it stands (``llmRequest``, with the route's model); returns the model, which a transformation of
        ``model`` rewrites. An expression that fails to evaluate is a 400 naming its path (issue 21): the request
        would otherwise go upstream without the field the config promised."""
        llm_request = {**body, "model": model}
        activation = request_activation("POST", path, request.headers, request.raw, llm_request)
        for name, expression in fields:
            try:
                value = expression.evaluate(activation)
            except CelEvaluationError as exc:
                where = f"llm.models[{self.index}].{key}.{name}"
                logger.debug("%s could not be evaluated: %s", where, exc)
                raise InvalidRequest(
                    f"{where}: the expression could not be evaluated for this request: {exc}", param=name
                ) from None
            if name == "model":
                if isinstance(value, str) and value:
                    model = value
                continue
            body[name] = value
        return model

    async def prepare(self, request: ChatRequest) -> UpstreamRequest:
        upstream = await self.provider.prepare(request)
        if self._request_headers is not None:
            upstream = dataclasses.replace(upstream, headers=self._request_headers.apply_lines(upstream.headers))
        if self.tls is not None:
            upstream = dataclasses.replace(upstream, tls=self.tls)
        return upstream

    def is_failure(self, status: int, headers: Headers) -> bool:
        """Whether an answer counts against the backend's health: its ``unhealthyExpression`` when configured,
        else 5xx and 429."""
        if self.unhealthy is not None:
            return self.unhealthy.evaluate_bool(response_activation(status, headers))
        return is_failure_status(status)


def _eviction_policy(health: HealthConfig | None) -> EvictionPolicy:
    default = EvictionPolicy.default_failover()
    if health is None or health.eviction is None:
        return default
    eviction = health.eviction
    fields: dict[str, Any] = {}
    if eviction.duration is not None:
        fields["duration"] = eviction.duration
    if eviction.consecutive_failures is not None:
        fields["consecutive_failures"] = eviction.consecutive_failures
    if eviction.health_threshold is not None:
        fields["health_threshold"] = eviction.health_threshold
    if eviction.restore_health is not None:
        fields["restore_health"] = eviction.restore_health
    return dataclasses.replace(default, **fields)
