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


def _text_value(value: str) -> str:
    if value and _SAFE.issuperset(value):
        return value
    return orjson.dumps(value).decode()  # quoted, with control characters escaped: no forged lines


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

    def write(self, fields: dict[str, Any]) -> None:
        """``fields`` in order; None values are left out."""
        stamp = self._time()
        if self._json:
            line = orjson.dumps({"time": stamp, **{k: v for k, v in fields.items() if v is not None}}) + b"\n"
        else:
            parts = [stamp, "request"]
            for name, value in fields.items():
                if value is None:
                    continue
                if isinstance(value, str):
                    parts.append(f"{name}={_text_value(value)}")
                elif isinstance(value, float):
                    parts.append(f"{name}={value:.6g}")
                else:
                    parts.append(f"{name}={value}")
            line = (" ".join(parts) + "\n").encode()
        with contextlib.suppress(OSError):  # a closed stdout must not fail requests
            os.write(self._fd, line)
