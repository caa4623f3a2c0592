"""The access log: one line per request on standard output (``config.logging.format``: text or json).

Fields: time, request id, the upstream's request id, caller name, model asked, backend used, attempts, status,
input / output / cached / reasoning tokens, cost (USD), duration and time to first token (seconds), error type.
Never a key, a header value or message text: what the client sent appears only as the model name it asked for,
quoted. Each line is written with one ``write()`` on the file descriptor (whole lines, even with N workers
writing to one pipe or file), not through ``logging``: a LogRecord and its formatting alone cost more than the
whole budget of the line.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any

import orjson

__all__ = ["AccessLog"]

_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:/@*+")


_QUOTED: dict[str, str] = {}


def _text(value: str | None) -> str:
    """A logfmt value: as it is when it is safe, else quoted with control characters escaped (no forged lines)."""
    if value is None:
        return "-"
    quoted = _QUOTED.get(value)
    if quoted is None:
        quoted = value if value and _SAFE.issuperset(value) else orjson.dumps(value).decode()
        if len(_QUOTED) < 4096:  # clients choose model names: bounded
            _QUOTED[value] = quoted
    return quoted


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


class AccessLog:
    __slots__ = ("_fd", "_json", "_second", "_stamp")

    def __init__(self, fmt: str, fd: int = 1) -> None:
        self._json = fmt == "json"
        self._fd = fd
        self._second = -1
        self._stamp = ""

    def _time(self) -> str:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._stamp}.{int((now - second) * 1000):03d}Z"

    def write(
        self,
        request_id: str,
        upstream_id: str | None,
        caller: str | None,
        model: str | None,
        backend: str | None,
        attempts: int,
        status: int,
        tokens: tuple[int, int, int, int] | None,  # input, output, cached, reasoning
        cost: float | None,
        duration: float,
        ttft: float | None,
        error: str | None,
    ) -> None:
        """One line; in text, ``-`` stands for a value that is not known (no usage, no upstream, ...)."""
        stamp = self._time()
        if self._json:
            fields: dict[str, Any] = {"time": stamp, "id": request_id}
            if upstream_id is not None:
                fields["upstream_id"] = upstream_id
            if caller is not None:
                fields["caller"] = caller
            if model is not None:
                fields["model"] = model
            if backend is not None:
                fields["backend"] = backend
            fields["attempts"] = attempts
            fields["status"] = status
            if tokens is not None:
                fields["input"], fields["output"], fields["cached"], fields["reasoning"] = tokens
            if cost is not None:
                fields["cost"] = cost
            fields["duration"] = round(duration, 6)
            if ttft is not None:
                fields["ttft"] = round(ttft, 6)
            if error is not None:
                fields["error"] = error
            line = orjson.dumps(fields, option=orjson.OPT_APPEND_NEWLINE)
        else:
            if tokens is None:
                counts = "input=- output=- cached=- reasoning=-"
            else:
                counts = f"input={tokens[0]} output={tokens[1]} cached={tokens[2]} reasoning={tokens[3]}"
            line = (
                f"{stamp} request id={_text(request_id)} upstream_id={_text(upstream_id)} caller={_text(caller)} "
                f"model={_text(model)} backend={_text(backend)} attempts={attempts} status={status} {counts} "
                f"cost={_number(cost)} duration={duration:.6f} ttft={_number(ttft)} error={_text(error)}\n"
            ).encode()
        with contextlib.suppress(OSError):  # a closed stdout must not fail requests
            os.write(self._fd, line)
