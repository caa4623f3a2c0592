"""``llm.policies.cors`` (agentgateway's CORS policy): browsers may call the gateway from the allowed origins.

* A preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``, on any path) is answered by the
  gateway itself: 200, and -- when the origin is allowed -- ``Access-Control-Allow-Origin``, ``-Allow-Methods``,
  ``-Allow-Headers``, ``-Allow-Credentials`` and ``-Max-Age`` as configured (``*`` in methods or headers echoes what
  the browser asked for). An origin that is not allowed gets the 200 without them, so the browser refuses the call.
* Every other answer to an allowed origin carries ``Access-Control-Allow-Origin`` (the origin itself, with
  ``Vary: Origin``; ``*`` when every origin is allowed and credentials are not), ``-Allow-Credentials`` and
  ``-Expose-Headers`` -- errors and streams included.

``allowOrigins`` entries: an exact origin (``https://app.example.com``), ``*``, or a pattern with ``*``
(``https://*.example.com``, ``http://localhost:*``). Everything is prepared at load; a request without ``Origin``
costs one header scan.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .config import CorsPolicy

__all__ = ["Cors"]

Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]


class Cors:
    __slots__ = ("_any", "_credentials", "_exact", "_expose", "_headers", "_max_age", "_methods", "_patterns")

    def __init__(self, policy: CorsPolicy) -> None:
        self._any = "*" in policy.allow_origins
        self._exact = frozenset(o.encode("latin-1") for o in policy.allow_origins if "*" not in o)
        self._patterns = [
            re.compile(b"[^*]*".join(re.escape(part.encode("latin-1")) for part in o.split("*")))
            for o in policy.allow_origins
            if "*" in o and o != "*"
        ]
        self._credentials = policy.allow_credentials
        self._methods = ", ".join(policy.allow_methods).encode("latin-1") if policy.allow_methods else None
        self._headers = ", ".join(policy.allow_headers).encode("latin-1") if policy.allow_headers else None
        self._expose = ", ".join(policy.expose_headers).encode("latin-1") if policy.expose_headers else None
        self._max_age = str(int(policy.max_age)).encode() if policy.max_age is not None else None

    def _allowed(self, origin: bytes) -> bool:
        return self._any or origin in self._exact or any(p.fullmatch(origin) for p in self._patterns)

    def _origin_headers(self, origin: bytes) -> Headers:
        if self._any and not self._credentials:
            headers: Headers = [(b"access-control-allow-origin", b"*")]
        else:
            headers = [(b"access-control-allow-origin", origin), (b"vary", b"origin")]
        if self._credentials:
            headers.append((b"access-control-allow-credentials", b"true"))
        return headers

    def preflight(self, scope: MutableMapping[str, Any]) -> Headers | None:
        """The headers of the answer to a preflight, or None when the request is not one."""
        if scope["method"] != "OPTIONS":
            return None
        origin = method = requested = None
        for name, value in scope["headers"]:
            if name == b"origin":
                origin = value
            elif name == b"access-control-request-method":
                method = value
            elif name == b"access-control-request-headers":
                requested = value
        if origin is None or method is None:
            return None
        headers: Headers = [(b"content-length", b"0")]
        if not self._allowed(origin):
            return headers
        headers += self._origin_headers(origin)
        if self._methods is not None:
            headers.append((b"access-control-allow-methods", method if self._methods == b"*" else self._methods))
        if self._headers is not None:
            echoed = requested if self._headers == b"*" and requested is not None else self._headers
            headers.append((b"access-control-allow-headers", echoed))
        if self._max_age is not None:
            headers.append((b"access-control-max-age", self._max_age))
        return headers

    def wrap(self, scope: MutableMapping[str, Any], send: Send) -> Send:
        """``send`` adding the CORS headers to the answer's start, when the request comes from an allowed origin."""
        origin = None
        for name, value in scope["headers"]:
            if name == b"origin":
                origin = value
                break
        if origin is None or not self._allowed(origin):
            return send
        extra = self._origin_headers(origin)
        if self._expose is not None:
            extra.append((b"access-control-expose-headers", self._expose))

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *extra]}
            await send(message)

        return send_with_cors
