"""CEL expressions as agentgateway's ``llm:`` config uses them, on the ``common-expression-language`` package.

Expressions (``virtualModels[].routing.conditional.targets[].when``, ``models[].health.unhealthyExpression``,
later transformations and authorization rules) are compiled once at config load by :func:`compile_expression`
(a bad expression raises ``ValueError`` saying what is wrong) and evaluated per request.

Variables, as agentgateway defines them (``crates/agentgateway/src/cel/types.rs``):

* ``request``: ``method``, ``path`` (without the query), ``pathAndQuery``, ``headers`` (lower-case name ->
  value; a header sent more than once is a list of its values, as agentgateway's default header mode), ``body``
  (the raw body, bytes).
* ``llmRequest``: the request body parsed as JSON (a map), e.g. ``llmRequest.model``, ``llmRequest.max_tokens``.
* ``response``: ``code`` (int), ``headers``.
* ``jwt``, ``apiKey`` (authorization rules, request transformations): the caller's JWT claims, its API key's
  ``metadata`` (authorization.py).

Functions beyond the CEL standard ones (``size``, ``contains``, ``startsWith``, ``endsWith``, ``matches``,
conversions, macros): agentgateway's ``json``, ``toJson``, ``default``, ``stripPrefix``, ``stripSuffix``,
``regexReplace``, ``fail``, ``base64Encode``, ``base64Decode`` and cel-go's strings extension (``charAt``,
``indexOf``, ``lastIndexOf``, ``substring``, ``replace``, ``split``, ``join``, ``lowerAscii``, ``upperAscii``,
``trim``). A function or variable outside these (and agentgateway's other variable names) is a compile error.

``default(expr, fallback)`` follows agentgateway's (``crates/celx/src/general.rs``): the value of ``expr``,
unless evaluating it fails with "no such key" (a missing map key or field, at any depth) or an undeclared
variable, or it is ``null``: then ``fallback``. Other errors (a type error, invalid JSON) propagate. Present
falsy values (``0``, ``""``, ``false``) are returned. As the library evaluates a function's arguments before
calling it, ``default(a, b)`` is rewritten at compile time into a call ``__default_N(...)`` of a Python function
that runs ``a`` and (only when needed) ``b`` as separately compiled programs on the same variables; defaults
nest (each one is its own program) and work on selects, index expressions and calls alike. Inside a
comprehension macro (``all``, ``exists``, ``exists_one``, ``map``, ``filter``) the loop variables that ``a`` or
``b`` use are passed as arguments. Limit: values passed that way go through Python (``uint`` comes back as
``int``).
Selecting a field of ``null`` (``{"metadata": null}``, then ``default(x.metadata.tier, "")``) is the library's
"no such overload" error here, so it propagates; whether agentgateway's cel-rust falls back there was not checked.

Cheap evaluation:

* Only the parts of a variable the expression can read are handed to the library (converting a whole chat
  request costs tens of µs): ``llmRequest.max_tokens`` hands over ``{"max_tokens": ...}`` only, and
  ``request.headers["x-tier"]`` that one header. Whenever a variable (or a part) is used in any other way
  (``size(llmRequest)``, ``llmRequest[k]``, a method call on it) it is handed over whole from that point.
* ``json(request.body)`` is parsed once per activation (cached in the dict :func:`request_activation` made) and
  pruned the same way; invalid JSON makes an expression that reads it fail (``evaluate_bool`` gives False).
* Header names written as literals (``request.headers["X-Tier"]``) are lower-cased at compile time, since
  agentgateway's header lookup is case-insensitive. A computed name (``request.headers[k]``) is looked up as is.

Not matched: agentgateway's header views (``request.headers.join()``, ``.raw()``, ``.split()``, ``.cookie()``),
``request.uri``/``host``/``scheme``/``version``/``startTime``, ``response.grpcStatus``/``body``, namespaced
functions (``base64.encode``: use ``base64Encode``), ``with``/``mapValues``/``filterKeys``/``merge``,
``uuid``/``random``, the ``source``, ``mcp`` ... variables (they compile, and are undeclared at run time); ``llm``
and ``backend`` are set for the access log's fields only (telemetry/_fields.py).
"""

from __future__ import annotations

import base64
import functools
import logging
import re
import threading
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from types import ModuleType


def _cel_module() -> ModuleType:
    """The CEL library, imported on first compile: its package import pulls in its command-line tool (typer,
    rich, prompt_toolkit: ~25 MB and ~160 ms), which a config without expressions should not pay for."""
    import cel

    return cel


__all__ = [
    "CelEvaluationError",
    "Expression",
    "compile_expression",
    "request_activation",
    "response_activation",
]


class CelEvaluationError(ValueError):
    """An expression failed while being evaluated (a missing key, a type error, invalid JSON, ...)."""


class _DropCallbackWarnings(logging.Filter):
    # The library logs a warning for every Python function that raises; Expression.evaluate reports those
    # failures itself (as CelEvaluationError), so a bad request body must not also log per request.
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Python function '")


logging.getLogger("cel").addFilter(_DropCallbackWarnings())

# Every variable agentgateway defines; only these are provided here (the others are undeclared at run time, as
# agentgateway's are when their policy is not configured). ``jwt`` (the caller's token claims) and ``apiKey`` (the
# caller's key metadata) are set by authorization.py for the authorization rules and the transformations.
# ``llm`` and ``backend`` are provided to the access log's expressions (telemetry/_fields.py).
PROVIDED_VARIABLES = frozenset({"request", "llmRequest", "response", "jwt", "apiKey", "llm", "backend"})
KNOWN_VARIABLES = PROVIDED_VARIABLES | frozenset(
    {
        "jwt",
        "apiKey",
        "basicAuth",
        "llm",
        "source",
        "destination",
        "mcp",
        "backend",
        "extauthz",
        "extproc",
        "mcpGuardrails",
        "metadata",
        "env",
        "proxy",
    }
)
_TYPE_NAMES = frozenset({"int", "uint", "double", "string", "bytes", "bool", "list", "map", "null_type", "type"})
_BUILTIN_FUNCTIONS = frozenset(
    {
        "contains",
        "startsWith",
        "endsWith",
        "matches",
        "size",
        "int",
        "uint",
        "double",
        "string",
        "bytes",
        "bool",
        "duration",
        "timestamp",
        "dyn",
        "type",
        "max",
        "min",
        "getDate",
        "getDayOfMonth",
        "getDayOfWeek",
        "getDayOfYear",
        "getFullYear",
        "getHours",
        "getMilliseconds",
        "getMinutes",
        "getMonth",
        "getSeconds",
    }
)
_MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})
_BODY_JSON = "__body_json"  # what json(request.body) is rewritten to
_BODY_JSON_CACHE = "__body_json"  # key of the parsed body in a request_activation dict


def _json(value: Any) -> Any:
    if not isinstance(value, (bytes, str)):
        raise TypeError(f"json() takes a string or bytes, got {type(value).__name__}")
    return orjson.loads(value)


def _to_json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _strip_prefix(value: str, prefix: str) -> str:
    return value[len(prefix) :] if prefix and value.startswith(prefix) else value


def _strip_suffix(value: str, suffix: str) -> str:
    return value[: -len(suffix)] if suffix and value.endswith(suffix) else value


def _regex_replace(value: str, pattern: str, replacement: str) -> str:
    # Rust's regex::Regex::replace: the first match only, $1 / ${name} references.
    return re.sub(
        pattern,
        re.sub(r"\$(\d+|\{\w+\})", lambda m: "\\g<" + m.group(1).strip("{}") + ">", replacement),
        value,
        count=1,
    )


def _fail(message: str) -> Any:
    raise RuntimeError(f"fail() called: {message}")


def _b64encode(value: str | bytes) -> str:
    return base64.b64encode(value.encode() if isinstance(value, str) else value).decode()


def _b64decode(value: str | bytes) -> bytes:
    return base64.b64decode(value, validate=True)


@functools.cache
def extension_functions() -> Mapping[str, Callable[..., Any]]:
    """agentgateway's functions beyond the CEL core: cel-go's string library and its own helpers (made once)."""
    from cel.stdlib import EXTENSIONS

    functions: dict[str, Callable[..., Any]] = dict(EXTENSIONS["strings"])
    functions.pop("strings.quote", None)
    functions.pop("reverse", None)
    functions.update(
        {
            "json": _json,
            "toJson": _to_json,
            "to_json": _to_json,
            "stripPrefix": _strip_prefix,
            "stripSuffix": _strip_suffix,
            "regexReplace": _regex_replace,
            "fail": _fail,
            "base64Encode": _b64encode,
            "base64Decode": _b64decode,
        }
    )
    return functions


# --- lexing -------------------------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""(?P<ws>\s+|//[^\n]*)
    |(?P<str>(?:[bB]?[rR]|[rR][bB])(?:'''.*?'''|\"\"\".*?\"\"\"|'[^'\n]*'|"[^"\n]*")
        |[bB]?(?:'''(?:\\.|[^\\])*?'''|\"\"\"(?:\\.|[^\\])*?\"\"\"|'(?:\\.|[^\\'\n])*'|"(?:\\.|[^\\"\n])*"))
    |(?P<num>0[xX][0-9a-fA-F]+[uU]?|\d+\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|\d+[uU]?)
    |(?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    |(?P<punct>\|\||&&|==|!=|<=|>=|[-+*/%!<>?:.,()\[\]{}])""",
    re.X | re.S,
)
_SIMPLE_STRING = re.compile(r"""'[^'\\\n]*'|"[^"\\\n]*"$""")
_UNDECLARED = re.compile(r"Undefined variable or function: '([^']*)'")


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str


def _tokenize(source: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    pos = 0
    while pos < len(source):
        m = _TOKEN.match(source, pos)
        if m is None:
            raise ValueError(f"cannot read the expression at column {pos + 1}: {source[pos : pos + 20]!r}")
        kind = m.lastgroup or ""
        if kind != "ws":
            tokens.append(_Tok(kind, m.group()))
        pos = m.end()
    tokens.append(_Tok("end", ""))
    return tokens


def _is(tokens: list[_Tok], i: int, text: str) -> bool:
    return 0 <= i < len(tokens) and tokens[i].kind != "str" and tokens[i].text == text


def _matching(tokens: list[_Tok], i: int) -> int:
    """Index of the bracket closing the one at i."""
    depth = 0
    for j in range(i, len(tokens)):
        if tokens[j].kind == "punct" and tokens[j].text in "([{":
            depth += 1
        elif tokens[j].kind == "punct" and tokens[j].text in ")]}":
            depth -= 1
            if depth == 0:
                return j
    raise ValueError("unbalanced brackets")


def _top_level_args(tokens: list[_Tok], open_i: int, close_i: int) -> list[tuple[int, int]]:
    args, depth, start = [], 0, open_i + 1
    for j in range(open_i + 1, close_i):
        t = tokens[j]
        if t.kind == "punct" and t.text in "([{":
            depth += 1
        elif t.kind == "punct" and t.text in ")]}":
            depth -= 1
        elif depth == 0 and _is(tokens, j, ","):
            args.append((start, j))
            start = j + 1
    if start < close_i or args:
        args.append((start, close_i))
    return args


def _is_root_ident(tokens: list[_Tok], i: int) -> bool:
    return tokens[i].kind == "ident" and not _is(tokens, i - 1, ".")


# --- compile ------------------------------------------------------------------------------------------------------


@dataclass
class _Compiler:
    source: str
    tokens: list[_Tok]
    scopes: list[tuple[int, int, str]] = field(default_factory=list)  # (open, close, bound name) of macros
    defaults: list[_Default] = field(default_factory=list)
    programs: list[Any] = field(default_factory=list)  # every compiled program (root and defaults')
    sources: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        t = self.tokens
        for i in range(len(t) - 4):
            if (
                _is(t, i, ".")
                and t[i + 1].kind == "ident"
                and t[i + 1].text in _MACROS
                and _is(t, i + 2, "(")
                and t[i + 3].kind == "ident"
                and _is(t, i + 4, ",")
            ):
                self.scopes.append((i + 2, _matching(t, i + 2), t[i + 3].text))

    def program(self, source: str) -> Any:
        try:
            prog = _cel_module().compile(source)
        except ValueError as e:  # the original compiled, so this is a bug in the rewrite
            raise ValueError(f"internal rewrite error: {_describe_syntax_error(str(e))}") from None
        self.programs.append(prog)
        self.sources.append(source)
        return prog

    def rewrite(self, lo: int, hi: int) -> str:
        t, out, i = self.tokens, [], lo
        while i < hi:
            tok = t[i]
            if (
                _is_root_ident(t, i)
                and tok.text == "json"
                and _is(t, i + 1, "(")
                and _is(t, i + 2, "request")
                and _is(t, i + 3, ".")
                and _is(t, i + 4, "body")
                and _is(t, i + 5, ")")
            ):
                out.append(_BODY_JSON)
                i += 6
            elif _is_root_ident(t, i) and tok.text == "default" and _is(t, i + 1, "("):
                close = _matching(t, i + 1)
                args = _top_level_args(t, i + 1, close)
                if len(args) != 2:
                    raise ValueError(f"default() takes 2 arguments (expression, fallback), got {len(args)}")
                bound = self._bound_names(i, close)
                a_src, b_src = self.rewrite(*args[0]), self.rewrite(*args[1])
                default = _Default(len(self.defaults), self.program(a_src), self.program(b_src), bound)
                self.defaults.append(default)
                out.append(f"{default.name}({', '.join(bound)})")
                i = close + 1
            elif (
                tok.kind == "str"
                and _SIMPLE_STRING.fullmatch(tok.text)
                and _is(t, i - 1, "[")
                and _is(t, i - 2, "headers")
                and _is(t, i - 3, ".")
                and i >= 4
                and t[i - 4].text in ("request", "response")
                and _is_root_ident(t, i - 4)
            ):
                out.append(tok.text.lower())  # header names are case-insensitive in agentgateway
                i += 1
            else:
                out.append(tok.text)
                i += 1
        return " ".join(out)

    def _bound_names(self, lo: int, hi: int) -> list[str]:
        used = {self.tokens[j].text for j in range(lo, hi) if _is_root_ident(self.tokens, j)}
        names: list[str] = []
        for open_i, close_i, name in self.scopes:
            if open_i < lo and hi < close_i and name in used and name not in names:
                names.append(name)
        return names


@dataclass
class _Default:
    index: int
    expr: Any
    fallback: Any
    bound: list[str]

    @property
    def name(self) -> str:
        return f"__default_{self.index}"


class _State(threading.local):
    env: dict[str, Any] | None = None
    body_error: str | None = None  # why __body_json is unset: invalid JSON (None: no request at all)
    pending: _Failure | None = None  # the real error behind a failed default() callback


_state = _State()


def _describe_syntax_error(message: str) -> str:
    m = re.search(r"ERROR: <input>:(\d+):(\d+): (.*)", message)
    if m:
        return f"line {m.group(1)} column {m.group(2)}: {m.group(3).strip()}"
    return message.splitlines()[0] if message else "syntax error"


def _describe(error: BaseException) -> str:
    if isinstance(error, KeyError):
        return f"no such key: {error.args[0] if error.args else ''}"
    message = str(error)
    m = _UNDECLARED.search(message)
    if m:
        return f"undeclared variable {m.group(1).replace(_BODY_JSON, 'json(request.body)')!r}"
    m = re.search(r"Python function call failed: \w+: (.*?)(?:\. Check function arguments.*)?$", message, re.S)
    if m:
        return m.group(1)
    return message.split(". CEL does not coerce", maxsplit=1)[0]


# A path trie: None = the whole value is needed; a dict = only these keys (each with its own trie).
_Trie = dict[str, Any] | None


def _add_path(trie: dict[str, Any], path: list[str]) -> None:
    """Record that the value at ``path`` is read (as a whole)."""
    node = trie
    for key in path[:-1]:
        if key in node and node[key] is None:
            return  # an ancestor is already read whole
        node = node.setdefault(key, {})
    node[path[-1]] = None


def _read_paths(tokens: list[_Tok], roots: frozenset[str]) -> dict[str, _Trie]:
    """For each root variable, the trie of what the expression can read of it."""
    tries: dict[str, dict[str, Any]] = {}
    whole: set[str] = set()
    for i, tok in enumerate(tokens):
        if tok.text not in roots or not _is_root_ident(tokens, i):
            continue
        path: list[str] = []
        j = i + 1
        while True:
            if _is(tokens, j, ".") and tokens[j + 1].kind == "ident" and not _is(tokens, j + 2, "("):
                path.append(tokens[j + 1].text)
                j += 2
            elif (
                _is(tokens, j, "[")
                and tokens[j + 1].kind == "str"
                and _SIMPLE_STRING.fullmatch(tokens[j + 1].text)
                and _is(tokens, j + 2, "]")
            ):
                path.append(tokens[j + 1].text[1:-1])
                j += 3
            else:
                break
        if not path:
            whole.add(tok.text)
        else:
            _add_path(tries.setdefault(tok.text, {}), path)
    result: dict[str, _Trie] = {name: (None if name in whole else trie) for name, trie in tries.items()}
    for name in whole:
        result[name] = None
    return result


def _prune(value: Any, trie: _Trie) -> Any:
    if trie is None or type(value) is not dict:
        return value
    return {key: _prune(value[key], sub) for key, sub in trie.items() if key in value}


class Expression:
    """A compiled CEL expression. Evaluate it with an activation from :func:`request_activation` /
    :func:`response_activation` (or any mapping of variable name to value)."""

    source: str

    def __init__(self, source: str, compiler: _Compiler, program: Any) -> None:
        self.source = source
        self._program = program
        names: set[str] = set()
        functions: set[str] = set()
        for prog in compiler.programs:
            names.update(prog.variables())
            functions.update(prog.functions())
        bound = {name for _, _, name in compiler.scopes}
        names -= bound | _TYPE_NAMES
        self._needs_body_json = _BODY_JSON in names
        names.discard(_BODY_JSON)
        if self._needs_body_json:
            names.add("request")
        unknown = sorted(names - KNOWN_VARIABLES)
        if unknown:
            raise ValueError(
                f"unknown variable {unknown[0]!r} (known: {', '.join(sorted(PROVIDED_VARIABLES))}, "
                "and agentgateway's others)"
            )
        self._variables = frozenset(names)
        own = {d.name: self._default_callback(d) for d in compiler.defaults}
        env: dict[str, Callable[..., Any]] = {}
        for name in sorted(functions):
            if name[0] in "_!@-" and name not in own:
                continue  # an operator
            if name in own:
                env[name] = own[name]
            elif name in extension_functions():
                env[name] = extension_functions()[name]
            elif name not in _BUILTIN_FUNCTIONS:
                raise ValueError(f"unknown function {name!r}")
        self._functions = env
        tokens = [tok for src in compiler.sources for tok in _tokenize(src)]
        paths = _read_paths(tokens, PROVIDED_VARIABLES | {_BODY_JSON})
        self._inputs = tuple(
            (name, paths.get(name))
            for name in sorted(PROVIDED_VARIABLES)
            if name in names and (name != "request" or "request" in paths)
        )
        self._body_trie = paths.get(_BODY_JSON)

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"

    @property
    def variables(self) -> frozenset[str]:
        """The top-level variables the expression reads (``request``, ``llmRequest``, ``response``, ...)."""
        return self._variables

    def _env(self, activation: Mapping[str, Any]) -> dict[str, Any]:
        env: dict[str, Any] = dict(self._functions)
        for name, trie in self._inputs:
            if name in activation:
                env[name] = _prune(activation[name], trie)
        _state.body_error = None
        if self._needs_body_json and "request" in activation:
            parsed = activation.get(_BODY_JSON_CACHE, _UNPARSED)
            if parsed is _UNPARSED:
                try:
                    parsed = orjson.loads(activation["request"]["body"])
                except (orjson.JSONDecodeError, KeyError, TypeError) as e:
                    parsed = _InvalidBody(f"json(request.body): {e}")
                if isinstance(activation, MutableMapping):
                    activation[_BODY_JSON_CACHE] = parsed
            if isinstance(parsed, _InvalidBody):
                _state.body_error = parsed.message
            else:
                env[_BODY_JSON] = _prune(parsed, self._body_trie)
        return env

    def evaluate(self, activation: Mapping[str, Any]) -> Any:
        """The expression's value; raises :class:`CelEvaluationError` when evaluating it fails."""
        saved = _state.env, _state.body_error
        env = self._env(activation)
        _state.env, _state.pending = env, None
        try:
            return self._program.execute(env)
        except Exception as e:
            raise CelEvaluationError(str(_classify(e))) from None
        finally:
            _state.env, _state.body_error = saved

    def evaluate_bool(self, activation: Mapping[str, Any]) -> bool:
        """True only when the expression evaluates to ``true``; an error or a non-bool value is False
        (agentgateway's ``eval_bool``). Never raises."""
        try:
            return self.evaluate(activation) is True
        except Exception:
            return False

    @staticmethod
    def _default_callback(d: _Default) -> Callable[..., Any]:
        def default(*bound: Any) -> Any:
            env = _state.env
            assert env is not None
            if bound:
                env = {**env, **dict(zip(d.bound, bound, strict=True))}
            saved = _state.env
            _state.env = env
            try:
                try:
                    value = d.expr.execute(env)
                except Exception as e:
                    failure = _classify(e)
                    if not failure.missing:
                        _state.pending = failure
                        raise failure from None
                    value = None
                if value is None:
                    try:
                        value = d.fallback.execute(env)
                    except Exception as e:
                        # keeps its kind: a missing key in the fallback is a missing key for an enclosing default()
                        _state.pending = _classify(e)
                        raise _state.pending from None
                return value
            finally:
                _state.env = saved

        return default


class _Failure(CelEvaluationError):
    def __init__(self, message: str, missing: bool) -> None:
        super().__init__(message)
        self.missing = missing


def _classify(error: BaseException) -> _Failure:
    """What agentgateway's default() would see: "missing" (NoSuchKey, UndeclaredReference) or another error."""
    pending, _state.pending = _state.pending, None
    if pending is not None:  # raised by a nested default() callback, which the library wrapped
        return pending
    if isinstance(error, KeyError):
        return _Failure(_describe(error), True)
    m = _UNDECLARED.search(str(error)) if isinstance(error, RuntimeError) else None
    if m is not None:
        if m.group(1) == _BODY_JSON and _state.body_error is not None:
            return _Failure(_state.body_error, False)
        return _Failure(_describe(error), True)
    return _Failure(_describe(error), False)


class _InvalidBody:
    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message


_UNPARSED = object()


def compile_expression(source: str) -> Expression:
    """Compile a CEL expression once (at config load). Raises ValueError saying what is wrong."""
    if not isinstance(source, str) or not source.strip():
        raise ValueError("empty CEL expression")
    try:
        _cel_module().compile(source)
    except ValueError as e:
        raise ValueError(f"invalid CEL expression {source!r}: {_describe_syntax_error(str(e))}") from None
    try:
        tokens = _tokenize(source)
        compiler = _Compiler(source, tokens)
        program = compiler.program(compiler.rewrite(0, len(tokens) - 1))
        compiler.programs.insert(0, compiler.programs.pop())
        compiler.sources.insert(0, compiler.sources.pop())
        return Expression(source, compiler, program)
    except ValueError as e:
        raise ValueError(f"invalid CEL expression {source!r}: {e}") from None


def _headers(headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for raw_name, raw_value in headers:
        try:
            name, value = raw_name.decode("latin-1").lower(), raw_value.decode()
        except UnicodeDecodeError:
            continue  # agentgateway: a value that is not UTF-8 is not visible to CEL
        previous = out.get(name)
        if previous is None:
            out[name] = value
        elif isinstance(previous, list):
            previous.append(value)
        else:
            out[name] = [previous, value]
    return out


def request_activation(
    method: str,
    path: str,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    llm_request: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """Variables for request-phase expressions: ``request`` and (when given) ``llmRequest``. ``path`` may carry
    the query string (``request.path`` is without it, ``request.pathAndQuery`` with it)."""
    activation: dict[str, Any] = {
        "request": {
            "method": method,
            "path": path.split("?", 1)[0],
            "pathAndQuery": path,
            "headers": _headers(headers),
            "body": body,
        }
    }
    if llm_request is not None:
        activation["llmRequest"] = llm_request if type(llm_request) is dict else dict(llm_request)
    return activation


def response_activation(status: int, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    """Variables for response-phase expressions (``health.unhealthyExpression``): ``response``."""
    return {"response": {"code": status, "headers": _headers(headers)}}
