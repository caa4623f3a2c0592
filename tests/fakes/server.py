"""Runs a fake upstream (an aiohttp app) on 127.0.0.1 from a daemon thread, as the tests' session fixtures need."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from aiohttp import web


async def stream_in_pieces(
    request: web.Request, data: bytes, piece: int, content_type: str = "text/event-stream"
) -> web.StreamResponse:
    """Answer with ``data`` written ``piece`` bytes at a time: awkward split points, as a network delivers them."""
    response = web.StreamResponse(headers={"content-type": content_type})
    await response.prepare(request)
    for start in range(0, len(data), piece):
        await response.write(data[start : start + piece])
    await response.write_eof()
    return response


def serve_in_thread(app: web.Application, name: str) -> tuple[str, Callable[[], None]]:
    """Starts ``app`` on a free port; returns ``http://127.0.0.1:<port>`` and the function that stops it."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    ready = threading.Event()
    origin: list[str] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        origin.append(f"http://127.0.0.1:{runner.addresses[0][1]}")
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True, name=name)
    thread.start()
    if not ready.wait(10):
        raise RuntimeError(f"{name} did not start")

    def stop() -> None:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()

    return origin[0], stop


def blackhole() -> tuple[int, Callable[[], None]]:
    """A loopback port whose connects never complete (a listener with a full accept queue: the kernel drops further
    SYNs), as a firewalled or overloaded upstream behaves; returns the port and the function that closes it."""
    import contextlib
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = int(listener.getsockname()[1])
    fillers = []
    for _ in range(3):  # fill the accept queue (never accepted)
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)

    def close() -> None:
        for sock in (*fillers, listener):
            sock.close()

    return port, close
