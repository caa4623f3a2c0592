"""agentgateway's ``promptCaching`` (issue 21): cache points inserted into the upstream body, where agentgateway puts
them, for Anthropic (and Claude on Vertex AI, same body) and Bedrock Converse (Claude and Nova models).

Pure functions over the body a provider has just translated: they return a new body and never edit the client's
objects (a failover's next attempt starts from the same request). Boundaries, in agentgateway's order, within the
provider's limit of four cache points (the client's own count first; a block that already carries one keeps it):

* ``cacheSystem`` (default on): the last block of the system prompt, when the system prompt is at least
  ``minTokens`` (default 1024) by agentgateway's estimate (words x 1.3); ``minTokens`` gates this one only.
* ``cacheMessages`` (default on): the last block of the second-to-last message (the history, not the current turn),
  ``cacheMessageOffset`` messages further back, clamped at the first; nothing with fewer than two messages.
* ``cacheTools`` (default off): the last tool.

Anthropic: ``"cache_control": {"type": "ephemeral"}`` on the block (a string content becomes one text block), only
on block types that take it. Bedrock: a ``{"cachePoint": {"type": "default"}}`` block appended (system, the message's
content, ``toolConfig.tools``), only for models that cache (``anthropic.claude`` except instant/v1/v2, ``amazon.nova``).
"""

from __future__ import annotations

from typing import Any

from .config import PromptCaching

__all__ = ["anthropic_cache_points", "bedrock_supports_caching", "converse_cache_points"]

MAX_CACHE_POINTS = 4
_EPHEMERAL = {"type": "ephemeral"}
_CACHE_POINT = {"cachePoint": {"type": "default"}}
#: block types that accept cache_control (agentgateway's allowlist: an unknown type costs an optimisation only)
_CACHEABLE = frozenset(("text", "image", "document", "search_result", "tool_use", "tool_result"))
_CACHEABLE |= frozenset(("server_tool_use", "web_search_tool_result"))


def _estimate(texts: list[str]) -> int:
    """agentgateway's estimate of a system prompt's tokens: its words x 1.3."""
    return sum(len(text.split()) for text in texts) * 13 // 10


# -- Anthropic Messages (anthropic, vertex Claude) -----------------------------------------------------------------


def _marked(value: Any) -> int:
    if not isinstance(value, list):
        return 0
    return sum(1 for block in value if isinstance(block, dict) and block.get("cache_control") is not None)


def _mark_last(content: Any) -> list[Any] | None:
    """A new block list with the last cacheable block marked; None when there is none (or it is marked already)."""
    blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
    if not isinstance(blocks, list):
        return None
    for index in range(len(blocks) - 1, -1, -1):
        block = blocks[index]
        if isinstance(block, dict) and block.get("type") in _CACHEABLE:
            if block.get("cache_control") is not None:
                return None
            return [*blocks[:index], {**block, "cache_control": _EPHEMERAL}, *blocks[index + 1 :]]
    return None


def anthropic_cache_points(body: dict[str, Any], caching: PromptCaching | None) -> dict[str, Any]:
    """``body`` (an Anthropic Messages request) with the configured cache points; ``body`` itself when none apply."""
    if caching is None:
        return body
    messages = body.get("messages")
    messages = messages if isinstance(messages, list) else []
    used = _marked(body.get("system")) + _marked(body.get("tools"))
    used += sum(_marked(m.get("content")) for m in messages if isinstance(m, dict))
    out = body
    if caching.cache_system and used < MAX_CACHE_POINTS and body.get("system"):
        system = body["system"]
        texts = [system] if isinstance(system, str) else [b.get("text", "") for b in system if isinstance(b, dict)]
        if caching.min_tokens is None or _estimate([t for t in texts if isinstance(t, str)]) >= caching.min_tokens:
            marked = _mark_last(system)
            if marked is not None:
                out = {**out, "system": marked}
                used += 1
    if caching.cache_messages and used < MAX_CACHE_POINTS and len(messages) >= 2:
        target = max(0, len(messages) - 2 - caching.cache_message_offset)
        message = messages[target]
        marked = _mark_last(message.get("content")) if isinstance(message, dict) else None
        if marked is not None:
            out = {**out, "messages": [*messages[:target], {**message, "content": marked}, *messages[target + 1 :]]}
            used += 1
    tools = body.get("tools")
    if caching.cache_tools and used < MAX_CACHE_POINTS and isinstance(tools, list) and tools:
        for index in range(len(tools) - 1, -1, -1):
            tool = tools[index]
            if isinstance(tool, dict):
                if tool.get("cache_control") is None:
                    marked_tool = {**tool, "cache_control": _EPHEMERAL}
                    out = {**out, "tools": [*tools[:index], marked_tool, *tools[index + 1 :]]}
                break
    return out


# -- Bedrock Converse ------------------------------------------------------------------------------------------------


def bedrock_supports_caching(model_id: str) -> bool:
    """agentgateway's list: Claude models (not instant, v1, v2) and Nova models."""
    model = model_id.lower()
    if "anthropic.claude" in model:
        return not any(old in model for old in ("claude-instant", "claude-v1", "claude-v2"))
    return "amazon.nova" in model


def _points(blocks: Any) -> int:
    if not isinstance(blocks, list):
        return 0
    return sum(1 for block in blocks if isinstance(block, dict) and "cachePoint" in block)


def converse_cache_points(body: dict[str, Any], model_id: str, caching: PromptCaching | None) -> dict[str, Any]:
    """``body`` (a Bedrock Converse request) with the configured cache points; ``body`` itself when none apply."""
    if caching is None or not bedrock_supports_caching(model_id):
        return body
    system = body.get("system")
    messages = body.get("messages")
    messages = messages if isinstance(messages, list) else []
    tool_config = body.get("toolConfig")
    tools = tool_config.get("tools") if isinstance(tool_config, dict) else None
    used = _points(system) + _points(tools) + sum(_points(m.get("content")) for m in messages if isinstance(m, dict))
    out = body
    if caching.cache_system and used < MAX_CACHE_POINTS and isinstance(system, list) and system and not _points(system):
        texts = [block["text"] for block in system if isinstance(block, dict) and isinstance(block.get("text"), str)]
        if caching.min_tokens is None or _estimate(texts) >= caching.min_tokens:
            out = {**out, "system": [*system, _CACHE_POINT]}
            used += 1
    if caching.cache_messages and used < MAX_CACHE_POINTS and len(messages) >= 2:
        target = max(0, len(messages) - 2 - caching.cache_message_offset)
        message = messages[target]
        if isinstance(message, dict) and isinstance(message.get("content"), list):
            marked = {**message, "content": [*message["content"], _CACHE_POINT]}
            out = {**out, "messages": [*messages[:target], marked, *messages[target + 1 :]]}
            used += 1
    if caching.cache_tools and used < MAX_CACHE_POINTS and isinstance(tools, list) and tools:
        assert isinstance(tool_config, dict)
        out = {**out, "toolConfig": {**tool_config, "tools": [*tools, _CACHE_POINT]}}
    return out
