"""The gateway's errors, and how each reaches a client.

Every error a client sees is OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``, because the
openai SDKs read it and pick their exception class from the HTTP status. A stream that fails after it began ends
with the same object plus ``"status"`` as its last event (``stream_event()``); the openai SDKs raise ``APIError`` on
it. Statuses, types and codes come from the one table in the Rust core (``rust/sse_core/src/error_kind.rs``, read
through ``_core.error_kind``), which also writes the core's own in-stream errors, so a fault reads the same whatever
the provider and whichever side noticed it. The OpenAI ``type`` of a status is OpenAI's own: ``server_error`` for
every 5xx.

- ``GatewayError`` -- the one base class: a bug of the gateway's own unless told otherwise (500 ``server_error``
  ``internal_error``). It carries the status, the OpenAI ``type``/``code``/``param`` (the ``type`` follows the
  status when only a status is given) and any response headers to send (``Retry-After`` from an upstream 429 must
  survive). ``retryable``: whether another attempt (at another upstream) may succeed; false unless said below.
  - ``InvalidRequest`` -- 400 ``invalid_request_error``: the client's request is wrong; the message names the field.
  - ``ModelNotFound`` -- 404 ``invalid_request_error`` ``model_not_found``: no configured entry serves that model.
  - ``UpstreamHTTPError`` -- the upstream answered with an HTTP error: its status, message and name for it
    (``code``, else ``upstream_error``) are kept. Retryable when the status is 429 or 5xx.
  - ``UpstreamUnreachable`` -- 502 ``upstream_unreachable``: connecting to the upstream failed or it dropped the
    connection. Retryable.
  - ``UpstreamTimeout`` -- 504 ``upstream_timeout``: the upstream did not answer (or went silent) within the
    configured timeout. Retryable.
  - ``UpstreamProtocolError`` -- 502 ``upstream_protocol_error``: the upstream answered something that is not its
    wire format.

``ConfigError`` is separate: it stops start-up and is never sent to a client.

A client of the Anthropic Messages API (``/v1/messages``, issue 19) gets the same errors in Anthropic's shape,
``{"type": "error", "error": {"type", "message"}}`` (``anthropic_body()``; ``anthropic_stream_event()`` after a
stream began), status kept, the ``type`` the one the status stands for (`anthropic_error_type`: the core's
``error_type_for_status(status, "anthropic")``): an unavailable upstream (503) reads as
``overloaded_error`` and keeps its status, Anthropic's own 529 stays 529.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from ._core import anthropic_error, error_event, error_kind, error_type_for_status

__all__ = [
    "ConfigError",
    "GatewayError",
    "InvalidRequest",
    "ModelNotFound",
    "UpstreamHTTPError",
    "UpstreamProtocolError",
    "UpstreamTimeout",
    "UpstreamUnreachable",
    "anthropic_error_body",
    "anthropic_error_type",
    "anthropic_status",
    "error_body",
    "redact_frames",
    "stream_error_event",
]


def error_body(message: str, type_: str, code: str | None = None, param: str | None = None) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": type_, "param": param, "code": code}})


def anthropic_error_type(status: int) -> str:
    """The Anthropic error ``type`` a status stands for (the core's table, as it writes Anthropic streams)."""
    return error_type_for_status(status, "anthropic")


#: The status an Anthropic error type stands for (an error event in a stream names only its type).
_ANTHROPIC_STATUSES = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


def anthropic_status(kind: str) -> int:
    """The HTTP status of an Anthropic error ``type`` (502 for one it does not name)."""
    return _ANTHROPIC_STATUSES.get(kind, 502)


def anthropic_error_body(message: str, status: int) -> bytes:
    return anthropic_error(message, status)


def stream_error_event(message: str, type_: str, code: str | None = None, status: int | None = None) -> bytes:
    """The final SSE event of a stream that failed after it began, written by the core as its own are (with
    ``status``; by default the one ``type_`` stands for): the openai SDKs raise APIError on it."""
    return error_event(message, type_, code, status)


def redact_frames(frames: bytes, secrets: Sequence[str]) -> bytes:
    """``frames`` (bytes written for the client: a stream's events) with every secret replaced, as written raw and
    as JSON escapes it inside a string. The in-stream twin of the providers' ``redact`` of messages: an upstream's
    error event may quote the key it refused (issue 20)."""
    for secret in secrets:
        raw = secret.encode()
        for form in (raw, orjson.dumps(secret)[1:-1]):
            if form in frames:
                frames = frames.replace(form, b"[redacted]")
    return frames


class GatewayError(Exception):
    status: int
    type: str
    code: str | None
    status, type, code = error_kind("internal_error")

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        type_: str | None = None,
        code: str | None = None,
        param: str | None = None,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
            self.type = error_type_for_status(status)
        if type_ is not None:
            self.type = type_
        if code is not None:
            self.code = code
        self.param = param
        self.headers = headers or []

    @property
    def retryable(self) -> bool:
        """Whether the same request may succeed at another upstream (or later): the upstream could not be reached,
        timed out, was rate limited or failed on its side."""
        return False

    def body(self) -> bytes:
        return error_body(self.message, self.type, self.code, self.param)

    def stream_event(self) -> bytes:
        return error_event(self.message, self.type, self.code, self.status)

    def anthropic_body(self) -> bytes:
        """The body in Anthropic's shape, for Messages API clients."""
        return anthropic_error_body(self.message, self.status)

    def anthropic_stream_event(self) -> bytes:
        """The final ``event: error`` of an Anthropic Messages stream that failed after it began."""
        return anthropic_error(self.message, self.status, True)


class InvalidRequest(GatewayError):
    status, type, code = error_kind("invalid_request")


class ModelNotFound(GatewayError):
    status, type, code = error_kind("model_not_found")


class UpstreamHTTPError(GatewayError):
    """An upstream's own HTTP error, status kept so the client SDK raises the matching exception."""

    status, type, code = error_kind("upstream_error")

    @property
    def retryable(self) -> bool:
        return self.status == 429 or self.status >= 500

    @classmethod
    def create(
        cls, status: int, message: str, *, code: str | None = None, headers: list[tuple[bytes, bytes]] | None = None
    ) -> UpstreamHTTPError:
        """An upstream error read from a provider's own error shape: the OpenAI ``type`` follows the status."""
        return cls(message, status=status, code=code, headers=headers)

    @classmethod
    def from_openai_body(cls, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> UpstreamHTTPError:
        """Keeps an OpenAI-shaped error's fields (``code``: its code, else its type, as the core reads an error in
        a stream); wraps anything else in a message that says what came back."""
        message, type_, code, param = None, None, None, None
        try:
            parsed: Any = orjson.loads(body)
        except orjson.JSONDecodeError:
            parsed = None
        error = parsed.get("error") if isinstance(parsed, dict) else None
        if isinstance(error, dict):
            message = error.get("message")
            type_ = error.get("type")
            code = error.get("code")
            param = error.get("param")
        elif isinstance(error, str):
            message = error
        elif isinstance(parsed, dict) and isinstance(parsed.get("message"), str):
            message = parsed["message"]
        if not isinstance(message, str) or not message:
            text = body[:500].decode("utf-8", "replace").strip()
            message = f"upstream returned HTTP {status}" + (f": {text}" if text else "")
        type_ = type_ if isinstance(type_, str) else None
        return cls(
            message,
            status=status,
            type_=type_,
            code=str(code) if code is not None else type_,
            param=param if isinstance(param, str) else None,
            headers=headers,
        )


class UpstreamUnreachable(GatewayError):
    status, type, code = error_kind("upstream_unreachable")

    @property
    def retryable(self) -> bool:
        return True


class UpstreamTimeout(GatewayError):
    status, type, code = error_kind("upstream_timeout")

    @property
    def retryable(self) -> bool:
        return True


class UpstreamProtocolError(GatewayError):
    status, type, code = error_kind("upstream_protocol_error")


class ConfigError(Exception):
    """The configuration cannot be used; the message names the source, the path in the document and the problem."""
