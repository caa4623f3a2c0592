"""What every provider gives the app: how to call its upstream for one request, and which core translator reads
the answer. Per-request work stays small: anything that depends only on config is computed once in __init__."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ..config import ModelEntry
from ..upstream import UpstreamRequest

__all__ = ["ChatRequest", "Provider"]


@dataclass(slots=True)
class ChatRequest:
    """A validated client request. ``body`` is the parsed JSON and ``raw`` the bytes it came from."""

    raw: bytes
    body: dict[str, Any]
    model: str
    stream: bool
    include_usage: bool
    authorization: bytes | None


class Provider:
    """One configured model entry's upstream. Subclasses live one per file in this package."""

    #: the provider name that the Rust core's ``StreamTranslator`` / ``translate_response`` know.
    translator: ClassVar[str]

    def __init__(self, entry: ModelEntry) -> None:
        self.entry = entry
        self.upstream_model = entry.params.model

    def prepare(self, request: ChatRequest) -> UpstreamRequest:
        raise NotImplementedError
