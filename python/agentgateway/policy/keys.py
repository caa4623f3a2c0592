"""Inbound API keys (``llm.policies.apiKey``) and the caller's identity.

Keys are held only as their sha256 digests: a configured ``key`` is hashed at load and the secret dropped, and a
``keyHash`` is already one. A presented key is hashed and looked up by digest; the digest found is compared again
with ``hmac.compare_digest``, so no comparison of secret bytes depends on where they first differ. Nothing here
ever puts a key, or its digest, into a message.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..memo import BoundedMemo
from ..names import NamePattern

if TYPE_CHECKING:
    from ..config import ApiKeyEntry, ApiKeyPolicy
    from .limits import Limit

__all__ = ["MAX_KEY_BYTES", "ApiKeys", "Identity", "ModelFilter", "key_digest"]

#: Longer credentials are refused before they are hashed (a 100 KB header is not a key).
MAX_KEY_BYTES = 4096


def key_digest(entry: ApiKeyEntry) -> bytes:
    """The sha256 digest of a configured key (``key`` hashed, or ``keyHash`` decoded)."""
    if entry.key is not None:
        return hashlib.sha256(entry.key.get_secret_value().encode("utf-8")).digest()
    assert entry.key_hash is not None
    return bytes.fromhex(entry.key_hash.removeprefix("sha256:"))


class ModelFilter:
    """``allowedModels``: exact names and globs (``gpt-4o*``, ``*-mini``, ``*``); an empty list allows nothing."""

    __slots__ = ("_allowed", "patterns")

    def __init__(self, patterns: list[str]) -> None:
        self.patterns = [NamePattern(text) for text in patterns]
        self._allowed: BoundedMemo[str, bool] = BoundedMemo(self._check, 4096)

    def _check(self, model: str) -> bool:
        return any(pattern.matches(model) for pattern in self.patterns)

    def allows(self, model: str) -> bool:
        return self._allowed.get(model)


@dataclass(eq=False, slots=True)
class Identity:
    """Who is calling: what logs, metrics and traces name (``name``, never a key), the models it may use and the
    limits of this caller alone."""

    #: ``apiKey`` | ``jwt``
    kind: str
    #: stable and not secret: ``key-<index>`` for a configured key, the JWT's ``sub`` for a token.
    id: str
    #: ``metadata.name`` of the key, else ``id``.
    name: str
    metadata: Mapping[str, Any] = field(default_factory=dict)
    #: None: every model.
    models: ModelFilter | None = None
    #: this caller's own limits (``keys[].localRateLimit``), beside the gateway-wide ones.
    limits: tuple[Limit, ...] = ()

    def allows(self, model: str) -> bool:
        return self.models is None or self.models.allows(model)


class ApiKeys:
    """The configured keys, by digest."""

    __slots__ = ("by_digest", "mode")

    def __init__(self, policy: ApiKeyPolicy, limits_for: Any) -> None:
        """``limits_for(entry, index, digest)`` compiles a key's own ``localRateLimit`` (limits.py)."""
        self.mode = policy.mode
        self.by_digest: dict[bytes, tuple[bytes, Identity]] = {}
        for index, entry in enumerate(policy.keys):
            digest = key_digest(entry)
            key_id = f"key-{index}"
            name = entry.metadata.get("name")
            identity = Identity(
                kind="apiKey",
                id=key_id,
                name=str(name) if name is not None else key_id,
                metadata=dict(entry.metadata),
                models=ModelFilter(entry.allowed_models) if entry.allowed_models is not None else None,
                limits=limits_for(entry, index, digest),
            )
            self.by_digest[digest] = (digest, identity)

    def lookup(self, key: bytes) -> Identity | None:
        digest = hashlib.sha256(key).digest()
        found = self.by_digest.get(digest)
        if found is None or not hmac.compare_digest(found[0], digest):
            return None
        return found[1]
