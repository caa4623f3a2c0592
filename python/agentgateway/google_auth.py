"""Google Application Default Credentials for Vertex AI: OAuth2 access tokens, cached, renewed before they expire.

Credentials are found the way every Google client library finds them (google-auth's ``google.auth.default``):

1. ``GOOGLE_APPLICATION_CREDENTIALS`` -- a service-account JSON (an RS256 JWT assertion signed with its private key
   is exchanged at its ``token_uri``) or an ``authorized_user`` JSON (its refresh token is exchanged);
2. the gcloud ADC file (``gcloud auth application-default login``; ``$CLOUDSDK_CONFIG`` moves it);
3. the metadata server on Google Cloud (``GCE_METADATA_HOST`` / ``GCE_METADATA_IP`` move it).

google-auth does the loading, the signing and the token calls; they are blocking, so they run in a thread
(``asyncio.to_thread``) behind an ``asyncio.Lock``: one refresh at a time per worker, and requests that arrive
meanwhile wait for it rather than start their own. A token is reused until five minutes before it expires, then
renewed in the background while it is still used (see `GoogleCredentials`).
The HTTP transport is the standard library's ``urllib`` (google-auth's own needs ``requests``): token calls are
rare, and the gateway keeps one dependency fewer. google-auth is imported only when a Vertex model without an API
key is configured. Tokens never appear in logs or errors.
"""

from __future__ import annotations

import asyncio
import datetime
import email.message
import http.client
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any, cast

from .errors import GatewayError

__all__ = ["CLOUD_PLATFORM_SCOPE", "GoogleCredentials"]

CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
# Renew this long before expiry (in the background while the old token is still used)...
REFRESH_MARGIN = 300.0
# ...and stop using a token this long before it expires: it must outlive the request that carries it.
EXPIRY_MARGIN = 30.0
_TOKEN_CALL_TIMEOUT = 30.0

logger = logging.getLogger("agentgateway.google_auth")


def _log_background_failure(task: asyncio.Task[str]) -> None:
    # The token in use is still valid: requests carry on, and the next one after it runs out tries again.
    if not task.cancelled() and task.exception() is not None:
        logger.warning("background renewal of the Google access token failed; will retry")


class _Response:
    """google.auth.transport.Response over urllib's answer."""

    def __init__(self, status: int, headers: email.message.Message, data: bytes) -> None:
        # urllib's headers object: its get() ignores case, as google-auth expects (it reads "metadata-flavor").
        self.status = status
        self.headers = headers
        self.data = data


class _UrllibRequest:
    """google.auth.transport.Request with the standard library (blocking; called from a worker thread)."""

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **_kwargs: Any,
    ) -> _Response:
        from google.auth import exceptions

        request = urllib.request.Request(url, data=body, headers=dict(headers or {}), method=method)
        try:
            with urllib.request.urlopen(request, timeout=timeout or _TOKEN_CALL_TIMEOUT) as response:
                return _Response(response.status, response.headers, response.read())
        except urllib.error.HTTPError as exc:
            return _Response(exc.code, exc.headers, exc.read())
        except (OSError, http.client.HTTPException) as exc:
            raise exceptions.TransportError(f"{type(exc).__name__}: {exc}") from exc  # type: ignore[no-untyped-call]


class GoogleCredentials:
    """The access-token source of one Vertex model entry (one per worker process).

    A token is used as is until five minutes before it expires (half its lifetime for short-lived ones); from then
    until 30 s before expiry (a quarter of its lifetime at most) requests still get it while one background task
    fetches the next, so in steady state no request waits for a refresh. Past that, or with no token yet,
    requests wait for the one fetch in flight.

    The cache is the gateway's one refresh-ahead token cache: another cloud's tokens (Azure Entra ID,
    providers/azure.py) subclass it and replace `_refresh` and `source`."""

    #: what the tokens are for, in log lines and errors
    source = "Google credentials for Vertex AI"

    def __init__(self, scopes: tuple[str, ...] = (CLOUD_PLATFORM_SCOPE,)) -> None:
        self.scopes = scopes
        self._credentials: Any = None
        self._token: str | None = None
        self._refresh_at = 0.0  # time.monotonic() from which a new token is fetched in the background
        self._usable_until = 0.0  # time.monotonic() from which requests wait for a new token
        self._lock = asyncio.Lock()
        self._background: asyncio.Task[str] | None = None

    async def token(self) -> str:
        """A valid access token: the cached one, or a new one (fetched in a thread, one fetch at a time)."""
        token = self._token
        if token is not None:
            now = time.monotonic()
            if now < self._refresh_at:
                return token
            if now < self._usable_until:
                if self._background is None or self._background.done():
                    self._background = asyncio.ensure_future(self._fetch())
                    self._background.add_done_callback(_log_background_failure)
                return token
        return await self._fetch()

    async def _fetch(self) -> str:
        async with self._lock:
            if self._token is not None and time.monotonic() < self._refresh_at:
                return self._token  # another request refreshed it while this one waited
            try:
                token, lifetime = await asyncio.to_thread(self._refresh)
            except GatewayError:
                raise
            except Exception as exc:
                # google-auth's messages name the file or the endpoint, never the secret.
                logger.warning("could not get %s: %s: %s", self.source, type(exc).__name__, exc)
                raise GatewayError(
                    f"The gateway could not get {self.source}: {type(exc).__name__}: {exc}",
                    status=502,
                    code="upstream_credentials_unavailable",
                ) from None
            now = time.monotonic()
            lifetime = max(0.0, lifetime)
            self._token = token
            self._refresh_at = now + lifetime - min(REFRESH_MARGIN, lifetime / 2)
            self._usable_until = now + lifetime - min(EXPIRY_MARGIN, lifetime / 4)
            return token

    def invalidate(self) -> None:
        """Forget the token (the upstream refused it): the next request waits for a new one."""
        self._token = None
        self._refresh_at = self._usable_until = 0.0

    def _refresh(self) -> tuple[str, float]:
        """Load the credentials (first time) and get a token; returns it and its lifetime in seconds."""
        import google.auth

        request = _UrllibRequest()
        if self._credentials is None:
            # Any: google-auth wants its own Request base class, which would import it with the gateway.
            credentials, _project = google.auth.default(scopes=list(self.scopes), request=cast(Any, request))
            self._credentials = credentials
        credentials = self._credentials
        credentials.refresh(request)
        token = credentials.token
        if not isinstance(token, str) or not token:
            raise GatewayError(
                "Google's token endpoint returned no access token.",
                status=502,
                code="upstream_credentials_unavailable",
            )
        expiry = credentials.expiry
        if expiry is None:
            lifetime = 3600.0
        else:
            # google-auth keeps expiry as a naive UTC datetime.
            now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
            lifetime = (expiry - now).total_seconds()
        logger.info("obtained a Google access token valid for %d s", int(lifetime))
        return token, lifetime
