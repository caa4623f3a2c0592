"""CEL policies that run on the client's request (issue 21): ``authorization.rules`` and the request header
``transformations`` of ``llm.policies``; the CEL engine is cel.py, every expression compiled once at load.

**authorization** (``llm.policies.authorization`` and ``llm.models[].authorization``, agentgateway's
``authorization: {rules: [...]}``): a request is allowed when one rule evaluates to ``true``; a rule that fails to
evaluate (a claim the caller's token lacks, ``jwt`` for a caller with an API key) counts as false. Otherwise 403
``model_authorization_denied``. Variables: ``request`` (method, path, headers -- the gateway's own credentials
already removed --, body), ``llmRequest`` (the body), ``jwt`` (the claims of the caller's verified JWT),
``apiKey`` (the ``metadata`` of the caller's API key; never the key). The gateway-wide policy runs before a model
is chosen; a model entry's runs when a route's target is that entry: a virtual model passes over targets the
caller may not use, and answers 403 when it may use none.

**transformations** (``llm.policies.transformations.request``: ``set`` / ``add`` header -> CEL, ``remove``
names, as agentgateway's ``examples/llm-cost-routing``): run before a model is chosen, so ``matches`` on headers
see what they computed; the headers exist only inside the gateway (upstreams get no client headers unless a
model's ``requestHeaders`` sets them). An expression that fails on a request is a 400 naming its path
(``llm.policies.transformations.request.set.x-tier``); a value that cannot be a header (a map, a list) is a 500
naming it (the config's mistake, not the client's).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .cel import CelEvaluationError, Expression, compile_expression, request_activation
from .errors import GatewayError, InvalidRequest

if TYPE_CHECKING:
    from .config import AuthorizationPolicy, TransformationsPolicy
    from .exchange import Exchange

__all__ = ["Authorization", "RequestTransformations", "caller_activation"]

Headers = list[tuple[bytes, bytes]]


def caller_activation(exchange: Exchange, raw: bytes, body: Any) -> dict[str, Any]:
    """CEL variables for the caller's request: ``request``, ``llmRequest`` (when ``body`` is given), and ``jwt`` /
    ``apiKey`` from the identity policy/ set on the exchange."""
    activation = request_activation(exchange.method, exchange.path, exchange.request_headers, raw, body)
    identity = exchange.identity
    if identity is not None:
        kind = getattr(identity, "kind", None)
        if kind == "jwt":
            activation["jwt"] = dict(identity.metadata)
        elif kind == "apiKey":
            activation["apiKey"] = dict(identity.metadata)
    return activation


class Authorization:
    """One compiled ``authorization`` policy; ``where`` names it in the 403 (``llm.models[2]``)."""

    __slots__ = ("_needs_body", "_rules", "where")

    def __init__(self, policy: AuthorizationPolicy, where: str) -> None:
        self.where = where
        self._rules: tuple[Expression, ...] = tuple(compile_expression(rule) for rule in policy.rules)
        self._needs_body = any("llmRequest" in rule.variables for rule in self._rules)

    def allows(self, exchange: Exchange, activation: dict[str, Any] | None = None) -> bool:
        if activation is None:
            request = exchange.request
            activation = caller_activation(
                exchange,
                request.raw if request is not None else b"",
                request.body if request is not None and self._needs_body else None,
            )
        return any(rule.evaluate_bool(activation) for rule in self._rules)

    def denied(self, model: str) -> GatewayError:
        return GatewayError(
            f"The caller is not authorized to use the model {model!r} (no rule of {self.where}.authorization holds).",
            status=403,
            code="model_authorization_denied",
        )

    def check(self, exchange: Exchange, model: str, raw: bytes, body: Any) -> None:
        """Raises the 403 unless a rule holds (the gateway-wide policy, before routing)."""
        if not self.allows(exchange, caller_activation(exchange, raw, body if self._needs_body else None)):
            raise self.denied(model)


class RequestTransformations:
    """``llm.policies.transformations.request``, compiled: apply() returns the edited request headers."""

    __slots__ = ("_computed", "_drop", "_needs_body", "_where")

    def __init__(self, policy: TransformationsPolicy, where: str = "llm.policies.transformations") -> None:
        request = policy.request
        assert request is not None
        self._where = f"{where}.request"
        #: (lower-case name, expression, replaces existing values, its path)
        self._computed: list[tuple[bytes, Expression, bool, str]] = [
            (name.lower().encode("latin-1"), compile_expression(source), True, f"{self._where}.set.{name}")
            for name, source in request.set.items()
        ] + [
            (name.lower().encode("latin-1"), compile_expression(source), False, f"{self._where}.add.{name}")
            for name, source in request.add.items()
        ]
        self._drop = frozenset(
            [name.lower().encode("latin-1") for name in request.remove]
            + [name for name, _, replace, _ in self._computed if replace]
        )
        self._needs_body = any("llmRequest" in e.variables for _, e, _, _ in self._computed)

    @property
    def needs_body(self) -> bool:
        return self._needs_body

    def apply(self, exchange: Exchange, raw: bytes, body: Any) -> Headers:
        """The headers after the edits; every expression sees the client's headers (before any edit)."""
        activation = caller_activation(exchange, raw, body)
        values: list[tuple[bytes, bytes]] = []
        for name, expression, _, path in self._computed:
            try:
                value = expression.evaluate(activation)
            except CelEvaluationError as exc:
                raise InvalidRequest(
                    f"{path}: the expression could not be evaluated for this request: {exc}", param=path
                ) from None
            values.append((name, _header_value(value, path)))
        headers = exchange.request_headers
        kept = [(n, v) for n, v in headers if n not in self._drop] if self._drop else list(headers)
        return kept + values


def _header_value(value: Any, path: str) -> bytes:
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (str, int, float)):
        text = str(value)
    elif isinstance(value, bytes):
        text = value.decode("latin-1")
    else:
        raise GatewayError(
            f"{path}: the expression gave a {type(value).__name__}, which cannot be a header value "
            "(a string, number or bool is needed)",
            status=500,
            code="transformation_failed",
        )
    if any(c in text for c in "\r\n\0"):
        raise InvalidRequest(f"{path}: the computed header value contains a line break", param=path)
    return text.encode("utf-8")
