"""Model name -> the first configured entry that matches it (an exact name or a glob such as ``gpt-*`` or ``*``)."""

from __future__ import annotations

import fnmatch
import re

from .config import GatewayConfig
from .errors import ConfigError, ModelNotFound
from .memo import BoundedMemo
from .providers import PROVIDERS, Provider

__all__ = ["Router"]

_GLOB_CHARS = frozenset("*?[")
# Clients send few distinct model names; remembering the answer for each keeps routing one dict lookup. The cap
# stops a client that sends endless random names from growing it without bound.
_CACHE_LIMIT = 4096


class Router:
    def __init__(self, config: GatewayConfig, source: str = "config") -> None:
        self.providers: list[Provider] = []
        self._matchers: list[tuple[re.Pattern[str] | str, Provider]] = []
        for index, entry in enumerate(config.llm.models):
            # The config accepts only provider names that are registered (a test keeps the two lists equal).
            try:
                provider = PROVIDERS[entry.provider_name](entry)
            except ConfigError as exc:  # what a provider finds wrong with its params when it sets up
                raise ConfigError(f"{source}: llm.models[{index}]: {exc}") from None
            self.providers.append(provider)
            pattern: re.Pattern[str] | str = entry.name
            if _GLOB_CHARS.intersection(entry.name):
                pattern = re.compile(fnmatch.translate(entry.name))
            self._matchers.append((pattern, provider))
        self.exact_names = [e.name for e in config.llm.models if not _GLOB_CHARS.intersection(e.name)]
        self.patterns = [e.name for e in config.llm.models if _GLOB_CHARS.intersection(e.name)]
        self._routes: BoundedMemo[str, Provider | None] = BoundedMemo(self._match, _CACHE_LIMIT)

    def route(self, model: str) -> Provider:
        provider = self._routes.get(model)
        if provider is None:
            raise ModelNotFound(self._not_found_message(model), param="model")
        return provider

    def _match(self, model: str) -> Provider | None:
        for pattern, provider in self._matchers:
            if pattern == model if isinstance(pattern, str) else pattern.fullmatch(model):
                return provider
        return None

    def _not_found_message(self, model: str) -> str:
        served = ", ".join(self.exact_names) or "(none by exact name)"
        message = f"The model {model!r} is not served by this gateway. Served models: {served}"
        if self.patterns:
            message += f"; patterns: {', '.join(self.patterns)}"
        return message + "."
