"""One request's life as one object (OPERATIONS.md section 1).

An `Exchange` carries a client request through authenticate → route → admit → attempts → answer → settle, and
keeps what happened: timings, the route, every attempt, and the facts of the answer (usage, finish reason, time to
first token, error). Every exit path -- an answer, an upstream error, a failure mid-stream, a client that went
away, a bug -- reaches `settle` exactly once, and what comes later (limits, spend, metrics, traces, logs) hooks in
there through `Gateway.observers` and nowhere else.

The attempt loop is failover inside the request: a connect error, a timeout before the first byte, a 5xx or a
429 -- or a stream whose first event is an error -- moves the same request to the route's next target before any
byte reaches the client. Once a byte has gone out, no retry: a stream ends with the error event. When every
attempt fails, the client gets the last upstream's status, message and headers (a 429 keeps its Retry-After).
Renewing a refused cloud credential (an expired token: renew, send once more) is one case of the same loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from ._core import CoreError, StreamTranslator, UpstreamReportedError, translate_response
from .backend import Backend
from .errors import (
    GatewayError,
    ModelNotFound,
    UpstreamHTTPError,
    UpstreamProtocolError,
    anthropic_status,
    redact_frames,
)
from .fanout import DONE, FanOut, MergedStream, open_all, single_choice, usage_chunk
from .health import retry_after_seconds
from .providers import ChatRequest
from .providers.messages_input import estimate_input_tokens
from .upstream import UpstreamClient, UpstreamRequest, UpstreamResponse

if TYPE_CHECKING:
    from .providers.base import Provider
    from .router import Route, Target

__all__ = ["CLIENT_CLOSED", "Attempt", "Exchange", "Facts", "Observer"]

logger = logging.getLogger("agentgateway")

Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]
#: Called once per request when it settles; exceptions are logged and never reach the client.
Observer = Callable[["Exchange"], None]

_JSON_HEADERS = [(b"content-type", b"application/json")]
_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    # Tells nginx-style proxies between us and the client not to hold events back.
    (b"x-accel-buffering", b"no"),
]
# Upstream response headers a client needs to see: rate-limit state and its request id for support tickets.
_FORWARDED_HEADER_PREFIXES = (
    b"retry-after",
    b"x-ratelimit-",
    b"x-request-id",
    b"openai-processing-ms",
    b"anthropic-ratelimit-",
    b"request-id",
    b"x-amzn-requestid",  # AWS's request id, for support tickets
    b"x-amzn-errortype",  # AWS's error type (the error body has only the message)
)
#: Where upstreams put their own request id (OpenAI and most: x-request-id; Anthropic: request-id; AWS).
_UPSTREAM_ID_HEADERS = frozenset((b"x-request-id", b"request-id", b"x-amzn-requestid"))
_DROPPED, _FORWARDED, _UPSTREAM_ID = 0, 1, 2
#: What `_header_kind` said of each upstream header name seen: one dict lookup per header instead of a prefix
#: search (bytes.startswith over a tuple cost ~600 instructions a header). Bounded: upstreams choose the names.
_HEADER_KINDS: dict[bytes, int] = {}


def _header_kind(name: bytes) -> int:
    if name in _UPSTREAM_ID_HEADERS:
        kind = _UPSTREAM_ID
    else:
        kind = _FORWARDED if name.startswith(_FORWARDED_HEADER_PREFIXES) else _DROPPED
    if len(_HEADER_KINDS) < 1024:
        _HEADER_KINDS[name] = kind
    return kind


#: The core's client API (the encoder of the answers) per inbound API; the others are OpenAI-shaped.
_CLIENT_APIS = {"messages": "anthropic"}
#: The status settled for a client that went away before its answer ended (nginx's convention).
CLIENT_CLOSED = 499


@dataclass(slots=True)
class Facts:
    """What the answer said, read from the core once it ended (also for aborted and failed streams)."""

    #: ``(prompt, completion, total, cached, cache_write, reasoning)`` tokens as the upstream reported them
    #: (``_core.pyi``: ``_Usage``); None when it reported none.
    usage: tuple[int, int, int, int | None, int | None, int | None] | None = None
    finish_reason: str | None = None
    #: seconds from the start of the request to the first byte of the answer sent to the client.
    ttft: float | None = None
    #: the error the client was told about (an error response, or the stream's final error event).
    error: str | None = None
    #: the OpenAI error ``code`` (or type) of that error, for metrics: bounded by the error vocabulary.
    error_type: str | None = None

    @property
    def input_tokens(self) -> int | None:
        """Prompt tokens, cache reads and writes included."""
        return self.usage[0] if self.usage is not None else None

    @property
    def output_tokens(self) -> int | None:
        """Completion tokens, reasoning included."""
        return self.usage[1] if self.usage is not None else None

    @property
    def cached_tokens(self) -> int | None:
        """Prompt tokens read from the provider's cache (None: not reported)."""
        return self.usage[3] if self.usage is not None else None

    @property
    def cache_write_tokens(self) -> int | None:
        """Prompt tokens written to the provider's cache (None: not reported)."""
        return self.usage[4] if self.usage is not None else None

    @property
    def reasoning_tokens(self) -> int | None:
        """Completion tokens spent on reasoning (None: not reported)."""
        return self.usage[5] if self.usage is not None else None


@dataclass(slots=True)
class Attempt:
    """One upstream request of the exchange."""

    backend: Backend
    #: the model name the route resolved for this attempt (what the backend was asked for).
    model: str
    started: float
    ended: float = 0.0
    #: the upstream's HTTP status; None when no answer came (connect error, timeout).
    status: int | None = None
    #: ``ok`` | ``failover`` (failed, the next target was tried) | ``renewed`` (credentials renewed, sent again)
    #: | ``failed`` (the failure reached the client) | ``aborted`` (the client went away).
    outcome: str = ""
    error: GatewayError | None = None


class Exchange:
    """One request. The gateway creates it, `serve` runs it, `settle` ends it (called by `serve`, once)."""

    __slots__ = (
        "api",
        "attempts",
        "client_headers",
        "client_model",
        "facts",
        "gateway_observers",
        "identity",
        "method",
        "operation",
        "path",
        "request",
        "request_headers",
        "request_id",
        "reservation",
        "route",
        "settled",
        "started",
        "status",
        "streamed",
        "trace",
        "upstream_request_id",
    )

    def __init__(self, scope: MutableMapping[str, Any], observers: Sequence[Observer], api: str = "chat") -> None:
        self.started = time.monotonic()
        #: the inbound API: ``chat``, ``messages`` (Anthropic Messages and count_tokens: errors and answers written in
        #: Anthropic's shape, issue 19) or ``embeddings``.
        self.api = api
        #: the operation of an inbound API whose answers are read whole and built by it (embeddings.py: ``calls``);
        #: None for chat, whose answers the core translates (and messages).
        self.operation: Any = None
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.request_headers: Headers = scope["headers"]
        self.request: ChatRequest | None = None
        self.client_model: str | None = None
        #: who is calling, once authenticated (inbound keys arrive with the access-control work).
        self.identity: Any = None
        #: what admission took from the rate limits (policy/limits.py); its settle observer trues it up.
        self.reservation: Any = None
        #: headers every answer of this exchange carries to the client (the caller's x-ratelimit-* state).
        self.client_headers: Headers = []
        self.route: Route | None = None
        self.attempts: list[Attempt] = []
        self.facts = Facts()
        #: the status sent to the client (CLIENT_CLOSED when it went away first; 0 until known).
        self.status = 0
        self.streamed = False
        self.settled = False
        self.gateway_observers = observers
        #: sent as ``x-request-id`` and logged (telemetry: the client's own kept, else made up); "" for none.
        self.request_id = ""
        #: the upstream's own request id (its x-request-id, request-id or x-amzn-requestid), for support tickets.
        self.upstream_request_id: str | None = None
        #: the request's trace when tracing sampled it (telemetry/_tracing.py: each attempt sends traceparent).
        self.trace: Any = None

    # -- the life of the request -----------------------------------------------------------------------------------

    async def serve(self, client: UpstreamClient, route: Route, request: ChatRequest, send: Send) -> None:
        """Runs the attempts and answers the client; raises the GatewayError to answer with when nothing was sent.
        The caller settles (so that a request refused before routing settles too)."""
        self.request = request
        self.client_model = request.model
        self.route = route
        self.streamed = request.stream
        targets = route.targets(self)
        if not targets:  # a virtual model none of whose targets' entries match this request's headers
            raise ModelNotFound(
                f"No target of the model {route.name!r} serves this request: their entries' 'matches' do not hold.",
                param="model",
            )
        if route.authorizing and any(backend.authorization is not None for backend, _ in targets):
            targets = self._authorized(targets)
        last: GatewayError | None = None
        operation = self.operation
        for index, (backend, model) in enumerate(targets):
            more = index + 1 < len(targets)
            if operation is not None:  # embeddings: answers read whole and joined by the operation (_whole)
                if await self._whole(operation, client, backend, model, request, send, more):
                    return
            else:
                attempt_request = backend.request_for(request, model, self.path)
                if backend.guardrails is not None and backend.guardrails.request:  # issue 21: guardrails.py
                    attempt_request = await backend.guardrails.check_request(attempt_request, self, client)
                if attempt_request.api == "count_tokens" and not backend.provider.counts_tokens(attempt_request):
                    await self._estimated(backend, model, attempt_request, send)
                    return
                fan_out = backend.provider.fan_out(attempt_request) if attempt_request.api == "chat" else 1
                if fan_out > 1:  # n > 1 on a provider that answers one choice per call (fanout.py, issue 20)
                    if request.stream:
                        done = await self._fan_out_stream(client, backend, model, attempt_request, fan_out, send, more)
                    else:
                        done = await self._whole(FanOut(fan_out), client, backend, model, attempt_request, send, more)
                    if done:
                        return
                elif (response := await self._send(client, backend, model, attempt_request, more)) is not None:
                    if request.stream:
                        done = await self._stream(backend, attempt_request, response, send, more)
                    else:
                        done = await self._complete(backend, attempt_request, response, send, more)
                    if done:
                        return
            # A failure that moves the request on (only ever when another target is left).
            failed = self.attempts[-1]
            failed.outcome = "failover"
            last = failed.error
        assert last is not None, "a route has at least one target"
        raise last

    def _authorized(self, targets: Sequence[Target]) -> Sequence[Target]:
        """The targets whose entry's ``authorization`` lets this caller in (issue 21, authorization.py); the 403
        ``model_authorization_denied`` when none does."""
        allowed = [t for t in targets if t[0].authorization is None or t[0].authorization.allows(self)]
        if not allowed:
            authorization = targets[0][0].authorization
            assert authorization is not None
            raise authorization.denied(self.client_model or targets[0][1])
        return allowed

    async def _send(
        self, client: UpstreamClient, backend: Backend, model: str, request: ChatRequest, more: bool
    ) -> UpstreamResponse | None:
        """Sends one attempt (twice when the upstream refused credentials that could be renewed). None: it failed in
        a way that moves to the next target (recorded in the attempt); raises when it must reach the client."""
        provider = backend.provider
        renewed = False
        while True:
            attempt = Attempt(backend, model, time.monotonic())
            self.attempts.append(attempt)
            try:
                prepared = await backend.prepare(request)
                if self.trace is not None:
                    prepared = self.trace.inject(prepared, len(self.attempts) - 1)
                response = await client.send(prepared)
            except GatewayError as exc:
                self._failed(attempt, exc, None, [])
                if exc.retryable and more:
                    return None
                raise
            except BaseException:
                attempt.ended = time.monotonic()
                attempt.outcome = "aborted"
                raise
            attempt.status = response.status
            if not renewed and await _renewed(provider, backend, attempt, response):
                renewed = True
                continue
            return response

    def _failed(self, attempt: Attempt, error: GatewayError, status: int | None, headers: Headers) -> None:
        """Records a failed attempt and what it means for the backend's health."""
        attempt.ended = time.monotonic()
        attempt.error = error
        attempt.outcome = "failed"  # serve() makes it "failover" when the request moves on to another target
        backend = attempt.backend
        # No answer (connection refused, reset, timeout) counts as a failure whenever it moves the request on.
        failure = error.retryable if status is None else backend.is_failure(status, headers)
        if failure and backend.health.record_failure(retry_after_seconds(headers)):
            logger.warning("%s evicted after %s", backend.name, error.message)

    def _succeeded(self, attempt: Attempt) -> None:
        attempt.ended = time.monotonic()
        attempt.outcome = "ok"
        attempt.backend.health.record_success(attempt.ended - attempt.started)

    def _upstream_error(self, attempt: Attempt, status: int, body: bytes, headers: Headers) -> GatewayError:
        backend = attempt.backend
        logger.warning("upstream for %s answered HTTP %d", backend.name, status)
        error = backend.provider.error_from_response(status, body, headers)
        error.message = backend.provider.redact(error.message)
        self._failed(attempt, error, status, headers)
        return error

    def _response_headers(self, backend: Backend, response: UpstreamResponse) -> Headers:
        """The upstream's headers a client sees (`_FORWARDED_HEADER_PREFIXES`), after our ``x-request-id`` (a
        backend's responseHeaders may still remove it); the upstream's own request id also as
        ``x-upstream-request-id`` (its ``x-request-id`` only so: the name is ours now)."""
        headers: Headers = [(b"x-request-id", self.request_id.encode())] if self.request_id else []
        kinds = _HEADER_KINDS
        for header in response.headers:
            kind = kinds.get(header[0])
            if kind is None:
                kind = _header_kind(header[0])
            if kind:
                if kind == _UPSTREAM_ID:
                    if self.upstream_request_id is None:
                        self.upstream_request_id = header[1][:200].decode("latin-1")
                        headers.append((b"x-upstream-request-id", header[1]))
                    if header[0] == b"x-request-id":
                        continue
                headers.append(header)
        if backend.response_headers is not None:
            headers = backend.response_headers.apply(headers)
        return headers

    async def _complete(
        self, backend: Backend, request: ChatRequest, response: UpstreamResponse, send: Send, more: bool
    ) -> bool:
        attempt = self.attempts[-1]
        try:
            body = await response.read()
        except GatewayError as exc:
            response.abort()
            self._failed(attempt, exc, None, [])
            if exc.retryable and more:
                return False
            raise
        except BaseException:
            response.abort()
            raise
        response.release()
        headers = self._response_headers(backend, response)
        if response.status >= 400:
            error = self._upstream_error(attempt, response.status, body, headers)
            if error.retryable and more:
                return False
            raise error
        provider = backend.provider
        if request.api == "count_tokens":
            return await self._counted(attempt, provider.input_tokens(body), send, headers)
        # Always through the core, even with nothing to rewrite: it also catches a success status whose body is an
        # error, which must reach the client as an error.
        try:
            translator, model = (
                provider.translator_for(request),
                provider.response_model(self.client_model or "", request),
            )
            # The answer written in the client's API (Anthropic Messages for /v1/messages, issue 19).
            body, usage = translate_response(translator, body, model, _CLIENT_APIS.get(self.api, "openai"))
        except UpstreamReportedError as exc:
            message, status, code = exc.args
            error = UpstreamHTTPError.create(status, provider.redact(message), code=code)
            logger.warning("upstream for %s answered HTTP %d with an error body", backend.name, status)
            self._failed(attempt, error, status, response.headers)
            if error.retryable and more:
                return False
            raise error from None
        except CoreError as exc:
            error = UpstreamProtocolError(f"The upstream's answer could not be read: {exc}")
            self._failed(attempt, error, None, [])
            raise error from None
        self._succeeded(attempt)
        self.facts.usage = usage
        await self._send_json(send, 200, body, headers)
        return True

    async def _whole(
        self,
        operation: Any,
        client: UpstreamClient,
        backend: Backend,
        model: str,
        request: ChatRequest,
        send: Send,
        more: bool,
    ) -> bool:
        """One attempt of an operation whose answers are read whole (``operation``: embeddings.py). It turns the
        request into this backend's upstream calls -- several when the provider takes fewer inputs per call than
        the client sent -- sent at once (``calls.concurrency`` in flight) and read to their end; their answers, in
        call order, become the client's body. One attempt however many calls, with failover, health and credential
        renewal as in `_send` / `_complete`: the first call that fails fails the attempt and stops the others."""
        calls = operation.calls(backend, request, model, self.client_model or request.model)
        provider = backend.provider
        renewed = False
        while True:
            attempt = Attempt(backend, model, time.monotonic())
            self.attempts.append(attempt)
            try:
                prepared = await calls.prepare()
                if self.trace is not None:
                    prepared = [self.trace.inject(one, len(self.attempts) - 1) for one in prepared]
                answers = await _fetch_all(client, prepared, calls.concurrency)
            except GatewayError as exc:
                self._failed(attempt, exc, None, [])
                if exc.retryable and more:
                    return False
                raise
            except BaseException:
                attempt.ended = time.monotonic()
                attempt.outcome = "aborted"
                raise
            response, body = next((answer for answer in answers if answer[0].status >= 400), answers[0])
            attempt.status = response.status
            if response.status >= 400:
                if (
                    not renewed
                    and provider.rejects_credentials(response.status, response.headers)
                    and await provider.credentials_rejected()
                ):
                    logger.info("upstream for %s refused its credentials; retrying once with new ones", backend.name)
                    attempt.ended = time.monotonic()
                    attempt.outcome = "renewed"
                    renewed = True
                    continue
                headers = self._response_headers(backend, response)
                error = self._upstream_error(attempt, response.status, body, headers)
                if error.retryable and more:
                    return False
                raise error
            try:
                out, usage = calls.answer([answer[1] for answer in answers], [answer[0].headers for answer in answers])
            except GatewayError as exc:
                self._failed(attempt, exc, exc.status if isinstance(exc, UpstreamHTTPError) else None, [])
                if exc.retryable and more:
                    return False
                raise
            self._succeeded(attempt)
            self.facts.usage = usage
            await self._send_json(send, 200, out, self._response_headers(backend, response))
            return True

    async def _stream(
        self, backend: Backend, request: ChatRequest, response: UpstreamResponse, send: Send, more: bool
    ) -> bool:
        attempt = self.attempts[-1]
        provider = backend.provider
        facts = self.facts
        if response.status >= 400:
            try:
                body = await response.read()
            except GatewayError:
                response.abort()
                body = b""
            except BaseException:
                response.abort()
                raise
            else:
                # The error answer was read to its end: the connection serves the next request (a 429 storm must
                # not open a new connection per retry).
                response.release()
            error = self._upstream_error(attempt, response.status, body, self._response_headers(backend, response))
            if error.retryable and more:
                return False
            raise error
        anthropic = self.api == "messages"  # the answer written as Anthropic Messages events (issue 19)
        translator = StreamTranslator(
            provider.translator_for(request),
            provider.response_model(self.client_model or "", request),
            request.include_usage,
            "anthropic" if anthropic else "openai",
        )
        try:
            # Hold the answer back until its first frames: when they are an error, nothing has reached the client
            # and the request can still move to the next target.
            out = b""
            try:
                while not out:
                    chunk = await response.read_chunk()
                    out = translator.feed(chunk) if chunk else translator.finish()
                    if not chunk:
                        break
            except GatewayError as exc:
                response.abort()
                self._failed(attempt, exc, None, [])
                if exc.retryable and more:
                    return False
                raise
            generated = _anthropic_generated_before_error if anthropic else _generated_before_error
            if translator.error is not None and more and not generated(out):
                first_error = _anthropic_first_event_error if anthropic else _first_event_error
                error = first_error(out, provider.redact(translator.error))
                if error.retryable:
                    response.abort()
                    self._failed(attempt, error, error.status, [])
                    return False
            # An upstream error event may quote the key it refused: redacted as its logged copy is (issue 20).
            secrets = provider.secrets
            if secrets and translator.error is not None:
                out = redact_frames(out, secrets)
            self._succeeded(attempt)
            headers = self._response_headers(backend, response)
            start_headers = _SSE_HEADERS + headers + self.client_headers
            await send({"type": "http.response.start", "status": 200, "headers": start_headers})
            self.status = 200
            facts.ttft = time.monotonic() - self.started
            try:
                if out:
                    await send({"type": "http.response.body", "body": out, "more_body": True})
                if not translator.failed:
                    while chunk := await response.read_chunk():
                        out = translator.feed(chunk)
                        if out:
                            if secrets and translator.error is not None:
                                out = redact_frames(out, secrets)
                            await send({"type": "http.response.body", "body": out, "more_body": True})
                        if translator.failed:
                            break  # the upstream sent something unreadable; the error frame is already out
                tail = translator.finish()  # b"" when the first read already ended the stream
                if secrets and translator.error is not None:
                    tail = redact_frames(tail, secrets)
            except GatewayError as exc:
                # Timeouts, resets and framing errors after the stream began: the client gets them as the last event.
                logger.warning("stream from %s failed: %s", backend.name, exc.message)
                tail = exc.anthropic_stream_event() if anthropic else exc.stream_event()
                facts.error, facts.error_type = exc.message, exc.code or exc.type
            except CoreError as exc:
                logger.exception("stream from %s failed in the core", backend.name)
                error = GatewayError(f"The stream failed in the gateway: {exc}")
                tail = error.anthropic_stream_event() if anthropic else error.stream_event()
                facts.error, facts.error_type = error.message, error.code or error.type
            if translator.error is not None and facts.error is None:
                facts.error = provider.redact(translator.error)
                facts.error_type = "upstream_error"
                logger.warning("stream from %s ended with an error: %s", backend.name, facts.error)
            await send({"type": "http.response.body", "body": tail, "more_body": False})
        except BaseException:
            response.abort()  # an unfinished upstream answer: drop the connection so the upstream stops too
            raise
        finally:
            # Also for an aborted or failed stream: what was generated so far is counted.
            facts.usage = translator.usage
            facts.finish_reason = translator.finish_reason
        response.release()
        return True

    async def _fan_out_stream(
        self, client: UpstreamClient, backend: Backend, model: str, request: ChatRequest, n: int, send: Send, more: bool
    ) -> bool:
        """One attempt of a stream with ``n`` > 1 on a provider that answers one choice per call: ``n`` calls at once,
        merged into one stream (fanout.py says how). Failover, health and credential renewal as for one call (`_send`,
        `_stream`): the first call refused, or failing in its first frames, fails the attempt and stops the others."""
        provider = backend.provider
        single = single_choice(request)
        renewed = False
        while True:
            attempt = Attempt(backend, model, time.monotonic())
            self.attempts.append(attempt)
            try:
                prepared = await backend.prepare(single)
                if self.trace is not None:
                    prepared = self.trace.inject(prepared, len(self.attempts) - 1)
                responses, refused = await open_all(client, prepared, n)
            except GatewayError as exc:
                self._failed(attempt, exc, None, [])
                if exc.retryable and more:
                    return False
                raise
            except BaseException:
                attempt.ended = time.monotonic()
                attempt.outcome = "aborted"
                raise
            if refused is None:
                break
            attempt.status = refused.status
            if not renewed and await _renewed(provider, backend, attempt, refused):
                renewed = True
                continue
            # The refusal read as one call's (_stream): its status, message and headers reach the client.
            return await self._stream(backend, single, refused, send, more)
        attempt.status = responses[0].status
        facts = self.facts
        completion_id = "chatcmpl-" + os.urandom(12).hex()
        translator = provider.translator_for(single)
        client_model = provider.response_model(self.client_model or "", single)
        merged = MergedStream(
            responses,
            [
                StreamTranslator(translator, client_model, False, choice=index, completion_id=completion_id)
                for index in range(n)
            ],
        )
        try:
            try:
                firsts = await merged.first_frames()
            except GatewayError as exc:
                merged.abort()
                self._failed(attempt, exc, None, [])
                if exc.retryable and more:
                    return False
                raise
            for index, out in enumerate(firsts):
                error_message = merged.translators[index].error
                if error_message is not None and more and not _generated_before_error(out):
                    error = _first_event_error(out, provider.redact(error_message))
                    if error.retryable:
                        merged.abort()
                        self._failed(attempt, error, error.status, [])
                        return False
            self._succeeded(attempt)
            headers = self._response_headers(backend, responses[0])
            await send(
                {"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS + headers + self.client_headers}
            )
            self.status = 200
            facts.ttft = time.monotonic() - self.started
            stopped = next((index for index in range(n) if merged.stopped(index)), None)
            tail = b""
            try:
                if stopped is not None:  # a call's first frames ended with its error event: nothing may follow
                    tail = b"".join(firsts[: stopped + 1])
                else:
                    await send({"type": "http.response.body", "body": b"".join(firsts), "more_body": True})
                    # Closed when left early (a call's error, a client gone), so that the reading tasks end.
                    async with contextlib.aclosing(merged.rest()) as frames:
                        async for index, out in frames:
                            if merged.stopped(index):
                                stopped, tail = index, out
                                break
                            await send({"type": "http.response.body", "body": out, "more_body": True})
                        else:
                            usage = merged.usage
                            if request.include_usage and usage is not None:
                                tail = usage_chunk(completion_id, client_model or single.model, usage)
                            tail += DONE
            except GatewayError as exc:
                logger.warning("stream from %s failed: %s", backend.name, exc.message)
                tail = exc.stream_event()
                facts.error, facts.error_type = exc.message, exc.code or exc.type
            except CoreError as exc:
                logger.exception("stream from %s failed in the core", backend.name)
                error = GatewayError(f"The stream failed in the gateway: {exc}")
                tail = error.stream_event()
                facts.error, facts.error_type = error.message, error.code or error.type
            if stopped is not None and facts.error is None:
                facts.error = provider.redact(merged.translators[stopped].error or "")
                facts.error_type = "upstream_error"
                logger.warning("stream from %s ended with an error: %s", backend.name, facts.error)
            if stopped is not None and provider.secrets:  # the error event as its logged copy (issue 20)
                tail = redact_frames(tail, provider.secrets)
            await send({"type": "http.response.body", "body": tail, "more_body": False})
        except BaseException:
            merged.abort()
            raise
        finally:
            facts.usage = merged.usage
            facts.finish_reason = merged.translators[0].finish_reason
        merged.close()
        return True

    async def _counted(self, attempt: Attempt, count: int | None, send: Send, headers: Headers) -> bool:
        """The answer to ``/v1/messages/count_tokens`` from the upstream's count (issue 19)."""
        if count is None:
            error = UpstreamProtocolError("The upstream's token count could not be read.")
            self._failed(attempt, error, None, [])
            raise error
        self._succeeded(attempt)
        await self._send_json(send, 200, orjson.dumps({"input_tokens": count}), headers)
        return True

    async def _estimated(self, backend: Backend, model: str, request: ChatRequest, send: Send) -> None:
        """``/v1/messages/count_tokens`` for a backend with no counting endpoint (an OpenAI-compatible server): the
        gateway's documented estimate (providers/messages_input.py estimate_input_tokens), no upstream call."""
        now = time.monotonic()
        self.attempts.append(Attempt(backend, model, now, now, 200, "ok"))
        body = orjson.dumps({"input_tokens": estimate_input_tokens(request.body)})
        await self._send_json(send, 200, body, [(b"x-agentgateway-token-count", b"estimate")])

    async def _send_json(self, send: Send, status: int, body: bytes, headers: Headers | None = None) -> None:
        start_headers = _JSON_HEADERS + (headers or []) + self.client_headers
        await send({"type": "http.response.start", "status": status, "headers": start_headers})
        self.status = status
        self.facts.ttft = time.monotonic() - self.started
        await send({"type": "http.response.body", "body": body})

    async def send_error(self, send: Send, error: GatewayError) -> None:
        """Answers with ``error`` (nothing was sent yet) and records it."""
        self.facts.error = error.message
        self.facts.error_type = error.code or error.type
        headers = error.headers
        if self.request_id and not any(name == b"x-request-id" for name, _ in headers):
            headers = [(b"x-request-id", self.request_id.encode()), *headers]
        start_headers = _JSON_HEADERS + headers + self.client_headers
        await send({"type": "http.response.start", "status": error.status, "headers": start_headers})
        self.status = error.status
        await send(
            {"type": "http.response.body", "body": error.anthropic_body() if self.api == "messages" else error.body()}
        )

    # -- the end -------------------------------------------------------------------------------------------------

    def settle(self, *, disconnected: bool = False) -> None:
        """The request is over: every observer sees it once. ``disconnected``: the client went away first."""
        if self.settled:
            return
        self.settled = True
        if disconnected:
            self.status = CLIENT_CLOSED
            if self.attempts and not self.attempts[-1].outcome:
                self.attempts[-1].outcome = "aborted"
                self.attempts[-1].ended = time.monotonic()
        for observer in self.gateway_observers:
            try:
                observer(self)
            except Exception:
                logger.exception("an observer failed while settling a request")

    @property
    def duration(self) -> float:
        return time.monotonic() - self.started


_GENERATED = (b'"content":"', b'"tool_calls":', b'"reasoning_content":"', b'"thinking_blocks":')


def _generated_before_error(frames: bytes) -> bool:
    """Whether the frames ahead of a stream's error event carry generated output (text, reasoning, a tool call).
    Such a stream failed after content, even when content and error came in one read: the upstream generated
    (and billed) it, so it is not retried elsewhere -- whether it is must not depend on how reads split. Only the
    role chunk ahead of the error (Anthropic's message_start) leaves it a failure of the first event."""
    marker = frames.rfind(b'data: {"error"')
    head = frames[:marker] if marker >= 0 else frames
    for frame in head.split(b"\n\n"):
        if any(key in frame for key in _GENERATED):
            try:
                chunk = orjson.loads(frame.partition(b"data: ")[2])
                choices = chunk.get("choices") or []
                for choice in choices:
                    delta = choice.get("delta") or {}
                    if delta.get("content") or delta.get("tool_calls") or delta.get("reasoning_content"):
                        return True
                    if delta.get("thinking_blocks"):
                        return True
            except (orjson.JSONDecodeError, AttributeError, TypeError):
                return True  # unreadable: assume the worst (no retry)
    return False


def _first_event_error(frames: bytes, message: str) -> GatewayError:
    """The error of a stream that failed in its first frames: status and code as the core wrote them."""
    status, code = 502, None
    marker = frames.rfind(b'data: {"error"')
    if marker >= 0:
        try:
            error = orjson.loads(frames[marker + 6 :].split(b"\n\n", 1)[0])["error"]
            status = int(error.get("status") or 502)
            code = error.get("code")
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            pass
    return UpstreamHTTPError.create(status, message, code=code if isinstance(code, str) else None)


class _Refused(Exception):
    """One call of a multi-call attempt got an HTTP error answer: the others are stopped (_fetch_all)."""

    def __init__(self, answer: tuple[UpstreamResponse, bytes]) -> None:
        super().__init__()
        self.answer = answer


async def _fetch(client: UpstreamClient, request: UpstreamRequest) -> tuple[UpstreamResponse, bytes]:
    """Sends ``request`` and reads its answer whole (the connection kept when it can be)."""
    response = await client.send(request)
    try:
        body = await response.read()
    except BaseException:
        response.abort()
        raise
    response.release()
    return response, body


async def _fetch_all(
    client: UpstreamClient, requests: Sequence[UpstreamRequest], concurrency: int
) -> list[tuple[UpstreamResponse, bytes]]:
    """Every answer, in request order, with at most ``concurrency`` requests in flight. The first call that fails
    (raises, or gets an HTTP error) stops the others: a raise is raised, an HTTP error is the only answer returned."""
    if len(requests) == 1:
        return [await _fetch(client, requests[0])]
    slots = asyncio.Semaphore(concurrency)

    async def one(request: UpstreamRequest) -> tuple[UpstreamResponse, bytes]:
        async with slots:
            answer = await _fetch(client, request)
        if answer[0].status >= 400:
            raise _Refused(answer)
        return answer

    tasks = [asyncio.ensure_future(one(request)) for request in requests]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in tasks:
            if task.done() and task.exception() is not None:
                error = task.exception()
                if isinstance(error, _Refused):
                    return [error.answer]
                assert error is not None
                raise error
        return [task.result() for task in tasks]
    finally:
        pending = [task for task in tasks if not task.done()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)


def _anthropic_generated_before_error(frames: bytes) -> bool:
    """`_generated_before_error` for an Anthropic Messages stream: a content block delta (text, thinking, tool
    input) ahead of the ``event: error``."""
    marker = frames.rfind(b"event: error\n")
    head = frames[:marker] if marker >= 0 else frames
    return b"content_block_delta" in head


def _anthropic_first_event_error(frames: bytes, message: str) -> GatewayError:
    """`_first_event_error` for an Anthropic Messages stream: the status its error type stands for."""
    status = 502
    marker = frames.rfind(b"event: error\n")
    if marker >= 0:
        data = frames[marker:].partition(b"data: ")[2].split(b"\n\n", 1)[0]
        try:
            kind = orjson.loads(data)["error"]["type"]
            status = anthropic_status(kind) if isinstance(kind, str) else 502
        except (orjson.JSONDecodeError, KeyError, TypeError):
            pass
    return UpstreamHTTPError.create(status, message)


async def _renewed(provider: Provider, backend: Backend, attempt: Attempt, response: UpstreamResponse) -> bool:
    """Whether ``response`` refused credentials that the provider then renewed (a rotated Bedrock key, an expired
    token): the attempt ends as ``renewed`` and the answer is thrown away, so that the caller sends once more."""
    if not (provider.rejects_credentials(response.status, response.headers) and await provider.credentials_rejected()):
        return False
    logger.info("upstream for %s refused its credentials; retrying once with new ones", backend.name)
    attempt.ended = time.monotonic()
    attempt.outcome = "renewed"
    await _discard(response)
    return True


async def _discard(response: UpstreamResponse) -> None:
    """Read and drop an answer that will not be used, keeping the connection when it can be kept."""
    try:
        await response.read()
    except BaseException:
        response.abort()
        raise
    response.release()
