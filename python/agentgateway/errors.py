"""The gateway's errors, and how each reaches a client.

Every error a client sees is OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``, because the
openai SDKs read it and pick their exception class from the HTTP status:

- ``GatewayError`` -- the one base class. It carries the status, the OpenAI ``type``/``code``/``param`` and any
  response headers to send (``Retry-After`` from an upstream 429 must survive).
  - ``InvalidRequest`` -- 400: the client's request is wrong; the message names the field to fix.
  - ``ModelNotFound`` -- 404 ``model_not_found``: no configured entry serves that model; lists what does.
  - ``UpstreamHTTPError`` -- the upstream answered with an HTTP error: its status is kept and its message passed on.
  - ``UpstreamUnreachable`` -- 502: connecting to the upstream failed or it dropped the connection.
  - ``UpstreamTimeout`` -- 504: the upstream did not answer (or went silent) within the configured timeout.
  - ``UpstreamProtocolError`` -- 502: the upstream answered something that is not its wire format.

``ConfigError`` is separate: it stops start-up and is never sent to a client.
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = [
    "ConfigError",
    "GatewayError",
    "InvalidRequest",
    "ModelNotFound",
    "UpstreamHTTPError",
    "UpstreamProtocolError",
    "UpstreamTimeout",
    "UpstreamUnreachable",
    "error_body",
    "stream_error_event",
]


def error_body(message: str, type_: str, code: str | None = None, param: str | None = None) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": type_, "param": param, "code": code}})


def stream_error_event(message: str, type_: str, code: str | None = None) -> bytes:
    """The final SSE event of a stream that failed after it began: the openai SDKs raise APIError on it."""
    return b"data: " + error_body(message, type_, code) + b"\n\n"


class GatewayError(Exception):
    status: int = 500
    type: str = "api_error"
    code: str | None = None

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
        if type_ is not None:
            self.type = type_
        if code is not None:
            self.code = code
        self.param = param
        self.headers = headers or []

    def body(self) -> bytes:
        return error_body(self.message, self.type, self.code, self.param)

    def stream_event(self) -> bytes:
        return stream_error_event(self.message, self.type, self.code)


class InvalidRequest(GatewayError):
    status = 400
    type = "invalid_request_error"


class ModelNotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "model_not_found"


class UpstreamHTTPError(GatewayError):
    """An upstream's own HTTP error, status kept so the client SDK raises the matching exception."""

    type = "upstream_error"

    @classmethod
    def create(
        cls, status: int, message: str, *, code: str | None = None, headers: list[tuple[bytes, bytes]] | None = None
    ) -> UpstreamHTTPError:
        """An upstream error read from a provider's own error shape: the OpenAI ``type`` follows the status."""
        return cls(message, status=status, type_=_type_for_status(status), code=code, headers=headers)

    @classmethod
    def from_openai_body(cls, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> UpstreamHTTPError:
        """Keeps an OpenAI-shaped error's fields; wraps anything else in a message that says what came back."""
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
        return cls(
            message,
            status=status,
            type_=type_ if isinstance(type_, str) else _type_for_status(status),
            code=None if code is None else str(code),
            param=param if isinstance(param, str) else None,
            headers=headers,
        )


def _type_for_status(status: int) -> str:
    return {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        429: "rate_limit_error",
    }.get(status, "upstream_error" if status >= 500 else "invalid_request_error")


class UpstreamUnreachable(GatewayError):
    status = 502
    type = "upstream_error"
    code = "upstream_unreachable"


class UpstreamTimeout(GatewayError):
    status = 504
    type = "upstream_error"
    code = "upstream_timeout"


class UpstreamProtocolError(GatewayError):
    status = 502
    type = "upstream_error"
    code = "upstream_protocol_error"


class ConfigError(Exception):
    """The configuration cannot be used; the message names the source, the path in the document and the problem."""
