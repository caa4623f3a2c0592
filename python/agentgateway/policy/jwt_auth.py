"""Inbound JWTs (``llm.policies.jwtAuth``), checked with PyJWT against a JWKS.

The JWKS is inline, a file (both read at load: a bad one is a config error), or a URL fetched with PyJWT's
``PyJWKClient`` in a thread (never on the event loop), one fetch at a time, used for ``cacheDuration`` and fetched
again sooner when a token names a key it does not hold (at most every ``_REFETCH_UNKNOWN_KID`` seconds). When a
fetch fails the keys already fetched stay in use; with none, tokens get a 401 that says the keys could not be
fetched. Only the algorithms a key's type allows are accepted (never ``none``, never an HMAC with a public key).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import jwt
from jwt import PyJWK, PyJWKClient, PyJWKSet

from .keys import Identity

if TYPE_CHECKING:
    from ..config import JwksFile, JwtAuthPolicy

__all__ = ["JwtAuth", "TokenRejected", "load_jwks"]

_REFETCH_UNKNOWN_KID = 10.0
_FETCH_TIMEOUT = 5.0
_CACHE_LIMIT = 1024

# The algorithms each key type may sign with (a JWK's own ``alg`` narrows it to that one).
_ALGORITHMS_BY_KTY = {
    "RSA": ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"),
    "EC": ("ES256", "ES384", "ES512", "ES256K"),
    "OKP": ("EdDSA",),
    "oct": ("HS256", "HS384", "HS512"),
}


class TokenRejected(Exception):
    """The token is not accepted; the message says why (never the token)."""


def load_jwks(source: str | JwksFile) -> list[PyJWK]:
    """The keys of an inline JWKS (a JSON string) or ``{file}``; ValueError saying what is wrong. A set with no
    keys (``{"keys": []}``, as agentgateway's own examples write) is accepted: it refuses every token (config.py
    names it at start-up)."""
    if isinstance(source, str):
        text, where = source, "the inline JWKS"
    else:
        where = f"the JWKS file {source.file!r}"
        if source.text is not None:  # read when the config loaded (config.py: watched for reloads)
            text = source.text
        else:
            try:
                with open(source.file, encoding="utf-8") as handle:
                    text = handle.read()
            except OSError as exc:
                raise ValueError(f"cannot read {where}: {exc.strerror or exc}") from None
    try:
        document = json.loads(text)
        if isinstance(document, dict) and document.get("keys") == []:
            return []
        return list(PyJWKSet.from_dict(document).keys)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where} is not JSON: {exc}") from None
    except Exception as exc:  # PyJWT's errors for sets without usable keys, unknown key types, bad fields
        raise ValueError(f"{where} is not a usable JWKS: {exc}") from None


def _algorithms(key: PyJWK) -> tuple[str, ...]:
    alg = key._jwk_data.get("alg")
    if isinstance(alg, str):
        return (alg,)
    return _ALGORITHMS_BY_KTY.get(str(key._jwk_data.get("kty")), ())


class JwtAuth:
    def __init__(self, policy: JwtAuthPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        from ..config import JwksUrl

        self.mode = policy.mode
        self.issuer = policy.issuer
        self.audiences = policy.audiences
        self.required = list(policy.required_claims)
        self._clock = clock
        self._url: str | None = None
        self._keys: list[PyJWK] = []
        self._fetched_at = -float("inf")
        self._fetch: asyncio.Future[None] | None = None
        self._verified: dict[bytes, tuple[Identity, float]] = {}
        if isinstance(policy.jwks, JwksUrl):
            self._url = policy.jwks.url
            self._cache_duration = policy.jwks.cache_duration
            self._host = urlsplit(self._url).hostname or "?"
        else:
            self._keys = load_jwks(policy.jwks)

    # -- keys ----------------------------------------------------------------------------------------------------

    def _fetch_now(self) -> None:
        assert self._url is not None
        client = PyJWKClient(self._url, cache_jwk_set=False, cache_keys=False, timeout=_FETCH_TIMEOUT)
        self._keys = list(client.get_jwk_set(refresh=True).keys)

    async def refresh(self) -> None:
        """Fetches the JWKS (one fetch at a time; callers that arrive meanwhile wait for that one)."""
        if self._url is None:
            return
        if self._fetch is None:
            self._fetch = asyncio.ensure_future(asyncio.to_thread(self._fetch_now))
        fetch = self._fetch
        try:
            await asyncio.shield(fetch)
        except Exception:
            pass  # the keys fetched before (if any) stay in use; the caller says what is missing
        finally:
            if self._fetch is fetch and fetch.done():
                self._fetch = None
                self._fetched_at = self._clock()  # also after a failure: no fetch storm while the URL is down

    async def _keys_for(self, kid: object) -> list[PyJWK]:
        if self._url is not None and self._clock() - self._fetched_at > self._cache_duration:
            await self.refresh()
        keys = self._matching(kid)
        if not keys and self._url is not None and self._clock() - self._fetched_at > _REFETCH_UNKNOWN_KID:
            await self.refresh()
            keys = self._matching(kid)
        if not keys:
            if self._url is not None and not self._keys:
                raise TokenRejected(f"The keys to check the token could not be fetched (JWKS at {self._host}).")
            raise TokenRejected("The token is signed with a key the gateway does not know (its 'kid').")
        return keys

    def _matching(self, kid: object) -> list[PyJWK]:
        if kid is None:
            return self._keys
        return [key for key in self._keys if key.key_id == kid]

    # -- tokens --------------------------------------------------------------------------------------------------

    async def verify(self, token: bytes) -> Identity:
        cached = self._verified.get(token)
        if cached is not None:
            identity, expires = cached
            if time.time() < expires:
                return identity
            del self._verified[token]
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenRejected("The token is not a well-formed JWT.") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg.lower() == "none":
            raise TokenRejected("The token is not signed (alg 'none' is refused).")
        keys = await self._keys_for(header.get("kid"))
        usable = [key for key in keys if alg in _algorithms(key)]
        if not usable:
            raise TokenRejected(f"The token's algorithm {alg[:16]!r} is not one its signing key may use.")
        problem = "The token's signature does not verify."
        for key in usable:
            try:
                claims: dict[str, Any] = jwt.decode(
                    token,
                    key.key,
                    algorithms=[alg],
                    audience=self.audiences,
                    issuer=self.issuer,
                    options={"require": self.required, "verify_aud": self.audiences is not None},
                )
            except jwt.InvalidSignatureError:
                continue
            except jwt.ExpiredSignatureError:
                raise TokenRejected("The token has expired.") from None
            except jwt.InvalidAudienceError:
                raise TokenRejected("The token is not for this gateway (its audience is not accepted).") from None
            except jwt.InvalidIssuerError:
                raise TokenRejected("The token is from an issuer this gateway does not accept.") from None
            except jwt.MissingRequiredClaimError as exc:
                raise TokenRejected(f"The token lacks the required claim {exc.claim!r}.") from None
            except jwt.PyJWTError as exc:
                problem = f"The token is not valid: {exc}."
                continue
            return self._remember(token, claims)
        raise TokenRejected(problem)

    def _remember(self, token: bytes, claims: dict[str, Any]) -> Identity:
        subject = claims.get("sub")
        name = str(subject) if isinstance(subject, (str, int)) else "jwt"
        identity = Identity(kind="jwt", id=name, name=name, metadata=claims)
        exp = claims.get("exp")
        if isinstance(exp, (int, float)):
            if len(self._verified) >= _CACHE_LIMIT:
                self._verified.clear()
            self._verified[token] = (identity, float(exp))
        return identity
