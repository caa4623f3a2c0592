"""Who may call and how much (OPERATIONS.md sections 2 and 3, issue 17): one ``Guard`` per worker process.

- ``authenticate(headers)`` → the caller's ``Identity`` (keys.py: ``llm.policies.apiKey``; jwt_auth.py:
  ``llm.policies.jwtAuth``), or None for an anonymous caller a mode lets in; 401 otherwise. Credentials are read
  from ``Authorization: Bearer`` and ``x-api-key`` (what Anthropic clients send).
- ``upstream_headers(headers)``: with inbound auth on, the client's credentials were for the gateway: they are
  removed before any backend sees the request, so a provider without its own ``apiKey`` forwards nothing.
- ``check_model(identity, model)``: 403 ``model_not_allowed`` outside the key's ``allowedModels``.
- ``admit(exchange, request)``: takes from the rate limits (limits.py) or raises the 429; sets the exchange's
  ``reservation`` and its ``x-ratelimit-*`` response headers.
- ``settle(exchange)``: the observer that trues token limits up from the answer's facts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import GatewayError
from .keys import MAX_KEY_BYTES, ApiKeys, Identity
from .limits import Limit, LocalStore, Reservation, Store, compile_limits, estimate_tokens, limit_headers, rate_limited

if TYPE_CHECKING:
    from ..config import ApiKeyEntry, GatewayConfig
    from ..exchange import Exchange
    from ..providers import ChatRequest
    from .jwt_auth import JwtAuth

__all__ = ["Guard", "Identity"]

logger = logging.getLogger("agentgateway")

Headers = list[tuple[bytes, bytes]]
_CREDENTIAL_HEADERS = (b"authorization", b"x-api-key")
_WWW_AUTHENTICATE = [(b"www-authenticate", b'Bearer realm="agentgateway"')]


def _unauthorized(message: str, code: str) -> GatewayError:
    return GatewayError(message, status=401, code=code, headers=list(_WWW_AUTHENTICATE))


def _looks_like_jwt(token: bytes) -> bool:
    return token.count(b".") == 2 and token[:2] == b"ey"


class Guard:
    def __init__(self, config: GatewayConfig, *, worker: bool = False) -> None:
        #: told the bounded name (``Limit.metric``) of each limit that refuses a request (telemetry counts them).
        self.on_rejected: Callable[[str], None] | None = None
        policies = config.llm.policies
        self.global_limits = compile_limits(policies.local_rate_limit, "global", "llm.policies.localRateLimit")
        every_limit: list[Limit] = list(self.global_limits)

        def key_limits(entry: ApiKeyEntry, index: int, digest: bytes) -> tuple[Limit, ...]:
            limits = compile_limits(
                entry.local_rate_limit, "key:" + digest.hex(), f"llm.policies.apiKey.keys[{index}].localRateLimit"
            )
            every_limit.extend(limits)
            return limits

        policy = policies.api_key
        self.keys = ApiKeys(policy, key_limits) if policy is not None and policy.keys else None
        self.jwt: JwtAuth | None = None
        if policies.jwt_auth is not None:
            from .jwt_auth import JwtAuth

            self.jwt = JwtAuth(policies.jwt_auth)
        modes = [p.mode for p in (self.keys, self.jwt) if p is not None]
        #: inbound auth is on: the client's credentials belong to the gateway and never go upstream.
        self.enabled = bool(modes)
        self.required = "strict" in modes
        self.permissive = bool(modes) and all(mode == "permissive" for mode in modes)
        self.store: Store | None = None
        self.redis: Any = None
        if every_limit:
            redis = config.config.redis
            if redis is not None:
                from .redis_store import RedisStore

                self.store = self.redis = RedisStore(redis)
            else:
                from .shm import gateway_table

                self.store = LocalStore(gateway_table(worker=worker), every_limit)
        self.limited = self.store is not None
        self._plans: dict[str, tuple[tuple[Limit, ...], list[tuple[Limit, int]] | None]] = {}

    def describe(self) -> list[str]:
        """What start-up logs (once per process): the modes that let callers in without a valid key."""
        lines = []
        for name, part in (("apiKey", self.keys), ("jwtAuth", self.jwt)):
            if part is not None and part.mode == "optional":
                lines.append(f"llm.policies.{name}.mode is optional: requests without credentials are let in")
            elif part is not None and part.mode == "permissive":
                lines.append(f"llm.policies.{name}.mode is permissive: requests with invalid credentials are let in")
        return lines

    async def startup(self) -> None:
        if self.jwt is not None:
            await self.jwt.refresh()

    async def shutdown(self) -> None:
        if self.redis is not None:
            await self.redis.close()

    # -- who ------------------------------------------------------------------------------------------------------

    async def authenticate(self, headers: Headers) -> Identity | None:
        bearer: bytes | None = None
        api_key: bytes | None = None
        malformed = False
        for name, value in headers:
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                token = token.strip()
                if scheme.lower() == b"bearer" and token:
                    bearer = token
                else:
                    malformed = True
            elif name == b"x-api-key":
                api_key = value.strip()
        problem: GatewayError | None = None
        for credential in (bearer, api_key):
            if credential is None:
                continue
            if len(credential) > MAX_KEY_BYTES:
                problem = _unauthorized(
                    f"The API key is too long (more than {MAX_KEY_BYTES} bytes).", "invalid_api_key"
                )
                continue
            if self.keys is not None:
                identity = self.keys.lookup(credential)
                if identity is not None:
                    return identity
            if self.jwt is not None and credential is bearer and _looks_like_jwt(credential):
                from .jwt_auth import TokenRejected

                try:
                    return await self.jwt.verify(credential)
                except TokenRejected as exc:
                    problem = _unauthorized(str(exc), "invalid_api_key")
                    continue
            if problem is None:
                problem = _unauthorized(
                    "Invalid API key: it is not one of this gateway's keys. Send a key the gateway's operator gave "
                    "you as 'Authorization: Bearer <key>' or 'x-api-key: <key>'.",
                    "invalid_api_key",
                )
        if problem is None and malformed:
            problem = _unauthorized(
                "The Authorization header must be 'Bearer <key>' (or send the key as 'x-api-key: <key>').",
                "invalid_api_key",
            )
        if problem is not None:
            if self.permissive:
                return None
            raise problem
        if self.required:
            raise _unauthorized(
                "Missing API key: send your gateway key as 'Authorization: Bearer <key>' or 'x-api-key: <key>'.",
                "missing_api_key",
            )
        return None

    def upstream_headers(self, headers: Headers) -> Headers:
        """The client's headers without its gateway credentials (when inbound auth is on)."""
        if not self.enabled:
            return headers
        return [(name, value) for name, value in headers if name not in _CREDENTIAL_HEADERS]

    @staticmethod
    def check_model(identity: Identity | None, model: str) -> None:
        if identity is not None and not identity.allows(model):
            raise GatewayError(
                f"The model {model!r} is not allowed for this API key ({identity.name}).",
                status=403,
                code="model_not_allowed",
                param="model",
            )

    def allowed_names(self, identity: Identity | None, names: Sequence[str]) -> list[str]:
        return [name for name in names if identity is None or identity.allows(name)]

    # -- how much -------------------------------------------------------------------------------------------------

    async def admit(self, exchange: Exchange, request: ChatRequest, tokenize: str | None = None) -> None:
        """Takes what ``request`` costs from every limit of its caller, or raises the 429. ``tokenize``: the model
        whose vocabulary counts its input tokens for token limits (the route's ``params.tokenize``)."""
        store = self.store
        if store is None:
            return
        identity: Identity | None = exchange.identity
        plan = self._plans.get(identity.id if identity is not None and identity.limits else "")
        if plan is None:
            plan = self._plan(identity)
        limits, items = plan
        if not limits:
            return
        tokens: list[tuple[Limit, int]] | None = None
        if items is None:  # token limits: the cost is this request's estimate
            estimate = estimate_tokens(request, tokenize)
            items = []
            tokens = []
            for limit in limits:
                if limit.kind == "requests":
                    items.append((limit, 1))
                else:
                    cost = min(estimate, limit.bucket.max_tokens)
                    items.append((limit, cost))
                    tokens.append((limit, cost))
        taken = store.take_now(items) if isinstance(store, LocalStore) else await store.take(items)
        if taken is None:
            return  # failOpen while the store is away: admitted, uncounted
        if not taken[0]:
            error, limit = rate_limited(items, taken)
            if self.on_rejected is not None:
                self.on_rejected(limit.metric)
            raise error
        if tokens:
            exchange.reservation = Reservation(store, tokens)
        exchange.client_headers = limit_headers(items, taken)

    def _plan(self, identity: Identity | None) -> tuple[tuple[Limit, ...], list[tuple[Limit, int]] | None]:
        """The limits of a caller, and the items to take when they all count requests (the same every time)."""
        limits = self.global_limits + identity.limits if identity is not None else self.global_limits
        items = [(limit, 1) for limit in limits] if all(limit.kind == "requests" for limit in limits) else None
        plan = (limits, items)
        if identity is None or not identity.limits:
            self._plans[""] = plan
        elif identity.kind == "apiKey":  # one per configured key: bounded
            self._plans[identity.id] = plan
        return plan

    @staticmethod
    def settle(exchange: Exchange) -> None:
        reservation = exchange.reservation
        if reservation is not None:
            exchange.reservation = None
            reservation.settle(exchange)
