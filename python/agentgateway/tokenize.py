"""``params.tokenize``: a request's input tokens counted before it is sent, so token rate limits reserve what the
prompt really costs instead of the byte estimate (policy/limits.py ``estimate_tokens``).

Counted in the core with OpenAI's own vocabularies (tiktoken's ``o200k_base`` / ``cl100k_base``, embedded: nothing
is downloaded), as agentgateway counts: each message is its text's tokens plus 4, the reply 3 more. What a message's
text is: its string content or text parts, the name and arguments of its tool calls, an Anthropic block's text,
thinking, ``tool_use`` input or ``tool_result`` content; tool definitions are counted as their JSON text. Images,
audio and documents are not counted (their cost is not text). For OpenAI models the text's count is exact; for any
other model it is an estimate with ``cl100k_base`` (Claude's and Gemini's tokenizers are not public). Either way
the upstream's reported usage settles the reservation when the answer ends.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from . import _core

__all__ = ["count_input_tokens", "load_vocabulary", "message_texts"]


def load_vocabulary(model: str) -> str:
    """Builds ``model``'s vocabulary now (once per process, ~0.2 s), so no request waits for it; its name."""
    return _core.load_tokenizer(model)


def count_input_tokens(model: str, body: Mapping[str, Any]) -> int:
    """The input tokens of a Chat Completions or Messages request body, counted with ``model``'s vocabulary."""
    tokens, _exact = _core.count_chat_tokens(model, message_texts(body))
    return tokens


def message_texts(body: Mapping[str, Any]) -> list[str]:
    """One text per message (the system prompt and the tool definitions count as one each; an embeddings
    request's input strings one each)."""
    texts: list[str] = []
    system = body.get("system")  # Anthropic Messages: a string or text blocks
    if system:
        texts.append(_text(system))
    messages = body.get("messages")
    if isinstance(messages, list):
        for message in messages:
            if isinstance(message, Mapping):
                texts.append(_message_text(message))
    tools = body.get("tools")
    if isinstance(tools, list) and tools:
        texts.append(orjson.dumps(tools).decode())
    embedded = body.get("input")  # an embeddings request: its strings (token-id arrays are not text)
    if isinstance(embedded, str):
        texts.append(embedded)
    elif isinstance(embedded, list):
        texts.extend(item for item in embedded if isinstance(item, str))
    return texts


def _message_text(message: Mapping[str, Any]) -> str:
    parts = [_text(message.get("content"))]
    name = message.get("name")
    if isinstance(name, str):
        parts.append(name)
    tool_calls = message.get("tool_calls")
    if isinstance(tool_calls, list):
        for call in tool_calls:
            function = call.get("function") if isinstance(call, Mapping) else None
            if isinstance(function, Mapping):
                parts.extend(
                    value for value in (function.get("name"), function.get("arguments")) if isinstance(value, str)
                )
    reasoning = message.get("reasoning_content")
    if isinstance(reasoning, str):
        parts.append(reasoning)
    return "\n".join(part for part in parts if part)


def _text(content: Any) -> str:
    """The text of a message's content: a string, or OpenAI content parts / Anthropic content blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(text for text in _block_texts(content) if text)
    return ""


def _block_texts(blocks: Iterable[Any]) -> Iterable[str]:
    for block in blocks:
        if isinstance(block, str):
            yield block
            continue
        if not isinstance(block, Mapping):
            continue
        kind = block.get("type")
        if kind == "text":
            text = block.get("text")
            yield text if isinstance(text, str) else ""
        elif kind == "thinking":
            thinking = block.get("thinking")
            yield thinking if isinstance(thinking, str) else ""
        elif kind == "tool_use":
            name = block.get("name")
            yield (name if isinstance(name, str) else "") + orjson.dumps(block.get("input", {})).decode()
        elif kind == "tool_result":
            yield _text(block.get("content"))
        # image_url, input_audio, file, image, document, redacted_thinking: not text, not counted
