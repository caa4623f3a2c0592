"""Claude on Amazon Bedrock for Anthropic Messages clients (issue 19): InvokeModel / InvokeModelWithResponseStream.

Which API per Bedrock model: a ``/v1/messages`` request for a Claude model id -- one that names
``anthropic.claude`` (``anthropic.claude-sonnet-4-5-…``, the inference profiles ``us.anthropic.claude-…``,
``global.anthropic.claude-…``, foundation-model ARNs) -- goes to ``POST /model/{modelId}/invoke``
(``/invoke-with-response-stream`` for streams) with the client's Messages body natively: ``model`` and ``stream``
removed (the URL says both), ``anthropic_version: bedrock-2023-05-31`` added, the client's ``anthropic-beta``
header sent as the body's ``anthropic_beta`` list. Thinking signatures, ``cache_control``, documents, citations and
server tools reach Claude unchanged. Everything else -- other models, application inference profile ARNs that do not
name the model, and every Chat Completions request -- uses Converse (providers/bedrock.py). The answers are read by
the core's ``bedrock-anthropic`` translator (the event stream's ``chunk`` events carry Anthropic's own events).

``/v1/messages/count_tokens``: ``POST /model/{modelId}/count-tokens`` with ``{"input": {"invokeModel": {"body"}}}``
(Claude; the body as InvokeModel takes it, base64 as Bedrock's JSON protocol sends blobs) or ``{"input":
{"converse": {...}}}`` (other models); Bedrock answers ``{"inputTokens": N}``. SigV4 and API keys as for Converse.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson

from .base import ChatRequest, header_value
from .messages_input import COUNT_TOKENS_FIELDS

__all__ = ["BEDROCK_ANTHROPIC_VERSION", "count_tokens_input", "invoke_body", "is_claude_model"]

BEDROCK_ANTHROPIC_VERSION = "bedrock-2023-05-31"
#: The default when a count_tokens request (which has none) is counted as an InvokeModel body (which needs one).
_COUNT_MAX_TOKENS = 1


def is_claude_model(model_id: str) -> bool:
    """Whether a Bedrock model id (or inference profile, or ARN) names a Claude model: InvokeModel serves it."""
    return "anthropic.claude" in model_id


def invoke_body(request: ChatRequest) -> dict[str, Any]:
    """The InvokeModel body of a Messages request: the client's body, as Bedrock's Claude takes it."""
    body = {key: value for key, value in request.body.items() if key not in ("model", "stream")}
    body["anthropic_version"] = BEDROCK_ANTHROPIC_VERSION
    beta = header_value(request.headers, b"anthropic-beta")
    if beta:
        betas = [name.strip() for name in beta.decode("latin-1").split(",") if name.strip()]
        if betas:
            body["anthropic_beta"] = betas
    return body


def count_tokens_input(request: ChatRequest, converse: dict[str, Any] | None) -> dict[str, Any]:
    """The CountTokens body: ``converse`` is the Converse body of a model served by Converse (None: Claude)."""
    if converse is not None:
        fields = {key: converse[key] for key in ("messages", "system", "toolConfig") if key in converse}
        return {"input": {"converse": fields}}
    body = {key: value for key, value in request.body.items() if key in COUNT_TOKENS_FIELDS and key != "model"}
    body["anthropic_version"] = BEDROCK_ANTHROPIC_VERSION
    body["max_tokens"] = request.body.get("max_tokens") or _COUNT_MAX_TOKENS
    return {"input": {"invokeModel": {"body": base64.b64encode(orjson.dumps(body)).decode()}}}
