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

import os
import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from .errors import ConfigError

__all__ = [
    "BUILTIN_PROVIDERS",
    "CustomProvider",
    "GatewayConfig",
    "LlmConfig",
    "ModelEntry",
    "ModelParams",
    "Timeouts",
    "load_config",
    "load_config_file",
]

BUILTIN_PROVIDERS = ("openAI", "anthropic", "bedrock", "gemini", "vertex")
_PROVIDER_BY_LOWER = {name.lower(): name for name in BUILTIN_PROVIDERS}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True)


class Timeouts(_Model):
    """Upstream timeouts in seconds."""

    connect: Annotated[float, Field(gt=0)] = 10.0
    # Until the upstream's response headers arrive. A non-streamed completion sends its headers only when the
    # whole answer is ready, so this must cover a full generation.
    first_byte: Annotated[float, Field(gt=0)] = 600.0
    # Longest silence allowed between two reads of a response body once it has started.
    idle: Annotated[float, Field(gt=0)] = 300.0


class ModelParams(_Model):
    model: str | None = None
    api_key: SecretStr | None = None
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

    @field_validator("aws_region", "vertex_project", "vertex_region", "anthropic_version")
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
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must be an http:// or https:// URL with a host, got {value!r}")
        if parts.query or parts.fragment:
            raise ValueError(f"must not have a query or fragment, got {value!r}")
        return value.rstrip("/")

    @field_validator("api_key")
    @classmethod
    def _check_api_key(cls, value: SecretStr | None) -> SecretStr | None:
        # A key read from a file often ends with a newline; sent as a header it would break the request.
        if value is not None and any(c in value.get_secret_value() for c in "\r\n"):
            raise ValueError("contains a line break (a trailing newline from the file or variable it came from?)")
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
    "vertex": (
        (
            "vertex_project",
            "params.vertexProject is required for vertex (your Google Cloud project id), unless params.apiKey "
            "(Vertex AI express mode) is set",
        ),
    ),
}


class ModelEntry(_Model):
    name: Annotated[str, Field(min_length=1)]
    provider: str | CustomProvider
    params: ModelParams = ModelParams()

    @field_validator("provider", mode="before")
    @classmethod
    def _check_provider(cls, value: Any) -> Any:
        if isinstance(value, str):
            canonical = _PROVIDER_BY_LOWER.get(value.lower())
            if canonical is None:
                raise ValueError(
                    f"unknown provider {value!r}; use one of {', '.join(BUILTIN_PROVIDERS)} "
                    "or {custom: {formats: [{type: completions}]}}"
                )
            return canonical
        if isinstance(value, dict) and set(value) == {"custom"}:
            return CustomProvider.model_validate(value["custom"] or {})
        raise ValueError(
            f"must be one of {', '.join(BUILTIN_PROVIDERS)} or a mapping "
            "{custom: {formats: [{type: completions}]}}"
        )

    @model_validator(mode="after")
    def _check_params(self) -> ModelEntry:
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
        return "custom" if isinstance(self.provider, CustomProvider) else self.provider


class LlmConfig(_Model):
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    models: Annotated[list[ModelEntry], Field(min_length=1)]
    timeouts: Timeouts = Timeouts()


class GatewayConfig(_Model):
    llm: LlmConfig


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
        return GatewayConfig.model_validate(document)
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            loc = tuple(error["loc"])
            message = error["msg"].removeprefix("Value error, ")
            problems.append(_located(source, lines, loc, message))
        raise ConfigError("\n".join(problems)) from None


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
