"""The keep-alive race, pinned without timing (README: "a reused connection closed by the server before answering
is retried once"; upstream.py).

The raw server answers the first request on each connection and closes the connection on the second one after
reading it, without a byte of answer: exactly what a server that timed the idle connection out at the moment the
request went out does. No sleep decides which path runs: the second request always meets the closed connection.
"""

from __future__ import annotations

import asyncio

import pytest
from agentgateway.config import Timeouts
from agentgateway.errors import UpstreamUnreachable
from agentgateway.upstream import Endpoint, UpstreamClient, UpstreamRequest, encode_headers

FAST = Timeouts(connect=1, first_byte=2, idle=2)
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


class OneAnswerPerConnection:
    """Answers the first ``answered`` requests of each connection (keep-alive, no ``Connection: close``), then reads
    the next request and hangs up without answering it."""

    def __init__(self, answered: int = 1, *, answer_fresh: bool = True) -> None:
        self.answered = answered
        self.answer_fresh = answer_fresh
        self.connections = 0
        self.requests: list[tuple[int, bytes]] = []  # (connection number, body)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        try:
            served = 0
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                self.requests.append((number, await reader.readexactly(length)))
                if served >= self.answered or (number > 1 and not self.answer_fresh):
                    break  # the request was read; the connection closes with no byte of answer
                writer.write(ANSWER)
                await writer.drain()
                served += 1
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/v1/chat/completions"

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()


def request(url: str, body: bytes) -> UpstreamRequest:
    return UpstreamRequest(Endpoint.parse(url), encode_headers({"Content-Type": "application/json"}), body)


def test_a_reused_connection_closed_before_answering_is_retried_once_on_a_new_one() -> None:
    async def run() -> None:
        server = OneAnswerPerConnection()
        async with server as url:
            client = UpstreamClient(FAST)
            first = await client.send(request(url, b'{"n":1}'))
            assert await first.read() == b"{}"
            first.release()  # back to the pool: the next request reuses this connection
            second = await client.send(request(url, b'{"n":2}'))
            assert await second.read() == b"{}"
            second.release()
            await client.aclose()
        # n=2 went out twice: on the reused connection (closed unanswered) and once more on a fresh one.
        assert server.requests == [(1, b'{"n":1}'), (1, b'{"n":2}'), (2, b'{"n":2}')]

    asyncio.run(run())


def test_the_retry_happens_once_only() -> None:
    async def run() -> None:
        # The fresh connection of the retry is dropped too: that request may have been processed, so it is a 502.
        server = OneAnswerPerConnection(answer_fresh=False)
        async with server as url:
            client = UpstreamClient(FAST)
            first = await client.send(request(url, b'{"n":1}'))
            assert await first.read() == b"{}"
            first.release()
            with pytest.raises(UpstreamUnreachable, match="before answering"):
                await client.send(request(url, b'{"n":2}'))
            await client.aclose()
        assert server.requests == [(1, b'{"n":1}'), (1, b'{"n":2}'), (2, b'{"n":2}')]

    asyncio.run(run())
