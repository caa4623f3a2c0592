"""Amazon Bedrock through the Converse API (``provider: bedrock``; WIRE.md section 3).

``POST {root}/model/{modelId}/converse`` (``/converse-stream`` for streams), where ``root`` is
``https://bedrock-runtime.{awsRegion}.amazonaws.com`` or ``params.baseUrl``, and ``modelId`` (``params.model``, else
the client's model) is percent-encoded as one path segment (``:`` -> ``%3A``, ``/`` -> ``%2F``), so model ids,
inference profiles (``us.anthropic.…``) and ARNs all work.

Auth, in this order: a Bedrock API key (``params.apiKey``, else the ``AWS_BEARER_TOKEN_BEDROCK`` environment
variable) sent as ``Authorization: Bearer``; otherwise SigV4 (service ``bedrock``, the configured region) with
credentials from botocore's standard chain (environment, shared credentials/config files with ``AWS_PROFILE``, SSO,
web identity, container and instance metadata). The chain is resolved and refreshed in a thread, never on the event
loop, one refresh at a time; the frozen credentials are cached until shortly before they expire. Signing itself is
done by the Rust core (``SigV4Signer``), byte for byte what botocore's ``SigV4Auth`` writes, at a fraction of its
cost (see rust/sse_core/src/sigv4.rs).

Anthropic Messages clients (``/v1/messages``, issue 19): Claude models through InvokeModel with their own body,
other models through Converse from the shared model (providers/bedrock_anthropic.py says which and why).

The request translation (OpenAI Chat Completions body -> Converse body) is here; the answer's (whole or the binary
event stream) is in rust/sse_core/src/providers/bedrock.rs. Tool calls, tools, ``tool_choice``, ``stop`` and data URLs
are read by the readers every provider shares (openai_input.py), with their 400s. Converse answers one choice per
request: ``n`` from 2 to 8 is served by the gateway's fan-out (fanout.py). ``response_format`` json_object is the
forced tool ``agentgateway_json_output`` on every model, as on the other Claude paths; json_schema is native
structured output on Claude 4.5 and later, that forced tool with the client's schema elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import orjson

from .._core import SigV4Signer
from ..config import ModelEntry
from ..errors import ConfigError, GatewayError, InvalidRequest, UpstreamHTTPError
from ..memo import BoundedMemo
from ..prompt_caching import anthropic_cache_points, converse_cache_points
from ..upstream import Endpoint, UpstreamRequest, encode_headers
from .base import ChatRequest, Provider, header_value
from .bedrock_anthropic import count_tokens_input, invoke_body, is_claude_model
from .messages_input import converse_body as messages_converse_body
from .messages_input import read_messages
from .openai_input import (
    JSON_TOOL_NAME,
    append_turn,
    invalid,
    parse_data_url,
    read_choice_count,
    read_function_tool,
    read_reasoning,
    read_stop,
    read_tool_call,
    read_tool_choice,
    text_of,
    thinking_while_forced,
)
from .reasoning import EFFORTS, claude_thinking, read_effort

__all__ = ["BedrockProvider", "converse_body"]

logger = logging.getLogger("agentgateway.bedrock")

#: Converse's limit on ``inferenceConfig.stopSequences`` (the bedrock-runtime service model).
MAX_STOP_SEQUENCES = 2500
#: Bedrock's limit for one image (bytes, decoded).
MAX_IMAGE_BYTES = 3_750_000
_IMAGE_FORMATS = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
}
#: Bedrock's limit for one document (bytes, decoded).
MAX_DOCUMENT_BYTES = 4_500_000
_DOCUMENT_FORMATS = {
    "application/pdf": "pdf",
    "text/csv": "csv",
    "application/msword": "doc",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/vnd.ms-excel": "xls",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
    "text/html": "html",
    "text/plain": "txt",
    "text/markdown": "md",
}
_DOCUMENT_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9\s\-()\[\]]")
# Models with native structured output (outputConfig.textFormat); the others get a forced tool.
_NATIVE_JSON_MODELS = re.compile(
    r"anthropic\.claude-(?:opus|sonnet|haiku)-4-5|anthropic\.claude-[a-z]+-(?:4-[6-9]|[5-9])"
)
# Bedrock API key precedence follows the AWS SDKs: the env var wins over SigV4 when set.
BEARER_TOKEN_ENV = "AWS_BEARER_TOKEN_BEDROCK"
# 403 error types that mean "these credentials are stale", worth one retry with freshly resolved ones.
_STALE_CREDENTIAL_ERRORS = frozenset((b"ExpiredTokenException", b"UnrecognizedClientException"))
_MODEL_ENDPOINT_CACHE_LIMIT = 1024
# The credentials the current request was signed with (prepare and credentials_rejected run in the request's task).
_SIGNED_WITH: contextvars.ContextVar[FrozenCredentials | None] = contextvars.ContextVar("bedrock_signed_with")


# -- request translation -----------------------------------------------------------------------------------------


def _image_block(url: Any, param: str) -> dict[str, Any]:
    if not isinstance(url, str):
        raise invalid(f"'{param}' must be a string (a data: URL).", param=param)
    if not url.startswith("data:"):
        # Bedrock takes image bytes only. Fetching URLs from inside the gateway would make it an open proxy (SSRF)
        # and add an unbounded wait to the request, so the client sends the bytes.
        raise invalid(
            f"'{param}': Bedrock accepts images as bytes only; send a base64 data: URL "
            "(data:image/png;base64,...) instead of an http(s) URL.",
            param=param,
        )
    mime, data, size = parse_data_url(url, param)
    image_format = _IMAGE_FORMATS.get(mime)
    if image_format is None:
        raise invalid(
            f"'{param}': unsupported image type {mime or '(none)'!r}; Bedrock accepts image/png, image/jpeg, "
            "image/gif and image/webp.",
            param=param,
        )
    if size > MAX_IMAGE_BYTES:
        raise invalid(
            f"'{param}': the image is {size} bytes; Bedrock accepts at most {MAX_IMAGE_BYTES} per image.",
            param=param,
        )
    # Blobs travel as base64 strings in Bedrock's JSON protocol: the client's base64 goes as is.
    return {"image": {"format": image_format, "source": {"bytes": data}}}


def _user_blocks(content: Any, param: str) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for index, part in enumerate(content):
        where = f"{param}[{index}]"
        if not isinstance(part, dict):
            raise invalid(f"'{where}' must be an object.", param=where)
        kind = part.get("type")
        if kind == "text":
            text = part.get("text")
            if not isinstance(text, str):
                raise invalid(f"'{where}.text' must be a string.", param=f"{where}.text")
            if text:
                blocks.append({"text": text})
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            blocks.append(_image_block(url, f"{where}.image_url.url"))
        elif kind == "file":
            blocks.append(_document_block(part.get("file"), len(blocks), f"{where}.file"))
        else:
            raise invalid(
                f"'{where}.type': content parts of type {kind!r} are not supported by Bedrock through this gateway "
                "(supported: text, image_url and file with a data: URL).",
                param=f"{where}.type",
            )
    return blocks


def _document_block(file: Any, position: int, param: str) -> dict[str, Any]:
    data_url = file.get("file_data") if isinstance(file, dict) else None
    if not isinstance(data_url, str) or not data_url.startswith("data:"):
        raise invalid(
            f"'{param}.file_data': Bedrock needs the document's bytes: send a base64 data: URL "
            "(data:application/pdf;base64,...); uploaded file ids are not supported.",
            param=f"{param}.file_data",
        )
    mime, data, size = parse_data_url(data_url, f"{param}.file_data")
    document_format = _DOCUMENT_FORMATS.get(mime)
    if document_format is None:
        raise invalid(
            f"'{param}.file_data': unsupported document type {mime or '(none)'!r}; Bedrock accepts "
            f"{', '.join(sorted(_DOCUMENT_FORMATS))}.",
            param=f"{param}.file_data",
        )
    if size > MAX_DOCUMENT_BYTES:
        raise invalid(
            f"'{param}.file_data': the document is {size} bytes; Bedrock accepts at most {MAX_DOCUMENT_BYTES}.",
            param=f"{param}.file_data",
        )
    # Bedrock allows letters, digits, single spaces, hyphens, parentheses and square brackets in the name (which the
    # model sees, so keep the client's where possible) and needs names unique within the request.
    filename = file.get("filename") if isinstance(file.get("filename"), str) else ""
    name = " ".join(_DOCUMENT_NAME_UNSAFE.sub(" ", filename.rsplit(".", 1)[0]).split())[:200]
    name = f"{name or 'document'} ({position + 1})"
    return {"document": {"format": document_format, "name": name, "source": {"bytes": data}}}


def _assistant_blocks(message: dict[str, Any], message_index: int) -> list[dict[str, Any]]:
    param = f"messages[{message_index}]"
    blocks: list[dict[str, Any]] = []
    # Reasoning first, with its signature: Claude refuses a later turn whose reasoning lost its signature.
    for block in read_reasoning(message, message_index):
        if block["type"] == "thinking":
            blocks.append(
                {"reasoningContent": {"reasoningText": {"text": block["thinking"], "signature": block["signature"]}}}
            )
        else:
            blocks.append({"reasoningContent": {"redactedContent": block["data"]}})
    content = message.get("content")
    if isinstance(content, str):
        if content:
            blocks.append({"text": content})
    elif isinstance(content, list):
        for index, part in enumerate(content):
            if isinstance(part, dict) and part.get("type") in ("text", "refusal"):
                text = part.get("text") if part.get("type") == "text" else part.get("refusal")
                if isinstance(text, str) and text:
                    blocks.append({"text": text})
            else:
                where = f"{param}.content[{index}]"
                raise invalid(f"'{where}': assistant content parts must be text.", param=where)
    tool_calls = message.get("tool_calls")
    if tool_calls is not None:
        if not isinstance(tool_calls, list):
            raise invalid(f"'{param}.tool_calls' must be an array.", param=f"{param}.tool_calls")
        for index, call in enumerate(tool_calls):
            call_id, name, arguments = read_tool_call(call, f"{param}.tool_calls[{index}]")
            blocks.append({"toolUse": {"toolUseId": call_id, "name": name, "input": arguments}})
    return blocks


def _tool_result_block(message: dict[str, Any], param: str) -> dict[str, Any]:
    tool_call_id = message.get("tool_call_id")
    if not isinstance(tool_call_id, str) or not tool_call_id:
        raise invalid(f"Missing required parameter: '{param}.tool_call_id'.", param=f"{param}.tool_call_id")
    text = text_of(message.get("content"), f"{param}.content", separator="")
    # Bedrock refuses empty text blocks: an empty result is an empty content list.
    return {"toolResult": {"toolUseId": tool_call_id, "content": [{"text": text}] if text else []}}


def _effort_fields(model_id: str, effort: str) -> dict[str, Any] | None:
    """additionalModelRequestFields for reasoning_effort (not ``none``), by model family, from the one table of
    providers/reasoning.py (None: the model has no such switch). Claude's budget is filled in by the caller."""
    if "anthropic.claude" in model_id:
        return {"thinking": {"type": "enabled", "budget_tokens": EFFORTS[effort].budget}}
    level = EFFORTS[effort].level
    if "amazon.nova" in model_id:
        return {"reasoningConfig": {"type": "enabled", "maxReasoningEffort": level}}
    if "openai.gpt-oss" in model_id:
        return {"reasoning_effort": level}
    return None


def _tool_spec(tool: Any, index: int) -> dict[str, Any]:
    name, description, parameters = read_function_tool(index, tool)
    spec: dict[str, Any] = {"name": name, "inputSchema": {"json": parameters or {"type": "object", "properties": {}}}}
    if description:
        spec["description"] = description
    strict = tool["function"].get("strict")
    if isinstance(strict, bool):
        spec["strict"] = strict
    return {"toolSpec": spec}


def converse_body(body: dict[str, Any], model_id: str, default_max_tokens: int | None = None) -> dict[str, Any]:
    """The Converse request for an OpenAI Chat Completions body (validated by request.parse_chat_request)."""
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    history_tools: dict[str, None] = {}  # tool names used in the history, in order
    has_tool_blocks = False
    for index, message in enumerate(body["messages"]):
        role = message["role"]
        param = f"messages[{index}]"
        if role in ("system", "developer"):
            text = text_of(message.get("content"), f"{param}.content", separator="")
            if text:
                system.append({"text": text})
            continue
        if role == "user":
            turn_role, blocks = "user", _user_blocks(message.get("content"), f"{param}.content")
        elif role == "assistant":
            turn_role, blocks = "assistant", _assistant_blocks(message, index)
            for block in blocks:
                if "toolUse" in block:
                    has_tool_blocks = True
                    history_tools[block["toolUse"]["name"]] = None
        elif role == "tool":
            turn_role, blocks = "user", [_tool_result_block(message, param)]
            has_tool_blocks = True
        else:
            raise invalid(
                f"'{param}.role': {role!r} messages are not supported for Bedrock; use 'tool' messages.",
                param=f"{param}.role",
            )
        append_turn(turns, turn_role, blocks)
    if not turns:
        raise invalid("'messages' must contain at least one user or assistant message with content.", param="messages")
    out: dict[str, Any] = {"messages": turns}
    if system:
        out["system"] = system

    # inferenceConfig
    inference: dict[str, Any] = {}
    client_max_tokens = body.get("max_completion_tokens")
    if client_max_tokens is None:
        client_max_tokens = body.get("max_tokens")
    max_tokens = client_max_tokens if client_max_tokens is not None else default_max_tokens
    if body.get("temperature") is not None:
        inference["temperature"] = body["temperature"]
    if body.get("top_p") is not None:
        inference["topP"] = body["top_p"]
    sequences = read_stop(body, MAX_STOP_SEQUENCES, "Bedrock models")
    if sequences:
        inference["stopSequences"] = sequences
    # ``n``: Converse answers one choice per request; n > 1 is served by the gateway's fan-out (fanout.py).

    # reasoning_effort -> the model family's reasoning switch
    effort = read_effort(body)
    if effort is not None and effort != "none":
        fields = _effort_fields(model_id, effort)
        if fields is not None:
            thinking = fields.get("thinking")
            if thinking is not None:
                thinking["budget_tokens"], max_tokens = claude_thinking(effort, client_max_tokens, default_max_tokens)
                # Claude refuses sampling settings while thinking (temperature must be 1): leave them out.
                inference.pop("temperature", None)
                inference.pop("topP", None)
            out["additionalModelRequestFields"] = fields
    if max_tokens is not None:
        inference["maxTokens"] = max_tokens
    if inference:
        out["inferenceConfig"] = inference

    # tools, tool_choice, response_format
    tools = body.get("tools") or []
    specs = [_tool_spec(tool, i) for i, tool in enumerate(tools)]
    mode, forced_name = read_tool_choice(body.get("tool_choice"))
    choice: dict[str, Any] | None = None
    if mode == "auto":
        choice = {"auto": {}} if specs else None
    elif mode == "required":
        choice = {"any": {}}
    elif mode == "function":
        choice = {"tool": {"name": forced_name}}
    # Converse has no "none": the tools are left out (below, unless the history needs them), and no toolChoice.
    tool_choice = mode
    if tool_choice == "none":
        specs = [s for s in specs if s["toolSpec"]["name"] in history_tools] if has_tool_blocks else []

    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") in ("json_schema", "json_object"):
        if response_format["type"] == "json_schema":
            json_schema = response_format.get("json_schema")
            if not isinstance(json_schema, dict) or not isinstance(json_schema.get("schema", {}), dict):
                raise invalid(
                    "'response_format.json_schema' must be an object with a 'schema' object.",
                    param="response_format.json_schema",
                )
            schema = json_schema.get("schema") or {"type": "object"}
            name = json_schema.get("name") if isinstance(json_schema.get("name"), str) else "response"
            description = json_schema.get("description")
        else:
            schema, name, description = {"type": "object"}, "response", None
        if response_format["type"] == "json_schema" and _NATIVE_JSON_MODELS.search(model_id):
            structure: dict[str, Any] = {"schema": orjson.dumps(schema).decode(), "name": name}
            if isinstance(description, str) and description:
                structure["description"] = description
            out["outputConfig"] = {"textFormat": {"type": "json_schema", "structure": {"jsonSchema": structure}}}
        else:
            spec: dict[str, Any] = {
                "name": JSON_TOOL_NAME,
                "description": " ".join(
                    filter(
                        None,
                        [
                            description if isinstance(description, str) else None,
                            f"Answer by calling this tool with the response ({name}) as its input.",
                        ],
                    )
                ),
                "inputSchema": {"json": schema},
            }
            user_tools = bool(specs) and tool_choice != "none"
            specs.append({"toolSpec": spec})
            if choice is None or not user_tools:
                choice = {"tool": {"name": JSON_TOOL_NAME}}
            elif "auto" in choice:
                choice = {"any": {}}  # a user tool or the answer, but no free text

    if has_tool_blocks:
        # Bedrock refuses a history with tool blocks unless toolConfig is present: declare the tools it uses.
        declared = {s["toolSpec"]["name"] for s in specs}
        for name in history_tools:
            if name not in declared:
                specs.append({"toolSpec": {"name": name, "inputSchema": {"json": {"type": "object"}}}})
        if not specs:
            specs.append({"toolSpec": {"name": "none", "inputSchema": {"json": {"type": "object"}}}})
    if specs:
        tool_config: dict[str, Any] = {"tools": specs}
        if choice is not None:
            tool_config["toolChoice"] = choice
            if "auto" not in choice and "thinking" in out.get("additionalModelRequestFields", {}):
                # Claude refuses to think while forced to call a tool: say so instead of forwarding its 400.
                forced_by = "tool_choice"
                if tool_choice in ("auto", "none"):
                    kind = response_format.get("type") if isinstance(response_format, dict) else ""
                    forced_by = f"response_format {kind} (served by a forced tool)"
                raise thinking_while_forced(forced_by)
        out["toolConfig"] = tool_config
    return out


# -- credentials -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FrozenCredentials:
    access_key: str
    secret_key: str
    token: str | None
    #: Unix time at which they expire (None: they do not).
    expiry: float | None

    def key(self) -> tuple[str, str, str | None]:
        return (self.access_key, self.secret_key, self.token)


def _resolve(botocore_credentials: Any) -> tuple[Any, FrozenCredentials]:
    """Runs in a thread: resolve the chain once (then reuse its refreshable credentials) and freeze them."""
    if botocore_credentials is None:
        import botocore.session

        botocore_credentials = botocore.session.Session().get_credentials()
        if botocore_credentials is None:
            raise GatewayError(
                "No AWS credentials found for Bedrock (checked the environment, shared credentials and config "
                "files, SSO, web identity, container and instance metadata). Set AWS_ACCESS_KEY_ID / "
                "AWS_SECRET_ACCESS_KEY or AWS_PROFILE, or params.apiKey for a Bedrock API key.",
                status=500,
                code="aws_credentials_missing",
            )
    frozen = botocore_credentials.get_frozen_credentials()
    expiry_time = getattr(botocore_credentials, "_expiry_time", None)
    expiry = expiry_time.timestamp() if expiry_time is not None else None
    return botocore_credentials, FrozenCredentials(frozen.access_key, frozen.secret_key, frozen.token or None, expiry)


class AwsCredentials:
    """The standard AWS credential chain, resolved off the event loop and cached until shortly before expiry.

    Refresh: from ``expiry - lead`` (lead = 5 minutes, or half the credentials' lifetime when that is shorter) one
    background refresh runs in a thread while requests keep using the current credentials; within 10 seconds of
    expiry (or after it) requests wait for the refresh. One refresh at a time."""

    def __init__(self) -> None:
        self._botocore: Any = None
        self._frozen: FrozenCredentials | None = None
        self._refresh_at = 0.0
        self._must_refresh_at = 0.0
        self._task: asyncio.Future[FrozenCredentials] | None = None
        self._renew_lock = asyncio.Lock()

    async def get(self) -> FrozenCredentials:
        frozen = self._frozen
        if frozen is not None:
            now = time.time()
            if now < self._refresh_at:
                return frozen
            task = self._start_refresh()
            if now < self._must_refresh_at:
                return frozen  # still valid: the refresh runs in the background
            return await asyncio.shield(task)
        return await asyncio.shield(self._start_refresh())

    async def renew(self, rejected: FrozenCredentials | None) -> bool:
        """The upstream refused ``rejected``: resolve the whole chain again (a file, or the environment of a sidecar,
        may hold new credentials). True when the credentials now cached differ from the refused ones -- also when
        another request refused at the same time renewed them already (they renew once, and all retry)."""
        async with self._renew_lock:
            current = self._frozen
            if current is not None and rejected is not None and current.key() != rejected.key():
                return True
            while self._task is not None:
                # A refresh already running may have started before the rejection: let it end, then start afresh.
                with contextlib.suppress(GatewayError):
                    await asyncio.shield(self._task)
            self._frozen = None
            self._botocore = None
            new = await asyncio.shield(self._start_refresh())
            return rejected is None or new.key() != rejected.key()

    def _start_refresh(self) -> asyncio.Future[FrozenCredentials]:
        if self._task is None:
            self._task = asyncio.ensure_future(self._refresh())
            # A background refresh nobody awaits must not log "exception never retrieved"; the next request that
            # needs the credentials sees the failure.
            self._task.add_done_callback(_consume_exception)
        return self._task

    async def _refresh(self) -> FrozenCredentials:
        try:
            botocore_credentials, frozen = await asyncio.to_thread(_resolve, self._botocore)
        except GatewayError:
            raise
        except Exception as exc:
            # botocore's messages name the source that failed (profile, SSO, container endpoint); no secrets.
            logger.warning("resolving AWS credentials failed: %s", exc)
            raise GatewayError(
                f"Resolving AWS credentials for Bedrock failed: {type(exc).__name__}: {exc}",
                status=500,
                code="aws_credentials_error",
            ) from None
        finally:
            self._task = None
        self._botocore = botocore_credentials
        self._frozen = frozen
        now = time.time()
        if frozen.expiry is None:
            self._refresh_at = self._must_refresh_at = float("inf")
        else:
            lifetime = max(frozen.expiry - now, 0.0)
            self._refresh_at = frozen.expiry - min(300.0, lifetime / 2)
            self._must_refresh_at = frozen.expiry - min(10.0, lifetime / 4)
        return frozen


def _consume_exception(task: asyncio.Future[FrozenCredentials]) -> None:
    if not task.cancelled():
        task.exception()


# -- the provider ------------------------------------------------------------------------------------------------


class BedrockProvider(Provider):
    translator = "bedrock"

    def __init__(self, entry: ModelEntry) -> None:
        super().__init__(entry)
        params = entry.params
        region = params.aws_region or ""
        root = params.base_url or f"https://bedrock-runtime.{region}.amazonaws.com"
        parts = urlsplit(root)
        self.root = f"{parts.scheme}://{parts.netloc}"  # baseUrl replaces scheme, host and port only
        self.host = parts.netloc.rsplit("@", 1)[-1]
        self.max_tokens = params.max_tokens
        api_key = params.api_key.get_secret_value() if params.api_key is not None else os.environ.get(BEARER_TOKEN_ENV)
        self.static_headers = encode_headers({"Content-Type": "application/json"})
        self.credentials: AwsCredentials | None = None
        self.signer: SigV4Signer | None = None
        if api_key:
            if "\r" in api_key or "\n" in api_key:
                raise ConfigError(f"{entry.name}: the Bedrock API key contains a line break")
            self.static_headers += encode_headers({"Authorization": "Bearer " + api_key})
            if api_key not in self.secrets:
                self.secrets.append(api_key)  # the key from the environment is as secret as a configured one
        else:
            self.credentials = AwsCredentials()
            self.signer = SigV4Signer(region, "bedrock", self.host, "application/json")
        self._endpoints: BoundedMemo[tuple[str, bool], tuple[Endpoint, str]] = BoundedMemo(
            self._make_endpoint, _MODEL_ENDPOINT_CACHE_LIMIT
        )
        #: InvokeModel, CountTokens and Converse for Anthropic Messages clients, per (model id, operation).
        self._operation_endpoints: BoundedMemo[tuple[str, str], tuple[Endpoint, str]] = BoundedMemo(
            self._make_operation_endpoint, _MODEL_ENDPOINT_CACHE_LIMIT
        )
        if self.upstream_model is not None:
            if self.upstream_model in (".", ".."):
                raise ConfigError(f"{entry.name}: params.model {self.upstream_model!r} is not a Bedrock model id")
            for stream in (False, True):
                self._endpoints.get((self.upstream_model, stream))

    def _make_endpoint(self, key: tuple[str, bool]) -> tuple[Endpoint, str]:
        model_id, stream = key
        if model_id in (".", ".."):
            raise InvalidRequest(f"{model_id!r} is not a Bedrock model id.", param="model")
        path = f"/model/{quote(model_id, safe='')}/{'converse-stream' if stream else 'converse'}"
        return Endpoint.parse(self.root + path), path

    def _make_operation_endpoint(self, key: tuple[str, str]) -> tuple[Endpoint, str]:
        model_id, operation = key
        if model_id in (".", ".."):
            raise InvalidRequest(f"{model_id!r} is not a Bedrock model id.", param="model")
        path = f"/model/{quote(model_id, safe='')}/{operation}"
        return Endpoint.parse(self.root + path), path

    async def prepare(self, request: ChatRequest) -> UpstreamRequest:
        model_id = self.upstream_model or request.model
        if request.api != "chat":
            return await self._prepare_messages(request, model_id)
        endpoint, path = self._endpoints.get((model_id, request.stream))
        payload = converse_body(request.body, model_id, self.max_tokens)
        body = orjson.dumps(converse_cache_points(payload, model_id, self.entry.prompt_caching))  # issue 21
        return UpstreamRequest(endpoint, await self.signed_headers(path, body), body)

    async def _prepare_messages(self, request: ChatRequest, model_id: str) -> UpstreamRequest:
        """An Anthropic Messages client (issue 19, providers/bedrock_anthropic.py): Claude through InvokeModel with
        the client's body, other models through Converse built from the shared model; count_tokens: CountTokens."""
        claude = is_claude_model(model_id)
        if request.api == "count_tokens":
            converse = (
                None if claude else messages_converse_body(read_messages(request.body), model_id, self.max_tokens)
            )
            operation, payload = "count-tokens", count_tokens_input(request, converse)
        elif claude:
            operation = "invoke-with-response-stream" if request.stream else "invoke"
            payload = anthropic_cache_points(invoke_body(request), self.entry.prompt_caching)  # promptCaching, issue 21
        else:
            operation = "converse-stream" if request.stream else "converse"
            payload = messages_converse_body(read_messages(request.body), model_id, self.max_tokens)
            payload = converse_cache_points(payload, model_id, self.entry.prompt_caching)  # promptCaching, issue 21
        endpoint, path = self._operation_endpoints.get((model_id, operation))
        body = orjson.dumps(payload)
        return UpstreamRequest(endpoint, await self.signed_headers(path, body), body)

    def translator_for(self, request: ChatRequest) -> str:
        if request.api == "messages" and is_claude_model(self.upstream_model or request.model):
            return "bedrock-anthropic"  # InvokeModel's answers: Anthropic's own, in the event stream's chunks
        return self.translator

    def fan_out(self, request: ChatRequest) -> int:
        return read_choice_count(request.body, "Bedrock models", "one request per choice") if "n" in request.body else 1

    def counts_tokens(self, request: ChatRequest) -> bool:
        return True

    def input_tokens(self, body: bytes) -> int | None:
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        count = parsed.get("inputTokens") if isinstance(parsed, dict) else None
        return count if isinstance(count, int) else None

    async def signed_headers(self, path: str, body: bytes) -> bytes:
        """The headers of a request to ``path`` (as it goes on the wire) with ``body``: the content type and the
        API key, or the SigV4 signature with the cached credentials (remembered, so that a refusal renews them).
        Every Bedrock operation signs through here (Converse, and InvokeModel for embeddings)."""
        headers = self.static_headers
        if self.credentials is not None and self.signer is not None:
            credentials = await self.credentials.get()
            _SIGNED_WITH.set(credentials)
            headers += self.signer.headers(
                path, body, credentials.access_key, credentials.secret_key, credentials.token
            )
        return headers

    def error_from_response(self, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> GatewayError:
        # Bedrock's errors: the type in the x-amzn-errortype header ("ValidationException:http://..."), the text
        # in {"message": ...} (or "Message").
        error_type = header_value(headers, b"x-amzn-errortype")
        code = error_type.split(b":", 1)[0].decode("latin-1") if error_type else None
        message = None
        try:
            parsed: Any = orjson.loads(body)
        except orjson.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict):
            message = parsed.get("message") or parsed.get("Message")
        if not isinstance(message, str) or not message:
            return UpstreamHTTPError.from_openai_body(status, body, headers)
        return UpstreamHTTPError.create(status, message, code=code, headers=headers)

    def rejects_credentials(self, status: int, headers: list[tuple[bytes, bytes]]) -> bool:
        if status == 401:
            return True
        if status != 403:
            return False
        error_type = header_value(headers, b"x-amzn-errortype")
        return error_type is not None and error_type.split(b":", 1)[0] in _STALE_CREDENTIAL_ERRORS

    async def credentials_rejected(self) -> bool:
        if self.credentials is None:
            return False  # an API key: nothing to renew
        renewed = await self.credentials.renew(_SIGNED_WITH.get(None))
        if not renewed:
            logger.warning("Bedrock refused the AWS credentials and the chain gave the same ones again")
        return renewed
