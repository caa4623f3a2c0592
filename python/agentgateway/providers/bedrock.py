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

Chat Completions clients: every model through Converse, the body read into the shared request model
(messages_input.read_chat with `CHAT_TARGET`: one wording of every 400, naming the client's OpenAI field) and written
by messages_input.converse_body, the Converse writer Messages clients share. The answer's translation (whole or the
binary event stream) is in rust/sse_core/src/providers/bedrock.rs. Converse answers one choice per request: ``n``
from 2 to 8 is served by the gateway's fan-out (fanout.py). ``response_format`` json_object is the forced tool
``agentgateway_json_output`` on every model, as on the other Claude paths; json_schema is native structured output
on Claude 4.5 and later, that forced tool with the client's schema elsewhere. ``reasoning_effort`` is Claude's
thinking budget (signed reasoning sent back as ``reasoningContent``), Nova's ``reasoningConfig`` or gpt-oss's
``reasoning_effort``; a tool's ``strict`` and ``file`` parts (documents, as bytes) are passed on.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
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
from .messages_input import CONVERSE_DOCUMENT_FORMATS, CONVERSE_IMAGE_FORMATS, ChatTarget, read_chat, read_messages
from .messages_input import converse_body as messages_converse_body
from .openai_input import JSON_TOOL_NAME, read_choice_count

__all__ = ["CHAT_TARGET", "JSON_TOOL_NAME", "BedrockProvider", "converse_body"]

logger = logging.getLogger("agentgateway.bedrock")

#: Converse's limit on ``inferenceConfig.stopSequences`` (the bedrock-runtime service model).
MAX_STOP_SEQUENCES = 2500
#: Bedrock's limit for one image (bytes, decoded).
MAX_IMAGE_BYTES = 3_750_000
#: Bedrock's limit for one document (bytes, decoded).
MAX_DOCUMENT_BYTES = 4_500_000
# Bedrock API key precedence follows the AWS SDKs: the env var wins over SigV4 when set.
BEARER_TOKEN_ENV = "AWS_BEARER_TOKEN_BEDROCK"
# 403 error types that mean "these credentials are stale", worth one retry with freshly resolved ones.
_STALE_CREDENTIAL_ERRORS = frozenset((b"ExpiredTokenException", b"UnrecognizedClientException"))
_MODEL_ENDPOINT_CACHE_LIMIT = 1024
# The credentials the current request was signed with (prepare and credentials_rejected run in the request's task).
_SIGNED_WITH: contextvars.ContextVar[FrozenCredentials | None] = contextvars.ContextVar("bedrock_signed_with")


# -- request translation -----------------------------------------------------------------------------------------

#: What Bedrock takes of a Chat Completions request (messages_input.read_chat's checks and 400s). Images and files
#: travel as bytes: fetching URLs from inside the gateway would make it an open proxy (SSRF) and add an unbounded wait
#: to the request, so the client sends the bytes (a data: URL).
CHAT_TARGET = ChatTarget(
    models="Bedrock models",
    provider="Bedrock",
    max_stop=MAX_STOP_SEQUENCES,
    choices="one request per choice",
    url_schemes=(),
    url_rule="Bedrock takes image bytes and does not fetch URLs: data:image/png;base64,...",
    parts=("text", "image_url", "file"),
    parts_rule="'text', 'image_url' or 'file' (with a data: URL)",
    image_types=frozenset(CONVERSE_IMAGE_FORMATS),
    image_rule="Bedrock takes image/png, image/jpeg, image/gif and image/webp",
    file_ids=False,
    text_blocks=True,
    function_role=False,
    check_response_format=False,
    file_types=frozenset(CONVERSE_DOCUMENT_FORMATS),
    file_rule=f"Bedrock takes {', '.join(sorted(CONVERSE_DOCUMENT_FORMATS))}",
    max_image_bytes=MAX_IMAGE_BYTES,
    max_file_bytes=MAX_DOCUMENT_BYTES,
    file_titles=True,
)


def converse_body(
    body: dict[str, Any], model_id: str, default_max_tokens: int | None = None, *, stream: bool = False
) -> dict[str, Any]:
    """The Converse request for an OpenAI Chat Completions body (validated by request.parse_chat_request): read into
    the shared model with Bedrock's ChatTarget and written by the Converse writer Messages clients share."""
    return messages_converse_body(read_chat(body, CHAT_TARGET, stream=stream), model_id, default_max_tokens)


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


def _from_environment() -> FrozenCredentials | None:
    """The first link of botocore's chain, read without botocore: static keys in the environment. botocore costs
    ~10 MB of every worker's memory once imported (issue 22), and a deployment that passes its keys this way never
    needs the rest of the chain. Keys with ``AWS_CREDENTIAL_EXPIRATION`` are refreshable in botocore, and a key id
    without its secret is botocore's error to word: both go the whole way."""
    environ = os.environ
    access_key = environ.get("AWS_ACCESS_KEY_ID", "")
    secret_key = environ.get("AWS_SECRET_ACCESS_KEY", "")
    if not access_key or not secret_key or environ.get("AWS_CREDENTIAL_EXPIRATION"):
        return None
    # botocore's EnvProvider: AWS_SECURITY_TOKEN first, then AWS_SESSION_TOKEN.
    token = environ.get("AWS_SECURITY_TOKEN") or environ.get("AWS_SESSION_TOKEN") or None
    return FrozenCredentials(access_key, secret_key, token, None)


def _resolve(botocore_credentials: Any) -> tuple[Any, FrozenCredentials]:
    """Runs in a thread: resolve the chain once (then reuse its refreshable credentials) and freeze them."""
    if botocore_credentials is None:
        static = _from_environment()
        if static is not None:
            return None, static
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
        payload = converse_body(request.body, model_id, self.max_tokens, stream=request.stream)
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
