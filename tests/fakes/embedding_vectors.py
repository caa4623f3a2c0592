"""The vectors every fake embeddings upstream answers with: derived from the input alone, so a test can tell which
input a vector belongs to (order kept across concurrent calls and batches), and exact in float32, so a base64
answer decodes to the very same numbers."""

from __future__ import annotations

import base64
import struct
import zlib
from typing import Any

DEFAULT_DIMENSIONS = 8


def fake_vector(item: Any, dimensions: int | None = None) -> list[float]:
    """``item``: a text or a token array. Multiples of 1/8 below 2**12: exact in float32."""
    seed = zlib.crc32(item.encode() if isinstance(item, str) else bytes(str(item), "ascii")) % 4096
    return [((seed + 37 * index) % 4096) / 8 for index in range(dimensions or DEFAULT_DIMENSIONS)]


def encode_base64(vector: list[float]) -> str:
    """OpenAI's base64: little-endian float32."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def decode_base64(text: str) -> list[float]:
    raw = base64.b64decode(text)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


def token_count(item: Any) -> int:
    """The fakes' token count of one input: words of a text, ids of a token array."""
    return len(item.split()) if isinstance(item, str) else len(item)
