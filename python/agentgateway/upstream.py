"""The upstream HTTP/1.1 client: keep-alive connection pools over asyncio Protocols, framing in the Rust core.

Why not aiohttp: measured on the 2-core bench box, an aiohttp ``ClientSession`` round trip costs ~115 µs of CPU
per request, twice the gateway's whole budget; writing the request ourselves and handing each network read to
the core's sans-IO ``ResponseParser`` costs ~20 µs (numbers in benches/README.md). The gateway only ever sends
one kind of request -- a POST with a body to a fixed endpoint -- so the client stays small:

- one pool of idle keep-alive connections per origin (scheme, host, port), reused last-in first-out;
- TLS with the system's trust store and certificate checks (``ssl.create_default_context``);
- timeouts: ``connect``; ``first_byte`` until the response head; ``idle`` between two reads of the body;
- bodies flow back as they arrive (one ``read_chunk`` per network read), with flow control so that a slow client
  never makes the gateway buffer an upstream's whole answer;
- a reused connection that the server closed before answering (the keep-alive race) is retried once on a fresh
  connection: the server never saw the request. A request that got any byte back is never retried.

Every failure is raised as the GatewayError the client should see (502, 504, or a protocol error).
"""

from __future__ import annotations

import asyncio
import ssl
import zlib
from dataclasses import dataclass
from urllib.parse import urlsplit

from . import __version__
from ._core import CoreError, ResponseParser
from .config import Timeouts
from .errors import UpstreamProtocolError, UpstreamTimeout, UpstreamUnreachable

__all__ = ["Endpoint", "UpstreamClient", "UpstreamRequest", "UpstreamResponse", "encode_headers", "header_line"]

# Flow control: stop reading from the upstream while this much decoded body waits for the client.
# A whole (non-streamed) answer is held in memory to be translated: past this size it is refused.
MAX_WHOLE_BODY_BYTES = 64 * 1024 * 1024
_HIGH_WATER = 256 * 1024
_LOW_WATER = 64 * 1024
# Idle keep-alive connections older than this are closed instead of reused: servers drop idle connections
# after their own timeout (nginx 75 s, many load balancers 60 s), and reusing one at that moment wastes a try.
_IDLE_EXPIRY = 30.0
_MAX_IDLE_PER_ORIGIN = 512


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


@dataclass(slots=True)
class UpstreamRequest:
    endpoint: Endpoint
    #: Encoded header lines (``Name: value\r\n`` each), built with `encode_headers` / `header_line`.
    headers: bytes
    body: bytes


def header_line(name: bytes, value: bytes) -> bytes:
    """One header line; a value with a line break (which would smuggle headers upstream) raises ValueError."""
    if b"\r" in value or b"\n" in value:
        raise ValueError(f"the value of the {name.decode('latin-1')} header contains a line break")
    return b"%s: %s\r\n" % (name, value)


def encode_headers(headers: dict[str, str]) -> bytes:
    """Header lines for headers known when the config loads: providers encode them once, not per request."""
    return b"".join(header_line(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items())


def _encode_head(request: UpstreamRequest) -> bytes:
    return b"%s%sContent-Length: %d\r\n\r\n" % (request.endpoint.request_start, request.headers, len(request.body))


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
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0

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
            self.complete = True
            self._cancel_timer()
        self._wake()

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._cancel_timer()
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
                reason = f": {exc}" if exc is not None else ""
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
        self._cancel_timer()
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
                if abort:
                    self.transport.abort()
                else:
                    self.transport.close()

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
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.loop.call_at(when, self._on_timer)
        self.timer_at = when

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _on_timer(self) -> None:
        # One timer per exchange: data only moves the deadline; the timer re-arms itself when it fires early.
        self.timer = None
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


class _Pool:
    """The idle keep-alive connections to one origin."""

    def __init__(self, endpoint: Endpoint, timeouts: Timeouts, ssl_context: ssl.SSLContext | None) -> None:
        self.endpoint = endpoint
        self.timeouts = timeouts
        self.ssl_context = ssl_context
        self.loop = asyncio.get_running_loop()
        self.idle: list[_Connection] = []

    def acquire_idle(self) -> _Connection | None:
        # Connections the server closed while idle are marked closed by connection_lost and skipped here.
        now = self.loop.time()
        while self.idle:
            connection = self.idle.pop()
            if connection.closed:
                continue
            if now - connection.idle_since > _IDLE_EXPIRY:
                connection.close()
                continue
            return connection
        return None

    async def connect(self) -> _Connection:
        endpoint = self.endpoint
        where = f"{endpoint.host}:{endpoint.port}"
        try:
            _, connection = await asyncio.wait_for(
                self.loop.create_connection(
                    lambda: _Connection(self),
                    endpoint.host,
                    endpoint.port,
                    ssl=self.ssl_context,
                    server_hostname=endpoint.host if self.ssl_context is not None else None,
                ),
                self.timeouts.connect,
            )
        except asyncio.TimeoutError:
            raise UpstreamTimeout(
                f"Connecting to the upstream {where} took longer than {self.timeouts.connect:g}s."
            ) from None
        except ssl.SSLError as exc:
            raise UpstreamUnreachable(f"The TLS handshake with the upstream {where} failed: {exc}") from None
        except OSError as exc:
            raise UpstreamUnreachable(f"Could not connect to the upstream {where}: {exc.strerror or exc}") from None
        return connection

    def give_back(self, connection: _Connection) -> None:
        if len(self.idle) >= _MAX_IDLE_PER_ORIGIN:
            connection.close()
            return
        connection.idle_since = self.loop.time()
        self.idle.append(connection)

    def close_idle(self) -> None:
        while self.idle:
            self.idle.pop().close()


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
    """A body the server compressed although we asked for ``identity`` (gzip and deflate are undone)."""

    __slots__ = ("_decompressor",)

    def __init__(self, connection: _Connection, encoding: bytes) -> None:
        super().__init__(connection)
        # wbits 47 accepts a gzip or zlib header; "deflate" in the wild is either zlib or raw deflate.
        self._decompressor = zlib.decompressobj(47 if encoding == b"gzip" else 15)

    def _decode(self, data: bytes) -> bytes:
        try:
            return self._decompressor.decompress(data)
        except zlib.error as exc:
            raise UpstreamProtocolError(f"The upstream's compressed body is corrupt: {exc}") from None


class UpstreamClient:
    """One per worker process: the pools of every upstream origin the config names."""

    def __init__(self, timeouts: Timeouts) -> None:
        self.timeouts = timeouts
        self._pools: dict[tuple[bool, str, int], _Pool] = {}
        self._ssl_context: ssl.SSLContext | None = None
        self.user_agent = f"agentgateway/{__version__}"

    def reconfigure(self, timeouts: Timeouts) -> None:
        """A reloaded config's timeouts, for the next exchange of every pool (the pools themselves are kept)."""
        self.timeouts = timeouts
        for pool in self._pools.values():
            pool.timeouts = timeouts

    def _pool(self, endpoint: Endpoint) -> _Pool:
        key = (endpoint.tls, endpoint.host, endpoint.port)
        pool = self._pools.get(key)
        if pool is None:
            context = None
            if endpoint.tls:
                if self._ssl_context is None:
                    self._ssl_context = ssl.create_default_context()
                    self._ssl_context.set_alpn_protocols(["http/1.1"])
                context = self._ssl_context
            pool = self._pools[key] = _Pool(endpoint, self.timeouts, context)
        return pool

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        """Sends the request and waits for the response head; raises the GatewayError a client should see."""
        pool = self._pool(request.endpoint)
        head = _encode_head(request)
        for attempt in range(2):
            connection = pool.acquire_idle()
            reused = connection is not None
            if connection is None:
                connection = await pool.connect()
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
            for name, value in connection.head[1]:
                if name == b"content-encoding" and value.lower() not in (b"identity", b""):
                    if value.lower() in (b"gzip", b"x-gzip", b"deflate"):
                        return _DecodingResponse(connection, value.lower().replace(b"x-", b""))
                    connection.abort()
                    raise UpstreamProtocolError(
                        f"The upstream used an unsupported content-encoding: {value.decode('latin-1')}"
                    )
            return UpstreamResponse(connection)
        raise AssertionError("unreachable")

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close_idle()
        self._pools.clear()
