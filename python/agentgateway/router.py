"""Model name -> Route: the ordered attempts (backend, model name) that may serve one request.

``llm.models[]`` are matched as agentgateway matches them (names.py): exact name first, then the most specific
pattern, then config order; an entry with ``matches`` serves only requests whose headers satisfy one of them, and
an ``internal`` entry only requests that come through a virtual model. ``llm.virtualModels[]`` route by weight,
by priority (failover) or by CEL condition to targets that are themselves resolved against ``llm.models``.

Failover within a request is the exchange's job (exchange.py): the route only says in which order to try.
Health decides that order: evicted backends are skipped, and when every target is evicted the one whose eviction
ends first is still tried, so policy alone never causes an outage. Eviction state lives in each Backend, per
worker process (README: "Failover and eviction").
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from .backend import Backend
from .cel import Expression, compile_expression, request_activation
from .config import GatewayConfig, ModelEntry, VirtualModel
from .errors import ConfigError, ModelNotFound
from .health import Clock, order_by_health
from .memo import BoundedMemo
from .names import NamePattern
from .providers import PROVIDERS

if TYPE_CHECKING:
    from .exchange import Exchange

__all__ = ["Route", "Router", "Target"]

#: One attempt: the backend and the model name it is asked for (a virtual model's target, else the client's).
Target = tuple[Backend, str]
Headers = list[tuple[bytes, bytes]]

# Clients send few distinct model names; remembering the answer for each keeps routing one dict lookup. The cap
# stops a client that sends endless random names from growing it without bound.
_CACHE_LIMIT = 4096


class Route:
    """Where one request may go, best first. ``name`` is the model the client asked for."""

    __slots__ = ("authorizing", "name", "tokenize")

    #: Whether more than one target may be tried (failover can happen).
    virtual = False

    def __init__(self, name: str, backends: Iterable[Backend] = ()) -> None:
        self.name = name
        #: whether an entry it may go to has an ``authorization`` (issue 21): only then are targets checked per
        #: request (exchange.py ``serve``)
        self.authorizing = any(backend.authorization is not None for backend in backends)
        #: the model whose vocabulary counts a request's input tokens before admission (``params.tokenize`` of
        #: the first entry that has it, tokenize.py); None: the byte estimate is used
        self.tokenize: str | None = None

    def targets(self, exchange: Exchange) -> Sequence[Target]:
        raise NotImplementedError


class _Direct(Route):
    """A model entry asked for by name: one target, the same for every request."""

    __slots__ = ("_targets",)

    def __init__(self, name: str, backend: Backend) -> None:
        super().__init__(name, (backend,))
        self._targets: tuple[Target, ...] = ((backend, name),)

    def targets(self, exchange: Exchange) -> Sequence[Target]:
        return self._targets


class _ByHeaders(Route):
    """A model name served by entries with ``matches``: the first entry whose match holds."""

    __slots__ = ("_candidates",)

    def __init__(self, name: str, candidates: tuple[Backend, ...]) -> None:
        super().__init__(name, candidates)
        self._candidates = candidates

    def targets(self, exchange: Exchange) -> Sequence[Target]:
        headers = exchange.request_headers
        for backend in self._candidates:
            if backend.matches(headers):
                return ((backend, self.name),)
        raise ModelNotFound(
            f"The model {self.name!r} is served here only for requests whose headers match one of its entries' "
            "'matches', and this request's headers match none.",
            param="model",
        )


class _TargetRef:
    """A virtual model's target: a model name resolved against llm.models (internal entries included)."""

    __slots__ = ("candidates", "model", "static")

    def __init__(self, model: str, candidates: tuple[Backend, ...]) -> None:
        self.model = model
        self.candidates = candidates
        #: the target when no header can change it (its best entry has no ``matches``): resolved once
        self.static: Target | None = (candidates[0], model) if not candidates[0].has_matches else None

    def resolve(self, headers: Headers) -> Backend | None:
        for backend in self.candidates:
            if backend.matches(headers):
                return backend
        return None


def _health(target: Target) -> Any:
    return target[0].health


def _longest_evicted(groups: Sequence[Sequence[Target]]) -> list[Target]:
    """When every target is evicted: the one whose eviction ends first (evicted longest ago)."""
    candidates = [target for group in groups for target in group]
    if not candidates:
        return []
    return [min(candidates, key=lambda target: target[0].health.evicted_until)]


class _Failover(Route):
    """``routing.failover``: priority groups, lowest first; within a group by health and latency."""

    __slots__ = ("_groups",)
    virtual = True

    def __init__(self, name: str, groups: list[list[_TargetRef]]) -> None:
        super().__init__(name, (backend for group in groups for ref in group for backend in ref.candidates))
        self._groups = groups

    def targets(self, exchange: Exchange) -> Sequence[Target]:
        resolved: list[list[Target]] = []
        plan: list[Target] = []
        for group in self._groups:
            members = self._members(group, exchange)
            resolved.append(members)
            if len(members) > 1:
                members = order_by_health(members, _health)
            for target in members:
                if not target[0].health.evicted():
                    plan.append(target)
        return plan or _longest_evicted(resolved)

    @staticmethod
    def _members(group: list[_TargetRef], exchange: Exchange) -> list[Target]:
        members: list[Target] = []
        for ref in group:
            target = ref.static
            if target is None:
                backend = ref.resolve(exchange.request_headers)
                if backend is None:
                    continue
                target = (backend, ref.model)
            members.append(target)
        return members


class _Weighted(Route):
    """``routing.weighted``: the first target drawn by weight among the healthy ones; the others follow, by weight,
    for failover within the request."""

    __slots__ = ("_refs", "_weights")
    virtual = True

    def __init__(self, name: str, refs: list[_TargetRef], weights: list[int]) -> None:
        super().__init__(name, (backend for ref in refs for backend in ref.candidates))
        self._refs = refs
        self._weights = weights

    def targets(self, exchange: Exchange) -> Sequence[Target]:
        headers = exchange.request_headers
        healthy: list[Target] = []
        weights: list[int] = []
        every: list[Target] = []
        for ref, weight in zip(self._refs, self._weights, strict=True):
            backend = ref.resolve(headers)
            if backend is None:
                continue
            every.append((backend, ref.model))
            if not backend.health.evicted():
                healthy.append((backend, ref.model))
                weights.append(weight)
        if not healthy:
            return _longest_evicted([every])
        plan: list[Target] = []
        # Draw without replacement: each next target in proportion to the weights left.
        while healthy:
            total = sum(weights)
            pick = random.random() * total
            index = 0
            while index < len(weights) - 1 and pick >= weights[index]:
                pick -= weights[index]
                index += 1
            plan.append(healthy.pop(index))
            weights.pop(index)
        return plan


class _Conditional(Route):
    """``routing.conditional``: the first target whose ``when`` holds (the last may have none). One target: a
    condition says which model must answer, so a failure is not moved elsewhere."""

    __slots__ = ("_refs", "_variables", "_whens")
    virtual = True

    def __init__(self, name: str, refs: list[_TargetRef], whens: list[Expression | None]) -> None:
        super().__init__(name, (backend for ref in refs for backend in ref.candidates))
        self._refs = refs
        self._whens = whens
        self._variables = frozenset().union(*(when.variables for when in whens if when is not None))

    def targets(self, exchange: Exchange) -> Sequence[Target]:
        activation: dict[str, Any] | None = None
        headers = exchange.request_headers
        for ref, when in zip(self._refs, self._whens, strict=True):
            if when is not None:
                if activation is None:
                    request = exchange.request
                    activation = request_activation(
                        exchange.method,
                        exchange.path,
                        headers,
                        request.raw if request is not None else b"",
                        request.body if request is not None and "llmRequest" in self._variables else None,
                    )
                if not when.evaluate_bool(activation):
                    continue
            backend = ref.resolve(headers)
            if backend is not None:
                return ((backend, ref.model),)
        raise ModelNotFound(
            f"No target of the virtual model {self.name!r} applies to this request (no condition held).",
            param="model",
        )


def _tokenize_model(targets: Sequence[tuple[str, Sequence[Backend]]]) -> str | None:
    """The upstream model of the first target entry with ``params.tokenize`` (its ``params.model``, else the name
    the target asks for), or None when none has it."""
    for model, backends in targets:
        for backend in backends:
            params = backend.entry.params
            if params.tokenize:
                return params.model or model
    return None


class Router:
    def __init__(
        self,
        config: GatewayConfig,
        source: str = "config",
        clock: Clock = time.monotonic,
        reuse: Callable[[ModelEntry], Backend | None] | None = None,
    ) -> None:
        """``clock`` (monotonic seconds) times the backends' evictions; tests pass their own. ``reuse`` gives the
        Backend of an unchanged entry from the router this one replaces (reload.py): its provider, credential
        caches and eviction state carry over."""
        self.backends: list[Backend] = []
        self._patterns: list[tuple[NamePattern, Backend]] = []
        for index, entry in enumerate(config.llm.models):
            kept = reuse(entry) if reuse is not None else None
            if kept is not None:
                kept.renumber(index)
                self.backends.append(kept)
                self._patterns.append((NamePattern(entry.name), kept))
                continue
            # The config accepts only provider names that are registered (a test keeps the two lists equal).
            try:
                provider = PROVIDERS[entry.provider_name](entry)
            except ConfigError as exc:  # what a provider finds wrong with its params when it sets up
                raise ConfigError(f"{source}: llm.models[{index}]: {exc}") from None
            backend = Backend(entry, provider, index, clock)
            self.backends.append(backend)
            self._patterns.append((NamePattern(entry.name), backend))
        # Best first: exact names, then the most specific pattern; sorted() keeps config order among equals.
        self._patterns.sort(key=lambda item: item[0].rank)
        public = [e for e in config.llm.models if e.visibility == "public"]
        self.exact_names = [name for name in dict.fromkeys(e.name for e in public) if NamePattern(name).exact]
        self.patterns = [name for name in dict.fromkeys(e.name for e in public) if not NamePattern(name).exact]
        self.virtual: dict[str, Route] = {}
        for index, virtual in enumerate(config.llm.virtual_models):
            self.virtual[virtual.name] = self._virtual_route(virtual, f"{source}: llm.virtualModels[{index}]")
        self.virtual_names = list(self.virtual)
        self._routes: BoundedMemo[str, Route | None] = BoundedMemo(self._direct_route, _CACHE_LIMIT)

    def route(self, model: str) -> Route:
        route = self.virtual.get(model)
        if route is None:
            route = self._routes.get(model)
            if route is None:
                raise ModelNotFound(self._not_found_message(model), param="model")
        return route

    def candidates(self, model: str, *, internal: bool) -> tuple[Backend, ...]:
        """The entries that serve ``model``, best first (internal ones only when ``internal``)."""
        return tuple(
            backend
            for pattern, backend in self._patterns
            if (internal or not backend.internal) and pattern.matches(model)
        )

    def _direct_route(self, model: str) -> Route | None:
        candidates = self.candidates(model, internal=False)
        if not candidates:
            return None
        route: Route = _Direct(model, candidates[0]) if not candidates[0].has_matches else _ByHeaders(model, candidates)
        route.tokenize = _tokenize_model([(model, candidates)])
        return route

    def tokenize_models(self) -> set[str]:
        """The upstream models whose vocabularies ``params.tokenize`` entries count with (loaded at start-up)."""
        return {entry.params.model or entry.name for entry in (b.entry for b in self.backends) if entry.params.tokenize}

    def _virtual_route(self, virtual: VirtualModel, where: str) -> Route:
        routing = virtual.routing

        def ref(model: str) -> _TargetRef:
            candidates = self.candidates(model, internal=True)
            if not candidates:  # config.py checks this with line numbers; kept for configs built in code
                raise ConfigError(f"{where}: target {model!r} matches no entry of llm.models")
            return _TargetRef(model, candidates)

        if routing.failover is not None:
            priorities = sorted({target.priority for target in routing.failover.targets})
            groups = [
                [ref(t.model) for t in routing.failover.targets if t.priority == priority] for priority in priorities
            ]
            route: Route = _Failover(virtual.name, groups)
            route.tokenize = _tokenize_model([(r.model, r.candidates) for group in groups for r in group])
            return route
        if routing.weighted is not None:
            targets = [t for t in routing.weighted.targets if t.weight > 0]
            refs = [ref(t.model) for t in targets]
            route = _Weighted(virtual.name, refs, [t.weight for t in targets])
            route.tokenize = _tokenize_model([(r.model, r.candidates) for r in refs])
            return route
        assert routing.conditional is not None
        conditional = routing.conditional.targets
        whens = [compile_expression(t.when) if t.when is not None else None for t in conditional]
        refs = [ref(t.model) for t in conditional]
        route = _Conditional(virtual.name, refs, whens)
        route.tokenize = _tokenize_model([(r.model, r.candidates) for r in refs])
        return route

    def _not_found_message(self, model: str) -> str:
        served = ", ".join([*self.exact_names, *self.virtual_names]) or "(none by exact name)"
        message = f"The model {model!r} is not served by this gateway. Served models: {served}"
        if self.patterns:
            message += f"; patterns: {', '.join(self.patterns)}"
        return message + "."
