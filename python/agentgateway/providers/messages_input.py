"""The shared request model (issue 19, DESIGN.md section 3): each inbound API's body is read once into
`MessagesInput`, and each translating provider builds its upstream body from it.

- Anthropic Messages requests (``/v1/messages``): `read_messages`.
- Chat Completions requests (``/v1/chat/completions``) for providers that translate them: `read_chat`, which
  checks the body with providers/openai_input.py's readers (one wording of every 400, naming the client's OpenAI
  field, ``messages[2].tool_calls[0].function.arguments``) and writes the turns as the same Anthropic-shaped
  content blocks. Chat's extras have fields of their own (``n``, ``seed``, the penalties, ``json_object``); the
  few errors only a builder can find are worded for the API the request came in (`MessagesInput.api`); what each
  provider takes, and how its 400s word it, is its `ChatTarget`. Built from it: Gemini API and Gemini on Vertex AI
  (`gemini_body`), Anthropic and Claude on Vertex AI (anthropic.py ``claude_input_body``), Bedrock Converse
  (`converse_body`, the writer Messages clients share; chat structured output is served there too, as native
  ``outputConfig`` or a forced tool); OpenAI and OpenAI-compatible chat stays a byte pass-through.

- Claude backends take the client's body natively (`claude_body`): only ``model`` replaced (or removed, with
  Vertex's / Bedrock's ``anthropic_version`` added). Nothing is lost: thinking signatures, ``cache_control``,
  documents, citations, server tools, ``context_management`` and betas reach Claude as the client sent them.
- Every other backend builds from `MessagesInput` (`read_messages`): the system text, the turns as Anthropic
  content blocks (string content made a text block; ``system``-role turns inside ``messages`` kept in place), the
  client tools, the tool choice, the thinking setting read as one reasoning effort of providers/reasoning.py's table
  (``thinking.budget_tokens`` keeps its budget where the target takes budgets), sampling, stop sequences, the
  output format and ``metadata.user_id``. `chat_body` (OpenAI and compatible), `gemini_body` (Gemini API, Gemini on
  Vertex AI) and `converse_body` (Bedrock Converse) each write their wire format from it.

What a target cannot express and that changes what the answer means is a 400 naming the client's field: a server
tool (``tools.N.type``), a block type the target has no counterpart for, an image URL for Bedrock, an output format
Converse cannot serve. What only tunes Anthropic's own machinery is dropped for other targets: ``cache_control``,
``context_management``, ``container``, ``service_tier``, ``anthropic-beta``, citations settings of documents,
``top_k`` where the target has none, ``metadata`` (but ``user_id`` for OpenAI's ``user``).
"""

from __future__ import annotations

import mimetypes
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson

from ..errors import InvalidRequest
from .openai_input import (
    JSON_TOOL_NAME,
    MEDIA_TYPE_ALIASES,
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
from .reasoning import EFFORTS, claude_thinking, gemini_thinking_config, read_effort

__all__ = [
    "ChatTarget",
    "MessagesInput",
    "chat_body",
    "claude_body",
    "claude_count_body",
    "converse_body",
    "effort_for_budget",
    "estimate_input_tokens",
    "gemini_body",
    "read_chat",
    "read_messages",
    "responses_input_tokens_body",
]

#: What ``/v1/messages/count_tokens`` takes (anthropic's MessageCountTokensParams, with the beta's extras).
COUNT_TOKENS_FIELDS = frozenset(
    (
        "model",
        "messages",
        "system",
        "tools",
        "tool_choice",
        "thinking",
        "output_config",
        "mcp_servers",
        "context_management",
        "cache_control",
        "speed",
    )
)
_THOUGHT_SEPARATOR = "__thought__"
# Tool-call ids the core makes up for upstreams that give none (Gemini API): never sent back as ids.
_GENERATED_ID = re.compile(r"(?:call|toolu)_[0-9a-f]{24}")
_GEMINI_PRO_BUDGET = (128, 32768)
_GEMINI_FLASH_BUDGET = (512, 24576)


def _invalid(message: str, param: str) -> InvalidRequest:
    return InvalidRequest(f"{param}: {message}", param=param)


# -- Claude backends: the client's body ---------------------------------------------------------------------------


def claude_body(body: dict[str, Any], *, model: str | None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The client's Messages body for a Claude backend: ``model`` put in (None: removed, the URL names it) and the
    ``extra`` fields (``anthropic_version``) added. Everything else as the client sent it."""
    out = dict(body)
    if model is None:
        out.pop("model", None)
    else:
        out["model"] = model
    if extra:
        out.update(extra)
    return out


def claude_count_body(body: dict[str, Any], *, model: str | None) -> dict[str, Any]:
    """The body of Anthropic's ``count_tokens`` for a count_tokens request: the fields it takes."""
    out = {key: value for key, value in body.items() if key in COUNT_TOKENS_FIELDS}
    if model is None:
        out.pop("model", None)
    else:
        out["model"] = model
    return out


# -- the shared model ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Tool:
    name: str
    description: str | None
    #: None: a Chat Completions function tool without ``parameters``.
    schema: dict[str, Any] | None
    #: the tool's other fields a target may take as they are (a chat tool's ``cache_control``, for Claude).
    extra: dict[str, Any] = field(default_factory=dict)
    #: the tool's ``strict`` (Chat: ``function.strict``) when the client sent a boolean (Converse takes it).
    strict: bool | None = None


@dataclass(slots=True)
class MessagesInput:
    """A request read once for targets that translate it (Messages: targets that are not Claude)."""

    #: the text of the top-level ``system`` (its blocks, in order).
    system: list[str]
    #: ``(role, blocks, index)`` per message: role ``user`` | ``assistant`` | ``system``; blocks are Anthropic
    #: content blocks (a string content as one text block); ``index`` its position in ``messages`` (for errors).
    #: Chat Completions requests (`read_chat`) add ``audio`` blocks (``input_audio``) and a ``name`` on the
    #: tool_result blocks of the legacy ``function`` role (which names the function, not a call).
    turns: list[tuple[str, list[dict[str, Any]], int]]
    tools: list[Tool] = field(default_factory=list)
    #: ``auto`` | ``any`` | ``tool`` | ``none``; ``tool_name`` for ``tool``; ``tool_choice_set``: the client sent
    #: one (else auto is the default).
    tool_choice: str = "auto"
    tool_name: str | None = None
    tool_choice_set: bool = False
    parallel_tools: bool = True
    #: the reasoning effort (providers/reasoning.py) the thinking setting stands for; None: no thinking asked.
    effort: str | None = None
    #: ``thinking.budget_tokens`` when thinking is enabled with a budget.
    budget: int | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: list[str] = field(default_factory=list)
    user_id: str | None = None
    #: ``output_config.format``'s JSON Schema (structured output; Chat: ``response_format`` json_schema).
    schema: dict[str, Any] | None = None
    #: Chat's ``response_format.json_schema`` ``name`` and ``description`` (Converse's structure names them).
    schema_name: str | None = None
    schema_description: str | None = None
    stream: bool = False
    #: the inbound API: ``messages`` | ``chat``, for the wording of the errors only a builder can find.
    api: str = "messages"
    # Chat Completions only:
    #: any JSON object as the answer (``response_format`` json_object).
    json_object: bool = False
    #: ``n`` as the client sent it (None: absent).
    n: int | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None


def _schema(tool: Tool) -> dict[str, Any]:
    return tool.schema if tool.schema is not None else {"type": "object", "properties": {}}


def effort_for_budget(budget: int) -> str:
    """The reasoning effort whose Claude budget is the smallest at or above ``budget`` (xhigh above them all)."""
    for name in ("minimal", "low", "medium", "high"):
        if budget <= EFFORTS[name].budget:
            return name
    return "xhigh"


def read_messages(body: dict[str, Any]) -> MessagesInput:
    """The shared model of a Messages body checked by messages.parse_messages_request."""
    system_field = body.get("system")
    if isinstance(system_field, str):
        system = [system_field] if system_field else []
    else:
        system = [block["text"] for block in system_field or [] if block.get("text")]
    turns = []
    for index, message in enumerate(body["messages"]):
        content = message["content"]
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        turns.append((message["role"], blocks, index))
    out = MessagesInput(system, turns, stream=bool(body.get("stream")))
    for index, tool in enumerate(body.get("tools") or []):
        kind = tool.get("type")
        if kind not in (None, "custom"):
            raise _invalid(
                f"the tool type {kind!r} is a server tool that only Claude models run; this model takes client "
                "tools ({'name', 'description', 'input_schema'}) only.",
                f"tools.{index}.type",
            )
        schema = tool.get("input_schema")
        if schema is None:
            schema = {"type": "object", "properties": {}}
        if not isinstance(schema, dict):
            raise _invalid("must be a JSON Schema object.", f"tools.{index}.input_schema")
        description = tool.get("description")
        strict = tool.get("strict")
        out.tools.append(
            Tool(
                tool["name"],
                description if isinstance(description, str) and description else None,
                schema,
                strict=strict if isinstance(strict, bool) else None,
            )
        )
    choice = body.get("tool_choice")
    if choice is not None:
        out.tool_choice = choice["type"]
        out.tool_choice_set = True
        out.tool_name = choice.get("name")
        out.parallel_tools = not choice.get("disable_parallel_tool_use", False)
    thinking = body.get("thinking")
    output_config = body.get("output_config")
    output_config = output_config if isinstance(output_config, dict) else {}
    if isinstance(thinking, dict):
        if thinking["type"] == "enabled":
            out.budget = thinking["budget_tokens"]
            out.effort = effort_for_budget(thinking["budget_tokens"])
        elif thinking["type"] == "adaptive":
            effort = output_config.get("effort")
            out.effort = effort if isinstance(effort, str) and effort in EFFORTS else "high"
        else:
            out.effort = "none"
    fmt = output_config.get("format")
    if isinstance(fmt, dict):
        schema = fmt.get("schema")
        if fmt.get("type") != "json_schema" or not isinstance(schema, dict):
            raise _invalid(
                "only {'type': 'json_schema', 'schema': {...}} can be served by this model.", "output_config.format"
            )
        out.schema = schema
    out.max_tokens = body.get("max_tokens")
    out.temperature = body.get("temperature")
    out.top_p = body.get("top_p")
    out.top_k = body.get("top_k")
    out.stop = [s for s in body.get("stop_sequences") or [] if s]
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str):
        out.user_id = metadata["user_id"]
    return out


# -- Chat Completions requests -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChatTarget:
    """What a translating provider takes of a Chat Completions request, for `read_chat`'s checks and the wording of
    its 400s (one wording for every provider; the fields fill in what each takes)."""

    #: the models, as the 400s name them ("Gemini models"), and the provider ("Gemini").
    models: str
    provider: str
    #: the most ``stop`` sequences it takes (None: no limit).
    max_stop: int | None
    #: how it serves ``n`` (the 400's wording: "Gemini's candidateCount").
    choices: str
    #: the URL schemes an ``image_url`` may have besides ``data:``, and how the 400 says so (no schemes: why not).
    url_schemes: tuple[str, ...] = ("https://", "http://")
    url_rule: str = "an http(s):// URL"
    #: the user content parts it takes, and how the 400 lists them (None: the names).
    parts: tuple[str, ...] = ("text", "image_url", "input_audio", "file")
    parts_rule: str | None = None
    #: the media types an inline image may have (None: any) and the 400's rule.
    image_types: frozenset[str] | None = None
    image_rule: str = ""
    #: whether a ``file`` part may name an uploaded file (``file_id``); whether ``file_data`` must be a PDF.
    file_ids: bool = True
    pdf_only: bool = False
    #: each text part its own text block (with its ``cache_control``), else a message's text parts joined.
    text_blocks: bool = False
    #: whether the legacy ``function`` role is taken.
    function_role: bool = True
    #: whether an unknown ``response_format.type`` is a 400 (else left alone).
    check_response_format: bool = True
    #: the media types a ``file_data`` may have (None: any with a media type) and the 400's rule.
    file_types: frozenset[str] | None = None
    file_rule: str = ""
    #: the largest inline image and file it takes (decoded bytes; None: no limit of the gateway's).
    max_image_bytes: int | None = None
    max_file_bytes: int | None = None
    #: whether a ``file``'s ``filename`` (less its extension) becomes the document's ``title`` (Converse names
    #: documents).
    file_titles: bool = False


_AUDIO_TYPES = {"wav": "audio/wav", "mp3": "audio/mp3"}


def read_chat(body: dict[str, Any], target: ChatTarget, *, stream: bool = False) -> MessagesInput:
    """The shared model of a Chat Completions body (checked by the chat parser, request.py: ``messages`` a list of
    objects with a known ``role``, the top-level fields of the right JSON types). Every 400 names the client's
    OpenAI field."""
    turns: list[tuple[str, list[dict[str, Any]], int]] = []
    for index, message in enumerate(body["messages"]):
        role = message["role"]
        content = message.get("content")
        param = f"messages[{index}].content"
        if role in ("system", "developer"):
            if target.text_blocks and isinstance(content, list):
                blocks = [_chat_text_block(part, f"{param}[{i}]") for i, part in enumerate(content)]
                turns.append(("system", [block for block in blocks if block is not None], index))
            else:
                text = text_of(content, param)
                turns.append(("system", [{"type": "text", "text": text}] if text else [], index))
        elif role == "user":
            turns.append(("user", _chat_user_blocks(content, param, target), index))
        elif role == "assistant":
            turns.append(("assistant", _chat_assistant_blocks(message, index, target), index))
        elif role == "tool":
            tool_call_id = message.get("tool_call_id")
            if not isinstance(tool_call_id, str) or not tool_call_id:
                raise InvalidRequest(
                    f"Missing required parameter: 'messages[{index}].tool_call_id'.",
                    code="missing_required_parameter",
                    param=f"messages[{index}].tool_call_id",
                )
            result = {"type": "tool_result", "tool_use_id": tool_call_id, "content": text_of(content, param)}
            turns.append(("user", [result], index))
        elif not target.function_role:
            raise invalid(
                f"messages[{index}]: role 'function' is not supported for {target.models}; use 'tool' messages "
                "with 'tool_call_id'.",
                f"messages[{index}].role",
            )
        else:  # "function": the pre-tools protocol names the function itself
            name = message.get("name")
            if not isinstance(name, str) or not name:
                raise invalid(f"'messages[{index}].name' must name the function.", f"messages[{index}].name")
            block = {"type": "tool_result", "tool_use_id": "", "name": name, "content": text_of(content, param)}
            turns.append(("user", [block], index))
    out = MessagesInput([], turns, stream=stream, api="chat")

    for index, tool in enumerate(body.get("tools") or []):
        name, description, schema = read_function_tool(index, tool)
        extra = {"cache_control": tool["cache_control"]} if "cache_control" in tool else {}
        strict = tool["function"].get("strict")
        out.tools.append(Tool(name, description, schema, extra, strict if isinstance(strict, bool) else None))
    choice = body.get("tool_choice")
    if choice is not None and (out.tools or choice == "none"):  # without tools only "none" means anything
        mode, out.tool_name = read_tool_choice(choice)
        out.tool_choice = {"required": "any", "function": "tool"}.get(mode, mode)
        out.tool_choice_set = True
    if body.get("parallel_tool_calls") is False:
        out.parallel_tools = False

    max_tokens = body.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = body.get("max_tokens")
    if max_tokens is not None and max_tokens < 1:
        raise invalid("'max_tokens' must be at least 1.", "max_tokens")
    out.max_tokens = max_tokens
    out.temperature = body.get("temperature")
    out.top_p = body.get("top_p")
    out.seed = body.get("seed")
    out.presence_penalty = body.get("presence_penalty")
    out.frequency_penalty = body.get("frequency_penalty")
    if body.get("n") is not None:
        out.n = read_choice_count(body, target.models, target.choices)
    out.stop = read_stop(body, target.max_stop, target.models)
    response_format = body.get("response_format")
    if isinstance(response_format, dict):
        kind = response_format.get("type")
        if kind == "json_object":
            out.json_object = True
        elif kind == "json_schema":
            json_schema = response_format.get("json_schema")
            schema = json_schema.get("schema") if isinstance(json_schema, dict) else None
            if not isinstance(schema, dict):
                raise invalid(
                    "'response_format.json_schema.schema' must be a JSON Schema object.",
                    "response_format.json_schema.schema",
                )
            out.schema = schema
            name = json_schema.get("name") if isinstance(json_schema, dict) else None
            description = json_schema.get("description") if isinstance(json_schema, dict) else None
            out.schema_name = name if isinstance(name, str) and name else None
            out.schema_description = description if isinstance(description, str) and description else None
        elif kind != "text" and target.check_response_format:
            raise invalid(
                "'response_format.type' must be 'text', 'json_object' or 'json_schema'.", "response_format.type"
            )
    out.effort = read_effort(body)
    user = body.get("user")
    if isinstance(user, str) and user:
        out.user_id = user
    return out


def _chat_text_block(part: Any, param: str) -> dict[str, Any] | None:
    """A text part as its own text block (None when empty), its ``cache_control`` kept."""
    if not isinstance(part, dict) or part.get("type") != "text":
        raise invalid(f"'{param}' must be a text part ({{'type': 'text', 'text': ...}}).", param)
    text = part.get("text")
    if not isinstance(text, str):
        raise invalid(f"'{param}.text' must be a string.", f"{param}.text")
    if not text:
        return None
    block: dict[str, Any] = {"type": "text", "text": text}
    if "cache_control" in part:
        block["cache_control"] = part["cache_control"]
    return block


def _chat_user_blocks(content: Any, param: str, target: ChatTarget) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for index, part in enumerate(content):
        part_param = f"{param}[{index}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in target.parts:
            accepted = target.parts_rule or (
                ", ".join(repr(name) for name in target.parts[:-1]) + f" or {target.parts[-1]!r}"
            )
            raise invalid(
                f"Unsupported content part {kind!r} at '{part_param}' for {target.models}: use {accepted}.",
                f"{part_param}.type",
            )
        block: dict[str, Any] | None
        if kind == "text":
            block = _chat_text_block(part, part_param)
        elif kind == "image_url":
            block = _chat_image_block(part, part_param, target)
        elif kind == "input_audio":
            audio = part.get("input_audio")
            data = audio.get("data") if isinstance(audio, dict) else None
            audio_format = audio.get("format") if isinstance(audio, dict) else None
            if not isinstance(data, str) or audio_format not in _AUDIO_TYPES:
                raise invalid(
                    f"'{part_param}.input_audio' must be {{'data': <base64>, 'format': 'wav' or 'mp3'}}.",
                    f"{part_param}.input_audio",
                )
            source = {"type": "base64", "media_type": _AUDIO_TYPES[audio_format], "data": data}
            block = {"type": "audio", "source": source}
        else:
            block = _chat_file_block(part, part_param, target)
        if block is not None:
            if "cache_control" in part:
                block["cache_control"] = part["cache_control"]
            blocks.append(block)
    return blocks


def _chat_image_block(part: dict[str, Any], param: str, target: ChatTarget) -> dict[str, Any]:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    url_param = f"{param}.image_url.url"
    if not isinstance(url, str) or not url:
        raise invalid(f"'{url_param}' must be a URL string.", url_param)
    if url.startswith("data:"):
        media_type, data, size = parse_data_url(url, url_param)
        if target.image_types is not None and media_type not in target.image_types:
            raise invalid(f"'{url_param}' has media type {media_type!r}; {target.image_rule}.", url_param)
        if target.max_image_bytes is not None and size > target.max_image_bytes:
            raise invalid(
                f"'{url_param}': the image is {size} bytes; {target.models} take at most {target.max_image_bytes}.",
                url_param,
            )
        source = {"type": "base64", "media_type": media_type or "image/jpeg", "data": data}
        return {"type": "image", "source": source}
    if url.startswith(target.url_schemes):
        return {"type": "image", "source": {"type": "url", "url": url}}
    if not target.url_schemes:
        raise invalid(f"'{url_param}' must be a base64 data: URL ({target.url_rule}).", url_param)
    raise invalid(f"'{url_param}' must be {target.url_rule} or a data: URL.", url_param)


def _chat_file_block(part: dict[str, Any], param: str, target: ChatTarget) -> dict[str, Any]:
    file = part.get("file")
    data_param = f"{param}.file.file_data"
    if not isinstance(file, dict) or (not target.file_ids and not isinstance(file.get("file_data"), str)):
        if not target.file_ids:
            raise invalid(
                f"'{data_param}' must be a data: URL (uploaded file ids cannot be sent to {target.provider}).",
                data_param,
            )
        raise invalid(f"'{param}.file' must be an object with 'file_data' or 'file_id'.", f"{param}.file")
    file_data = file.get("file_data")
    if isinstance(file_data, str):
        media_type, data, size = parse_data_url(file_data, data_param)
        if target.pdf_only and media_type != "application/pdf":
            raise invalid(f"'{data_param}' must be a PDF for {target.models}.", data_param)
        if not media_type:
            raise invalid(f"'{data_param}' must name its media type.", data_param)
        if target.file_types is not None and media_type not in target.file_types:
            raise invalid(f"'{data_param}' has media type {media_type!r}; {target.file_rule}.", data_param)
        if target.max_file_bytes is not None and size > target.max_file_bytes:
            raise invalid(
                f"'{data_param}': the file is {size} bytes; {target.models} take at most {target.max_file_bytes}.",
                data_param,
            )
        block: dict[str, Any] = {
            "type": "document",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }
        filename = file.get("filename")
        if target.file_titles and isinstance(filename, str) and filename.rsplit(".", 1)[0]:
            block["title"] = filename.rsplit(".", 1)[0]
        return block
    file_id = file.get("file_id")
    if isinstance(file_id, str) and file_id:
        return {"type": "document", "source": {"type": "url", "url": file_id}}
    raise invalid(f"'{param}.file' must have 'file_data' (a data: URL) or 'file_id' (a file URI).", f"{param}.file")


def _chat_assistant_blocks(message: dict[str, Any], index: int, target: ChatTarget) -> list[dict[str, Any]]:
    """Signed reasoning first and unchanged (Claude refuses a later turn whose reasoning lost its signature), then
    the text, then the tool calls."""
    blocks: list[dict[str, Any]] = [dict(block) for block in read_reasoning(message, index)]
    content = message.get("content")
    param = f"messages[{index}].content"
    if isinstance(content, str):
        if content:
            blocks.append({"type": "text", "text": content})
    elif isinstance(content, list) and target.text_blocks:
        for part_index, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "refusal":
                refusal = part.get("refusal")
                if isinstance(refusal, str) and refusal:
                    blocks.append({"type": "text", "text": refusal})
                continue
            block = _chat_text_block(part, f"{param}[{part_index}]")
            if block is not None:
                blocks.append(block)
    elif isinstance(content, list):
        texts = []
        for part_index, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            value = part.get("refusal" if kind == "refusal" else "text") if isinstance(part, dict) else None
            if kind not in ("text", "refusal") or not isinstance(value, str):
                raise invalid(f"'{param}[{part_index}]' must be a text part.", f"{param}[{part_index}]")
            texts.append(value)
        if "".join(texts):
            blocks.append({"type": "text", "text": "".join(texts)})
    tool_calls = message.get("tool_calls")
    if tool_calls:
        if not isinstance(tool_calls, list):
            raise invalid(f"'messages[{index}].tool_calls' must be an array.", f"messages[{index}].tool_calls")
        for call_index, call in enumerate(tool_calls):
            call_id, name, arguments = read_tool_call(call, f"messages[{index}].tool_calls[{call_index}]")
            blocks.append({"type": "tool_use", "id": call_id, "name": name, "input": arguments})
    return blocks


def _media_type(source: dict[str, Any]) -> str:
    media_type = str(source.get("media_type") or "").lower()
    return MEDIA_TYPE_ALIASES.get(media_type, media_type)


def _tool_result_text(block: dict[str, Any], param: str, *, images: bool = False) -> tuple[str, list[dict[str, Any]]]:
    """The text of a tool_result's content and (``images``) its image blocks; other blocks are a 400."""
    content = block.get("content")
    if content is None:
        return "", []
    if isinstance(content, str):
        return content, []
    texts, found = [], []
    for index, inner in enumerate(content):
        kind = inner.get("type")
        if kind == "text":
            texts.append(inner["text"])
        elif kind == "image" and images:
            found.append(inner)
        else:
            raise _invalid(
                f"a tool result block of type {kind!r} cannot be sent to this model.", f"{param}.content.{index}.type"
            )
    return "\n".join(texts), found


def _unsupported(kind: Any, param: str, target: str) -> InvalidRequest:
    return _invalid(f"content blocks of type {kind!r} cannot be sent to {target} models.", f"{param}.type")


# -- OpenAI Chat Completions (OpenAI, OpenAI-compatible servers) ---------------------------------------------------


def _chat_image(block: dict[str, Any], param: str) -> dict[str, Any]:
    source = block["source"]
    if source.get("type") == "base64":
        return {
            "type": "image_url",
            "image_url": {"url": f"data:{_media_type(source)};base64,{source.get('data', '')}"},
        }
    if source.get("type") == "url" and isinstance(source.get("url"), str):
        return {"type": "image_url", "image_url": {"url": source["url"]}}
    raise _invalid("only base64 and url image sources can be sent to this model.", f"{param}.source.type")


def _document_text(block: dict[str, Any]) -> str | None:
    """A document whose source is plain text (``{"type": "text", "data"}``) or content blocks: its text."""
    source = block["source"]
    if source.get("type") == "text" and isinstance(source.get("data"), str):
        return str(source["data"])
    if source.get("type") == "content" and isinstance(source.get("content"), list):
        return "\n".join(b.get("text", "") for b in source["content"] if isinstance(b, dict))
    return None


def _chat_document(block: dict[str, Any], param: str) -> dict[str, Any]:
    text = _document_text(block)
    if text is not None:
        return {"type": "text", "text": text}
    source = block["source"]
    if source.get("type") == "base64" and _media_type(source) == "application/pdf":
        title = block.get("title") if isinstance(block.get("title"), str) else "document"
        return {
            "type": "file",
            "file": {"filename": f"{title}.pdf", "file_data": f"data:application/pdf;base64,{source.get('data', '')}"},
        }
    raise _invalid("only base64 PDF and text documents can be sent to this model.", f"{param}.source")


def chat_body(request: MessagesInput, model: str, *, openai: bool) -> dict[str, Any]:
    """The OpenAI Chat Completions body. ``openai``: OpenAI itself (``max_completion_tokens``, ``reasoning_effort``
    spelt as OpenAI takes it); else an OpenAI-compatible server (``max_tokens``, and ``top_k`` passed on, which
    vLLM / llama.cpp take)."""
    messages: list[dict[str, Any]] = []
    if request.system:
        messages.append({"role": "system", "content": "\n\n".join(request.system)})
    for role, blocks, index in request.turns:
        param = f"messages.{index}.content"
        if role == "system":
            text = "\n\n".join(b["text"] for b in blocks if b.get("type") == "text" and b["text"])
            if text:
                messages.append({"role": "system", "content": text})
            continue
        if role == "assistant":
            texts: list[str] = []
            calls: list[dict[str, Any]] = []
            for position, block in enumerate(blocks):
                kind = block["type"]
                if kind == "text":
                    if block["text"]:
                        texts.append(block["text"])
                elif kind == "tool_use":
                    arguments = orjson.dumps(block.get("input") or {}).decode()
                    calls.append(
                        {
                            "id": block["id"],
                            "type": "function",
                            "function": {"name": block["name"], "arguments": arguments},
                        }
                    )
                elif kind in ("thinking", "redacted_thinking"):
                    continue  # signed by Claude (or another model): an OpenAI model takes no reasoning back
                else:
                    raise _unsupported(kind, f"{param}.{position}", "OpenAI")
            message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
            if calls:
                message["tool_calls"] = calls
            if texts or calls:
                messages.append(message)
            continue
        parts: list[dict[str, Any]] = []
        for position, block in enumerate(blocks):
            kind = block["type"]
            where = f"{param}.{position}"
            if kind == "text":
                if block["text"]:
                    parts.append({"type": "text", "text": block["text"]})
            elif kind == "image":
                parts.append(_chat_image(block, where))
            elif kind == "document":
                parts.append(_chat_document(block, where))
            elif kind == "tool_result":
                text, _ = _tool_result_text(block, where)
                if block.get("is_error"):
                    # Chat Completions has no error flag on a tool result: the model reads it from the text.
                    text = f"Error: {text}" if text else "Error"
                messages.append({"role": "tool", "tool_call_id": block["tool_use_id"], "content": text})
            else:
                raise _unsupported(kind, where, "OpenAI")
        if parts:
            if all(part["type"] == "text" for part in parts) and len(parts) == 1:
                messages.append({"role": "user", "content": parts[0]["text"]})
            else:
                messages.append({"role": "user", "content": parts})
    out: dict[str, Any] = {"model": model, "messages": messages}
    if request.max_tokens is not None:
        out["max_completion_tokens" if openai else "max_tokens"] = request.max_tokens
    for name in ("temperature", "top_p"):
        value = getattr(request, name)
        if value is not None:
            out[name] = value
    if request.top_k is not None and not openai:
        out["top_k"] = request.top_k
    if request.stop:
        out["stop"] = request.stop
    if request.user_id:
        out["user"] = request.user_id
    if request.tools and (request.tool_choice != "none" or _has_tool_blocks(request)):
        out["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": tool.name,
                    **({"description": tool.description} if tool.description else {}),
                    "parameters": _schema(tool),
                },
            }
            for tool in request.tools
        ]
        if request.tool_choice == "any":
            out["tool_choice"] = "required"
        elif request.tool_choice == "tool":
            out["tool_choice"] = {"type": "function", "function": {"name": request.tool_name}}
        elif request.tool_choice == "none":
            out["tool_choice"] = "none"
        if not request.parallel_tools:
            out["parallel_tool_calls"] = False
    if request.effort is not None and request.effort != "none":
        out["reasoning_effort"] = "xhigh" if request.effort == "max" else request.effort
    if request.schema is not None:
        out["response_format"] = {"type": "json_schema", "json_schema": {"name": "response", "schema": request.schema}}
    if request.stream:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    return out


def responses_input_tokens_body(chat: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's ``/v1/responses/input_tokens`` body for the Chat Completions body `chat_body` wrote: system text
    as ``instructions``, the turns as Responses input items, the tools as Responses function tools."""
    instructions: list[str] = []
    items: list[dict[str, Any]] = []
    for message in chat["messages"]:
        role = message["role"]
        content = message.get("content")
        if role == "system":
            instructions.append(content)
        elif role == "tool":
            items.append({"type": "function_call_output", "call_id": message["tool_call_id"], "output": content})
        elif role == "assistant":
            if content:
                items.append({"role": "assistant", "content": content})
            for call in message.get("tool_calls") or []:
                function = call["function"]
                items.append(
                    {
                        "type": "function_call",
                        "call_id": call["id"],
                        "name": function["name"],
                        "arguments": function["arguments"],
                    }
                )
        elif isinstance(content, str):
            items.append({"role": "user", "content": content})
        else:
            parts: list[dict[str, Any]] = []
            for part in content:
                if part["type"] == "text":
                    parts.append({"type": "input_text", "text": part["text"]})
                elif part["type"] == "image_url":
                    parts.append({"type": "input_image", "image_url": part["image_url"]["url"]})
                else:
                    parts.append({"type": "input_file", **part["file"]})
            items.append({"role": "user", "content": parts})
    out: dict[str, Any] = {"model": chat["model"], "input": items}
    if instructions:
        out["instructions"] = "\n\n".join(instructions)
    tools = chat.get("tools")
    if tools:
        # Responses function tools require ``strict``; the Messages tools were not strict.
        out["tools"] = [{"type": "function", "strict": False, **tool["function"]} for tool in tools]
    return out


def _has_tool_blocks(request: MessagesInput) -> bool:
    return any(block["type"] in ("tool_use", "tool_result") for _, blocks, _ in request.turns for block in blocks)


# -- Gemini generateContent (Gemini API, Gemini on Vertex AI) ------------------------------------------------------


def _split_id(tool_use_id: str) -> tuple[str, str | None]:
    call_id, separator, signature = tool_use_id.partition(_THOUGHT_SEPARATOR)
    return call_id, (signature or None) if separator else None


def _gemini_media(block: dict[str, Any], param: str) -> dict[str, Any]:
    if block["type"] == "document":
        text = _document_text(block)
        if text is not None:
            return {"text": text}
    source = block["source"]
    if source.get("type") == "base64":
        return {
            "inlineData": {
                "mimeType": _media_type(source) or "application/octet-stream",
                "data": source.get("data", ""),
            }
        }
    if source.get("type") == "url" and isinstance(source.get("url"), str):
        default = "image/jpeg" if block["type"] == "image" else "application/pdf"
        guessed, _ = mimetypes.guess_type(urlsplit(source["url"]).path)
        return {"fileData": {"mimeType": guessed or default, "fileUri": source["url"]}}
    raise _invalid("only base64, url and text sources can be sent to Gemini models.", f"{param}.source.type")


def _append(turns: list[dict[str, Any]], role: str, parts: list[dict[str, Any]]) -> None:
    if not parts:
        return
    if turns and turns[-1]["role"] == role:
        turns[-1]["parts"].extend(parts)
    else:
        turns.append({"role": role, "parts": parts})


def _text_signature(blocks: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The first signed thinking block without thought text, when a text block with text follows it."""
    for position, block in enumerate(blocks):
        if block["type"] == "thinking" and block.get("signature") and not block["thinking"]:
            rest = blocks[position + 1 :]
            return block if any(b["type"] == "text" and b["text"] for b in rest) else None
    return None


def gemini_body(request: MessagesInput, model: str, default_max_tokens: int | None = None) -> dict[str, Any]:
    """The ``generateContent`` body (the model goes in the URL and picks the thinking setting)."""
    system = [{"text": text} for text in request.system]
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool_use id -> function name
    for role, blocks, index in request.turns:
        param = f"messages.{index}.content"
        if role == "system":
            system.extend({"text": b["text"]} for b in blocks if b.get("type") == "text" and b["text"])
            continue
        parts: list[dict[str, Any]] = []
        # A signed thinking block without thought text is the signature Gemini put on its answer's text part (the
        # core writes it so): it goes back on the turn's first text part, or on a blank one when there is none.
        text_signature = _text_signature(blocks) if role == "assistant" else None
        for position, block in enumerate(blocks):
            kind = block["type"]
            where = f"{param}.{position}"
            if kind == "text":
                if block["text"]:
                    text_part: dict[str, Any] = {"text": block["text"]}
                    if text_signature is not None:
                        text_part["thoughtSignature"] = text_signature["signature"]
                        text_signature = None
                    parts.append(text_part)
            elif kind in ("image", "document", "audio") and role == "user":
                parts.append(_gemini_media(block, where))
            elif kind == "tool_use" and role == "assistant":
                call_id, signature = _split_id(block["id"])
                names[block["id"]] = names[call_id] = block["name"]
                call: dict[str, Any] = {"name": block["name"], "args": block.get("input") or {}}
                if call_id and not _GENERATED_ID.fullmatch(call_id):
                    call["id"] = call_id
                part: dict[str, Any] = {"functionCall": call}
                if signature:
                    part["thoughtSignature"] = signature
                parts.append(part)
            elif kind == "tool_result" and role == "user":
                name = (
                    block.get("name")
                    or names.get(block["tool_use_id"])
                    or names.get(_split_id(block["tool_use_id"])[0])
                )
                if name is None and request.api == "chat":
                    raise invalid(
                        f"'messages[{index}].tool_call_id' ({block['tool_use_id'][:60]!r}) answers no tool call of an "
                        "earlier assistant message; Gemini needs the name of the function a result answers.",
                        f"messages[{index}].tool_call_id",
                    )
                if name is None:
                    raise _invalid(
                        "answers no tool_use block of an earlier assistant message; Gemini needs the name of the "
                        "function a result answers.",
                        f"{where}.tool_use_id",
                    )
                text, _ = _tool_result_text(block, where)
                response: Any = None
                if block.get("is_error"):
                    response = {"error": text}
                elif text.startswith("{"):
                    try:
                        response = orjson.loads(text)
                    except orjson.JSONDecodeError:
                        response = None
                if not isinstance(response, dict):
                    response = {"content": text}
                result: dict[str, Any] = {"name": name, "response": response}
                call_id = _split_id(block["tool_use_id"])[0]
                if call_id and not _GENERATED_ID.fullmatch(call_id):
                    result["id"] = call_id
                parts.append({"functionResponse": result})
            elif kind == "thinking" and role == "assistant":
                # Gemini's own signed thoughts (the core writes them as thinking blocks): sent back as they came.
                if block.get("signature") and block is not text_signature:
                    thought: dict[str, Any] = {"thoughtSignature": block["signature"]}
                    if block["thinking"]:
                        thought.update(text=block["thinking"], thought=True)
                        parts.append(thought)
                    else:
                        parts.append({"text": " ", **thought})
            elif kind == "redacted_thinking" and role == "assistant":
                continue
            else:
                raise _unsupported(kind, where, "Gemini")
        _append(contents, "model" if role == "assistant" else "user", parts)
    if not contents:
        if request.api == "chat":
            raise invalid(
                "'messages' must contain at least one user or assistant message besides system messages.", "messages"
            )
        raise _invalid("at least one user or assistant message with content is required.", "messages")
    out: dict[str, Any] = {"contents": contents}
    if system:
        out["systemInstruction"] = {"parts": system}
    if request.tools:
        declarations = []
        for t in request.tools:
            declaration: dict[str, Any] = {"name": t.name}
            if t.description:
                declaration["description"] = t.description
            # The whole JSON Schema ($ref, additionalProperties and all) goes in the field that takes it; a
            # function without parameters declares none.
            if t.schema is not None and (t.schema.get("properties") or t.schema.get("type") != "object"):
                declaration["parametersJsonSchema"] = t.schema
            declarations.append(declaration)
        out["tools"] = [{"functionDeclarations": declarations}]
    if request.tool_choice_set and (request.tools or request.tool_choice == "none"):
        mode = {"auto": "AUTO", "any": "ANY", "tool": "ANY", "none": "NONE"}[request.tool_choice]
        calling: dict[str, Any] = {"mode": mode}
        if request.tool_choice == "tool" and request.tool_name:
            calling["allowedFunctionNames"] = [request.tool_name]
        out["toolConfig"] = {"functionCallingConfig": calling}
    config: dict[str, Any] = {}
    max_tokens = request.max_tokens if request.max_tokens is not None else default_max_tokens
    if max_tokens is not None:
        config["maxOutputTokens"] = max_tokens
    for name, wire in (
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("top_k", "topK"),
        ("seed", "seed"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
        ("n", "candidateCount"),
    ):
        value = getattr(request, name)
        if value is not None:
            config[wire] = value
    if request.stop:
        config["stopSequences"] = request.stop
    if request.schema is not None:
        config["responseMimeType"] = "application/json"
        config["responseJsonSchema"] = request.schema
    elif request.json_object:
        config["responseMimeType"] = "application/json"
    if request.effort is not None:
        thinking = gemini_thinking_config(request.effort, model)
        if request.budget is not None and "thinkingBudget" in thinking and thinking["thinkingBudget"]:
            low, high = _GEMINI_PRO_BUDGET if "-pro" in model else _GEMINI_FLASH_BUDGET
            thinking["thinkingBudget"] = min(max(request.budget, low), high)  # Gemini 2.5 takes the budget itself
        config["thinkingConfig"] = thinking
    if config:
        out["generationConfig"] = config
    return out


# -- Bedrock Converse (Bedrock models served through Converse: every model for Chat Completions clients, the models
# other than Claude for Messages clients) --------------------------------------------------------------------------

#: The media types Converse takes for images and documents, and its format names (the bedrock-runtime service model).
CONVERSE_IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/gif": "gif", "image/webp": "webp"}
CONVERSE_DOCUMENT_FORMATS = {
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


def _converse_image(block: dict[str, Any], param: str) -> dict[str, Any]:
    source = block["source"]
    image_format = CONVERSE_IMAGE_FORMATS.get(_media_type(source))
    if source.get("type") != "base64" or image_format is None:
        raise _invalid(
            "Bedrock takes images as base64 bytes (png, jpeg, gif, webp) only; an image URL is not fetched by the "
            "gateway.",
            f"{param}.source",
        )
    return {"image": {"format": image_format, "source": {"bytes": source.get("data", "")}}}


def _converse_document(block: dict[str, Any], number: int, param: str) -> dict[str, Any]:
    """A document block; its name is its title made safe (Bedrock takes letters, digits, single spaces, hyphens,
    parentheses and square brackets) and ``number``, the block's place among the request's content blocks, which
    keeps names unique within the request as Bedrock requires."""
    text = _document_text(block)
    if text is not None:
        return {"text": text}
    source = block["source"]
    document_format = CONVERSE_DOCUMENT_FORMATS.get(_media_type(source))
    if source.get("type") != "base64" or document_format is None:
        raise _invalid(
            f"Bedrock takes base64 documents ({', '.join(sorted(set(CONVERSE_DOCUMENT_FORMATS.values())))}) only.",
            f"{param}.source",
        )
    title = str(block.get("title") or "")
    name = " ".join(_DOCUMENT_NAME_UNSAFE.sub(" ", title).split())[:200] or "document"
    return {
        "document": {
            "format": document_format,
            "name": f"{name} ({number})",
            "source": {"bytes": source.get("data", "")},
        }
    }


def _converse_effort(
    request: MessagesInput, model_id: str, max_tokens: int | None, default_max_tokens: int | None
) -> tuple[dict[str, Any] | None, int | None, bool]:
    """``(additionalModelRequestFields or None, maxTokens, whether Claude thinks)`` for the request's reasoning effort,
    by model family, from the one table of providers/reasoning.py."""
    effort = request.effort
    if effort is None or effort == "none":
        return None, max_tokens, False
    if "anthropic.claude" in model_id:
        if request.budget is not None:
            budget = request.budget
        else:
            budget, max_tokens = claude_thinking(effort, request.max_tokens, default_max_tokens)
        return {"thinking": {"type": "enabled", "budget_tokens": budget}}, max_tokens, True
    level = EFFORTS[effort].level
    if "amazon.nova" in model_id:
        return {"reasoningConfig": {"type": "enabled", "maxReasoningEffort": level}}, max_tokens, False
    if "openai.gpt-oss" in model_id:
        return {"reasoning_effort": level}, max_tokens, False
    return None, max_tokens, False


def _converse_tool_spec(tool: Tool) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": tool.name, "inputSchema": {"json": _schema(tool)}}
    if tool.description:
        spec["description"] = tool.description
    if tool.strict is not None:
        spec["strict"] = tool.strict
    return {"toolSpec": spec}


def _json_answer_spec(request: MessagesInput) -> dict[str, Any]:
    """The forced tool whose input is the answer (``response_format`` json_object, or json_schema on a model
    without native structured output); the core turns its input back into the answer's content."""
    name = request.schema_name or "response"
    description = " ".join(
        filter(
            None, [request.schema_description, f"Answer by calling this tool with the response ({name}) as its input."]
        )
    )
    schema = request.schema or {"type": "object"}
    return {"toolSpec": {"name": JSON_TOOL_NAME, "description": description, "inputSchema": {"json": schema}}}


def converse_body(request: MessagesInput, model_id: str, default_max_tokens: int | None = None) -> dict[str, Any]:
    """The Converse body of a request read by `read_messages` (Bedrock models other than Claude: those take
    InvokeModel) or by `read_chat` with Bedrock's ChatTarget (every model). Blank text (empty or whitespace only,
    which Converse refuses) is left out; a user turn's tool results come first in it."""
    system = [{"text": text} for text in request.system if text.strip()]
    messages: list[dict[str, Any]] = []
    used_tools: dict[str, None] = {}
    blocks_before = 0  # content blocks in the turns written so far (documents are numbered by it)
    for role, blocks, index in request.turns:
        param = f"messages.{index}.content"
        if role == "system":
            system.extend({"text": b["text"]} for b in blocks if b.get("type") == "text" and b["text"].strip())
            continue
        content: list[dict[str, Any]] = []
        for position, block in enumerate(blocks):
            kind = block["type"]
            where = f"{param}.{position}"
            if kind == "text":
                if block["text"].strip():
                    content.append({"text": block["text"]})
            elif kind == "image" and role == "user":
                content.append(_converse_image(block, where))
            elif kind == "document" and role == "user":
                content.append(_converse_document(block, blocks_before + len(content) + 1, where))
            elif kind == "tool_use" and role == "assistant":
                used_tools[block["name"]] = None
                content.append(
                    {"toolUse": {"toolUseId": block["id"], "name": block["name"], "input": block.get("input") or {}}}
                )
            elif kind == "tool_result" and role == "user":
                text, images = _tool_result_text(block, where, images=True)
                result: list[dict[str, Any]] = [{"text": text}] if text else []  # an empty result: no content
                result += [_converse_image(image, f"{where}.content") for image in images]
                entry: dict[str, Any] = {"toolUseId": block["tool_use_id"], "content": result}
                if block.get("is_error"):
                    entry["status"] = "error"
                content.append({"toolResult": entry})
            elif kind == "thinking" and role == "assistant":
                # Signed reasoning goes back unchanged: Claude refuses a later turn whose reasoning lost it.
                if block.get("signature"):
                    content.append(
                        {
                            "reasoningContent": {
                                "reasoningText": {"text": block["thinking"], "signature": block["signature"]}
                            }
                        }
                    )
            elif kind == "redacted_thinking" and role == "assistant":
                content.append({"reasoningContent": {"redactedContent": block.get("data", "")}})
            else:
                raise _unsupported(kind, where, "Bedrock")
        if not content:
            continue
        blocks_before += len(content)
        if role == "user":
            content.sort(key=lambda b: "toolResult" not in b)  # results first in their turn
        converse_role = "assistant" if role == "assistant" else "user"
        if messages and messages[-1]["role"] == converse_role:
            messages[-1]["content"].extend(content)
        else:
            messages.append({"role": converse_role, "content": content})
    if not messages:
        raise invalid("'messages' must contain at least one user or assistant message with content.", "messages")
    out: dict[str, Any] = {"messages": messages}
    if system:
        out["system"] = system

    inference: dict[str, Any] = {}
    max_tokens = request.max_tokens if request.max_tokens is not None else default_max_tokens
    fields, max_tokens, claude_thinks = _converse_effort(request, model_id, max_tokens, default_max_tokens)
    if fields is not None:
        out["additionalModelRequestFields"] = fields
    if max_tokens is not None:
        inference["maxTokens"] = max_tokens
    # Claude refuses sampling settings while thinking (temperature must be 1): they are left out.
    if request.temperature is not None and not claude_thinks:
        inference["temperature"] = request.temperature
    if request.top_p is not None and not claude_thinks:
        inference["topP"] = request.top_p
    if request.stop:
        inference["stopSequences"] = request.stop
        # Which sequence matched comes back only when asked for, as the model's own response field (Claude's
        # ``stop_sequence``); Converse ignores a path the model's response lacks, so asking costs nothing elsewhere.
        out["additionalModelResponseFieldPaths"] = ["/stop_sequence"]
    if inference:
        out["inferenceConfig"] = inference
    # ``n``: Converse answers one choice per request; a chat n > 1 is served by the gateway's fan-out (fanout.py).

    json_answer = request.json_object or request.schema is not None
    if request.schema is not None and request.api != "chat":
        # A Messages client's answer is the model's text: the forced tool's input would come back as a tool call.
        raise _invalid(
            "structured output is served on Bedrock for Claude models only (through InvokeModel).",
            "output_config.format",
        )
    if request.schema is not None and not request.json_object and _NATIVE_JSON_MODELS.search(model_id):
        structure: dict[str, Any] = {
            "schema": orjson.dumps(request.schema).decode(),
            "name": request.schema_name or "response",
        }
        if request.schema_description:
            structure["description"] = request.schema_description
        out["outputConfig"] = {"textFormat": {"type": "json_schema", "structure": {"jsonSchema": structure}}}
        json_answer = False

    specs = [_converse_tool_spec(t) for t in request.tools if request.tool_choice != "none" or t.name in used_tools]
    choice: dict[str, Any] | None = None
    if request.tool_choice == "any":
        choice = {"any": {}}
    elif request.tool_choice == "tool" and request.tool_name:
        choice = {"tool": {"name": request.tool_name}}
    elif request.tool_choice == "auto" and request.tools:
        choice = {"auto": {}}
    # Converse has no "none": the tools are left out (unless the history needs them), and no toolChoice.
    if json_answer:
        user_tools = bool(specs) and request.tool_choice != "none"
        specs.append(_json_answer_spec(request))
        if choice is None or not user_tools:
            choice = {"tool": {"name": JSON_TOOL_NAME}}
        elif "auto" in choice:
            choice = {"any": {}}  # a user tool or the answer, but no free text
    if _has_tool_blocks(request):
        # Bedrock refuses a history with tool blocks unless toolConfig declares the tools it uses.
        declared = {spec["toolSpec"]["name"] for spec in specs}
        for name in used_tools:
            if name not in declared:
                specs.append({"toolSpec": {"name": name, "inputSchema": {"json": {"type": "object"}}}})
        if not specs:
            specs.append({"toolSpec": {"name": "none", "inputSchema": {"json": {"type": "object"}}}})
    if specs:
        tool_config: dict[str, Any] = {"tools": specs}
        if choice is not None:
            tool_config["toolChoice"] = choice
            if "auto" not in choice and claude_thinks:
                # Claude refuses to think while forced to call a tool: say so instead of forwarding its 400.
                forced_by = "tool_choice"
                if request.tool_choice in ("auto", "none"):
                    kind = "json_object" if request.json_object else "json_schema"
                    forced_by = f"response_format {kind} (served by a forced tool)"
                raise thinking_while_forced(forced_by)
        out["toolConfig"] = tool_config
    return out


def estimate_input_tokens(body: dict[str, Any]) -> int:
    """The documented estimate for backends with no token counting endpoint (OpenAI-compatible servers, the exchange's
    ``_estimated``): the JSON
    text of ``system``, ``messages`` and ``tools`` divided by 4 (the rate limiter's estimate), at least 1."""
    size = sum(len(orjson.dumps(body[key])) for key in ("system", "messages", "tools") if body.get(key) is not None)
    return max(1, size // 4)
