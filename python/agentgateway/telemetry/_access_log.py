"""The access log: one line per request on standard output (``config.logging.format``: text or json).

Fields: time, request id, the upstream's request id, caller name, model asked, backend used, attempts, status,
input / output / cached / reasoning tokens, cost (USD), duration and time to first token (seconds), error type.
Never a key, a header value or message text: what the client sent appears only as the model name it asked for,
quoted. Lines are written with ``write()`` on the file descriptor, not through ``logging``: a LogRecord and its
formatting alone cost more than the whole budget of the line.

`write` adds a line; `flush` writes the lines added since in one ``write()`` (Telemetry flushes once per
event-loop iteration, benches/README.md 2026-12-01: a ``write()`` per request releases the GIL for the system
call, and granian's threads under load take it each time). A batch never exceeds ``PIPE_BUF`` (4096 bytes), so
whole lines stay whole with N workers writing to one pipe or file; a line that does not fit closes the batch, which
is written at once.

The lines wait in the core (``AccessLogBatches``, rust/sse_core/src/stats.rs), which also writes the line with
the own fields only: the text line byte for byte what `_text_line` writes (its floats as Python's ``format`` writes
them), the JSON line what orjson writes of the same dict (its floats as orjson writes them). A line with fields
added or removed (`_custom`, or orjson's dict), or values the core does not take, is written here; so are the
system calls.
"""

from __future__ import annotations

import os
import time
from typing import Any

import orjson

from .._core import AccessLogBatches

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


def _id(value: str | None) -> str:
    """A request id (ours are hex, an upstream's mostly letters, digits, ``-`` and ``_``): unique per request, so
    checked without the memo, which they would only fill."""
    if value is None:
        return "-"
    if value.isalnum() and value.isascii():
        return value
    return value if value and _SAFE.issuperset(value) else orjson.dumps(value).decode()


#: Writes of at most this many bytes to a pipe are atomic (POSIX PIPE_BUF; 4096 on Linux).
_BATCH_BYTES = 4096


def _value(value: Any) -> str:
    """An added (CEL) field's value in a text line: numbers and booleans as they are, strings as `_text` quotes
    them (without its memo: values are per request), anything else as quoted JSON; None is ``-``."""
    if value is None:
        return "-"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return value if value and _SAFE.issuperset(value) else orjson.dumps(value).decode()
    return orjson.dumps(_json_value(value)).decode()


def _json_value(value: Any) -> Any:
    """An added field's value as JSON can hold it (CEL bytes as text, other foreign values as their string)."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, dict):
        return {str(key): _json_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(item) for item in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


class AccessLog:
    __slots__ = ("_batches", "_fd", "_json", "_line", "_millis", "_second", "_stamp", "_stamp_ms", "flushes",
                 "format", "remove")  # fmt: skip

    def __init__(self, fmt: str, fd: int = 1, remove: frozenset[str] = frozenset()) -> None:
        self.format = fmt
        self._json = fmt == "json"
        #: own fields left out of every line (``accessLog.remove``, and those an ``add`` replaces).
        self.remove = remove
        self._fd = fd
        self._second = -1
        self._stamp = ""
        self._millis = -1
        self._stamp_ms = ""
        #: the lines that wait, in batches of at most `_BATCH_BYTES`
        self._batches = AccessLogBatches(_BATCH_BYTES)
        #: the core's writer of the line (all own fields, none added)
        self._line = self._batches.json if self._json else self._batches.text
        #: how many writes the batches took (benches read it).
        self.flushes = 0

    def _time(self) -> str:
        now = time.time()
        millis = int(now * 1000)
        if millis == self._millis:
            return self._stamp_ms
        second = millis // 1000
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        self._millis = millis
        stamp = self._stamp_ms = f"{self._stamp}.{millis - second * 1000:03d}Z"
        return stamp

    def write(
        self,
        request_id: str,
        upstream_id: str | None,
        caller: str | None,
        model: str | None,
        backend: str | None,
        attempts: int,
        status: int,
        input_tokens: int | None,  # None: no usage (the other counts are then ignored)
        output_tokens: int,
        cached_tokens: int,
        reasoning_tokens: int,
        cost: float | None,
        duration: float,
        ttft: float | None,
        error: str | None,
        added: list[tuple[str, Any]] | None = None,
    ) -> None:
        """One line; in text, ``-`` stands for a value that is not known (no usage, no upstream, ...). ``added``:
        the CEL fields of ``accessLog.add``, written after the own fields (telemetry/_fields.py)."""
        if added is None and not self.remove:
            try:
                full = self._line(
                    request_id, upstream_id, caller, model, backend, attempts, status, input_tokens, output_tokens,
                    cached_tokens, reasoning_tokens, cost, duration, ttft, error,
                )  # fmt: skip
            except (TypeError, ValueError, OverflowError):
                # What the core does not take (a count that is not an int or past 64 bits, a string that is not
                # UTF-8, a number that is not a float in JSON, a bug in the core): the same line written below.
                pass
            else:
                if full:
                    self._write_full()
                return
        stamp = self._time()
        if not self._json and added is None and not self.remove:
            line = _text_line(
                stamp, request_id, upstream_id, caller, model, backend, attempts, status,
                None if input_tokens is None else (input_tokens, output_tokens, cached_tokens, reasoning_tokens),
                cost, duration, ttft, error,
            )  # fmt: skip
        elif not self._json:
            line = self._custom(
                stamp,
                {
                    "id": request_id,
                    "upstream_id": upstream_id,
                    "caller": caller,
                    "model": model,
                    "backend": backend,
                    "attempts": attempts,
                    "status": status,
                    "input": input_tokens,
                    "output": output_tokens if input_tokens is not None else None,
                    "cached": cached_tokens if input_tokens is not None else None,
                    "reasoning": reasoning_tokens if input_tokens is not None else None,
                    "cost": cost,
                    "duration": round(duration, 6),
                    "ttft": round(ttft, 6) if ttft is not None else None,
                    "error": error,
                },
                added or [],
            )
        else:
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
            if input_tokens is not None:
                fields["input"] = input_tokens
                fields["output"] = output_tokens
                fields["cached"] = cached_tokens
                fields["reasoning"] = reasoning_tokens
            if cost is not None:
                fields["cost"] = cost
            fields["duration"] = round(duration, 6)
            if ttft is not None:
                fields["ttft"] = round(ttft, 6)
            if error is not None:
                fields["error"] = error
            for name in self.remove:
                fields.pop(name, None)
            if added is not None:
                for name, value in added:
                    fields[name] = _json_value(value)
            line = orjson.dumps(fields, option=orjson.OPT_APPEND_NEWLINE)
        if self._batches.push(line):
            self._write_full()

    def _custom(self, stamp: str, own: dict[str, Any], added: list[tuple[str, Any]]) -> bytes:
        """A text line with fields removed or added: the general (slower) way, only for configs that ask for it."""
        for name in self.remove:
            own.pop(name, None)
        parts = [stamp, "request"]
        for name, value in own.items():
            if name == "cost" and value is not None:
                parts.append(f"cost={format(value, '.6g')}")
            elif name == "duration":
                parts.append(f"duration={value:.6f}")
            elif name in ("id", "upstream_id"):
                parts.append(f"{name}={_id(value)}")
            else:
                parts.append(f"{name}={'-' if value is None else _text(value) if isinstance(value, str) else value}")
        parts.extend(f"{name}={_value(value)}" for name, value in added)
        return (" ".join(parts) + "\n").encode()

    def _write_full(self) -> None:
        """Writes the batches a line closed (each was full: the line did not fit after it)."""
        for data in self._batches.drain_full():
            self._write(data)

    def flush(self) -> None:
        """Writes the lines that wait (each batch at most ``_BATCH_BYTES``, or one longer line alone)."""
        for data in self._batches.drain():
            self._write(data)

    def _write(self, data: bytes) -> None:
        self.flushes += 1
        try:  # noqa: SIM105  (contextlib.suppress costs ~0.3 µs per flush)
            os.write(self._fd, data)
        except OSError:  # a closed stdout must not fail requests
            pass


def _text_line(
    stamp: str,
    request_id: str,
    upstream_id: str | None,
    caller: str | None,
    model: str | None,
    backend: str | None,
    attempts: int,
    status: int,
    tokens: tuple[int, int, int, int] | None,
    cost: float | None,
    duration: float,
    ttft: float | None,
    error: str | None,
) -> bytes:
    """The plain text line as Python writes it: what the core's ``AccessLogBatches.text`` writes, for the values
    the core does not take (and the tests' reference)."""
    if tokens is None:
        counts = "input=- output=- cached=- reasoning=-"
    else:
        counts = f"input={tokens[0]} output={tokens[1]} cached={tokens[2]} reasoning={tokens[3]}"
    return (
        f"{stamp} request id={_id(request_id)} upstream_id={_id(upstream_id)} caller={_text(caller)}"
        f" model={_text(model)} backend={_text(backend)} attempts={attempts} status={status} {counts}"
        f" cost={'-' if cost is None else format(cost, '.6g')} duration={duration:.6f}"
        f" ttft={'-' if ttft is None else format(ttft, '.6g')} error={_text(error)}\n"
    ).encode()
