"""``n`` > 1 on providers that answer one choice per call (issue 20): Anthropic, Claude on Vertex AI and Bedrock
Converse get ``n`` concurrent copies of one upstream request, and their answers are merged into one.

- Whole answers: the calls are one attempt of `Exchange._whole` (`FanOut` is its operation): sent at once, read to
  their end, translated each by the core and merged -- ``choices`` in call order with indexes ``0..n-1``, the usage
  summed field by field (every call bills its prompt: prompt tokens are summed as the upstream counted them), the
  ``id``, ``created`` and ``model`` of the first. The first call that fails (an HTTP error, a reset, a timeout)
  cancels the others and is the attempt's error, with failover to the route's next target as for one call.
- Streams (`Exchange._fan_out_stream`): one core translator per call, each writing its call as choice ``i``
  (``StreamTranslator(..., choice=i, completion_id=...)``: that index in every chunk, one id for the whole answer,
  no ``[DONE]``). The first frames of every call are held back, so that a call refused or failing in its first
  event moves the whole request to the next target before a byte reaches the client; then the calls' chunks are
  forwarded as they arrive, interleaved, each with its own index. After every call ended: one usage chunk with the
  summed usage (when the client asked ``stream_options.include_usage``) and ``data: [DONE]`` once. A call that
  fails mid-stream ends the client's stream with its error event and the other calls are cancelled.

Facts (usage, finish reason of choice 0) are the merged ones, so limits, spend and metrics see what was billed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from ._core import CoreError, StreamTranslator, UpstreamReportedError, translate_response
from .errors import GatewayError, UpstreamHTTPError, UpstreamProtocolError
from .providers import ChatRequest
from .upstream import UpstreamClient, UpstreamRequest, UpstreamResponse

if TYPE_CHECKING:
    from .backend import Backend

__all__ = [
    "FanOut",
    "MergedStream",
    "open_all",
    "single_choice",
    "sum_usage",
    "usage_chunk",
]

Usage = tuple[int, int, int, int | None, int | None, int | None]
Headers = list[tuple[bytes, bytes]]

DONE = b"data: [DONE]\n\n"


def single_choice(request: ChatRequest) -> ChatRequest:
    """``request`` as each of the calls sends it: without ``n`` (the providers have no such field)."""
    body = {key: value for key, value in request.body.items() if key != "n"}
    return request.derive(request.model, body)


def sum_usage(usages: Sequence[Usage | None]) -> Usage | None:
    """The usage of the merged answer: each count summed over the calls that reported one (an optional count stays
    None when no call reported it); None when none reported usage."""
    reported = [usage for usage in usages if usage is not None]
    if not reported:
        return None

    def total(index: int) -> int | None:
        values = [usage[index] for usage in reported if usage[index] is not None]
        return sum(values) if values else None  # type: ignore[arg-type]

    return (
        sum(usage[0] for usage in reported),
        sum(usage[1] for usage in reported),
        sum(usage[2] for usage in reported),
        total(3),
        total(4),
        total(5),
    )


def _sum_fields(into: dict[str, Any], other: Any) -> None:
    """Adds the numbers of the usage object ``other`` to ``into`` (nested details objects too)."""
    if not isinstance(other, dict):
        return
    for key, value in other.items():
        mine = into.get(key)
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float):
            into[key] = (mine if isinstance(mine, int | float) and not isinstance(mine, bool) else 0) + value
        elif isinstance(value, dict):
            if not isinstance(mine, dict):
                mine = into[key] = {}
            _sum_fields(mine, value)


def merge_answers(bodies: Sequence[bytes]) -> bytes:
    """One ``chat.completion`` from the calls' (translated) answers: see the module docs."""
    answers = [orjson.loads(body) for body in bodies]
    merged = answers[0]
    choices: list[Any] = []
    usage: dict[str, Any] = {}
    reported = False
    for answer in answers:
        for choice in answer.get("choices") or []:
            choice["index"] = len(choices)
            choices.append(choice)
        if isinstance(answer.get("usage"), dict):
            reported = True
            _sum_fields(usage, answer["usage"])
    merged["choices"] = choices
    if reported:
        merged["usage"] = usage
    return orjson.dumps(merged)


class FanOut:
    """`Exchange._whole`'s operation for a whole answer fanned out to ``n`` calls."""

    __slots__ = ("n",)

    def __init__(self, n: int) -> None:
        self.n = n

    def calls(self, backend: Backend, request: ChatRequest, model: str, client_model: str) -> _FanOutCalls:
        """``request`` is the attempt's, already derived for ``backend`` (Backend.request_for)."""
        return _FanOutCalls(backend, single_choice(request), self.n, client_model)


class _FanOutCalls:
    __slots__ = ("backend", "client_model", "concurrency", "n", "request")

    def __init__(self, backend: Backend, request: ChatRequest, n: int, client_model: str) -> None:
        self.backend = backend
        self.request = request
        self.n = n
        self.concurrency = n
        self.client_model = client_model

    async def prepare(self) -> list[UpstreamRequest]:
        # One request built (and signed) once, sent n times: the calls are identical.
        return [await self.backend.prepare(self.request)] * self.n

    def answer(self, bodies: list[bytes], headers: list[Headers]) -> tuple[bytes, Usage | None]:
        provider = self.backend.provider
        translator = provider.translator_for(self.request)
        model = provider.response_model(self.client_model, self.request)
        translated: list[bytes] = []
        usages: list[Usage | None] = []
        for body in bodies:
            try:
                out, usage = translate_response(translator, body, model, "openai")
            except UpstreamReportedError as exc:
                message, status, code = exc.args
                raise UpstreamHTTPError.create(status, provider.redact(message), code=code) from None
            except CoreError as exc:
                raise UpstreamProtocolError(f"The upstream's answer could not be read: {exc}") from None
            translated.append(out)
            usages.append(usage)
        return merge_answers(translated), sum_usage(usages)


class _Refused(Exception):
    def __init__(self, response: UpstreamResponse) -> None:
        super().__init__()
        self.response = response


async def open_all(
    client: UpstreamClient, request: UpstreamRequest, n: int
) -> tuple[list[UpstreamResponse], UpstreamResponse | None]:
    """Sends ``request`` ``n`` times at once and waits for every response head: ``(responses, None)``, or
    ``([], refused)`` for the first that answered an HTTP error, the others cancelled (and their connections
    dropped). A call that raises cancels the others and the error is raised."""

    async def one() -> UpstreamResponse:
        response = await client.send(request)
        if response.status >= 400:
            raise _Refused(response)
        return response

    tasks = [asyncio.ensure_future(one()) for _ in range(n)]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        failed = next((task for task in tasks if task.done() and task.exception() is not None), None)
        if failed is None:
            return [task.result() for task in tasks], None
        error = failed.exception()
        assert error is not None
        for task in tasks:
            if task is not failed and task.done() and task.exception() is None:
                task.result().abort()
        if isinstance(error, _Refused):
            return [], error.response
        raise error
    except BaseException:
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is None:
                task.result().abort()
        raise
    finally:
        pending = [task for task in tasks if not task.done()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
        for task in tasks:  # retrieved, so that no "exception was never retrieved" is logged
            if task.done() and not task.cancelled():
                task.exception()


def usage_chunk(completion_id: str, model: str, usage: Usage) -> bytes:
    """The final ``chat.completion.chunk`` with no choices and the summed usage (as the core writes one)."""
    body = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [],
        "usage": {
            "prompt_tokens": usage[0],
            "completion_tokens": usage[1],
            "total_tokens": usage[2],
            "prompt_tokens_details": {"cached_tokens": usage[3] or 0},
            "completion_tokens_details": {"reasoning_tokens": usage[5] or 0},
        },
    }
    return b"data: " + orjson.dumps(body) + b"\n\n"


class MergedStream:
    """The calls of one fanned-out stream: their responses and translators, read concurrently."""

    __slots__ = ("ended", "eof", "responses", "translators")

    def __init__(self, responses: list[UpstreamResponse], translators: list[StreamTranslator]) -> None:
        self.responses = responses
        self.translators = translators
        #: per call: nothing more is read (its body ended, or its translator ended the stream with an error).
        self.ended = [False] * len(responses)
        #: per call: its upstream body was read to its end (the connection can be kept).
        self.eof = [False] * len(responses)

    def _step(self, index: int, chunk: bytes) -> bytes:
        translator = self.translators[index]
        if not chunk:
            self.ended[index] = self.eof[index] = True
            return translator.finish()
        out = translator.feed(chunk)
        if translator.failed or translator.error is not None:
            self.ended[index] = True
        return out

    async def _first(self, index: int) -> bytes:
        out = b""
        while not out and not self.ended[index]:
            out = self._step(index, await self.responses[index].read_chunk())
        return out

    async def first_frames(self) -> list[bytes]:
        """Every call's first frames (read until each call's translator wrote something, or its stream ended).
        Raises the first call's GatewayError (a reset, a timeout); the caller aborts."""
        tasks = [asyncio.ensure_future(self._first(index)) for index in range(len(self.responses))]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in tasks:
                if task.done() and task.exception() is not None:
                    error = task.exception()
                    assert error is not None
                    raise error
            return [task.result() for task in tasks]
        finally:
            await _cancel(tasks)

    def stopped(self, index: int) -> bool:
        """Whether call ``index`` ended the client's stream with an error event (nothing may follow it)."""
        return self.translators[index].error is not None

    async def rest(self) -> AsyncGenerator[tuple[int, bytes]]:
        """``(call, frames)`` as the calls' translators write them, interleaved as their reads arrive, until every
        call ended -- or one wrote an error event (then nothing more). A call's GatewayError is raised."""
        queue: asyncio.Queue[tuple[int, bytes, BaseException | None]] = asyncio.Queue(maxsize=len(self.responses))

        async def pump(index: int) -> None:
            try:
                while not self.ended[index]:
                    out = self._step(index, await self.responses[index].read_chunk())
                    if out:
                        await queue.put((index, out, None))
                        if self.stopped(index):
                            return
            except (GatewayError, CoreError) as exc:
                await queue.put((index, b"", exc))
                return
            await queue.put((index, b"", None))

        running = [index for index, ended in enumerate(self.ended) if not ended]
        tasks = [asyncio.ensure_future(pump(index)) for index in running]
        left = len(tasks)
        try:
            while left:
                index, out, error = await queue.get()
                if error is not None:
                    raise error
                if not out:
                    left -= 1
                    continue
                yield index, out
                if self.stopped(index):
                    return
        finally:
            await _cancel(tasks)

    def close(self) -> None:
        """Connections of calls read to their end go back to the pool; the others are dropped (the upstream stops
        generating for a call cancelled)."""
        for response, eof in zip(self.responses, self.eof, strict=True):
            if eof:
                response.release()
            else:
                response.abort()

    def abort(self) -> None:
        for response in self.responses:
            response.abort()

    @property
    def usage(self) -> Usage | None:
        return sum_usage([translator.usage for translator in self.translators])


async def _cancel(tasks: Sequence[asyncio.Future[Any]]) -> None:
    pending = [task for task in tasks if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)
    for task in tasks:
        if task.done() and not task.cancelled():
            task.exception()
