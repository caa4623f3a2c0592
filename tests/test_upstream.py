"""The upstream HTTP/1.1 client against raw loopback servers that write exact bytes (no HTTP library in between)."""

from __future__ import annotations

import asyncio
import gzip
import shutil
import ssl
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from agentgateway import upstream as upstream_module
from agentgateway.config import Timeouts
from agentgateway.errors import UpstreamProtocolError, UpstreamTimeout, UpstreamUnreachable
from agentgateway.upstream import Endpoint, UpstreamClient, UpstreamRequest, encode_headers

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head, await reader.readexactly(length)


class RawServer:
    """Counts connections and requests; each connection runs ``handler`` once per request."""

    def __init__(self, respond: Callable[[int, bytes], bytes | None], *, close_after: bool = False) -> None:
        self.respond = respond
        self.close_after = close_after
        self.connections = 0
        self.requests: list[tuple[bytes, bytes]] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head, body = await read_request(reader)
                self.requests.append((head, body))
                answer = self.respond(len(self.requests), body)
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
                if self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1/chat/completions"

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()


def request(url: str, body: bytes = b'{"x":1}', headers: dict[str, str] | None = None) -> UpstreamRequest:
    return UpstreamRequest(Endpoint.parse(url), encode_headers(headers or {"Content-Type": "application/json"}), body)


FAST = Timeouts(connect=1, first_byte=0.5, idle=0.5)


def json_answer(payload: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n%sContent-Length: %d\r\n\r\n%s" % (
        extra,
        len(payload),
        payload,
    )


def test_request_bytes_and_keep_alive_reuse() -> None:
    async def run() -> None:
        server = RawServer(lambda n, body: json_answer(b'{"n":%d}' % n))
        async with server as url:
            client = UpstreamClient(FAST)
            for n in (1, 2, 3):
                response = await client.send(request(url, headers={"Authorization": "Bearer k"}))
                assert response.status == 200
                assert await response.read() == b'{"n":%d}' % n
                response.release()
            await client.aclose()
        assert server.connections == 1, "keep-alive connections must be reused"
        head, body = server.requests[0]
        assert head.startswith(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:")
        assert b"\r\nAuthorization: Bearer k\r\n" in head
        assert b"\r\nContent-Length: 7\r\n" in head
        assert b"\r\nAccept-Encoding: identity\r\n" in head
        assert body == b'{"x":1}'

    asyncio.run(run())


def test_chunked_stream_arrives_piece_by_piece() -> None:
    async def run() -> None:
        gate = asyncio.Event()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
            writer.write(b"6\r\ndata: \r\n")
            await writer.drain()
            await gate.wait()
            writer.write(b"3\r\nabc\r\n0\r\n\r\n")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/x"
        client = UpstreamClient(FAST)
        response = await client.send(request(url))
        assert response.status == 200
        assert (b"content-type", b"text/event-stream") in response.headers
        assert await response.read_chunk() == b"data: "
        gate.set()
        assert await response.read_chunk() == b"abc"
        assert await response.read_chunk() == b""
        response.release()
        await client.aclose()
        server.close()

    asyncio.run(run())


def test_close_delimited_body_ends_at_eof() -> None:
    async def run() -> None:
        server = RawServer(lambda n, body: b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nwhole body", close_after=True)
        async with server as url:
            client = UpstreamClient(FAST)
            response = await client.send(request(url))
            assert await response.read() == b"whole body"
            response.release()
            response = await client.send(request(url))  # the first connection cannot be reused
            assert await response.read() == b"whole body"
            await client.aclose()
        assert server.connections == 2

    asyncio.run(run())


def test_gzip_body_is_decoded() -> None:
    async def run() -> None:
        packed = gzip.compress(b'{"ok":true}')
        server = RawServer(lambda n, body: json_answer(packed, b"Content-Encoding: gzip\r\n"))
        async with server as url:
            client = UpstreamClient(FAST)
            response = await client.send(request(url))
            assert await response.read() == b'{"ok":true}'
            await client.aclose()

    asyncio.run(run())


def test_server_closing_an_idle_connection_is_retried_once_on_a_new_one() -> None:
    async def run() -> None:
        # The server answers one request per connection but says nothing about closing: the keep-alive race.
        server = RawServer(lambda n, body: json_answer(b"{}"), close_after=True)
        async with server as url:
            client = UpstreamClient(FAST)
            for _ in range(3):
                response = await client.send(request(url))
                assert await response.read() == b"{}"
                response.release()
                await asyncio.sleep(0.05)  # let the close arrive, or not: both paths must work
            await client.aclose()
        assert len(server.requests) == 3

    asyncio.run(run())


def test_connection_dropped_after_the_request_without_answer_is_502_not_retried() -> None:
    async def run() -> None:
        server = RawServer(lambda n, body: None)  # reads the request, then hangs up
        async with server as url:
            client = UpstreamClient(FAST)
            with pytest.raises(UpstreamUnreachable, match="before answering"):
                await client.send(request(url))
            await client.aclose()
        assert len(server.requests) == 1, "a fresh connection's request may have been processed: never resend"

    asyncio.run(run())


def test_refused_connection_is_502() -> None:
    async def run() -> None:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        client = UpstreamClient(FAST)
        with pytest.raises(UpstreamUnreachable, match=f"127.0.0.1:{port}"):
            await client.send(request(f"http://127.0.0.1:{port}/x"))

    asyncio.run(run())


def test_no_head_within_first_byte_timeout_is_504() -> None:
    async def run() -> None:
        server = RawServer(lambda n, body: b"")  # never answers
        async with server as url:
            client = UpstreamClient(FAST)
            started = asyncio.get_running_loop().time()
            with pytest.raises(UpstreamTimeout, match=r"no response headers within 0\.5s"):
                await client.send(request(url))
            assert asyncio.get_running_loop().time() - started < 1.5
            await client.aclose()

    asyncio.run(run())


def test_silence_in_the_middle_of_a_body_hits_the_idle_timeout() -> None:
    async def run() -> None:
        server = RawServer(lambda n, body: b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        async with server as url:
            client = UpstreamClient(FAST)
            response = await client.send(request(url))
            assert await response.read_chunk() == b"partial"
            with pytest.raises(UpstreamTimeout, match=r"nothing for 0\.5s"):
                await response.read_chunk()
            await client.aclose()

    asyncio.run(run())


def test_idle_limit_shorter_than_first_byte_applies_from_the_first_byte() -> None:
    async def run() -> None:
        server = RawServer(lambda n, body: b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        async with server as url:
            client = UpstreamClient(Timeouts(connect=1, first_byte=30, idle=0.3))
            response = await client.send(request(url))
            assert await response.read_chunk() == b"partial"
            started = asyncio.get_running_loop().time()
            with pytest.raises(UpstreamTimeout, match=r"nothing for 0\.3s"):
                await response.read_chunk()
            assert asyncio.get_running_loop().time() - started < 2
            await client.aclose()

    asyncio.run(run())


def test_a_reused_connection_still_times_out_on_a_later_request() -> None:
    """A keep-alive connection's deadline timer outlives its exchanges (re-armed about once per timeout, not once
    per request): a later request on it still gets its first-byte limit, and its idle limit mid-body."""

    async def run() -> None:
        silent = RawServer(lambda n, body: json_answer(b'{"n":1}') if n == 1 else b"")  # the second: no answer
        stalled = RawServer(
            lambda n, body: json_answer(b'{"n":1}') if n == 1 else b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npart"
        )
        loop = asyncio.get_running_loop()
        async with silent as url:
            client = UpstreamClient(FAST)
            first = await client.send(request(url))
            await first.read()
            first.release()
            # Later than the timer's resolution: the first exchange's timer now fires before this one's deadline.
            await asyncio.sleep(0.2)
            started = loop.time()
            with pytest.raises(UpstreamTimeout, match=r"no response headers within 0\.5s"):
                await asyncio.wait_for(client.send(request(url)), 10)  # a lost timer: a TimeoutError, not a hang
            assert loop.time() - started < 1.5
            assert silent.connections == 1  # the second request went out on the first one's connection
            await client.aclose()
        async with stalled as url:
            client = UpstreamClient(FAST)
            first = await client.send(request(url))
            await first.read()
            first.release()
            await asyncio.sleep(0.2)
            second = await client.send(request(url))
            assert await second.read_chunk() == b"part"
            with pytest.raises(UpstreamTimeout, match=r"nothing for 0\.5s"):
                await asyncio.wait_for(second.read_chunk(), 10)
            assert stalled.connections == 1
            await client.aclose()

    asyncio.run(run())


def test_truncated_body_is_an_error() -> None:
    async def run() -> None:
        server = RawServer(lambda n, body: b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial", close_after=True)
        async with server as url:
            client = UpstreamClient(FAST)
            response = await client.send(request(url))
            with pytest.raises(UpstreamUnreachable, match="in the middle of the response"):
                await response.read()
            await client.aclose()

    asyncio.run(run())


def test_garbage_instead_of_http_is_a_protocol_error() -> None:
    async def run() -> None:
        server = RawServer(lambda n, body: b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        async with server as url:
            client = UpstreamClient(FAST)
            with pytest.raises(UpstreamProtocolError):
                await client.send(request(url))
            await client.aclose()

    asyncio.run(run())


def test_header_values_with_line_breaks_are_refused() -> None:
    with pytest.raises(ValueError, match="Authorization header contains a line break"):
        encode_headers({"Authorization": "Bearer a\r\nX-Evil: 1"})


def test_a_slow_reader_pauses_the_upstream_instead_of_buffering_everything() -> None:
    async def run() -> None:
        total = 64 * 1024 * 1024
        sent = 0

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal sent
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % total)
            piece = b"x" * 65536
            while sent < total:
                writer.write(piece)
                sent += len(piece)
                await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/x"
        client = UpstreamClient(Timeouts(connect=1, first_byte=5, idle=5))
        response = await client.send(request(url))
        await asyncio.sleep(0.5)  # the client reads nothing for a while
        assert sent < total / 2, f"the upstream was read ahead by {sent} bytes"
        received = 0
        while chunk := await response.read_chunk():
            received += len(chunk)
        assert received == total
        response.release()
        await client.aclose()
        server.close()

    asyncio.run(run())


def _self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a certificate")
def test_tls_upstream_is_verified_against_the_trust_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key = _self_signed_certificate(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)

    async def run(trusted: bool) -> None:
        server = RawServer(lambda n, body: json_answer(b'{"tls":true}'))
        listener = await asyncio.start_server(server.handle, "127.0.0.1", 0, ssl=server_context)
        port = listener.sockets[0].getsockname()[1]
        client = UpstreamClient(FAST)
        try:
            if trusted:
                for _ in range(2):
                    response = await client.send(request(f"https://localhost:{port}/v1/chat/completions"))
                    assert await response.read() == b'{"tls":true}'
                    response.release()
                assert server.connections == 1, "TLS connections are kept alive and reused too"
            else:
                with pytest.raises(UpstreamUnreachable, match="TLS handshake"):
                    await client.send(request(f"https://localhost:{port}/v1/chat/completions"))
        finally:
            await client.aclose()
            listener.close()

    asyncio.run(run(trusted=False))  # a certificate nobody vouches for is refused
    # OpenSSL's default verify paths honour SSL_CERT_FILE: trusting our certificate makes the same server fine.
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    asyncio.run(run(trusted=True))


def test_a_whole_answer_larger_than_the_flow_control_window_is_read() -> None:
    payload = b"x" * (3 << 20)  # far above the 256 KiB at which reading pauses

    async def run() -> None:
        async with RawServer(lambda n, body: json_answer(payload)) as url:
            client = UpstreamClient(FAST)
            response = await client.send(request(url))
            assert await asyncio.wait_for(response.read(), 5) == payload
            response.release()
            await client.aclose()

    asyncio.run(run())


def test_a_whole_answer_over_the_limit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(upstream_module, "MAX_WHOLE_BODY_BYTES", 1 << 20)

    async def run() -> None:
        async with RawServer(lambda n, body: json_answer(b"x" * (2 << 20))) as url:
            client = UpstreamClient(FAST)
            response = await client.send(request(url))
            with pytest.raises(UpstreamProtocolError, match="larger than 1 MiB"):
                await response.read()
            await client.aclose()

    asyncio.run(run())
