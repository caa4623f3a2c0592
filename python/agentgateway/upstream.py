"""The upstream HTTP/1.1 client: keep-alive connection pools over asyncio Protocols, framing in the Rust core.

Why not aiohttp: measured on the 2-core bench box, an aiohttp ``ClientSession`` round trip costs ~115 µs of CPU
per request, twice the gateway's whole budget; writing the request ourselves and handing each network read to
the core's sans-IO ``ResponseParser`` costs ~20 µs (numbers in benches/README.md). The gateway only ever sends
one kind of request -- a POST with a body to a fixed endpoint -- so the client stays small:

- one pool of idle keep-alive connections per origin (backend TLS, scheme, host, port), reused last-in first-out;
- TLS with the system's trust store (or ``SSL_CERT_FILE``) and certificate checks (``ssl.create_default_context``),
  or a model entry's backend TLS (``tls`` / ``backendTLS``: its CA bundle, client certificate for mTLS, host name;
  `ClientTLS`, built once when the config loads); a refused certificate is a 502 that says why;
- timeouts: ``connect``; ``first_byte`` until the response head; ``idle`` between two reads of the body;
- bodies flow back as they arrive (one ``read_chunk`` per network read), with flow control so that a slow client
  never makes the gateway buffer an upstream's whole answer;
- a reused connection that the server closed before answering (the keep-alive race) is retried once on a fresh
  connection: the server never saw the request. A request that got any byte back is never retried;
- at most ``max_connections`` (``config.backend.maxConnections``, default 100 as aiohttp's) open connections per
  origin: past that a request waits for one to come back, for up to the connect timeout, instead of opening one
  connection per request in flight;
- ``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``NO_PROXY`` (lower-case forms first, as urllib reads them -- the same rules
  the Google and AWS token fetches follow): https upstreams through an HTTP ``CONNECT`` tunnel, http upstreams as
  absolute-form requests; credentials in the proxy URL are sent as ``Proxy-Authorization: Basic`` (never logged);
- gzip and deflate (zlib or raw) bodies are decoded with end-of-stream and truncation checks, and the decoded size
  is bounded as it is produced (a small compressed bomb is refused, never inflated).

Every failure is raised as the GatewayError the client should see (502, 504, or a protocol error).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import hashlib
import math
import os
import re
import ssl
import tempfile
import urllib.request
import weakref
import zlib
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import unquote, urlsplit

from . import __version__
from ._core import CoreError, ResponseParser
from .config import BackendPool, GatewayConfig, Timeouts
from .errors import UpstreamProtocolError, UpstreamTimeout, UpstreamUnreachable

__all__ = [
    "ClientTLS",
    "Endpoint",
    "UpstreamClient",
    "UpstreamRequest",
    "UpstreamResponse",
    "client_tls",
    "encode_headers",
    "header_line",
]

# Flow control: stop reading from the upstream while this much decoded body waits for the client.
# A whole (non-streamed) answer is held in memory to be translated: past this size it is refused.
MAX_WHOLE_BODY_BYTES = 64 * 1024 * 1024
_HIGH_WATER = 256 * 1024
_LOW_WATER = 64 * 1024
# Idle keep-alive connections older than this are closed instead of reused: servers drop idle connections
# after their own timeout (nginx 75 s, many load balancers 60 s), and reusing one at that moment wastes a try.
_IDLE_EXPIRY = 30.0
_MAX_IDLE_PER_ORIGIN = 512
#: Open connections per origin (busy, idle and connecting), as aiohttp's TCPConnector limit.
DEFAULT_MAX_CONNECTIONS = 100
# A streamed answer is decoded at most this much per read: a compressed bomb cannot inflate in one call.
_DECODE_STEP = 1024 * 1024
# The largest head a proxy may answer CONNECT with.
_MAX_PROXY_HEAD = 16384
# OpenSSL's source location at the end of an SSLError's text: noise to a user.
_SSL_SOURCE = re.compile(r"\s*\(_ssl\.c:\d+\)$")


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where requests for one provider go, parsed once from its URL."""

    url: str
    tls: bool
    host: str
    port: int
    #: ``POST <path> HTTP/1.1``, ``Host``, ``User-Agent``, ``Accept-Encoding``: the constant start of every head.
    request_start: bytes

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        host_header = parts.netloc.rsplit("@", 1)[-1]
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        # We ask for an uncompressed body: SSE must flow event by event, and the CPU is better spent elsewhere.
        start = (
            f"POST {path} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: agentgateway/{__version__}\r\n"
            "Accept-Encoding: identity\r\n"
        ).encode("ascii")
        return cls(url, tls, parts.hostname, port, start)


# -- backend TLS: the trust and client certificate of one model entry, built once when the config loads ------------

#: ALPN we offer: the client speaks HTTP/1.1 only.
_ALPN = ["http/1.1"]


class ClientTLS:
    """How to make TLS connections to one backend (``tls`` / ``backendTLS`` of a model entry, config.BackendTLS):
    the SSLContext -- built once, when the config loads, never per request -- and the name checked in the
    upstream's certificate. Equal settings over equal file contents are one object (`client_tls` keeps them), so
    pools keyed by it survive a reload and two entries with different settings never share a connection."""

    __slots__ = ("__weakref__", "client_certificate", "context", "fingerprint", "insecure", "server_hostname", "trust")

    def __init__(
        self,
        context: ssl.SSLContext,
        server_hostname: str | None,
        trust: str,
        insecure: bool,
        fingerprint: bytes,
        client_certificate: bool = False,
    ) -> None:
        self.context = context
        #: whether a client certificate is presented (mTLS)
        self.client_certificate = client_certificate
        #: SNI and the name verified (agentgateway's ``hostname``); None: the endpoint's host
        self.server_hostname = server_hostname
        #: what the certificate is checked against, for error messages (paths, never contents)
        self.trust = trust
        self.insecure = insecure
        self.fingerprint = fingerprint

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ClientTLS) and other.fingerprint == self.fingerprint

    def __hash__(self) -> int:
        return hash(self.fingerprint)

    def __repr__(self) -> str:
        return f"ClientTLS(trust={self.trust!r}, server_hostname={self.server_hostname!r})"


_CLIENT_TLS: weakref.WeakValueDictionary[bytes, ClientTLS] = weakref.WeakValueDictionary()


def system_trust() -> str:
    """The trust a default connection uses, for messages: the system store, or what SSL_CERT_FILE / SSL_CERT_DIR
    name instead (OpenSSL reads them; ``ssl.create_default_context`` honours them)."""
    named = [f"{var}={os.environ[var]}" for var in ("SSL_CERT_FILE", "SSL_CERT_DIR") if os.environ.get(var)]
    return f"the system trust store ({', '.join(named)})" if named else "the system trust store"


def client_tls(
    *,
    root: tuple[str, str] | None = None,
    system_roots: bool = False,
    cert: tuple[str, str] | None = None,
    key: tuple[str, str] | None = None,
    hostname: str | None = None,
    insecure: bool = False,
    insecure_host: bool = False,
    alpn: bool = True,
) -> ClientTLS:
    """The TLS of one backend. ``root``, ``cert`` and ``key`` are ``(path, PEM text)``: the caller reads the files
    (config.py, so that a worker gets the texts the main process validated). ``root`` replaces the system trust
    (as agentgateway's), ``system_roots`` keeps the system trust beside it; ``alpn`` False offers no ALPN (else
    ``http/1.1``, the one protocol this client speaks). ValueError names what is wrong."""
    digest = hashlib.sha256()
    for part in (
        root[1] if root else "",
        cert[1] if cert else "",
        key[1] if key else "",
        hostname or "",
        f"{system_roots or root is None}{insecure}{insecure_host}{alpn}",
        system_trust(),
    ):
        digest.update(part.encode() + b"\0")
    fingerprint = digest.digest()
    found = _CLIENT_TLS.get(fingerprint)
    if found is not None:
        return found
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # TLS 1.2+, CERT_REQUIRED, host names checked
    trusts = []
    if root is None or system_roots:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
        trusts.append(system_trust())
    if root is not None:
        path, text = root
        try:
            context.load_verify_locations(cadata=text)
        except ssl.SSLError as exc:
            raise ValueError(f"{path}: not a PEM certificate bundle ({exc.reason or exc})") from None
        trusts.append(path)
    if (cert is None) != (key is None):
        raise ValueError("cert and key go together: give both (the client certificate and its private key)")
    if cert is not None and key is not None:
        _load_client_certificate(context, cert, key)
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif insecure_host:
        context.check_hostname = False
    if alpn:
        context.set_alpn_protocols(_ALPN)
    trust = " and ".join(trusts)
    if insecure:
        trust = "nothing (insecure: true)"
    elif insecure_host:
        trust += ", host name not checked (insecureHost: true)"
    made = ClientTLS(context, hostname, trust, insecure or insecure_host, fingerprint, cert is not None)
    _CLIENT_TLS[fingerprint] = made
    return made


def _load_client_certificate(context: ssl.SSLContext, cert: tuple[str, str], key: tuple[str, str]) -> None:
    """``load_cert_chain`` reads files only: the texts go through a private temporary directory, removed at once."""

    def no_password() -> bytes:
        raise ValueError(f"{key[0]}: the private key is encrypted; give an unencrypted PEM key")

    with tempfile.TemporaryDirectory(prefix="agentgateway-tls-") as directory:  # mode 0700
        cert_file, key_file = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
        for path, text in ((cert_file, cert[1]), (key_file, key[1])):
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                handle.write(text)
        try:
            context.load_cert_chain(cert_file, key_file, password=no_password)
        except ssl.SSLError as exc:
            reason = exc.reason or str(exc)
            if reason == "KEY_VALUES_MISMATCH":
                problem = f"{key[0]} is not the private key of the certificate in {cert[0]}"
            elif "PEM" in reason or "NO_START_LINE" in reason or reason.startswith("X509"):
                problem = f"{cert[0]} / {key[0]}: not a PEM certificate and private key ({reason})"
            else:
                problem = f"{cert[0]} / {key[0]}: cannot be used as a client certificate ({reason})"
            raise ValueError(problem) from None


@dataclass(slots=True)
class UpstreamRequest:
    endpoint: Endpoint
    #: Encoded header lines (``Name: value\r\n`` each), built with `encode_headers` / `header_line`.
    headers: bytes
    body: bytes
    #: the model entry's backend TLS (Backend.prepare sets it); None: the system trust (or SSL_CERT_FILE)
    tls: ClientTLS | None = None


def header_line(name: bytes, value: bytes) -> bytes:
    """One header line; a value with a line break (which would smuggle headers upstream) raises ValueError."""
    if b"\r" in value or b"\n" in value:
        raise ValueError(f"the value of the {name.decode('latin-1')} header contains a line break")
    return b"%s: %s\r\n" % (name, value)


def encode_headers(headers: dict[str, str]) -> bytes:
    """Header lines for headers known when the config loads: providers encode them once, not per request."""
    return b"".join(header_line(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items())


@dataclass(frozen=True, slots=True)
class Proxy:
    """The HTTP proxy one origin is reached through (from the environment, as urllib reads it)."""

    host: str
    port: int
    #: ``Proxy-Authorization`` header line (``Basic``, from ``user:password@`` in the URL), or ``b""``.
    authorization: bytes
    #: the variable it came from and ``host:port``, for messages (credentials never appear in them).
    where: str
    #: set when the URL cannot be used (e.g. an ``https://`` proxy): connecting raises this message.
    problem: str | None = None


def proxy_for(tls: bool, host: str, port: int, proxies: dict[str, str]) -> Proxy | None:
    """The proxy for an origin, per ``proxies`` (``urllib.request.getproxies_environment()``: ``https_proxy`` /
    ``HTTPS_PROXY``, ``http_proxy`` / ``HTTP_PROXY``, and ``no_proxy`` / ``NO_PROXY`` -- host names, domain
    suffixes, ``host:port``, ``*``), or None to connect directly."""
    scheme = "https" if tls else "http"
    url = proxies.get(scheme)
    if not url:
        return None
    if "no" in proxies and urllib.request.proxy_bypass_environment(f"{host}:{port}", proxies):  # type: ignore[attr-defined]
        return None
    variable = f"{scheme}_proxy"
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    try:
        proxy_port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        proxy_port = 0
    where = f"{parts.hostname}:{proxy_port}"
    if parts.scheme != "http" or not parts.hostname or not proxy_port:
        return Proxy(
            parts.hostname or "",
            proxy_port,
            b"",
            where,
            f"the proxy set in {variable} must be an http:// URL with a host (TLS to the proxy itself is not "
            f"supported), got scheme {parts.scheme!r}",
        )
    authorization = b""
    if parts.username is not None:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        authorization = b"Proxy-Authorization: Basic " + base64.b64encode(credentials) + b"\r\n"
    return Proxy(parts.hostname, proxy_port, authorization, f"{where} ({variable})")


class _Tunnel(asyncio.Protocol):
    """The CONNECT exchange with a proxy, before TLS to the upstream starts on the same socket."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.answer: asyncio.Future[bytes] = self.loop.create_future()
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.answer.done():
            if b"\r\n\r\n" in self.buffer:
                self.answer.set_result(self.buffer)
            elif len(self.buffer) > _MAX_PROXY_HEAD:
                self.answer.set_exception(UpstreamUnreachable("The proxy's answer to CONNECT is too long."))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.answer.done():
            self.answer.set_exception(UpstreamUnreachable("The proxy closed the connection during CONNECT."))


class _StaleConnection(Exception):
    """A reused connection closed before any byte of the answer: the request can be sent again."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection. It serves one request at a time; between requests it sits in its pool."""

    def __init__(self, pool: _Pool) -> None:
        self.pool = pool
        self.loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self.reused = False
        #: holds one of its pool's max_connections slots until it closes.
        self.counted = False
        #: the connection's one deadline timer, which fires at ``timer_at``, never after the exchange's deadline
        #: (it re-arms itself when it fires early). It outlives exchanges: a keep-alive connection re-arms it about
        #: once per timeout, not once per request (a ``call_at`` and ``cancel`` cost ~1.5 µs).
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = math.inf
        self._reset_exchange()

    def _reset_exchange(self) -> None:
        self.parser: ResponseParser | None = None
        self.head: tuple[int, list[tuple[bytes, bytes]]] | None = None
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.paused = False
        self.complete = False
        self.error: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.received_any = False
        self.deadline = 0.0

    # -- asyncio.Protocol ----------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        parser = self.parser
        if parser is None:
            # Bytes while idle: the server broke the protocol. Never reuse this connection.
            self.close()
            return
        self.received_any = True
        try:
            head, body = parser.feed(data)
        except CoreError as exc:
            self._fail(UpstreamProtocolError(f"The upstream's HTTP response could not be read: {exc}"))
            return
        if head is not None:
            self.head = head
        deadline = self.deadline = self.loop.time() + self.pool.timeouts.idle
        if deadline < self.timer_at and not parser.complete:
            # The first byte moved the deadline from first_byte to the (shorter) idle limit: fire at that one.
            self._arm_timer(deadline)
        if body:
            self.chunks.append(body)
            self.buffered += len(body)
            if self.buffered > _HIGH_WATER and not self.paused and self.transport is not None:
                self.paused = True
                self.transport.pause_reading()
        if parser.complete:
            self.complete = True  # the timer stays: it finds nothing to time when it fires, or the next exchange
        self._wake()

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._cancel_timer()
        self._forget()
        self.pool.closing.finished(self)
        if self.parser is None or self.complete or self.error is not None:
            return
        if not self.received_any and self.reused:
            self.error = _StaleConnection()
        else:
            try:
                self.parser.finish()  # a body delimited by the end of the connection ends here
                self.complete = True
            except CoreError as error:
                where = "before answering" if self.head is None else "in the middle of the response"
                reason = f": {_SSL_SOURCE.sub('', str(exc))}" if exc is not None else ""
                if self.head is None and not self.received_any:
                    reason += self.pool.tls_hint(exc)
                self.error = UpstreamUnreachable(f"The upstream connection failed {where} ({error}){reason}")
        self._wake()

    # -- one request/response exchange -------------------------------------------------------------------------

    def start(self, head: bytes, body: bytes, reused: bool) -> None:
        assert self.transport is not None
        self._reset_exchange()
        self.reused = reused
        self.parser = ResponseParser()
        self.deadline = self.loop.time() + self.pool.timeouts.first_byte
        self._arm_timer(self.deadline)
        if len(body) < 16384:
            self.transport.write(head + body)
        else:
            self.transport.writelines((head, body))

    async def wait(self) -> None:
        """Until something changes: more body, the head, the end, or an error."""
        if self.error is not None:
            raise self.error
        waiter = self.waiter = self.loop.create_future()
        try:
            await waiter
        finally:
            self.waiter = None
        if self.error is not None:
            raise self.error

    def take(self) -> bytes:
        if not self.chunks:
            return b""
        chunks = self.chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self.buffered = 0
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return data

    def release(self) -> None:
        """Back to the pool when the answer was read to its end and the server keeps the connection open."""
        parser = self.parser
        self.parser = None
        if self.closed or not self.complete or parser is None or not parser.keep_alive or self.chunks:
            self.close()
        else:
            self.pool.give_back(self)

    def close(self) -> None:
        self._shut(abort=False)

    def abort(self) -> None:
        """For a cancelled exchange: drop the connection at once (a reset) so the upstream stops generating."""
        self._shut(abort=True)

    def _shut(self, *, abort: bool) -> None:
        self.parser = None
        self._cancel_timer()
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.pool.closing.started(self)
                if abort:
                    self.transport.abort()
                else:
                    self.transport.close()
        self._forget()

    def _forget(self) -> None:
        if self.counted:
            self.counted = False
            self.pool.slot_freed()

    # -- internals ---------------------------------------------------------------------------------------------

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
        self._wake()
        self.abort()

    def _arm_timer(self, when: float) -> None:
        """A timer that fires by ``when``: the one armed already when it fires no later."""
        timer = self.timer
        if timer is not None:
            if self.timer_at <= when:
                return
            timer.cancel()
        self.timer = self.loop.call_at(when, self._on_timer)
        self.timer_at = when

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
            self.timer_at = math.inf

    def _on_timer(self) -> None:
        # Data only moves the deadline; the timer re-arms itself when it fires early, and ends with no exchange.
        self.timer = None
        self.timer_at = math.inf
        if self.parser is None or self.complete:
            return
        if self.loop.time() < self.deadline:
            self._arm_timer(self.deadline)
            return
        timeouts = self.pool.timeouts
        if self.head is None:
            self._fail(UpstreamTimeout(f"The upstream sent no response headers within {timeouts.first_byte:g}s."))
        else:
            self._fail(
                UpstreamTimeout(f"The upstream sent nothing for {timeouts.idle:g}s in the middle of the response.")
            )


class _Closing:
    """The connections of one client whose transport is still closing: a TLS transport sends its close_notify
    from the loop, so ``UpstreamClient.aclose`` waits for these before the loop may end."""

    def __init__(self) -> None:
        self.connections: set[_Connection] = set()
        self.drained: asyncio.Future[None] | None = None

    def started(self, connection: _Connection) -> None:
        self.connections.add(connection)

    def finished(self, connection: _Connection) -> None:
        connections = self.connections
        connections.discard(connection)
        if not connections and self.drained is not None and not self.drained.done():
            self.drained.set_result(None)


class _Pool:
    """The idle keep-alive connections to one origin."""

    def __init__(
        self,
        endpoint: Endpoint,
        timeouts: Timeouts,
        ssl_context: ssl.SSLContext | None,
        proxy: Proxy | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        *,
        server_hostname: str | None = None,
        trust: str = "",
        client_certificate: bool = False,
        max_idle: int = _MAX_IDLE_PER_ORIGIN,
        idle_expiry: float = _IDLE_EXPIRY,
        closing: _Closing | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.closing = _Closing() if closing is None else closing
        self.timeouts = timeouts
        self.ssl_context = ssl_context
        #: the name sent as SNI and checked in the certificate (backend TLS ``hostname``, else the endpoint's host)
        self.server_hostname = server_hostname or endpoint.host
        #: what the upstream's certificate is checked against (for the message when it is refused)
        self.trust = trust
        #: whether a client certificate (mTLS) is presented, for the message when the upstream hangs up
        self.client_certificate = client_certificate
        self.proxy = proxy
        self.max_idle = max_idle
        self.idle_expiry = idle_expiry
        self.loop = asyncio.get_running_loop()
        self.idle: list[_Connection] = []
        self.max_connections = max_connections
        #: connections open or being opened (each holds a slot); requests past the cap wait in ``waiters``.
        self.open = 0
        self.waiters: collections.deque[asyncio.Future[_Connection | None]] = collections.deque()
        #: an http upstream through a proxy: the request line in absolute form, per endpoint (None: direct).
        self.absolute: dict[bytes, bytes] | None = {} if proxy is not None and ssl_context is None else None

    def tls_hint(self, exc: Exception | None) -> str:
        """What to check when a new TLS connection ends before any byte of the answer: a server that wants a
        client certificate says so with an alert (TLS 1.3 sends it after the handshake, so it arrives here) or,
        for some servers, just closes."""
        if self.ssl_context is None:
            return ""
        if isinstance(exc, ssl.SSLError) and "CERTIFICATE_REQUIRED" in (exc.reason or ""):
            if self.client_certificate:
                return " -- the upstream did not accept the client certificate of tls.cert"
            return " -- the upstream requires a client certificate (mTLS): set tls.cert and tls.key"
        # A hang-up reaches us as an EOF or, when the server closed with our data unread, as a reset.
        if (exc is None or isinstance(exc, ConnectionResetError)) and not self.client_certificate:
            return (
                " -- an upstream that requires a client certificate (mTLS) may hang up like this, and none is "
                "presented (tls.cert, tls.key)"
            )
        return ""

    def head(self, request: UpstreamRequest) -> bytes:
        start = request.endpoint.request_start
        if self.absolute is not None:
            start = self.absolute.get(start) or self._absolute_form(start)
        return b"%s%sContent-Length: %d\r\n\r\n" % (start, request.headers, len(request.body))

    def _absolute_form(self, start: bytes) -> bytes:
        assert self.absolute is not None and self.proxy is not None
        line, _, rest = start.partition(b"\r\n")
        method, _, target = line.partition(b" ")
        endpoint = self.endpoint
        origin = f"http://{endpoint.host}:{endpoint.port}".encode("ascii")
        rewritten = b"%s %s%s\r\n%s%s" % (method, origin, target, self.proxy.authorization, rest)
        self.absolute[start] = rewritten
        return rewritten

    async def acquire(self) -> tuple[_Connection, bool]:
        """An idle connection (reused: True), else a new one while fewer than max_connections are open, else the
        first one given back -- waiting up to the connect timeout."""
        while True:
            connection = self.acquire_idle()
            if connection is not None:
                return connection, True
            if self.open < self.max_connections:
                self.open += 1
                return await self._connect_in_slot(), False
            handed = await self._wait_turn()
            if handed is None:  # a connection closed: its slot is ours
                return await self._connect_in_slot(), False
            if not handed.closed:
                return handed, True
            # closed on its way to us: its slot was passed on already; try again.

    async def _connect_in_slot(self) -> _Connection:
        try:
            connection = await self.connect()
        except BaseException:
            self.slot_freed()
            raise
        connection.counted = True
        if connection.closed:
            connection._forget()
            endpoint = self.endpoint
            raise UpstreamUnreachable(f"The upstream {endpoint.host}:{endpoint.port} closed the new connection.")
        return connection

    async def _wait_turn(self) -> _Connection | None:
        waiter: asyncio.Future[_Connection | None] = self.loop.create_future()
        self.waiters.append(waiter)
        timeout = self.timeouts.connect
        endpoint = self.endpoint

        def expire() -> None:
            if not waiter.done():
                waiter.set_exception(
                    UpstreamTimeout(
                        f"All {self.max_connections} connections to the upstream {endpoint.host}:{endpoint.port} "
                        f"stayed busy for {timeout:g}s."
                    )
                )

        timer = self.loop.call_later(timeout, expire)
        try:
            return await waiter
        except asyncio.CancelledError:
            # Cancelled after being handed a slot or a connection: pass it on.
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                handed = waiter.result()
                if handed is None:
                    self.slot_freed()
                else:
                    self.give_back(handed)
            raise
        finally:
            timer.cancel()

    def slot_freed(self) -> None:
        """A connection closed (or failed to open): its slot goes to the first waiting request, if any -- unless a
        reload lowered the cap below what is open: then the slot is gone."""
        waiters = self.waiters
        while waiters and self.open <= self.max_connections:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.open -= 1

    def acquire_idle(self) -> _Connection | None:
        # Connections the server closed while idle are marked closed by connection_lost and skipped here.
        now = self.loop.time()
        while self.idle:
            connection = self.idle.pop()
            if connection.closed:
                continue
            if now - connection.idle_since > self.idle_expiry:
                connection.close()
                continue
            return connection
        return None

    async def connect(self) -> _Connection:
        endpoint = self.endpoint
        where = f"{endpoint.host}:{endpoint.port}"
        proxy = self.proxy
        if proxy is not None:
            if proxy.problem is not None:
                raise UpstreamUnreachable(f"Cannot reach the upstream {where}: {proxy.problem}.")
            where += f" through the proxy {proxy.where}"
        try:
            if proxy is None:
                _, connection = await asyncio.wait_for(
                    self.loop.create_connection(
                        lambda: _Connection(self),
                        endpoint.host,
                        endpoint.port,
                        ssl=self.ssl_context,
                        server_hostname=self.server_hostname if self.ssl_context is not None else None,
                    ),
                    self.timeouts.connect,
                )
            elif self.ssl_context is None:
                # Plain http through the proxy: requests go to it in absolute form (see head()).
                _, connection = await asyncio.wait_for(
                    self.loop.create_connection(lambda: _Connection(self), proxy.host, proxy.port),
                    self.timeouts.connect,
                )
            else:
                connection = await asyncio.wait_for(self._tunnel(proxy), self.timeouts.connect)
        except asyncio.TimeoutError:
            raise UpstreamTimeout(
                f"Connecting to the upstream {where} took longer than {self.timeouts.connect:g}s."
            ) from None
        except ssl.SSLCertVerificationError as exc:
            # e.g. "certificate verify failed: unable to get local issuer certificate" (a CA not trusted) or
            # "Hostname mismatch, certificate is not valid for 'x'": say which, and what it was checked against.
            raise UpstreamUnreachable(
                f"The TLS handshake with the upstream {where} failed: certificate verify failed: "
                f"{exc.verify_message or exc.reason} [{exc.reason}]; the certificate was checked against "
                f"{self.trust or system_trust()}."
            ) from None
        except ssl.SSLError as exc:
            # e.g. "[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] tlsv13 alert certificate required": no client
            # certificate (mTLS) was configured, or the upstream did not accept it.
            problem = _SSL_SOURCE.sub("", exc.strerror or str(exc))
            raise UpstreamUnreachable(f"The TLS handshake with the upstream {where} failed: {problem}") from None
        except OSError as exc:
            target = f"the proxy {proxy.where}" if proxy is not None else f"the upstream {where}"
            raise UpstreamUnreachable(f"Could not connect to {target}: {exc.strerror or exc}") from None
        return connection

    async def _tunnel(self, proxy: Proxy) -> _Connection:
        """An https upstream through ``CONNECT``: the tunnel, then TLS with the upstream inside it."""
        endpoint = self.endpoint
        authority = f"{endpoint.host}:{endpoint.port}".encode("idna")
        transport, tunnel = await self.loop.create_connection(_Tunnel, proxy.host, proxy.port)
        try:
            transport.write(b"CONNECT %s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (authority, authority, proxy.authorization))
            answer = await tunnel.answer
            status_line = answer.split(b"\r\n", 1)[0].decode("latin-1")
            parts = status_line.split(" ", 2)
            if len(parts) < 2 or not parts[1].startswith("2"):
                raise UpstreamUnreachable(
                    f"The proxy {proxy.where} refused the tunnel to {endpoint.host}:{endpoint.port}: "
                    f"{' '.join(parts[1:]) or repr(status_line)}"
                )
            assert self.ssl_context is not None
            secure = await self.loop.start_tls(
                transport, tunnel, self.ssl_context, server_hostname=self.server_hostname
            )
        except BaseException:
            transport.abort()
            raise
        if secure is None:
            raise UpstreamUnreachable(f"The proxy {proxy.where} closed the tunnel during the TLS handshake.")
        connection = _Connection(self)
        secure.set_protocol(connection)
        connection.connection_made(secure)
        return connection

    def give_back(self, connection: _Connection) -> None:
        if self.open > self.max_connections:  # a reload lowered the cap: shrink as connections come back
            connection.close()
            return
        waiters = self.waiters
        while waiters:  # a request waits for a connection (the cap was reached): it gets this one
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return
        if len(self.idle) >= self.max_idle:
            connection.close()
            return
        connection.idle_since = self.loop.time()
        self.idle.append(connection)

    def close_idle(self) -> None:
        while self.idle:
            self.idle.pop().close()

    def retire(self) -> None:
        """No entry uses this pool any more: connections given back close instead of waiting idle."""
        self.max_idle = 0
        self.close_idle()

    def resize(self, max_connections: int, max_idle: int, idle_expiry: float) -> None:
        """A reloaded config's limits. A higher cap lets waiting requests open connections at once; a lower one
        takes effect as connections close (none is cut in the middle of an answer)."""
        self.max_connections, self.max_idle, self.idle_expiry = max_connections, max_idle, idle_expiry
        while len(self.idle) > max_idle:
            self.idle.pop(0).close()  # the oldest first
        waiters = self.waiters
        while waiters and self.open < max_connections:
            waiter = waiters.popleft()
            if not waiter.done():
                self.open += 1
                waiter.set_result(None)  # a slot: the request opens its own connection


class UpstreamResponse:
    """The answer to one request: status and headers at once, the body as it arrives."""

    __slots__ = ("_connection", "headers", "status")

    def __init__(self, connection: _Connection) -> None:
        assert connection.head is not None
        self._connection = connection
        self.status, self.headers = connection.head

    async def read(self) -> bytes:
        """The whole (decoded) body."""
        connection = self._connection
        if connection.complete:
            return self._decode(connection.take())
        # Take what arrives as it arrives: reading pauses while 256 KiB wait to be taken, so waiting for the end
        # without taking would stall a larger answer for good.
        chunks = []
        size = 0
        while True:
            data = self._decode(connection.take())
            size += len(data)
            if size > MAX_WHOLE_BODY_BYTES:
                self.abort()
                raise UpstreamProtocolError(
                    f"The upstream's answer is larger than {MAX_WHOLE_BODY_BYTES >> 20} MiB; ask for a stream instead."
                )
            chunks.append(data)
            if connection.complete:
                return b"".join(chunks)
            await connection.wait()

    async def read_chunk(self) -> bytes:
        """The body bytes that arrived since the last call (waiting for some); ``b""`` at the end."""
        connection = self._connection
        while True:
            data = connection.take()
            if data:
                return self._decode(data)
            if connection.complete:
                return b""
            await connection.wait()

    def _decode(self, data: bytes) -> bytes:
        return data

    def release(self) -> None:
        self._connection.release()

    def abort(self) -> None:
        self._connection.abort()


class _DecodingResponse(UpstreamResponse):
    """A body the server compressed although we asked for ``identity``: gzip, and deflate as zlib or raw deflate
    (both are called "deflate" in the wild). The end of the compressed stream must come with the end of the body
    (else it was truncated), nothing may follow it, and the decoded size is bounded as it is produced: a small
    compressed bomb is refused after MAX_WHOLE_BODY_BYTES, never inflated whole."""

    __slots__ = ("_decompressor", "_gzip", "_prefix", "_produced")

    def __init__(self, connection: _Connection, encoding: bytes) -> None:
        super().__init__(connection)
        self._gzip = encoding == b"gzip"
        self._decompressor: Any = None
        self._prefix = b""
        self._produced = 0

    async def read(self) -> bytes:
        connection = self._connection
        chunks = []
        while True:
            # A bound one byte past the limit: reaching it means the body is too large.
            data = self._inflate(connection.take(), MAX_WHOLE_BODY_BYTES - self._produced + 1)
            if data:
                chunks.append(data)
            if connection.complete and not connection.chunks:
                self._end()
                return b"".join(chunks)
            await connection.wait()

    async def read_chunk(self) -> bytes:
        connection = self._connection
        while True:
            data = connection.take()
            if data or self._pending():
                decoded = self._inflate(data, _DECODE_STEP)
                if decoded:
                    return decoded
            if connection.complete and not connection.chunks and not self._pending():
                self._end()
                return b""
            await connection.wait()

    def _pending(self) -> bool:
        return self._decompressor is not None and bool(self._decompressor.unconsumed_tail)

    def _inflate(self, data: bytes, limit: int) -> bytes:
        decompressor = self._decompressor
        if decompressor is None:
            data = self._prefix + data
            if not self._gzip and len(data) < 2:
                self._prefix = data  # the two bytes that tell zlib from raw deflate are not all here yet
                return b""
            self._prefix = b""
            # zlib's header: CM 8 and a check value that makes the first two bytes a multiple of 31.
            zlib_header = len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
            decompressor = self._decompressor = zlib.decompressobj(31 if self._gzip else 15 if zlib_header else -15)
        if decompressor.unconsumed_tail:
            data = decompressor.unconsumed_tail + data
        if decompressor.eof:
            if data:
                self._fail("data follows the end of the compressed body")
            return b""
        try:
            decoded: bytes = decompressor.decompress(data, limit)
        except zlib.error as exc:
            self._fail(f"corrupt ({exc})")
        self._produced += len(decoded)
        if self._produced > MAX_WHOLE_BODY_BYTES:
            self._fail(f"larger than {MAX_WHOLE_BODY_BYTES >> 20} MiB once decoded (a compression bomb?)")
        if decompressor.eof and decompressor.unused_data:
            self._fail("data follows the end of the compressed body")
        return decoded

    def _end(self) -> None:
        if self._decompressor is None:
            if self._prefix:
                self._fail("truncated")
            return  # an empty body: nothing was compressed
        if not self._decompressor.eof:
            self._fail("truncated (the compressed stream did not end)")

    def _fail(self, problem: str) -> NoReturn:
        self.abort()
        raise UpstreamProtocolError(f"The upstream's compressed body is {problem}.")


class UpstreamClient:
    """One per worker process: the pools of every upstream origin the config names, one per (backend TLS, scheme,
    host, port) -- two entries with different TLS settings to the same host never share a connection.

    ``pool``: ``config.backend`` -- connections per origin (``maxConnections``, ext), idle ones kept
    (``poolMaxSize``) and for how long (``poolIdleTimeout``)."""

    def __init__(
        self,
        timeouts: Timeouts,
        *,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        pool: BackendPool | None = None,
    ) -> None:
        self.timeouts = timeouts
        self.max_connections = max_connections
        self.max_idle = _MAX_IDLE_PER_ORIGIN
        self.idle_expiry = _IDLE_EXPIRY
        if pool is not None:
            self._limits(pool)
        self._pools: dict[tuple[ClientTLS | None, bool, str, int], _Pool] = {}
        self._closing = _Closing()
        self._ssl_context: ssl.SSLContext | None = None
        self.user_agent = f"agentgateway/{__version__}"
        # Read once: the environment of the process (HTTPS_PROXY, HTTP_PROXY, NO_PROXY and lower-case forms).
        self._proxies = urllib.request.getproxies_environment()

    def _limits(self, pool: BackendPool) -> None:
        self.max_connections = pool.max_connections
        size = pool.pool_max_size
        self.max_idle = _MAX_IDLE_PER_ORIGIN if size is None else min(size, _MAX_IDLE_PER_ORIGIN)
        self.idle_expiry = pool.pool_idle_timeout

    def reconfigure(self, timeouts: Timeouts, config: GatewayConfig | None = None) -> None:
        """A reloaded config's timeouts and ``config.backend`` limits, for the next exchange of every pool (the
        pools and their connections are kept). The pools of a backend TLS no entry uses any more are retired: their
        idle connections close now, the busy ones when their answer ends."""
        self.timeouts = timeouts
        in_use: set[ClientTLS] | None = None
        if config is not None:
            self._limits(config.config.backend)
            in_use = {entry.tls.client for entry in config.llm.models if entry.tls is not None}
        for key, each in list(self._pools.items()):
            each.timeouts = timeouts
            if in_use is not None and key[0] is not None and key[0] not in in_use:
                del self._pools[key]
                each.retire()
            elif config is not None:
                each.resize(self.max_connections, self.max_idle, self.idle_expiry)

    def _pool(self, endpoint: Endpoint, tls: ClientTLS | None) -> _Pool:
        key = (tls, endpoint.tls, endpoint.host, endpoint.port)
        pool = self._pools.get(key)
        if pool is None:
            context = None
            server_hostname = trust = None
            if endpoint.tls:
                if tls is not None:
                    context, server_hostname, trust = tls.context, tls.server_hostname, tls.trust
                else:
                    if self._ssl_context is None:
                        self._ssl_context = ssl.create_default_context()
                        self._ssl_context.set_alpn_protocols(_ALPN)
                    context = self._ssl_context
            proxy = proxy_for(endpoint.tls, endpoint.host, endpoint.port, self._proxies)
            pool = self._pools[key] = _Pool(
                endpoint,
                self.timeouts,
                context,
                proxy,
                self.max_connections,
                server_hostname=server_hostname,
                trust=trust or "",
                client_certificate=tls is not None and tls.client_certificate,
                max_idle=self.max_idle,
                idle_expiry=self.idle_expiry,
                closing=self._closing,
            )
        return pool

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        """Sends the request and waits for the response head; raises the GatewayError a client should see."""
        pool = self._pool(request.endpoint, request.tls)
        head = pool.head(request)
        for attempt in range(2):
            connection, reused = await pool.acquire()
            connection.start(head, request.body, reused)
            try:
                while connection.head is None:
                    await connection.wait()
            except _StaleConnection:
                if attempt == 0:
                    # One dead idle connection usually means they all are (the server restarted or timed them
                    # out together): drop them, so the retry goes out on a fresh connection.
                    pool.close_idle()
                    continue
                raise UpstreamUnreachable("The upstream closed the connection before answering.") from None
            except BaseException:
                connection.abort()
                raise
            decoding: bytes | None = None
            for name, value in connection.head[1]:
                if name == b"content-encoding" and value.lower() not in (b"identity", b""):
                    if value.lower() in (b"gzip", b"x-gzip", b"deflate"):
                        decoding = value.lower().replace(b"x-", b"")
                        continue
                    connection.abort()
                    raise UpstreamProtocolError(
                        f"The upstream used an unsupported content-encoding: {value.decode('latin-1')}"
                    )
                if name == b"transfer-encoding" and value.strip().lower() != b"chunked":
                    # The core de-chunks; any other transfer coding (gzip, chunked; or an unknown one) would reach
                    # the client still encoded.
                    connection.abort()
                    raise UpstreamProtocolError(
                        f"The upstream used an unsupported transfer-coding: {value.decode('latin-1')}"
                    )
            if decoding is not None:
                return _DecodingResponse(connection, decoding)
            return UpstreamResponse(connection)
        raise AssertionError("unreachable")

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close_idle()
        self._pools.clear()

    async def aclose(self, grace: float = 2.0) -> None:
        """``close``, then wait until every connection this client closed has finished closing (at most ``grace``
        seconds, then the rest are reset): a TLS transport's shutdown runs on the loop, and a loop that ends first
        leaves it for the garbage collector to find unclosed."""
        self.close()
        closing = self._closing
        if not closing.connections:
            return
        closing.drained = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(asyncio.shield(closing.drained), grace)
        except TimeoutError:
            for connection in list(closing.connections):
                if connection.transport is not None:
                    connection.transport.abort()
            await asyncio.sleep(0)  # abort's connection_lost runs on the next iteration
        finally:
            closing.drained = None
