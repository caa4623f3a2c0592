"""Model names in the config: an exact name, or a glob (``gpt-*``, ``*-mini``, ``*``) as agentgateway matches them.

When several entries match a request's model, agentgateway's order is: an exact name first, then the most
specific pattern, then config order. A pattern is more specific than another when more of it is literal text
(``gpt-4o*`` beats ``gpt-*``, which beats ``*``).
"""

from __future__ import annotations

import fnmatch
import re

__all__ = ["NamePattern"]

_GLOB_CHARS = frozenset("*?[")


class NamePattern:
    __slots__ = ("_regex", "exact", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.exact = not _GLOB_CHARS.intersection(text)
        self._regex = None if self.exact else re.compile(fnmatch.translate(text))

    def matches(self, model: str) -> bool:
        regex = self._regex
        return model == self.text if regex is None else regex.fullmatch(model) is not None

    @property
    def rank(self) -> tuple[int, int]:
        """Sorts best first: exact names, then patterns with more literal characters."""
        if self.exact:
            return (0, 0)
        literal = sum(1 for char in self.text if char not in _GLOB_CHARS)
        return (1, -literal)
