"""The ``llm:`` configuration: YAML in, validated pydantic models out, or a ConfigError that says where and what.

The format follows agentgateway's simplified ``llm:`` config (see DESIGN.md section 2):

    llm:
      port: 3000
      models:
      - name: gpt-4o-mini              # exact name or glob; "*" matches every model
        provider: openAI               # openAI | anthropic | bedrock | gemini | vertex | {custom: {formats: [...]}}
        params: {model: ..., apiKey: "$OPENAI_API_KEY", baseUrl: ...}
      timeouts: {connect: 10, firstByte: 600, idle: 300}   # seconds; our extension

Every string value may use ``$VAR`` / ``${VAR}`` (``$$`` is a literal ``$``); an unset variable is an error.
Errors carry ``source:line: path: problem`` so that the file, the place and the fix are all in one line.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import re
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import SplitResult, urlsplit

import yaml
from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from .errors import ConfigError
from .provider_presets import PRESETS

if TYPE_CHECKING:
    from .upstream import ClientTLS

__all__ = [
    "BUILTIN_PROVIDERS",
    "DEFAULT_MAX_REQUEST_BYTES",
    "ApiKeyEntry",
    "ApiKeyPolicy",
    "BackendPool",
    "BackendTLS",
    "CatalogEntry",
    "ConfigSection",
    "CustomProvider",
    "FrontendHttp",
    "FrontendPolicies",
    "GatewayConfig",
    "JwtAuthPolicy",
    "LlmConfig",
    "LoggingConfig",
    "MetricsConfig",
    "ModelEntry",
    "ModelParams",
    "Policies",
    "RateLimit",
    "RedisConfig",
    "Timeouts",
    "TracingConfig",
    "load_config",
    "load_config_file",
    "parse_log_level",
    "reading_files",
]

#: every provider name a model entry may use (the OpenAI-compatible presets: provider_presets.py)
BUILTIN_PROVIDERS = ("openAI", "anthropic", "bedrock", "gemini", "vertex", "azure", *PRESETS)
_PROVIDER_BY_LOWER = {name.lower(): name for name in BUILTIN_PROVIDERS}
#: agentgateway's providers this gateway deliberately does not serve, and why (README: config parity)
UNSUPPORTED_PROVIDERS = {
    "copilot": "GitHub Copilot's API needs its OAuth device-flow login and Copilot's own session tokens, which this "
    "gateway does not implement",
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True)


# The checks several fields share, each one place: they raise the ValueError pydantic reports at the field.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def _http_url(value: str) -> SplitResult:
    """The parts of ``value``, an http:// or https:// URL with a host."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an http:// or https:// URL with a host, got {value!r}")
    return parts


def _check_regex(pattern: str | None) -> None:
    """``pattern`` (when given) compiles as a Python regular expression."""
    if pattern is not None:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"invalid regex {pattern!r}: {exc}") from None


def _check_exactly_one(model: BaseModel, *names: str, say_given: bool = False) -> None:
    """``model`` has exactly one of the fields ``names`` set; else "give exactly one of 'a' or 'b'" (in the YAML's
    spelling), ``say_given``: followed by which were given."""
    given = [to_camel(name) for name in names if getattr(model, name) is not None]
    if len(given) != 1:
        *rest, last = (f"'{to_camel(name)}'" for name in names)
        raise ValueError(
            f"give exactly one of {', '.join(rest)} or {last}"
            + (f" (got {' and '.join(given)})" if say_given and given else "")
        )


def _check_no_line_break(secret: SecretStr | None) -> None:
    """A key read from a file often ends with a newline; sent as a header it would break the request."""
    if secret is not None and any(c in secret.get_secret_value() for c in "\r\n"):
        raise ValueError("contains a line break (a trailing newline from the file or variable it came from?)")


class Timeouts(_Model):
    """Upstream timeouts in seconds."""

    connect: Annotated[float, Field(gt=0)] = 10.0
    # Until the upstream's response headers arrive. A non-streamed completion sends its headers only when the
    # whole answer is ready, so this must cover a full generation.
    first_byte: Annotated[float, Field(gt=0)] = 600.0
    # Longest silence allowed between two reads of a response body once it has started.
    idle: Annotated[float, Field(gt=0)] = 300.0


#: The files a config load reads (``apiKey: {file}``, a ``modelCatalog`` file): path -> text (None: unreadable),
#: filled while `reading_files` is active -- the reload watcher watches them (reload.py).
_FILES_READ: contextvars.ContextVar[dict[str, str | None] | None] = contextvars.ContextVar("files_read", default=None)
#: Texts to use for those files instead of reading them: a worker loads the config with exactly the contents the
#: main process validated (reload.py's snapshot), never the files as they may be now.
_FILES_GIVEN: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar("files_given", default=None)


@contextlib.contextmanager
def reading_files(given: Mapping[str, str] | None = None) -> Iterator[dict[str, str | None]]:
    """While active (in this thread or task), config loads record every file they read into the dict yielded,
    and take the text of a path in ``given`` from there instead of reading it."""
    read: dict[str, str | None] = {}
    token_read, token_given = _FILES_READ.set(read), _FILES_GIVEN.set(given)
    try:
        yield read
    finally:
        _FILES_READ.reset(token_read)
        _FILES_GIVEN.reset(token_given)


def _read_referenced(path: str) -> str:
    """A file the config refers to, as `reading_files` says (OSError when it cannot be read)."""
    given = _FILES_GIVEN.get()
    read = _FILES_READ.get()
    if given is not None and path in given:
        text = given[path]
    else:
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        except OSError:
            if read is not None:
                read[path] = None
            raise
    if read is not None:
        read[path] = text
    return text


def _secret_from_file(value: Any) -> Any:
    """agentgateway's ``apiKey: {file: path}``: the key is the file's content (its trailing newline dropped).
    Read again on every reload, and the reload watcher watches the file (reload.py)."""
    if isinstance(value, dict) and set(value) == {"file"} and isinstance(value["file"], str):
        try:
            return _read_referenced(value["file"]).rstrip("\r\n")
        except OSError as exc:
            raise ValueError(f"cannot read the key file {value['file']!r}: {exc.strerror or exc}") from None
    return value


def _date_as_text(value: Any) -> Any:
    import datetime

    return value.isoformat() if isinstance(value, datetime.date) else value


def _azure_resource_type(value: Any) -> Any:
    # agentgateway's older spelling of the Azure OpenAI kind
    return "openAI" if value == "azureOpenAI" else value


class ModelParams(_Model):
    model: str | None = None
    #: the key itself, or ``{file: path}`` to read it from a file (agentgateway's form)
    api_key: Annotated[SecretStr, BeforeValidator(_secret_from_file)] | None = None
    base_url: str | None = None
    aws_region: str | None = None
    vertex_project: str | None = None
    vertex_region: str | None = None
    # anthropic, bedrock, vertex (Claude): max_tokens sent when the client gives none (Anthropic requires one).
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    # anthropic, vertex (Claude): the anthropic-version header (a client's own header wins).
    anthropic_version: str | None = None
    # gemini: the API version in the path (v1beta or v1); default v1beta.
    api_version: Literal["v1beta", "v1"] | None = None
    # azure (providers/azure.py): the resource's host name part, its kind, the API version, the Foundry project.
    azure_resource_name: str | None = None
    azure_resource_type: (
        Annotated[Literal["openAI", "foundry", "aiServices"], BeforeValidator(_azure_resource_type)] | None
    ) = None
    #: an unquoted ``2024-10-21`` is a date to YAML: it is taken as the version it spells
    azure_api_version: Annotated[str, BeforeValidator(_date_as_text)] | None = None
    azure_project_name: str | None = None
    #: count the request's input tokens before admission with OpenAI's vocabularies, for token rate limits
    #: (tokenize.py: exact for OpenAI models, a cl100k_base estimate for others)
    tokenize: bool = False

    @field_validator(
        "aws_region",
        "vertex_project",
        "vertex_region",
        "anthropic_version",
        "azure_resource_name",
        "azure_api_version",
        "azure_project_name",
    )
    @classmethod
    def _check_name(cls, value: str | None) -> str | None:
        # These go into host names, paths and headers: refuse what would break them rather than send it.
        if value is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", value):
            raise ValueError(f"must be letters, digits, '.', '_' or '-', got {value!r}")
        return value

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = _http_url(value)
        if parts.query or parts.fragment:
            raise ValueError(f"must not have a query or fragment, got {value!r}")
        return value.rstrip("/")

    @field_validator("api_key")
    @classmethod
    def _check_api_key(cls, value: SecretStr | None) -> SecretStr | None:
        _check_no_line_break(value)
        return value

    @field_validator("model")
    @classmethod
    def _check_model(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be empty (leave it out to send the client's model)")
        return value


class CustomFormat(_Model):
    type: Literal["completions"]


class CustomProvider(_Model):
    formats: Annotated[list[CustomFormat], Field(min_length=1)] = [CustomFormat(type="completions")]


# Params a provider cannot work without: (attribute, the message that says what to set).
_REQUIRED_PARAMS: dict[str, tuple[tuple[str, str], ...]] = {
    "bedrock": (("aws_region", "params.awsRegion is required for bedrock (e.g. us-east-1)"),),
    "azure": (
        ("azure_resource_name", "params.azureResourceName is required for azure (the resource's name in its host)"),
        ("azure_resource_type", "params.azureResourceType is required for azure: openAI or foundry"),
    ),
    "vertex": (
        (
            "vertex_project",
            "params.vertexProject is required for vertex (your Google Cloud project id), unless params.apiKey "
            "(Vertex AI express mode) is set",
        ),
    ),
}


def _check_expression(value: str | None) -> str | None:
    """A CEL expression must compile at load (the router compiles it again in each worker)."""
    if value is not None:
        from .cel import compile_expression

        compile_expression(value)  # raises ValueError saying what is wrong
    return value


def _duration(value: Any) -> Any:
    """agentgateway's durations: ``30s``, ``500ms``, ``1m``, ``1h``; a bare number is seconds."""
    if isinstance(value, str):
        from .health import parse_duration

        return parse_duration(value)
    return value


Duration = Annotated[float, BeforeValidator(_duration), Field(ge=0)]
Expression = Annotated[str, AfterValidator(_check_expression)]


class HeaderValueMatch(_Model):
    """One of ``exact`` or ``regex`` (a full match, as agentgateway's)."""

    exact: str | None = None
    regex: str | None = None

    @model_validator(mode="after")
    def _one_of(self) -> HeaderValueMatch:
        _check_exactly_one(self, "exact", "regex")
        _check_regex(self.regex)
        return self


class HeaderMatch(_Model):
    name: Annotated[str, Field(min_length=1)]
    value: HeaderValueMatch


class ModelMatch(_Model):
    """Every header of one match must hold for the model entry to be used."""

    headers: list[HeaderMatch] = []


class HeaderModifier(_Model):
    """agentgateway's ``requestHeaders`` / ``responseHeaders``: ``add`` appends, ``set`` replaces, ``remove`` drops."""

    add: dict[str, str] = {}
    set: dict[str, str] = {}
    remove: list[str] = []

    @model_validator(mode="after")
    def _check_headers(self) -> HeaderModifier:
        for name, value in (*self.add.items(), *self.set.items()):
            if not _HEADER_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a valid header name")
            if any(c in value for c in "\r\n\0"):
                raise ValueError(f"the value of header {name!r} contains a line break")
        return self


class Eviction(_Model):
    """agentgateway's ``health.eviction``."""

    duration: Duration | None = None
    consecutive_failures: Annotated[int, Field(ge=0)] | None = None  # 0: never by count (agentgateway)
    health_threshold: Annotated[float, Field(ge=0, le=1)] | None = None
    restore_health: Annotated[float, Field(ge=0, le=1)] | None = None


class HealthConfig(_Model):
    """agentgateway's ``health``: which answers count as failures (CEL over ``response``) and how to evict."""

    unhealthy_expression: Expression | None = None
    eviction: Eviction | None = None


class AuthorizationPolicy(_Model):
    """agentgateway's ``authorization``: a request is allowed when one of ``rules`` (CEL over ``request``, ``jwt``
    -- the caller's token claims -- and ``apiKey`` -- the caller's key metadata) is true."""

    rules: Annotated[list[Expression], Field(min_length=1)]


class CorsPolicy(_Model):
    """agentgateway's ``cors`` (authorization.py's sibling cors.py answers preflights and adds the headers).
    ``allowOrigins`` entries are exact origins, ``*``, or patterns with ``*`` (``https://*.example.com``)."""

    allow_origins: list[str] = []
    allow_methods: list[str] = []
    allow_headers: list[str] = []
    expose_headers: list[str] = []
    allow_credentials: bool = False
    max_age: Duration | None = None

    @field_validator("allow_methods", "allow_headers", "expose_headers")
    @classmethod
    def _check_tokens(cls, value: list[str]) -> list[str]:
        for item in value:
            if item != "*" and not _HEADER_NAME.fullmatch(item):
                raise ValueError(f"{item!r} is not a valid method or header name")
        return value

    @field_validator("allow_origins")
    @classmethod
    def _check_origins(cls, value: list[str]) -> list[str]:
        for item in value:
            if any(c in item for c in " \r\n,"):
                raise ValueError(f"{item!r} is not an origin (scheme://host[:port], or a pattern with *)")
        return value


class RequestTransform(_Model):
    """Request headers computed by CEL (over ``request``, ``llmRequest``) before a model is selected."""

    set: dict[str, Expression] = {}
    add: dict[str, Expression] = {}
    remove: list[str] = []

    @model_validator(mode="after")
    def _check_names(self) -> RequestTransform:
        for name in (*self.set, *self.add, *self.remove):
            if not _HEADER_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a valid header name")
        return self


class TransformationsPolicy(_Model):
    """agentgateway's ``transformations`` in ``llm.policies``: ``request`` header edits from CEL.
    ``response`` and ``request.body`` are refused by name (not supported here)."""

    request: RequestTransform | None = None
    response: Any = None

    @field_validator("response")
    @classmethod
    def _no_response(cls, value: Any) -> Any:
        if value is not None:
            raise ValueError(
                "response transformations are not supported by this gateway (request header transformations are)"
            )
        return value


# -- guardrails and promptCaching (issue 21: guardrails.py, prompt_caching.py) ---------------------------------------

#: agentgateway's regex builtins (its pii recognizers)
GUARD_BUILTINS = ("ssn", "creditCard", "phoneNumber", "email", "caSin")
#: agentgateway's guard kinds this gateway does not serve, and why (README: config parity)
UNSUPPORTED_GUARDS = {
    "bedrockGuardrails": "AWS Bedrock Guardrails (ApplyGuardrail) is not implemented by this gateway",
    "googleModelArmor": "Google Model Armor is not implemented by this gateway",
    "azureContentSafety": "Azure AI Content Safety is not implemented by this gateway",
}


def _lower_enum(value: Any) -> Any:
    # agentgateway's enums are spelled both ways in its docs and examples (``Mask`` / ``mask``)
    return value.lower() if isinstance(value, str) else value


class GuardRejection(_Model):
    """agentgateway's ``rejection``: the answer to a rejected request or response."""

    body: str = "The request was rejected due to inappropriate content"
    status: Annotated[int, Field(ge=400, le=599)] = 403
    headers: HeaderModifier | None = None


class RegexRule(_Model):
    """One of ``builtin`` (ssn, creditCard, phoneNumber, email, caSin) or ``pattern`` (a regular expression)."""

    builtin: Literal["ssn", "creditCard", "phoneNumber", "email", "caSin"] | None = None
    pattern: str | None = None

    @model_validator(mode="after")
    def _one_of(self) -> RegexRule:
        _check_exactly_one(self, "builtin", "pattern")
        _check_regex(self.pattern)
        return self


class RegexGuard(_Model):
    """``regex``: ``mask`` replaces matches (``<EMAIL_ADDRESS>``, ``<masked>``), ``reject`` refuses the text."""

    action: Annotated[Literal["mask", "reject"], BeforeValidator(_lower_enum)] = "mask"
    rules: Annotated[list[RegexRule], Field(min_length=1)]


class WebhookTarget(_Model):
    """Where the webhook listens: ``host: host:port`` (plain HTTP), or ext ``url`` (http:// or https://)."""

    host: str | None = None
    url: str | None = None
    backend: Any = None
    service: Any = None

    @model_validator(mode="after")
    def _one_of(self) -> WebhookTarget:
        if self.backend is not None or self.service is not None:
            raise ValueError(
                "webhook targets by 'backend' or 'service' are not supported by this gateway: give 'host: host:port' "
                "or 'url: http(s)://host:port'"
            )
        if (self.host is None) == (self.url is None):
            raise ValueError("give exactly one of 'host' (host:port) or 'url'")
        if self.host is not None and not re.fullmatch(r"[A-Za-z0-9.\-\[\]:]+:\d{1,5}", self.host):
            raise ValueError(f"host must be host:port, got {self.host!r}")
        if self.url is not None:
            _http_url(self.url)
        return self


class WebhookGuard(_Model):
    """``webhook``: the messages are POSTed to ``target`` (``/request``, ``/response``, or ``path``) and its verdict
    (pass, mask, reject) is followed. ``failureMode``: what an unreachable or broken webhook means."""

    target: WebhookTarget
    #: header name (or ``:path``) -> CEL over the client's request (``request``, ``llmRequest``)
    headers: dict[str, Expression] = {}
    forward_header_matches: list[HeaderMatch] = []
    #: default: failClosed (agentgateway's; ``messageFormat: raw`` defaults to failOpen as its example says)
    failure_mode: Literal["failClosed", "failOpen"] | None = None
    message_format: Literal["guardrail", "raw"] = "guardrail"
    path: str | None = None
    min_size_bytes: Annotated[int, Field(ge=0)] = 0

    @field_validator("headers")
    @classmethod
    def _check_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if name not in (":path", ":method") and not _HEADER_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a valid header name (or :path)")
        return value

    @field_validator("path")
    @classmethod
    def _check_path(cls, value: str | None) -> str | None:
        if value is not None and (not value.startswith("/") or any(c in value for c in " \r\n?#")):
            raise ValueError(f"must be an absolute path such as /v1/compress, got {value!r}")
        return value


class BackendAuthKey(_Model):
    key: SecretStr


class ModerationPolicies(_Model):
    """The backend policies of the moderation call: ``backendAuth: {key}`` (the OpenAI key)."""

    backend_auth: BackendAuthKey | None = None


class ModerationGuard(_Model):
    """``openAIModeration``: the prompt goes to an OpenAI-compatible ``/v1/moderations``; flagged: rejected."""

    model: str = "omni-moderation-latest"
    policies: ModerationPolicies | None = None
    #: ext: the moderation server's root (``/v1/moderations`` is appended); default https://api.openai.com
    base_url: str = "https://api.openai.com"

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        _http_url(value)
        return value.rstrip("/").removesuffix("/v1")


def _unsupported_guard(kind: str) -> Any:
    def check(value: Any) -> Any:
        if value is not None:
            raise ValueError(
                f"{kind} is not supported: {UNSUPPORTED_GUARDS[kind]}. Supported guards: regex, webhook, "
                "openAIModeration (requests only)"
            )
        return value

    return BeforeValidator(check)


class _Guard(_Model):
    rejection: GuardRejection = GuardRejection()
    regex: RegexGuard | None = None
    webhook: WebhookGuard | None = None
    bedrock_guardrails: Annotated[Any, _unsupported_guard("bedrockGuardrails")] = None
    google_model_armor: Annotated[Any, _unsupported_guard("googleModelArmor")] = None
    azure_content_safety: Annotated[Any, _unsupported_guard("azureContentSafety")] = None

    def _kinds(self) -> list[str]:
        return [name for name in ("regex", "webhook", "open_ai_moderation") if getattr(self, name, None) is not None]

    @model_validator(mode="after")
    def _one_kind(self) -> _Guard:
        kinds = self._kinds()
        if len(kinds) != 1:
            raise ValueError(
                "give exactly one guard kind: regex, webhook"
                + (", openAIModeration" if isinstance(self, RequestGuard) else "")
                + (f" (got {' and '.join(kinds)})" if kinds else "")
            )
        return self


class RequestGuard(_Guard):
    open_ai_moderation: ModerationGuard | None = Field(default=None, alias="openAIModeration")


class ResponseGuard(_Guard):
    open_ai_moderation: Any = Field(default=None, alias="openAIModeration")

    @field_validator("open_ai_moderation")
    @classmethod
    def _request_only(cls, value: Any) -> Any:
        if value is not None:
            raise ValueError("openAIModeration checks prompts only: use it in 'request', not 'response'")
        return value


def _streaming_mode(value: Any) -> Any:
    if isinstance(value, bool):
        return "enabled" if value else "disabled"
    return value.lower() if isinstance(value, str) else value


class PromptGuard(_Model):
    """agentgateway's ``guardrails``: ``request`` guards run before the upstream call, ``response`` guards on the
    answer; with ``streaming: enabled`` response guards also run on streamed answers."""

    streaming: Annotated[Literal["enabled", "disabled"], BeforeValidator(_streaming_mode)] = "disabled"
    request: list[RequestGuard] = []
    #: on streams, regex guards mask and reject; webhooks see the text in windows and pass or reject (guardrails.py)
    response: list[ResponseGuard] = []


class PromptCaching(_Model):
    """agentgateway's ``promptCaching`` (its defaults): cache points on the system prompt, the conversation history
    (the second-to-last message, ``cacheMessageOffset`` further back) and the tools. ``minTokens`` gates the system
    point on an estimate (words x 1.3)."""

    cache_system: bool = True
    cache_messages: bool = True
    cache_tools: bool = False
    min_tokens: Annotated[int, Field(ge=0)] | None = 1024
    cache_message_offset: Annotated[int, Field(ge=0)] = 0


# -- backend TLS of a model entry or provider (issue 16): agentgateway's LocalBackendTLS -----------------------------


def _explicit_bool(value: Any) -> Any:
    """Turning certificate checks off must be written out as a YAML boolean (``insecure: true``): ``"true"``, ``1``
    or a ``$VAR`` that expands to a string are refused, so that a typo or an environment cannot switch it on."""
    if not isinstance(value, bool):
        raise ValueError(f"must be written out as true or false (a YAML boolean), got {value!r}")
    return value


ExplicitBool = Annotated[bool, BeforeValidator(_explicit_bool)]


def _read_tls_file(path: str) -> str:
    try:
        return _read_referenced(path)  # a worker gets the text the main process validated (reload.py)
    except OSError as exc:
        raise ValueError(f"cannot read {path!r}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path!r} is not a PEM file (it is not text)") from None


def _pem_file(kind: str, marker: str) -> Any:
    def check(path: str) -> str:
        if marker not in _read_tls_file(path):
            raise ValueError(f"{path!r} is not a PEM {kind} (no '-----BEGIN {marker}' line)")
        return path

    return AfterValidator(check)


class BackendTLS(_Model):
    """agentgateway's backend TLS (its ``LocalBackendTLS``): ``tls`` (or its alias ``backendTLS``) of a model
    entry, or of a provider in ``llm.providers`` for the models that reference it. ``root``: a PEM bundle that
    replaces the system trust (as agentgateway's; ext ``systemRoots: true`` keeps the system trust beside it);
    without ``root`` the system trust, which ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` replace as usual. ``cert`` and
    ``key``: the client certificate for mTLS. ``hostname``: the name sent as SNI and checked. ``insecure``: no
    certificate check at all, ``insecureHost``: the chain is checked, the name is not -- both must be written out
    as ``true`` and are named as a warning at start-up. The files are read and the SSLContext is built here, once
    per load (upstream.client_tls), never per request."""

    root: Annotated[str, _pem_file("certificate bundle", "CERTIFICATE")] | None = None
    cert: Annotated[str, _pem_file("certificate", "CERTIFICATE")] | None = None
    key: Annotated[str, _pem_file("private key", "PRIVATE KEY")] | None = None
    hostname: Annotated[str, Field(min_length=1)] | None = None
    insecure: ExplicitBool = False
    insecure_host: ExplicitBool = False
    #: the gateway speaks HTTP/1.1 to upstreams: only ``http/1.1`` may be offered (the default); ``[]``: no ALPN
    alpn: list[Literal["http/1.1"]] | None = None
    #: ext: with ``root``, trust the system store (or SSL_CERT_FILE) too
    system_roots: ExplicitBool = False
    # agentgateway's, refused by name (below): accepting them unserved would weaken what the operator asked for
    subject_alt_names: Any = None
    key_exchange_groups: Any = None
    spiffe: Any = None
    #: a common spelling elsewhere (Go's InsecureSkipVerify): refused with agentgateway's name
    insecure_skip_verify: Any = None

    _client: Any = PrivateAttr(default=None)

    @field_validator("subject_alt_names", "key_exchange_groups", "spiffe", "insecure_skip_verify")
    @classmethod
    def _refused(cls, value: Any, info: Any) -> Any:
        if value is None:
            return value
        if info.field_name == "insecure_skip_verify":
            raise ValueError("to skip certificate verification write 'insecure: true' (agentgateway's name)")
        reasons = {
            "subject_alt_names": "extra accepted names are not checked by this gateway's TLS client; use hostname",
            "key_exchange_groups": "the key exchange groups are OpenSSL's defaults here",
            "spiffe": "SPIFFE workload identities are not part of this gateway",
        }
        raise ValueError(f"not supported: {reasons[info.field_name]}")

    @model_validator(mode="after")
    def _build(self) -> BackendTLS:
        from .upstream import client_tls

        if self.insecure and self.insecure_host:
            raise ValueError("give insecure (no check at all) or insecureHost (no host name check), not both")
        if self.system_roots and self.root is None:
            raise ValueError("systemRoots adds the system trust beside root: give root too (or leave both out)")
        self._client = client_tls(
            root=(self.root, _read_tls_file(self.root)) if self.root is not None else None,
            system_roots=self.system_roots,
            cert=(self.cert, _read_tls_file(self.cert)) if self.cert is not None else None,
            key=(self.key, _read_tls_file(self.key)) if self.key is not None else None,
            hostname=self.hostname,
            insecure=self.insecure,
            insecure_host=self.insecure_host,
            alpn=self.alpn != [],
        )
        return self

    @property
    def client(self) -> ClientTLS:
        """The connection settings built from this (upstream.ClientTLS)."""
        client: ClientTLS = self._client
        return client


#: ``tls``, and agentgateway's alias ``backendTLS``
_TLS_ALIASES = AliasChoices("tls", "backendTLS")


def _one_tls_spelling(value: Any) -> Any:
    """``tls`` and ``backendTLS`` are one setting: an entry that gives both would silently lose one."""
    if isinstance(value, dict) and "tls" in value and "backendTLS" in value:
        raise ValueError("give tls or backendTLS (two spellings of one setting), not both")
    return value


class ProviderReference(_Model):
    reference: Annotated[str, Field(min_length=1)]


class ProviderDefaults(_Model):
    """``llm.providers[].defaults``: what every model entry that references the provider inherits."""

    defaults: dict[str, Any] | None = None
    overrides: dict[str, Any] | None = None
    request_headers: HeaderModifier | None = None
    response_headers: HeaderModifier | None = None
    health: HealthConfig | None = None
    #: request body fields set from CEL expressions (``model: 'llmRequest.model.stripPrefix("openai/")'``)
    transformation: dict[str, Expression] | None = None


def _canonical_provider(value: Any) -> Any:
    if isinstance(value, str):
        canonical = _PROVIDER_BY_LOWER.get(value.lower())
        if canonical is None and value.lower() in UNSUPPORTED_PROVIDERS:
            raise ValueError(
                f"provider {value!r} is not supported by this gateway: {UNSUPPORTED_PROVIDERS[value.lower()]}. "
                f"Supported: {', '.join(BUILTIN_PROVIDERS)}, custom, reference"
            )
        if canonical is None:
            raise ValueError(
                f"unknown provider {value!r}; use one of {', '.join(BUILTIN_PROVIDERS)}, "
                "{custom: {formats: [{type: completions}]}} or {reference: <name in llm.providers>}"
            )
        return canonical
    if isinstance(value, dict) and set(value) == {"custom"}:
        return CustomProvider.model_validate(value["custom"] or {})
    if isinstance(value, dict) and set(value) == {"reference"}:
        return ProviderReference.model_validate(value)
    raise ValueError(
        f"must be one of {', '.join(BUILTIN_PROVIDERS)}, a mapping {{custom: {{formats: [{{type: completions}}]}}}} "
        "or {reference: <name in llm.providers>}"
    )


class ProviderEntry(_Model):
    """``llm.providers[]``: a provider's params and defaults, named once and referenced by model entries."""

    name: Annotated[str, Field(min_length=1)]
    provider: str | CustomProvider
    params: ModelParams = ModelParams()
    defaults: ProviderDefaults | None = None
    #: backend TLS for every model that references the provider (a model's own ``tls`` wins)
    tls: BackendTLS | None = Field(None, validation_alias=_TLS_ALIASES)

    _one_tls = model_validator(mode="before")(_one_tls_spelling)

    @field_validator("provider", mode="before")
    @classmethod
    def _check_provider(cls, value: Any) -> Any:
        resolved = _canonical_provider(value)
        if isinstance(resolved, ProviderReference):
            raise ValueError("a provider in llm.providers cannot reference another provider")
        return resolved


class ModelEntry(_Model):
    name: Annotated[str, Field(min_length=1)]
    provider: str | CustomProvider | ProviderReference
    params: ModelParams = ModelParams()
    #: ``internal``: reachable only through a virtual model; a direct request gets 404.
    visibility: Literal["public", "internal"] = "public"
    #: The entry serves a request only when one of these holds (none: always).
    matches: list[ModelMatch] = []
    #: Request body fields set when the client sent none (``defaults``) or always (``overrides``).
    defaults: dict[str, Any] | None = None
    overrides: dict[str, Any] | None = None
    request_headers: HeaderModifier | None = None
    response_headers: HeaderModifier | None = None
    health: HealthConfig | None = None
    #: request body fields set from CEL expressions (``model: 'llmRequest.model.stripPrefix("openai/")'``)
    transformation: dict[str, Expression] | None = None
    #: the same, applied last (after defaults, overrides and transformation), over the body they produced
    final_transformation: dict[str, Expression] | None = None
    #: who may use this entry (CEL over request, jwt, apiKey); 403 model_authorization_denied otherwise
    authorization: AuthorizationPolicy | None = None
    #: prompt and response guards (guardrails.py): inline, or the name of one in ``llm.guardrails``; once the
    #: config is loaded, the resolved guards with ``llm.policies.guardrails`` ahead of the entry's own
    guardrails: str | PromptGuard | None = None
    #: cache points inserted for Anthropic, Bedrock and Vertex AI Claude (prompt_caching.py)
    prompt_caching: PromptCaching | None = None
    #: agentgateway's ``tls`` (alias ``backendTLS``): trust, client certificate and checks towards the upstream
    tls: BackendTLS | None = Field(None, validation_alias=_TLS_ALIASES)

    _one_tls = model_validator(mode="before")(_one_tls_spelling)

    @field_validator("provider", mode="before")
    @classmethod
    def _check_provider(cls, value: Any) -> Any:
        return _canonical_provider(value)

    @model_validator(mode="after")
    def _tls_needs_https(self) -> ModelEntry:
        base_url = self.params.base_url
        if self.tls is not None and base_url is not None and urlsplit(base_url).scheme == "http":
            raise ValueError(
                f"tls is set but params.baseUrl is {base_url!r}: use an https:// URL (TLS is spoken to https "
                "upstreams only)"
            )
        return self

    @model_validator(mode="after")
    def _check_params(self) -> ModelEntry:
        if isinstance(self.provider, ProviderReference):
            extra = self.params.model_fields_set - {"model"}
            if extra:
                names = ", ".join(sorted(to_camel(name) for name in extra))
                raise ValueError(
                    f"a model that references a provider may set only params.model (it sets {names}): "
                    "set the others on the provider in llm.providers"
                )
            return self  # checked once the reference is resolved
        if isinstance(self.provider, CustomProvider) and self.params.base_url is None:
            raise ValueError("params.baseUrl is required for a custom provider (e.g. http://host:8000/v1)")
        for param, problem in _REQUIRED_PARAMS.get(self.provider_name, ()):
            if param == "vertex_project" and self.params.api_key is not None:
                continue  # express mode: the key names the project
            if getattr(self.params, param) is None:
                raise ValueError(problem)
        return self

    @property
    def provider_name(self) -> str:
        if isinstance(self.provider, ProviderReference):
            raise AssertionError("provider references are resolved when the config loads")
        return "custom" if isinstance(self.provider, CustomProvider) else self.provider


class WeightedTarget(_Model):
    model: Annotated[str, Field(min_length=1)]
    weight: Annotated[int, Field(ge=0)] = 1


class WeightedRouting(_Model):
    targets: Annotated[list[WeightedTarget], Field(min_length=1)]

    @model_validator(mode="after")
    def _some_weight(self) -> WeightedRouting:
        if not any(target.weight for target in self.targets):
            raise ValueError("at least one target needs a weight above 0")
        return self


class FailoverTarget(_Model):
    model: Annotated[str, Field(min_length=1)]
    #: lower values are tried first
    priority: Annotated[int, Field(ge=0)] = 0


class FailoverRouting(_Model):
    targets: Annotated[list[FailoverTarget], Field(min_length=1)]


class ConditionalTarget(_Model):
    when: Expression | None = None
    model: Annotated[str, Field(min_length=1)]


class ConditionalRouting(_Model):
    targets: Annotated[list[ConditionalTarget], Field(min_length=1, max_length=64)]

    @model_validator(mode="after")
    def _fallback_last(self) -> ConditionalRouting:
        for index, target in enumerate(self.targets[:-1]):
            if target.when is None:
                raise ValueError(f"targets[{index}] has no 'when': only the last target may go without one")
        return self


class VirtualModelRouting(_Model):
    weighted: WeightedRouting | None = None
    failover: FailoverRouting | None = None
    conditional: ConditionalRouting | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> VirtualModelRouting:
        _check_exactly_one(self, "weighted", "failover", "conditional", say_given=True)
        return self


class VirtualModel(_Model):
    """``llm.virtualModels[]``: a public name whose requests go to other models by a routing rule."""

    name: Annotated[str, Field(min_length=1)]
    routing: VirtualModelRouting


# -- llm.policies and config.redis: who may call and how much (OPERATIONS.md sections 2 and 3, issue 17) -------------

PositiveDuration = Annotated[float, BeforeValidator(_duration), Field(gt=0)]
_KEY_HASH = re.compile(r"sha256:[0-9a-f]{64}")


class RateLimit(_Model):
    """agentgateway's ``localRateLimit`` entry: a token bucket of ``maxTokens`` that gains ``tokensPerFill`` every
    ``fillInterval``. ``type: requests`` counts requests; ``tokens`` counts LLM tokens (estimated, then settled)."""

    type: Literal["requests", "tokens"] = "requests"
    max_tokens: Annotated[int, Field(ge=1)]
    tokens_per_fill: Annotated[int, Field(ge=1)]
    fill_interval: PositiveDuration

    @model_validator(mode="after")
    def _fill_within_bucket(self) -> RateLimit:
        if self.tokens_per_fill > self.max_tokens:
            raise ValueError(
                f"tokensPerFill ({self.tokens_per_fill}) is larger than maxTokens ({self.max_tokens}): "
                "a fill can never add more than the bucket holds"
            )
        return self


class ApiKeyEntry(_Model):
    """One inbound key: ``key`` (the secret itself, usually ``$VAR``, or ext ``{file: path}`` as ``params.apiKey``
    takes it) or ``keyHash: sha256:<64 hex>``."""

    key: Annotated[SecretStr, BeforeValidator(_secret_from_file)] | None = None
    key_hash: str | None = None
    #: shown in logs, metrics and traces as the caller (``name``), and handed to the identity; never the key.
    metadata: dict[str, Any] = {}
    #: model names the key may use: exact, ``prefix*``, ``*suffix``, ``*``; absent = all, ``[]`` = none.
    allowed_models: list[str] | None = None
    #: ext: limits of this caller alone, beside ``llm.policies.localRateLimit``.
    local_rate_limit: list[RateLimit] = []

    @field_validator("key_hash")
    @classmethod
    def _check_key_hash(cls, value: str | None) -> str | None:
        if value is not None and not _KEY_HASH.fullmatch(value):
            raise ValueError("must be 'sha256:' and 64 lower-case hex digits (sha256 of the key)")
        return value

    @field_validator("key")
    @classmethod
    def _check_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            raise ValueError("must not be empty")
        _check_no_line_break(value)
        return value

    @model_validator(mode="after")
    def _one_of(self) -> ApiKeyEntry:
        _check_exactly_one(self, "key", "key_hash")
        return self


class ApiKeyPolicy(_Model):
    """``llm.policies.apiKey``. ``mode``: ``strict`` (a valid key is required), ``optional`` (a key, when sent, must
    be valid), ``permissive`` (nothing is refused). Unlike agentgateway, the default is ``strict``."""

    mode: Literal["strict", "optional", "permissive"] = "strict"
    keys: list[ApiKeyEntry] = []

    @model_validator(mode="after")
    def _no_duplicates(self) -> ApiKeyPolicy:
        from .policy.keys import key_digest

        seen: dict[bytes, int] = {}
        for index, entry in enumerate(self.keys):
            digest = key_digest(entry)
            if digest in seen:
                raise ValueError(f"keys[{index}] is the same key as keys[{seen[digest]}]")
            seen[digest] = index
        return self


class JwksFile(_Model):
    file: Annotated[str, Field(min_length=1)]
    #: the file's text, read when the config loads (JwtAuthPolicy): watched for reloads, and what a worker uses
    #: is what the main process validated (reload.py); a new text makes the policy differ, so it is rebuilt.
    _text: str | None = PrivateAttr(default=None)

    @property
    def text(self) -> str | None:
        return self._text


class JwksUrl(_Model):
    url: Annotated[str, Field(min_length=1)]
    #: ext: how long fetched keys are used before they are fetched again (an unknown ``kid`` refetches sooner).
    cache_duration: PositiveDuration = 300.0

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        _http_url(value)
        return value


class JwtAuthPolicy(_Model):
    """``llm.policies.jwtAuth``: a ``Bearer`` JWT signed by a key of ``jwks`` (a JWKS as a string, ``{file}`` or
    ``{url}``), from ``issuer``, for one of ``audiences``, with ``requiredClaims``. Its claims become the caller's
    metadata."""

    mode: Literal["strict", "optional", "permissive"] = "strict"
    issuer: str | None = None
    audiences: list[str] | None = None
    jwks: str | JwksFile | JwksUrl
    required_claims: list[str] = ["exp"]

    @field_validator("jwks")
    @classmethod
    def _check_jwks(cls, value: str | JwksFile | JwksUrl) -> str | JwksFile | JwksUrl:
        if isinstance(value, JwksFile):
            try:
                value._text = _read_referenced(value.file)
            except (OSError, UnicodeDecodeError) as exc:
                problem = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                raise ValueError(f"cannot read the JWKS file {value.file!r}: {problem}") from None
        if not isinstance(value, JwksUrl):
            from .policy.jwt_auth import load_jwks

            load_jwks(value)  # raises ValueError saying what is wrong
        return value


class Policies(_Model):
    """``llm.policies``."""

    api_key: ApiKeyPolicy | None = None
    jwt_auth: JwtAuthPolicy | None = None
    local_rate_limit: list[RateLimit] = []
    #: browsers' cross-origin requests (cors.py)
    cors: CorsPolicy | None = None
    #: who may call at all, before a model is chosen (authorization.py)
    authorization: AuthorizationPolicy | None = None
    #: request headers computed by CEL before a model is chosen (authorization.py: RequestTransformations)
    transformations: TransformationsPolicy | None = None
    #: guards for every model, run ahead of each entry's own (guardrails.py)
    guardrails: PromptGuard | None = None


class RedisConfig(_Model):
    """ext ``config.redis``: rate-limit counters in Redis, shared by every replica."""

    url: SecretStr  # may hold a password: never logged
    command_timeout: PositiveDuration = 0.05
    failure_mode: Literal["failOpen", "failClosed"] = "failClosed"

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: SecretStr) -> SecretStr:
        scheme = urlsplit(value.get_secret_value()).scheme
        if scheme not in ("redis", "rediss", "unix"):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value


# -- config.statsAddr, tracing, logging, modelCatalog, metrics: what operators see (OPERATIONS.md section 5, issue 18)


def _check_listen_address(value: str) -> str:
    """``host:port`` (``[::1]:port`` for IPv6; an empty host is every address), or ``off``."""
    if value == "off":
        return value
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535 or (host.startswith("[") != host.endswith("]")):
        raise ValueError(f"must be host:port (e.g. 0.0.0.0:15020) or off, got {value!r}")
    return value


ListenAddress = Annotated[str, AfterValidator(_check_listen_address)]


class TracingConfig(_Model):
    """``config.tracing``: OTLP export of a SERVER span per request and a CLIENT span per upstream attempt."""

    #: grpc: ``host:port`` or ``http(s)://host:port``; http: the collector's root (``/v1/traces`` is appended when
    #: the URL has no path) or the full traces URL.
    otlp_endpoint: Annotated[str, Field(min_length=1)]
    otlp_protocol: Literal["grpc", "http"] = "grpc"
    #: sent with every export (a collector's auth token: never logged).
    headers: dict[str, SecretStr] = {}
    #: the share of requests traced when the client sent no ``traceparent`` (true: all, false: none); a client's
    #: sampled flag is followed either way.
    random_sampling: bool | Annotated[float, Field(ge=0, le=1)] = True
    #: ext: spans waiting for export; past this they are dropped (and counted), never waited for.
    max_queue_size: Annotated[int, Field(ge=1)] = 2048


_LEVELS = {"trace": 5, "debug": 10, "info": 20, "warn": 30, "warning": 30, "error": 40, "off": 100}


def parse_log_level(value: str | None) -> tuple[int | None, bool]:
    """agentgateway's ``config.logging.level`` (its log filter: ``info``, or directives such as
    ``warn,request=info``): ``(the level of the gateway's own log -- None: the command line's --log-level --,
    whether access-log lines are written)``. As agentgateway's, an access-log line is an ``info`` record of the
    target ``request``: a level above info (``warn``, ``error``, ``off``) turns them off unless ``request=info``
    (or lower) says otherwise; ``agentgateway=<level>`` (its crate, our logger's name) sets the gateway's own log
    apart from the access log. Other targets (agentgateway's other module names) are accepted and have no effect
    here. ValueError for a level it does not know."""
    if value is None:
        return None, True
    default: int | None = None
    request: int | None = None
    own: int | None = None
    for part in value.split(","):
        directive = part.strip()
        if not directive:
            continue
        target, sep, level = directive.rpartition("=") if "=" in directive else ("", "", directive)
        number = _LEVELS.get(level.strip().lower())
        if number is None:
            raise ValueError(
                f"unknown log level {level.strip()!r} in {value!r} (trace, debug, info, warn, error, off; "
                "directives as target=level)"
            )
        if not sep:
            default = number
        elif target.strip() == "request":
            request = number
        elif target.strip() == "agentgateway":
            own = number
    effective = request if request is not None else default
    return own if own is not None else default, effective is None or effective <= _LEVELS["info"]


def _check_log_level(value: str | None) -> str | None:
    parse_log_level(value)
    return value


def _field_names(value: dict[str, Any] | list[str]) -> Any:
    from .telemetry._fields import FIELD_NAME

    for name in value:
        if not FIELD_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a field name (letters, digits, '_', '.', '-'; a letter or '_' first)")
    return value


class LogFields(_Model):
    """agentgateway's ``fields``: ``add`` (field name -> CEL expression, in order) and ``remove`` (names)."""

    add: Annotated[dict[str, Expression], AfterValidator(_field_names)] = {}
    remove: list[str] = []


class LoggingConfig(_Model):
    """``config.logging``: the access log, one line per request, and the level of the gateway's own log."""

    format: Annotated[Literal["text", "json"], BeforeValidator(lambda v: "text" if v is None else v)] = "text"
    #: agentgateway's log filter (``info``, ``warn,request=info``): parse_log_level
    level: Annotated[str, AfterValidator(_check_log_level)] | None = None
    #: agentgateway's older spelling of ``frontendPolicies.accessLog`` (telemetry/_fields.py)
    filter: Expression | None = None
    fields: LogFields = LogFields()
    #: ext: false turns the access log off.
    access_log: bool = True


class CatalogEntry(_Model):
    """One model's prices in USD per 1M tokens (``reasoning`` unset: reasoning tokens cost ``output``)."""

    name: Annotated[str, Field(min_length=1)]  # the upstream's model id or a configured name; globs allowed
    input: Annotated[float, Field(ge=0)] = 0.0
    output: Annotated[float, Field(ge=0)] = 0.0
    cache_read: Annotated[float, Field(ge=0)] | None = None  # unset: cached input costs ``input``
    cache_write: Annotated[float, Field(ge=0)] | None = None  # unset: cache writes cost ``input``
    reasoning: Annotated[float, Field(ge=0)] | None = None


def _catalog_source(value: Any) -> Any:
    """``modelCatalog``: an inline list, or a JSON/YAML file (a path, or ``{file: path}``) holding the list or
    ``{models: [...]}``."""
    if isinstance(value, dict) and set(value) == {"file"}:
        value = value["file"]
    if isinstance(value, dict) and set(value) == {"models"}:
        value = value["models"]
    if isinstance(value, str):
        try:
            loaded = yaml.safe_load(_read_referenced(value))  # JSON is YAML; watched for reloads (reload.py)
        except (OSError, yaml.YAMLError) as exc:
            raise ValueError(f"cannot read the model catalog {value!r}: {exc}") from None
        if isinstance(loaded, dict) and "models" in loaded:
            loaded = loaded["models"]
        if not isinstance(loaded, list):
            raise ValueError(f"the model catalog {value!r} must hold a list of models (or {{models: [...]}})")
        return loaded
    return value


class MetricsConfig(_Model):
    """``config.metrics``: opt-in labels beyond the bounded defaults."""

    #: ``caller``: the caller's name (an API key's ``metadata.name``) as a label; at most 256 names, then ``other``.
    fields: list[Literal["caller"]] = []


class BackendPool(_Model):
    """agentgateway's ``config.backend``: connections to upstreams, per origin (scheme, host, port and backend TLS).
    ``poolMaxSize`` (idle connections kept) and ``poolIdleTimeout`` (how long one is kept) are agentgateway's;
    ``maxConnections`` is ours (ext): connections open at once, as aiohttp's limit -- a request past it waits for
    one, up to ``llm.timeouts.connect``, then gets a 504. agentgateway's other keys (``keepalives``,
    ``connectTimeout``) are accepted and named at start-up as not served. Reloadable: a change applies to the
    pools at once (a lower cap as connections close)."""

    #: ext: open connections per origin (upstream.DEFAULT_MAX_CONNECTIONS)
    max_connections: Annotated[int, Field(ge=1, strict=True)] = 100
    pool_max_size: Annotated[int, Field(ge=0, strict=True)] | None = None
    pool_idle_timeout: Annotated[float, BeforeValidator(_duration), Field(gt=0)] = 30.0
    keepalives: Any = None
    connect_timeout: Any = None


class ConfigSection(_Model):
    """The top-level ``config:`` section (agentgateway's): settings of the gateway itself, not of the LLM traffic."""

    redis: RedisConfig | None = None
    #: ``/metrics`` and ``/stats/prometheus`` (``off`` disables; the ``STATS_ADDR`` environment variable wins).
    stats_addr: ListenAddress = "0.0.0.0:15020"
    #: ``/healthz/ready``: 200 once every worker process serves (``off`` disables).
    readiness_addr: ListenAddress = "0.0.0.0:15021"
    tracing: TracingConfig | None = None
    logging: LoggingConfig = LoggingConfig()
    model_catalog: Annotated[list[CatalogEntry], BeforeValidator(_catalog_source)] = []
    metrics: MetricsConfig = MetricsConfig()
    #: connections to upstreams (upstream.UpstreamClient)
    backend: BackendPool = BackendPool()


class LlmConfig(_Model):
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    #: names in the top-level ``gateways`` whose port serves the llm section (the first one's)
    gateways: list[str] | None = None
    providers: list[ProviderEntry] = []
    #: named guards that model entries reference by name (``guardrails: sharedPii``)
    guardrails: dict[str, PromptGuard] = {}
    models: Annotated[list[ModelEntry], Field(min_length=1)]
    virtual_models: list[VirtualModel] = []
    timeouts: Timeouts = Timeouts()
    policies: Policies = Policies()


class GatewayListener(BaseModel):
    """One entry of agentgateway's top-level ``gateways``: its ``port`` picks the serving port; the rest
    (listeners, TLS, hostnames) is accepted and named at start-up as not served."""

    model_config = ConfigDict(extra="allow", frozen=True)

    port: Annotated[int, Field(ge=1, le=65535)] | None = None


#: the largest request body accepted when ``frontendPolicies.http.maxBufferSize`` is not set, in bytes
DEFAULT_MAX_REQUEST_BYTES = 10 * 1024 * 1024


class FrontendHttp(_Model):
    """agentgateway's ``frontendPolicies.http`` (its ``types/frontend.rs`` ``HTTP``). ``maxBufferSize`` is served:
    the largest request body accepted, in bytes (a larger one is a 413; agentgateway's default is 2 MiB, ours
    stays DEFAULT_MAX_REQUEST_BYTES so that requests with images keep passing). Its HTTP/1 and HTTP/2 connection
    tuning (``http1MaxHeaders``, ``http2WindowSize``, ...) is granian's: accepted, each named at start-up as not
    served."""

    model_config = ConfigDict(extra="allow", alias_generator=to_camel, populate_by_name=True, frozen=True)

    max_buffer_size: Annotated[int, Field(ge=1, strict=True)] | None = None


class AccessLogPolicy(_Model):
    """agentgateway's ``frontendPolicies.accessLog``: ``filter`` (CEL: log the request only when true), ``add``
    (field name -> CEL, added to the line), ``remove`` (the line's own fields left out); telemetry/_fields.py.
    Its other keys (``otlp``, ``database``: other sinks) are accepted and named at start-up as not served."""

    model_config = ConfigDict(extra="allow", alias_generator=to_camel, populate_by_name=True, frozen=True)

    filter: Expression | None = None
    add: Annotated[dict[str, Expression], AfterValidator(_field_names)] = {}
    remove: list[str] = []


class FrontendPolicies(_Model):
    """agentgateway's ``frontendPolicies``: ``http.maxBufferSize`` and ``accessLog`` are served; other keys are
    accepted and named at start-up as not served (``_unserved``)."""

    model_config = ConfigDict(extra="allow", alias_generator=to_camel, populate_by_name=True, frozen=True)

    http: FrontendHttp | None = None
    access_log: AccessLogPolicy | None = None

    @property
    def max_request_bytes(self) -> int:
        """The request size limit these policies set."""
        limit = self.http.max_buffer_size if self.http is not None else None
        return DEFAULT_MAX_REQUEST_BYTES if limit is None else limit


class GatewayConfig(_Model):
    llm: LlmConfig
    config: ConfigSection = ConfigSection()
    # agentgateway's sections outside an LLM gateway's job: accepted, each named once at start-up as not served
    # (UNSERVED_SECTIONS); gateways.<name>.port picks the serving port.
    gateways: dict[str, GatewayListener] | None = None
    frontend_policies: FrontendPolicies = FrontendPolicies()
    mcp: Any = None
    ui: Any = None
    binds: Any = None
    backends: Any = None
    policies: Any = None
    workloads: Any = None
    services: Any = None
    route_groups: Any = None

    #: ``file:line: path: ...`` lines for what the config sets and this gateway does not serve (logged once at
    #: start-up by the main process)
    _unserved: tuple[str, ...] = PrivateAttr(default=())

    @property
    def unserved(self) -> tuple[str, ...]:
        return self._unserved


#: top-level sections accepted but not served, and why
UNSERVED_SECTIONS = {
    "mcp": "MCP serving is not part of this gateway",
    "ui": "there is no admin UI",
    "binds": "the gateway listens on --host and the serving port only (no custom binds or routes)",
    "backends": "top-level backends (MCP, hosts) are not served; LLM upstreams come from llm.models",
    "policies": "targeted policies are not applied; use llm.policies",
    "workloads": "service discovery is not part of this gateway",
    "services": "service discovery is not part of this gateway",
    "routeGroups": "route groups are not served; routing comes from llm.models and llm.virtualModels",
}


# ---------------------------------------------------------------------------------------------------------------
# Loading: YAML with line numbers, environment substitution, validation, and error messages that point somewhere.

Path = tuple[str | int, ...]
_ENV_REFERENCE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)|\$\{[^}]*\}?")


def load_config_file(path: str) -> GatewayConfig:
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror or exc}") from None
    return load_config(text, source=path)


def load_config(text: str, source: str = "<inline config>") -> GatewayConfig:
    """Parses, substitutes and validates; raises ConfigError listing every problem found."""
    lines: dict[Path, int] = {}
    document = _parse_yaml(text, source, lines)
    problems: list[str] = []
    document = _substitute_env(document, (), lines, source, problems)
    if problems:
        raise ConfigError("\n".join(problems))
    if not isinstance(document, dict) or "llm" not in document:
        raise ConfigError(f"{source}: the config must be a mapping with an 'llm:' section")
    try:
        config = GatewayConfig.model_validate(document)
    except ValidationError as exc:
        problems.extend(_validation_problems(exc, source, lines, ()))
        raise ConfigError("\n".join(problems)) from None
    config = _resolve_references(config, source, lines, problems)
    config = _resolve_guardrails(config, source, lines, problems)
    _check_virtual_models(config.llm, source, lines, problems)
    config = _serving_port(config, source, lines, problems)
    if problems:
        raise ConfigError("\n".join(problems))
    config._unserved = _unserved(config, document, source, lines)
    return config


def _serving_port(config: GatewayConfig, source: str, lines: dict[Path, int], problems: list[str]) -> GatewayConfig:
    """agentgateway's listener port: ``llm.port``; else the port of the first gateway named in ``llm.gateways``;
    else, with one entry in the top-level ``gateways`` that has a port, that one (``--port`` still wins)."""
    llm, gateways = config.llm, config.gateways or {}
    if llm.port is not None:
        return config
    port: int | None = None
    if llm.gateways:
        for index, name in enumerate(llm.gateways):
            if name not in gateways:
                known = ", ".join(repr(n) for n in gateways) or "none are configured"
                problems.append(
                    _located(source, lines, ("llm", "gateways", index), f"no gateway named {name!r} ({known})")
                )
        first = gateways.get(llm.gateways[0])
        port = first.port if first is not None else None
    else:
        ports = [gateway.port for gateway in gateways.values() if gateway.port is not None]
        if len(ports) == 1:
            port = ports[0]
        elif len(ports) > 1:
            problems.append(
                _located(
                    source,
                    lines,
                    ("gateways",),
                    "more than one gateway has a port: name the one that serves the llm section in llm.gateways "
                    "(this gateway listens on one port)",
                )
            )
    if port is None:
        return config
    return config.model_copy(update={"llm": llm.model_copy(update={"port": port})})


def _unserved(config: GatewayConfig, document: dict[str, Any], source: str, lines: dict[Path, int]) -> tuple[str, ...]:
    notices: list[str] = []
    for key, why in UNSERVED_SECTIONS.items():
        if document.get(key) is not None:
            notices.append(_located(source, lines, (key,), f"accepted but not served: {why}"))
    for name, gateway in (config.gateways or {}).items():
        notices += _extra_keys(
            gateway,
            ("gateways", name),
            source,
            lines,
            "accepted but not served: listener details (the gateway serves plain HTTP on --host and the serving "
            "port; only gateways.<name>.port is used)",
        )
    notices.extend(_backend_notices(config, source, lines))
    jwt_auth = config.llm.policies.jwt_auth
    if jwt_auth is not None and not isinstance(jwt_auth.jwks, JwksUrl):
        from .policy.jwt_auth import load_jwks

        if not load_jwks(jwt_auth.jwks):
            notices.append(
                _located(
                    source,
                    lines,
                    ("llm", "policies", "jwtAuth", "jwks"),
                    "has no keys: every bearer token is refused (401)",
                )
            )
    frontend = config.frontend_policies
    notices += _extra_keys(frontend, ("frontendPolicies",), source, lines, "accepted but not served by this gateway")
    notices += _extra_keys(
        frontend.http,
        ("frontendPolicies", "http"),
        source,
        lines,
        "accepted but not served: HTTP connection tuning is the HTTP server's (granian); only "
        "frontendPolicies.http.maxBufferSize is used",
    )
    for key in sorted(frontend.access_log.model_extra or {} if frontend.access_log is not None else {}):
        notices.append(
            _located(
                source,
                lines,
                ("frontendPolicies", "accessLog", key),
                "accepted but not served: the access log is written to standard output only",
            )
        )
    return tuple(notices)


def _extra_keys(model: BaseModel | None, path: Path, source: str, lines: dict[Path, int], why: str) -> list[str]:
    """A notice, ``why``, for each key ``model`` (at ``path``; None: absent) accepted as an extra and not served."""
    extra = model.model_extra if model is not None else None
    return [_located(source, lines, (*path, key), why) for key in sorted(extra or {})]


_BACKEND_UNSERVED = {
    "keepalives": "TCP keepalives are the operating system's defaults",
    "connect_timeout": "the connect timeout is llm.timeouts.connect",
}


def _backend_notices(config: GatewayConfig, source: str, lines: dict[Path, int]) -> list[str]:
    """Start-up warnings for backend connections: each entry whose upstream certificate is not (fully) checked,
    and config.backend keys not served. Logged once by the main process, with the other notices."""
    notices = []
    for index, entry in enumerate(config.llm.models):
        tls = entry.tls
        if tls is None or not (tls.insecure or tls.insecure_host):
            continue
        key = "insecure" if tls.insecure else "insecureHost"
        what = "NOT verified at all" if tls.insecure else "verified without its host name"
        notices.append(
            _located(
                source,
                lines,
                ("llm", "models", index, "tls", key),
                f"warning: {key}: true -- the upstream's TLS certificate is {what}; anyone on the network path "
                "can impersonate the upstream and read the prompts and keys sent to it",
            )
        )
    for name, why in _BACKEND_UNSERVED.items():
        if getattr(config.config.backend, name) is not None:
            path: Path = ("config", "backend", to_camel(name))
            notices.append(_located(source, lines, path, f"accepted but not served: {why}"))
    return notices


#: agentgateway keys this gateway deliberately does not serve, and why (README "agentgateway config parity"): a
#: config using one fails to load with this reason instead of pydantic's "Extra inputs are not permitted".
#: ``*`` stands for a list index.
NOT_SUPPORTED: dict[tuple[str, ...], str] = {
    ("config", "database"): "not supported: agentgateway's request database (PostgreSQL) is not part of this "
    "gateway; the access log (config.logging) and the metrics carry the same facts",
    ("llm", "models", "*", "health", "active"): "not supported: active health probes; eviction here is passive "
    "(health.unhealthyExpression and health.eviction, from real answers)",
    ("llm", "providers", "*", "defaults", "health", "active"): "not supported: active health probes; eviction "
    "here is passive (health.unhealthyExpression and health.eviction, from real answers)",
    ("llm", "models", "*", "serverTools"): "not supported: server-side tools (MCP servers run by the gateway)",
    ("llm", "policies", "extProc"): "not supported: external processing (Envoy ext_proc) of requests",
    ("llm", "policies", "timeout"): "not supported: agentgateway's requestTimeout / backendRequestTimeout; "
    "upstream timeouts here are llm.timeouts (connect, firstByte, idle seconds; our extension)",
}


def _validation_problems(exc: ValidationError, source: str, lines: dict[Path, int], prefix: Path) -> list[str]:
    problems = []
    for error in exc.errors(include_url=False):
        path = (*prefix, *error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = NOT_SUPPORTED.get(tuple("*" if isinstance(part, int) else str(part) for part in path), message)
        problems.append(_located(source, lines, path, message))
    return problems


_INHERITED = ("defaults", "overrides", "transformation", "request_headers", "response_headers", "health")


def _resolve_references(
    config: GatewayConfig, source: str, lines: dict[Path, int], problems: list[str]
) -> GatewayConfig:
    """Model entries with ``provider: {reference: name}`` take that provider's params (their own params.model
    wins) and its defaults (the model's own fields win; defaults/overrides maps are merged key by key), as
    agentgateway does. Each merged entry is validated again, so a provider missing e.g. awsRegion is reported."""
    llm = config.llm
    by_name: dict[str, tuple[int, ProviderEntry]] = {}
    for index, provider in enumerate(llm.providers):
        if provider.name in by_name:
            path: Path = ("llm", "providers", index, "name")
            problems.append(_located(source, lines, path, f"provider name {provider.name!r} is used twice"))
        by_name[provider.name] = (index, provider)
    if not any(isinstance(entry.provider, ProviderReference) for entry in llm.models):
        return config
    models: list[ModelEntry] = []
    for index, entry in enumerate(llm.models):
        if not isinstance(entry.provider, ProviderReference):
            models.append(entry)
            continue
        found = by_name.get(entry.provider.reference)
        if found is None:
            names = ", ".join(repr(name) for name in by_name) or "none are configured"
            path = ("llm", "models", index, "provider", "reference")
            problems.append(
                _located(
                    source, lines, path, f"no provider named {entry.provider.reference!r} in llm.providers ({names})"
                )
            )
            models.append(entry)
            continue
        provider_index, provider = found
        merged: dict[str, Any] = dict(entry)
        merged["provider"] = provider.provider
        merged["params"] = provider.params.model_copy(update={"model": entry.params.model or provider.params.model})
        if merged["tls"] is None:
            merged["tls"] = provider.tls
        inherited = provider.defaults
        if inherited is not None:
            for name in _INHERITED:
                own, base = merged[name], getattr(inherited, name)
                if isinstance(own, dict) and isinstance(base, dict):
                    merged[name] = {**base, **own}
                elif own is None:
                    merged[name] = base
        try:
            models.append(ModelEntry.model_validate(merged))
        except ValidationError as exc:
            # The merged params come from the provider: point at it.
            problems.extend(
                f"{problem} (model entry llm.models[{index}] references it)"
                for problem in _validation_problems(exc, source, lines, ("llm", "providers", provider_index))
            )
            models.append(entry)
    return config.model_copy(update={"llm": llm.model_copy(update={"models": models})})


def _resolve_guardrails(
    config: GatewayConfig, source: str, lines: dict[Path, int], problems: list[str]
) -> GatewayConfig:
    """Each entry's ``guardrails`` becomes the guards it runs: a name is looked up in ``llm.guardrails``, and
    ``llm.policies.guardrails`` goes ahead of the entry's own (streaming on when either turns it on)."""
    llm = config.llm
    shared = llm.policies.guardrails
    if shared is None and not any(entry.guardrails is not None for entry in llm.models):
        return config
    models: list[ModelEntry] = []
    for index, entry in enumerate(llm.models):
        own = entry.guardrails
        path: Path = ("llm", "models", index, "guardrails")
        if isinstance(own, str):
            found = llm.guardrails.get(own)
            if found is None:
                names = ", ".join(repr(name) for name in llm.guardrails) or "none are configured"
                problem = f"no guardrails named {own!r} in llm.guardrails ({names})"
                problems.append(_located(source, lines, path, problem))
                models.append(entry)
                continue
            own = found
        if own is None and shared is None:  # neither the entry nor llm.policies guards it
            models.append(entry)
            continue
        merged = own if shared is None else shared if own is None else None
        if merged is None:
            assert shared is not None and own is not None
            try:
                merged = PromptGuard(
                    streaming="enabled" if "enabled" in (shared.streaming, own.streaming) else "disabled",
                    request=[*shared.request, *own.request],
                    response=[*shared.response, *own.response],
                )
            except ValidationError as exc:
                problems.extend(_validation_problems(exc, source, lines, path))
                models.append(entry)
                continue
        models.append(entry.model_copy(update={"guardrails": merged}))
    return config.model_copy(update={"llm": llm.model_copy(update={"models": models})})


def _check_virtual_models(llm: LlmConfig, source: str, lines: dict[Path, int], problems: list[str]) -> None:
    from .names import NamePattern

    patterns = [NamePattern(entry.name) for entry in llm.models]
    exact = {entry.name: index for index, entry in enumerate(llm.models)}
    seen: dict[str, int] = {}
    for index, virtual in enumerate(llm.virtual_models):
        base: Path = ("llm", "virtualModels", index)
        if virtual.name in exact:
            problems.append(
                _located(
                    source,
                    lines,
                    (*base, "name"),
                    f"{virtual.name!r} is also the name of llm.models[{exact[virtual.name]}]",
                )
            )
        if virtual.name in seen:
            problems.append(
                _located(
                    source,
                    lines,
                    (*base, "name"),
                    f"{virtual.name!r} is already llm.virtualModels[{seen[virtual.name]}]",
                )
            )
        seen.setdefault(virtual.name, index)
        routing = virtual.routing
        kind, targets = (
            ("weighted", [t.model for t in routing.weighted.targets])
            if routing.weighted is not None
            else ("failover", [t.model for t in routing.failover.targets])
            if routing.failover is not None
            else ("conditional", [t.model for t in routing.conditional.targets] if routing.conditional else [])
        )
        for target_index, model in enumerate(targets):
            if not any(pattern.matches(model) for pattern in patterns):
                path = (*base, "routing", kind, "targets", target_index, "model")
                problems.append(_located(source, lines, path, f"{model!r} matches no entry of llm.models"))


def format_path(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(document)"


def _located(source: str, lines: dict[Path, int], path: Path, message: str) -> str:
    # The deepest prefix of the path that exists in the document gives the line (a missing field has none).
    line = next((lines[path[:n]] for n in range(len(path), -1, -1) if path[:n] in lines), None)
    where = f"{source}:{line}" if line is not None else source
    return f"{where}: {format_path(path)}: {message}"


def _parse_yaml(text: str, source: str, lines: dict[Path, int]) -> Any:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise ConfigError(f"{source}: the config is empty")
        return _node_to_python(loader, node, (), lines)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise ConfigError(f"{where}: invalid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {exc}") from None
    finally:
        loader.dispose()


def _node_to_python(loader: yaml.SafeLoader, node: yaml.Node, path: Path, lines: dict[Path, int]) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves YAML merge keys (<<)
        mapping: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            mapping[key] = _node_to_python(loader, value_node, (*path, key), lines)
        return mapping
    if isinstance(node, yaml.SequenceNode):
        return [_node_to_python(loader, item, (*path, i), lines) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def _substitute_env(value: Any, path: Path, lines: dict[Path, int], source: str, problems: list[str]) -> Any:
    if isinstance(value, str):
        if "$" not in value:
            return value

        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            name = match.group(1) or match.group(2)
            if name is None:
                problems.append(_located(source, lines, path, f"malformed variable reference {match.group(0)!r}"))
                return ""
            resolved = os.environ.get(name)
            if resolved is None:
                problems.append(
                    _located(
                        source, lines, path, f"environment variable {name} is not set (referenced as {match.group(0)})"
                    )
                )
                return ""
            return resolved

        return _ENV_REFERENCE.sub(replace, value)
    if isinstance(value, dict):
        return {k: _substitute_env(v, (*path, k), lines, source, problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute_env(v, (*path, i), lines, source, problems) for i, v in enumerate(value)]
    return value
