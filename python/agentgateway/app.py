"""The ASGI application: the HTTP surface of DESIGN.md section 2 on one port.

One ``Gateway`` per worker process. It owns the upstream client (keep-alive pools, created at lifespan start-up
where the worker's loop runs) and the router built from the validated config. Bodies are moved as
``bytes``: the Rust core translates upstream bytes into client bytes, one call per network read.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from .authorization import Authorization, RequestTransformations
from .config import DEFAULT_MAX_REQUEST_BYTES, GatewayConfig, load_config, load_config_file
from .cors import Cors
from .embeddings import EMBEDDINGS, EmbeddingsApi
from .errors import GatewayError
from .exchange import Exchange, Observer
from .guardrails import guard_responses, has_response_guards
from .messages import COUNT_TOKENS, MESSAGES, MessagesApi
from .policy import Guard, Identity
from .reload import SNAPSHOT_ENV, Follower, follow, reusable
from .request import parse_chat_request
from .router import Router
from .telemetry import Telemetry
from .upstream import UpstreamClient

__all__ = ["Gateway", "create_app"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

logger = logging.getLogger("agentgateway")

#: the request size limit when the config sets none (``frontendPolicies.http.maxBufferSize`` sets it)
MAX_REQUEST_BYTES = DEFAULT_MAX_REQUEST_BYTES
#: An oversized body is still read (and thrown away) up to this many bytes, or twice the limit when that is more,
#: before the 413 is sent: a client that writes its whole body before it reads (the openai SDKs, curl without
#: ``Expect``) would otherwise hit a reset connection ("broken pipe") instead of the answer. Beyond it the 413 goes
#: out at once and the connection closes.
DISCARD_BYTES = 64 * 1024 * 1024

# Environment variables through which the CLI hands the config to granian's worker processes.
CONFIG_FILE_ENV = "AGENTGATEWAY_CONFIG_FILE"
CONFIG_INLINE_ENV = "AGENTGATEWAY_CONFIG_INLINE"
LOG_LEVEL_ENV = "AGENTGATEWAY_LOG_LEVEL"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_JSON_HEADERS = [(b"content-type", b"application/json")]

_COMPLETION_PATHS = frozenset(("/v1/chat/completions", "/chat/completions", "/"))
#: the openai SDKs with base_url set to the gateway call /embeddings (issue 19, embeddings.py)
_EMBEDDINGS_PATHS = frozenset(("/v1/embeddings", "/embeddings"))
_MODEL_PATHS = frozenset(("/v1/models", "/models"))
#: the anthropic SDKs with base_url set to the gateway call /v1/messages; /messages for clients given a .../v1 root
_MESSAGES_PATHS = {
    "/v1/messages": MESSAGES,
    "/messages": MESSAGES,
    "/v1/messages/count_tokens": COUNT_TOKENS,
    "/messages/count_tokens": COUNT_TOKENS,
}


class _ClientDisconnected(Exception):
    pass


class Gateway:
    def __init__(self, config: GatewayConfig, source: str = "config", *, worker: bool = False) -> None:
        """``worker``: this is one of granian's worker processes (create_app), which share the rate-limit counts
        of the process that started them."""
        self.config = config
        self.router = Router(config, source)
        self.timeouts = config.llm.timeouts
        #: frontendPolicies.http.maxBufferSize (issue 21): the largest request body read
        self.max_request_bytes = config.frontend_policies.max_request_bytes
        #: llm.policies cors, authorization and transformations (issue 21), compiled once
        self.cors, self.authorization, self.transformations = _request_policies(config)
        #: whether any model entry guards answers (guardrails.py): only then is ``send`` wrapped
        self.response_guards = has_response_guards(self.router)
        if not worker:
            # The main process names once what the config sets and this gateway does not serve.
            for line in config.unserved:
                logger.warning("%s", line)
        self.client: UpstreamClient | None = None
        #: Called with every exchange as it settles (metrics, logs, limits hook in here).
        self.observers: list[Observer] = []
        #: inbound auth, model lists per key and rate limits (policy/, issue 17).
        self.guard = Guard(config, worker=worker)
        if self.guard.limited:
            self.observers.append(self.guard.settle)
        #: metrics, traces, the access log and cost (telemetry/, issue 18): request ids, and an observer.
        self.telemetry = Telemetry(config, self.router)
        if self.telemetry.active:
            self.observers.append(self.telemetry.observe)
        self._count_policy(self.guard)
        self.model_names = [*self.router.exact_names, *self.router.virtual_names]
        self.models_body = _models_body(self.model_names)
        self._models_by_key: dict[str, bytes] = {}
        #: live config changes (reload.py): the generation served and whether the main process accepted the last
        #: change (the hook for agentgateway_config_synchronized); the snapshot followed, when there is one.
        self.config_generation = 0
        self.config_ok = True
        self.follower: Follower | None = None
        self._follow_task: asyncio.Task[None] | None = None
        #: the disconnect watches of the loop serving (`_DisconnectWatch`): made on the first request.
        self._watches: _Watches | None = None

    # -- ASGI entry points -------------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self.lifespan(receive, send)

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def startup(self) -> None:
        if self.client is None:
            self.client = UpstreamClient(self.timeouts, pool=self.config.config.backend)
            for line in self.guard.describe():
                logger.warning("%s", line)
            await self.guard.startup()
            await _load_vocabularies(self.router)
            self.telemetry.startup()
            if self.follower is not None:
                self._follow_task = asyncio.ensure_future(follow(self, self.follower))

    async def shutdown(self) -> None:
        if self._follow_task is not None:
            self._follow_task.cancel()
            self._follow_task = None
        if self.client is not None:
            await self.client.aclose()
            self.client = None
            await self.guard.shutdown()
            self.telemetry.shutdown()

    def _count_policy(self, guard: Guard) -> None:
        """Rate-limit rejections and Redis failures reach the metrics."""
        guard.on_rejected = self.telemetry.rate_limited
        if guard.redis is not None:
            guard.redis.on_failure = self.telemetry.redis_failed

    async def reconfigure(self, config: GatewayConfig, source: str, generation: int) -> None:
        """Serve a reloaded, validated config (reload.py). The new router reuses the Backend of every unchanged
        entry (provider, credential caches, eviction state; pools are the client's, by origin). Everything is
        swapped at once, between requests: a request in flight keeps the route, guard and observers it got."""
        router = Router(config, source, reuse=reusable(self.router.backends))
        await _load_vocabularies(router)
        old_guard, guard = self.guard, self.guard
        if (config.llm.policies, config.config.redis) != (self.config.llm.policies, self.config.config.redis):
            guard = Guard(config, worker=True)
            self._count_policy(guard)
            await guard.startup()
        # config: (the access log, metrics labels, tracing, catalog) follows too; it may turn telemetry on or off.
        telemetry = self.telemetry
        telemetry.reconfigure(config, router)
        observers = [o for o in self.observers if o not in (old_guard.settle, telemetry.observe)]
        if guard.limited:
            observers.insert(0, guard.settle)
        if telemetry.active:
            observers.append(telemetry.observe)
        if self.client is not None:
            self.client.reconfigure(config.llm.timeouts, config)
        self.config, self.router, self.timeouts, self.guard, self.observers = (
            config, router, config.llm.timeouts, guard, observers
        )  # fmt: skip
        self.cors, self.authorization, self.transformations = _request_policies(config)
        self.max_request_bytes = config.frontend_policies.max_request_bytes
        self.response_guards = has_response_guards(router)
        self.model_names = [*router.exact_names, *router.virtual_names]
        self.models_body = _models_body(self.model_names)
        self._models_by_key = {}
        self.config_generation = generation
        if guard is not old_guard:
            # Requests admitted by the old guard may still settle through it: close it once they are done.
            grace = self.timeouts.first_byte + self.timeouts.idle
            asyncio.get_running_loop().call_later(grace, lambda: asyncio.ensure_future(old_guard.shutdown()))

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        cors = self.cors
        if cors is not None:
            preflight = cors.preflight(scope)
            if preflight is not None:  # answered here, whatever the path (the browser asks before its request)
                await send({"type": "http.response.start", "status": 200, "headers": preflight})
                await send({"type": "http.response.body", "body": b""})
                return
            send = cors.wrap(scope, send)
        try:
            if path in _COMPLETION_PATHS:
                if method != "POST":
                    raise _method_not_allowed(method, path, "POST")
                await self.chat_completions(scope, receive, send)
            elif path in _EMBEDDINGS_PATHS:
                if method != "POST":
                    raise _method_not_allowed(method, path, "POST")
                await self.chat_completions(scope, receive, send, EMBEDDINGS)
            elif path in _MESSAGES_PATHS:  # Anthropic Messages in (issue 19): the same exchange, Anthropic's shapes
                if method != "POST":
                    raise _method_not_allowed(method, path, "POST")
                await self.chat_completions(scope, receive, send, _MESSAGES_PATHS[path])
            elif path in _MODEL_PATHS or path in ("/healthz", "/readyz"):
                if method not in ("GET", "HEAD"):
                    raise _method_not_allowed(method, path, "GET")
                if path == "/healthz":
                    await _send_json(send, 200, b'{"status":"ok"}')
                elif path == "/readyz":
                    ready = self.client is not None
                    await _send_json(
                        send, 200 if ready else 503, b'{"status":"ready"}' if ready else b'{"status":"starting"}'
                    )
                else:
                    await self.models(scope, send)
            else:
                raise GatewayError(
                    f"Unknown path {path!r}. Chat completions are served at POST /v1/chat/completions "
                    "(also /chat/completions and /); Anthropic Messages at POST /v1/messages (and "
                    "/v1/messages/count_tokens); embeddings at POST /v1/embeddings; models at GET /v1/models.",
                    status=404,
                    type_="invalid_request_error",
                    code="unknown_url",
                )
        except GatewayError as exc:
            body = exc.anthropic_body() if path in _MESSAGES_PATHS else exc.body()
            await _send_json(send, exc.status, body, exc.headers)
        except _ClientDisconnected:
            pass
        except Exception:
            # A bug of ours, not the client's: log it and still answer in OpenAI's shape.
            logger.exception("unexpected error serving %s %s", method, path)
            error = GatewayError("Internal error in the gateway.")
            await _send_json(send, error.status, error.body())

    async def models(self, scope: Scope, send: Send) -> None:
        """``/v1/models``: with inbound auth on, only the models the caller may use."""
        body = self.models_body
        if self.guard.enabled:
            identity = await self.guard.authenticate(scope["headers"])
            if identity is not None and identity.models is not None:
                body = self._models_by_key.get(identity.id) or self._models_for(identity)
        await _send_json(send, 200, body)

    def _models_for(self, identity: Identity) -> bytes:
        body = _models_body(self.guard.allowed_names(identity, self.model_names))
        if identity.kind == "apiKey":  # one per configured key: bounded
            self._models_by_key[identity.id] = body
        return body

    # -- chat completions --------------------------------------------------------------------------------------

    async def chat_completions(
        self, scope: Scope, receive: Receive, send: Send, inbound: EmbeddingsApi | MessagesApi | None = None
    ) -> None:
        """A chat completion, or with ``inbound`` the request of another OpenAI-shaped inbound API (embeddings): its
        checks and its exchange operation, everything else the same (auth, routing, limits, settle)."""
        exchange = Exchange(scope, self.observers) if inbound is None else inbound.exchange(scope, self.observers)
        self.telemetry.begin(exchange)
        guard = self.guard
        transformations, authorization = self.transformations, self.authorization
        disconnected = False
        try:
            try:
                headers = scope["headers"]
                if guard.enabled:
                    # Before the body is read: an unknown caller costs no more than its headers.
                    exchange.identity = await guard.authenticate(headers)
                    # The client's credentials were for the gateway: no backend, CEL condition or header match
                    # sees them (a provider with no apiKey of its own forwards nothing).
                    exchange.request_headers = headers = guard.upstream_headers(headers)
                raw = await _read_body(scope, receive, self.max_request_bytes)
                if transformations is not None:
                    # Before the model is chosen: `matches` on headers see what they computed.
                    exchange.request_headers = headers = transformations.apply(
                        exchange, raw, _json_or_none(raw) if transformations.needs_body else None
                    )
                request = parse_chat_request(raw, headers) if inbound is None else inbound.parse(raw, headers)
                exchange.client_model = request.model  # also for a request refused below (its log line says it)
                if exchange.identity is not None:
                    guard.check_model(exchange.identity, request.model)
                if authorization is not None:
                    authorization.check(exchange, request.model, raw, request.body)
                route = self.router.route(request.model)
                client = self.client
                if client is None:
                    raise GatewayError("The gateway is starting up; retry shortly.", status=503, code="not_ready")
                if guard.limited:
                    await guard.admit(exchange, request, route.tokenize)
            except GatewayError as exc:
                await exchange.send_error(send, exc)
                return
            watches = self._watches
            if watches is None or watches.loop is not asyncio.get_running_loop():
                watches = self._watches = _Watches(asyncio.get_running_loop())
            watch = _DisconnectWatch(receive, watches)
            if self.response_guards:
                send = guard_responses(exchange, send, client)
            try:
                await exchange.serve(client, route, request, send)
            except GatewayError as exc:
                if exchange.status:
                    raise  # an answer already started (a bug: the exchange handles its own errors then)
                await exchange.send_error(send, exc)
            except Exception:
                if exchange.status:
                    raise
                # A bug of ours, not the client's: log it and still answer in OpenAI's shape.
                logger.exception("unexpected error serving %s", request.model)
                await exchange.send_error(send, GatewayError("Internal error in the gateway.", code="internal_error"))
            except asyncio.CancelledError:
                if watch.stop():
                    # The client went away: that cancellation is ours and ends here (3.11+ counts cancellations).
                    uncancel = getattr(watch.task, "uncancel", None)
                    if uncancel is None or uncancel() == 0:
                        disconnected = True
                        logger.info("client disconnected; upstream request for %s cancelled", request.model)
                        return
                raise
            finally:
                watch.stop()
        except _ClientDisconnected:
            disconnected = True
        finally:
            exchange.settle(disconnected=disconnected)


# -- helpers -------------------------------------------------------------------------------------------------------


async def _load_vocabularies(router: Router) -> None:
    """The vocabularies the ``params.tokenize`` entries count with, built before they serve (~0.2 s each, once per
    process, off the event loop: the core releases the GIL meanwhile)."""
    models = router.tokenize_models()
    if models:
        from .tokenize import load_vocabulary

        for model in sorted(models):
            await asyncio.to_thread(load_vocabulary, model)


def _request_policies(
    config: GatewayConfig,
) -> tuple[Cors | None, Authorization | None, RequestTransformations | None]:
    policies = config.llm.policies
    return (
        Cors(policies.cors) if policies.cors is not None else None,
        Authorization(policies.authorization, "llm.policies") if policies.authorization is not None else None,
        RequestTransformations(policies.transformations)
        if policies.transformations is not None and policies.transformations.request is not None
        else None,
    )


def _json_or_none(raw: bytes) -> object:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None  # parse_chat_request answers the 400 for it


def _models_body(names: list[str]) -> bytes:
    return orjson.dumps(
        {
            "object": "list",
            "data": [{"id": name, "object": "model", "created": 0, "owned_by": "agentgateway"} for name in names],
        }
    )


def _method_not_allowed(method: str, path: str, allowed: str) -> GatewayError:
    return GatewayError(
        f"Method {method} is not allowed on {path}; use {allowed}.",
        status=405,
        type_="invalid_request_error",
        code="method_not_allowed",
        headers=[(b"allow", allowed.encode())],
    )


async def _send_json(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": _JSON_HEADERS + headers if headers else _JSON_HEADERS,
        }
    )
    await send({"type": "http.response.body", "body": body})


_CONTENT_LENGTH, _CONTENT_TYPE, _EXPECT = 0, 1, 2
#: The request headers `_read_body` reads.
_BODY_HEADERS = {b"content-length": _CONTENT_LENGTH, b"content-type": _CONTENT_TYPE, b"expect": _EXPECT}


async def _read_body(scope: Scope, receive: Receive, limit: int = MAX_REQUEST_BYTES) -> bytes:
    """The request body, at most ``limit`` bytes. A larger one is a 413 (in the inbound API's shape: the caller
    sends it): refused on its ``Content-Length`` before anything is kept, and for a body without one (chunked) as
    soon as it grows past the limit. Either way the rest of it is read and thrown away first, up to the discard
    bound (DISCARD_BYTES), so that the client reads the 413 rather than a reset connection."""
    declared = -1
    expects_continue = False
    wanted = _BODY_HEADERS
    for name, value in scope["headers"]:
        which = wanted.get(name)  # one lookup for the many headers that are none of these
        if which is None:
            continue
        if which == _CONTENT_LENGTH:
            if value.isdigit():
                declared = int(value)
        elif which == _CONTENT_TYPE:
            _check_content_type(value)
        else:
            expects_continue = value.lower() == b"100-continue"
    if declared > limit:
        # A client waiting for "100 Continue" has sent nothing yet: refusing now spares it the upload (the server
        # sends 100 only when the body is read).
        if not expects_continue and declared <= max(DISCARD_BYTES, 2 * limit):
            await _discard(receive, declared)
        raise _too_large(limit)
    message = await receive()
    if message["type"] == "http.disconnect":
        raise _ClientDisconnected
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        if len(body) > limit:
            raise _too_large(limit)
        return body
    chunks = [body]
    size = len(body)
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientDisconnected
        body = message.get("body", b"")
        size += len(body)
        if size > limit:
            if message.get("more_body", False):
                await _discard(receive, max(DISCARD_BYTES, 2 * limit) - size)
            raise _too_large(limit)
        chunks.append(body)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _discard(receive: Receive, bound: int) -> None:
    """Reads and drops the rest of a request body, at most ``bound`` more bytes (a body that goes on beyond them is
    left unread: the answer is sent and the connection closes)."""
    while bound > 0:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientDisconnected
        bound -= len(message.get("body", b""))
        if not message.get("more_body", False):
            return


def _check_content_type(value: bytes) -> None:
    """JSON bodies only. text/plain passes too: browsers' fetch() labels a string body so when not told otherwise."""
    media_type = value.partition(b";")[0].strip().lower()
    if media_type in (b"application/json", b"text/plain", b"") or media_type.endswith(b"+json"):
        return
    raise GatewayError(
        f"Unsupported Content-Type {value.decode('latin-1')!r}: send the request body as JSON with "
        "'Content-Type: application/json'.",
        status=415,
        type_="invalid_request_error",
        code="unsupported_media_type",
        param="Content-Type",
    )


def _too_large(limit: int) -> GatewayError:
    return GatewayError(
        f"The request body is larger than {limit} bytes (the gateway's limit, frontendPolicies.http.maxBufferSize).",
        status=413,
        type_="invalid_request_error",
        code="request_too_large",
    )


class _DisconnectWatch:
    """Cancels the request's task when its client goes away, so the upstream connection closes instead of
    generating an answer nobody will read. Once the body is read, the only ASGI message left is http.disconnect:
    a wait on receive() beside the upstream call sees it.

    That wait is not free: granian parks it on its own runtime thread and wakes the event loop across threads
    when it ends, about 40 µs of CPU per request (measured on the load bench, as much as all of the gateway's
    own Python work). So it starts only once a request has run for WATCH_AFTER seconds. A request that answers
    sooner never pays for it; a client that leaves earlier is still seen, when the wait starts (receive() then
    answers at once), so its upstream request outlives it by WATCH_AFTER at most. The requests in flight share one
    timer (`_Watches`): a timer per request cost ~1.5 µs to arm and cancel, for the rare request that needs it.
    """

    WATCH_AFTER = 0.05

    __slots__ = ("_receive", "_wait", "_watches", "disconnected", "since", "task")

    def __init__(self, receive: Receive, watches: _Watches) -> None:
        self.task = asyncio.current_task(watches.loop)
        self.disconnected = False
        self._receive = receive
        self._wait: asyncio.Future[Message] | None = None
        self._watches = watches
        self.since = watches.loop.time()
        watches.add(self)

    def start(self) -> None:
        # granian's receive() returns a future, so this needs no task of its own.
        self._wait = asyncio.ensure_future(self._receive())
        self._wait.add_done_callback(self._on_message)

    def _on_message(self, wait: asyncio.Future[Message]) -> None:
        # Also called when stop() cancels the wait as the request ends: then there is nothing to do.
        if wait.cancelled() or wait.exception() is not None:
            return
        self.disconnected = True
        if self.task is not None:
            self.task.cancel()

    def stop(self) -> bool:
        """Ends the watch; whether the client went away (and so cancelled the task)."""
        self._watches.pending.pop(self, None)
        if self._wait is not None:
            self._wait.cancel()
            self._wait = None
        return self.disconnected


class _Watches:
    """The disconnect watches of one event loop not started yet, oldest first (a dict keeps insertion order), and
    the one timer that starts each at its request's ``since + WATCH_AFTER``: armed only while some wait."""

    __slots__ = ("_timer", "loop", "pending")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.pending: dict[_DisconnectWatch, None] = {}
        self._timer: asyncio.TimerHandle | None = None

    def add(self, watch: _DisconnectWatch) -> None:
        self.pending[watch] = None
        if self._timer is None:
            self._timer = self.loop.call_at(watch.since + _DisconnectWatch.WATCH_AFTER, self._due)

    def _due(self) -> None:
        self._timer = None
        pending = self.pending
        cutoff = self.loop.time() - _DisconnectWatch.WATCH_AFTER
        while pending:
            oldest = next(iter(pending))
            if oldest.since > cutoff:
                self._timer = self.loop.call_at(oldest.since + _DisconnectWatch.WATCH_AFTER, self._due)
                return
            del pending[oldest]
            oldest.start()


def create_app() -> Gateway:
    """granian's factory in each worker: loads the config the CLI validated (passed through the environment)."""
    logging.basicConfig(level=os.environ.get(LOG_LEVEL_ENV, "INFO"), format=LOG_FORMAT)
    snapshot = os.environ.get(SNAPSHOT_ENV)
    if snapshot is not None:
        # The document the main process validated last (never the user's file), then followed for changes.
        follower = Follower(snapshot)
        document = follower.current()
        gateway = Gateway(document.load(), document.source, worker=True)
        gateway.follower, gateway.config_generation = follower, document.generation
        return gateway
    inline = os.environ.get(CONFIG_INLINE_ENV)
    if inline is not None:
        return Gateway(load_config(inline), "<inline config>", worker=True)
    path = os.environ.get(CONFIG_FILE_ENV)
    if path is None:
        raise RuntimeError(
            f"set {CONFIG_FILE_ENV} or {CONFIG_INLINE_ENV}, or start the gateway with the agentgateway command"
        )
    return Gateway(load_config_file(path), path, worker=True)
