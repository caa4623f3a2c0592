"""agentgateway's ``guardrails`` (issue 21): prompt guards before the upstream call, response guards on the answer.

Config (``config.py``: ``PromptGuard``) in ``llm.policies.guardrails`` (every model), ``llm.guardrails.<name>``
(referenced by name) and ``models[].guardrails``; the config loader resolves names and puts the policy's guards
ahead of the entry's own, so one `Guardrails` per backend holds everything that backend runs.

Guard kinds:

* ``regex``: ``rules`` of ``builtin`` (``ssn``, ``creditCard`` with a Luhn check, ``phoneNumber``, ``email``,
  ``caSin`` with a Luhn check) or ``pattern``; ``action: mask`` replaces each match (``<SSN>``, ``<CREDIT_CARD>``,
  ``<PHONE_NUMBER>``, ``<EMAIL_ADDRESS>``, ``<CA_SIN>``, a pattern's ``<masked>``), ``reject`` refuses the text.
  Compiled once, at load. Requests: the text of every message (``content`` strings and text parts; the Messages
  API's ``system`` and the text inside ``tool_result`` blocks too). Answers: each choice's ``message.content``;
  for /v1/messages, the ``text`` blocks of the ``message`` (thinking, tool input and other blocks as they came).
* ``webhook``: agentgateway's guardrail webhook protocol. ``POST /request`` ``{"body": {"messages": [{role,
  content}]}}`` / ``POST /response`` ``{"body": {"choices": [{"message": {role, content}}]}}``; the answer's
  ``action`` passes, masks (``body`` with the new messages / choices) or rejects (``body``, ``status_code``).
  ``messageFormat: raw`` posts ``{"messages": <the request's own messages>, "model"}`` and takes ``{"messages"}``
  back as the new messages (absent: unchanged). ``headers`` (CEL over the client's request; ``:path`` sets the
  path), ``forwardHeaderMatches``, ``path``, ``minSizeBytes``. ``failureMode``: ``failClosed`` (503
  ``guardrail_unavailable``) or ``failOpen`` (the request goes on unguarded, logged).
* ``openAIModeration``: ``POST <baseUrl>/v1/moderations`` ``{"model", "input": [texts]}`` with
  ``policies.backendAuth.key``; a flagged result rejects the request. An unreachable service fails the request
  (503), as agentgateway's error does.

A rejection is ``rejection.status`` (default 403) with an error whose message is ``rejection.body``, in the inbound
API's shape: OpenAI's with code ``guardrail_rejected``, or Anthropic's (``{"type": "error", "error": {type,
message}}``) on /v1/messages (agentgateway sends the body as it is; here the SDKs read it), plus
``rejection.headers`` ``set`` / ``add``.

Streams (``streaming: enabled``): regex response guards run on the OpenAI SSE frames the core writes, per choice
(`StreamGuard`), or on an Anthropic Messages stream's ``text_delta`` events, per content block
(`MessagesStreamGuard`: whatever the backend, a Claude pass-through or a decoded one).
Text is held back by at most ``HOLD_BACK`` characters (and a match that reaches into them) so that a match split
across chunks is still masked whole; the rest of each chunk goes out at once, and what is held is flushed (masked)
before the chunk with the choice's ``finish_reason`` (or before ``[DONE]``, or the stream's end). Matches longer than
``HOLD_BACK`` characters that arrive split are not guaranteed to be seen. ``reject`` on a stream ends it with the
rejection as its error event (nothing of the match is sent). Usage and the other facts come from the core, so
they stay exact. Webhook response guards see a stream in windows of `WEBHOOK_WINDOW` characters of its text
(`WebhookWindows`, agentgateway's windowed evaluation): each window's frames are held until every webhook passed it,
a rejection ends the stream with its error event; a webhook's mask is not applied to a stream. Response guards
without ``streaming: enabled`` leave streams alone (agentgateway's default).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from .cel import CelEvaluationError, Expression, compile_expression, request_activation
from .config import GuardRejection, ModerationGuard, PromptGuard, RegexGuard, WebhookGuard
from .errors import GatewayError
from .providers import ChatRequest
from .upstream import Endpoint, UpstreamRequest, header_line

if TYPE_CHECKING:
    from .exchange import Exchange
    from .router import Router
    from .upstream import UpstreamClient

__all__ = [
    "HOLD_BACK",
    "WEBHOOK_OVERLAP",
    "WEBHOOK_WINDOW",
    "Guardrails",
    "MessagesStreamGuard",
    "RegexRules",
    "WebhookWindows",
    "guard_responses",
    "has_response_guards",
]

logger = logging.getLogger("agentgateway")

Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

#: characters of a streamed choice held back so that a match split across chunks is masked whole
HOLD_BACK = 128
#: characters already sent that a stream's next scan sees ahead of the held text (word boundaries, lookbehinds)
_CONTEXT = 32
#: seconds a webhook or moderation call may take (agentgateway's default for policy calls)
CALL_TIMEOUT = 10.0


def _luhn(digits: str) -> bool:
    total, odd = 0, False
    for char in reversed(digits):
        value = ord(char) - 48
        if odd:
            value *= 2
            if value > 9:
                value -= 9
        total += value
        odd = not odd
    return total % 10 == 0


def _card(text: str) -> bool:
    digits = re.sub(r"[ -]", "", text)
    return 13 <= len(digits) <= 19 and _luhn(digits)


def _sin(text: str) -> bool:
    digits = re.sub(r"[ -]", "", text)
    return len(digits) == 9 and _luhn(digits)


#: builtin -> (pattern, replacement, validator, needles): agentgateway's entity names (its pii recognizers). A text
#: can match a builtin only when it holds one of its needles -- in the text's *shape* (every digit written as 0) for
#: the number builtins, in the text itself for email. Each needle is implied by its pattern, so the check (C-speed
#: substring searches, where a pattern's own scan costs ~20 ns a character) never changes what is found, and a text
#: with years or versions in it ("Python 3.12 in 2023") is not scanned by the number patterns at all.
_BUILTINS: dict[str, tuple[str, str, Callable[[str], bool] | None, tuple[str, ...]]] = {
    "ssn": (
        r"[0-9](?<![\w-][0-9])[0-9][0-9](?<!000)(?<!666)(?<!9[0-9][0-9])"
        r"([- ])(?!00)[0-9][0-9]\1(?!0000)[0-9]{4}(?![\w-])",
        "<SSN>",
        None,
        ("000-00-0000", "000 00 0000"),
    ),
    "creditCard": (
        r"[0-9](?<![\w-][0-9])[0-9]{3}[ -]?[0-9]{4}(?:[ -]?[0-9]){5,11}(?![\w-])",
        "<CREDIT_CARD>",
        _card,
        ("0000 0000", "0000-0000", "00000000"),
    ),
    "phoneNumber": (
        r"(?<![\w+])(?:\+?1[ .-]?)?(?:\([0-9]{3}\)[ .-]?|[0-9]{3}[ .-])[0-9]{3}[ .-][0-9]{4}(?!\w)"
        r"|(?<![\w+])\+[0-9]{1,3}(?:[ .-]?[0-9]{2,4}){2,5}(?!\w)",
        "<PHONE_NUMBER>",
        None,
        ("000-0000", "000.0000", "000 0000", "+0"),
    ),
    "email": (r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}", "<EMAIL_ADDRESS>", None, ("@",)),
    "caSin": (
        r"[0-9](?<![\w-][0-9])[0-9][0-9]([- ]?)[0-9]{3}\1[0-9]{3}(?![\w-])",
        "<CA_SIN>",
        _sin,
        ("000-000-000", "000 000 000", "000000000"),
    ),
}
#: the shape of a text: its UTF-8 with every digit written as 0 (bytes.translate: 0.2 µs for 300 characters, where
#: str.translate takes 1.6)
_SHAPE = bytes.maketrans(b"123456789", b"000000000")
#: the last text whose shape was asked for, and its shape (one tuple: replaced at once)
_LAST_SHAPE: list[tuple[str, bytes]] = [("", b"")]


def _shape(text: str) -> bytes:
    """The shape of ``text``, kept for the last text asked (every guard of a request asks for the same one)."""
    last = _LAST_SHAPE[0]
    if last[0] is text:
        return last[1]
    shape = text.encode("utf-8", "surrogatepass").translate(_SHAPE)
    _LAST_SHAPE[0] = (text, shape)
    return shape


def _has_digit(text: str) -> bool:
    return (
        "0" in text or "1" in text or "2" in text or "3" in text or "4" in text
        or "5" in text or "6" in text or "7" in text or "8" in text or "9" in text
    )  # fmt: skip


Span = tuple[int, int, str]


Rule = tuple[re.Pattern[str], str, Callable[[str], bool] | None]


class RegexRules:
    """A compiled ``regex`` guard. A builtin is skipped when the text lacks what each of its matches holds (a digit,
    an ``@``): ``in`` tells that far sooner than the pattern's own scan (0.15 µs against ~1.3 µs for 300
    characters), so the rules that can match are looked up once per request (`candidates`) from four lists made at
    load."""

    __slots__ = ("_needy", "_plain", "_rules", "reject")

    def __init__(self, guard: RegexGuard) -> None:
        self.reject = guard.action == "reject"
        #: every rule in config order with its needles (none for a pattern) and whether they are looked for in the
        #: text's shape (number builtins) or in the text (email)
        rules: list[tuple[Rule, tuple[Any, ...], bool]] = []
        for rule in guard.rules:
            if rule.builtin is not None:
                pattern, replacement, check, needles = _BUILTINS[rule.builtin]
                shaped = rule.builtin != "email"
                found: tuple[Any, ...] = tuple(n.encode() for n in needles) if shaped else needles
                rules.append(((re.compile(pattern), replacement, check), found, shaped))
            else:
                assert rule.pattern is not None
                rules.append(((re.compile(rule.pattern), "<masked>", None), (), False))
        self._rules = tuple(rules)
        #: the rules that need nothing (patterns): all that can match a text with no digit and no "@"
        self._plain = tuple(rule for rule, needles, _ in rules if not needles)
        self._needy = len(self._plain) != len(rules)

    def candidates(self, text: str) -> tuple[Rule, ...]:
        """The rules that can match ``text`` (or any part of it: pass the texts joined), in config order."""
        if not self._needy:
            return self._plain
        digit = _has_digit(text)
        if not digit and "@" not in text:
            return self._plain
        shape = _shape(text) if digit else b""
        out = []
        for rule, needles, shaped in self._rules:
            if needles:
                hay: Any = shape if shaped else text
                for needle in needles:
                    if needle in hay:
                        break
                else:
                    continue
            out.append(rule)
        return tuple(out)

    def found(self, text: str, candidates: tuple[Rule, ...] | None = None) -> bool:
        """Whether any rule matches ``text`` (the reject check; stops at the first match)."""
        for pattern, _, check in self.candidates(text) if candidates is None else candidates:
            if check is None:
                if pattern.search(text) is not None:
                    return True
            elif any(check(m.group()) for m in pattern.finditer(text)):
                return True
        return False

    def spans(self, text: str, candidates: tuple[Rule, ...] | None = None) -> list[Span]:
        """Every non-empty match as ``(start, end, replacement)``, sorted, overlaps joined (an earlier rule's
        replacement wins where they overlap)."""
        found: list[tuple[int, int, int, str]] = []
        rules = self.candidates(text) if candidates is None else candidates
        for order, (pattern, replacement, check) in enumerate(rules):
            for match in pattern.finditer(text):
                start, end = match.span()
                if start != end and (check is None or check(match.group())):
                    found.append((start, end, order, replacement))
        if not found:
            return []
        found.sort()
        return _joined((start, end, replacement) for start, end, _, replacement in found)

    def mask(self, text: str, candidates: tuple[Rule, ...] | None = None) -> str | None:
        """``text`` with every match replaced; None when nothing matched (found by one search per rule)."""
        rules = self.candidates(text) if candidates is None else candidates
        for pattern, _, _ in rules:
            if pattern.search(text) is not None:
                break
        else:
            return None
        spans = self.spans(text, rules)
        return _replace(text, spans, len(text)) if spans else None


def _replace(text: str, spans: list[Span], upto: int) -> str:
    out: list[str] = []
    at = 0
    for start, end, replacement in spans:
        if end > upto:
            break
        out.append(text[at:start])
        out.append(replacement)
        at = end
    out.append(text[at:upto])
    return "".join(out)


# -- the texts of a request ----------------------------------------------------------------------------------------


def _content_texts(content: Any) -> Iterator[str]:
    """The texts of a ``content``: the string, or its text parts in order -- and, in the Messages API, the text of
    each ``tool_result`` block's own content (what a tool returned reaches the model as prompt too)."""
    if isinstance(content, str):
        yield content
    elif isinstance(content, list):
        for part in content:
            if not isinstance(part, dict):
                continue
            kind = part.get("type")
            if kind == "text" and isinstance(part.get("text"), str):
                yield part["text"]
            elif kind == "tool_result" and "content" in part:
                yield from _content_texts(part["content"])


def request_texts(body: dict[str, Any], api: str) -> list[str]:
    """The prompt's texts in a fixed order: the Messages API's ``system``, then each message's content."""
    texts: list[str] = []
    if api == "messages":
        texts.extend(_content_texts(body.get("system")))
    for message in body.get("messages") or ():
        if isinstance(message, dict):
            texts.extend(_content_texts(message.get("content")))
    return texts


def _with_content(content: Any, texts: Iterator[str]) -> Any:
    if isinstance(content, str):
        return next(texts)
    if isinstance(content, list):
        parts = []
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text" and isinstance(part.get("text"), str):
                parts.append({**part, "text": next(texts)})
            elif kind == "tool_result" and "content" in part:
                parts.append({**part, "content": _with_content(part["content"], texts)})
            else:
                parts.append(part)
        return parts
    return content


def _with_text(content: Any, text: str) -> Any:
    """``content`` with its text replaced by ``text`` (a webhook's masked message): a string content becomes
    ``text``; in a block list the first text block takes it and the other text blocks go, the other blocks
    (images, tool use and results, thinking) stay where they are. Unchanged when its text already is ``text``."""
    if not isinstance(content, list):
        return text
    if "".join(part["text"] for part in content if _is_text_block(part)) == text:
        return content
    out: list[Any] = []
    placed = False
    for part in content:
        if _is_text_block(part):
            if not placed:
                out.append({**part, "text": text})
                placed = True
        else:
            out.append(part)
    if not placed:
        out.insert(0, {"type": "text", "text": text})
    return out


def _is_text_block(part: Any) -> bool:
    return isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)


def with_request_texts(body: dict[str, Any], api: str, texts: list[str]) -> dict[str, Any]:
    """A new body with the texts of `request_texts` replaced, in the same order (the client's is not touched)."""
    remaining = iter(texts)
    out = dict(body)
    if api == "messages" and "system" in body:
        out["system"] = _with_content(body["system"], remaining)
    messages = body.get("messages")
    if isinstance(messages, list):
        out["messages"] = [
            {**m, "content": _with_content(m["content"], remaining)} if isinstance(m, dict) and "content" in m else m
            for m in messages
        ]
    return out


def _message_text(content: Any) -> str:
    return "".join(_content_texts(content))


# -- the guards ----------------------------------------------------------------------------------------------------


class GuardRejected(GatewayError):
    """A guard refused the request or the answer: the configured status, body as the message."""

    #: on a stream: what had passed the guards in the same read, to send ahead of the error event
    passed: bytes = b""


def _rejection(rejection: GuardRejection, status: int | None = None, body: str | None = None) -> GuardRejected:
    headers: Headers = []
    if rejection.headers is not None:
        for name, value in (*rejection.headers.set.items(), *rejection.headers.add.items()):
            headers.append((name.lower().encode("latin-1"), value.encode("latin-1")))
    return GuardRejected(
        body if body is not None else rejection.body,
        status=status or rejection.status,
        code="guardrail_rejected",
        headers=headers,
    )


def _unavailable(what: str, detail: str) -> GatewayError:
    return GatewayError(
        f"The {what} could not be consulted ({detail}); the request was not sent.",
        status=503,
        code="guardrail_unavailable",
    )


@dataclass(slots=True)
class _Compiled:
    kind: str  # regex | webhook | moderation
    rejection: GuardRejection
    rules: RegexRules | None = None
    webhook: _Webhook | None = None
    moderation: _Moderation | None = None


async def _post(client: UpstreamClient, endpoint: Endpoint, headers: bytes, body: bytes, what: str) -> bytes:
    """The body of a 2xx answer of the guard service ``what`` ("guardrail webhook at <url>"); its 503 otherwise."""

    async def call() -> tuple[int, bytes]:
        response = await client.send(UpstreamRequest(endpoint, headers, body))
        try:
            data = await response.read()
        except BaseException:
            response.abort()
            raise
        response.release()
        return response.status, data

    try:
        status, answer = await asyncio.wait_for(call(), CALL_TIMEOUT)
    except (GatewayError, OSError, asyncio.TimeoutError) as exc:
        detail = exc.message if isinstance(exc, GatewayError) else type(exc).__name__
        raise _unavailable(what, detail) from None
    if status >= 300:
        raise _unavailable(what, f"it answered HTTP {status}")
    return answer


class _Webhook:
    __slots__ = ("_base", "_endpoints", "_forward", "_headers", "_path", "fail_open", "min_size", "raw", "where")

    def __init__(self, config: WebhookGuard) -> None:
        target = config.target
        self._base = (target.url or f"http://{target.host}").rstrip("/")
        self.where = self._base
        self.raw = config.message_format == "raw"
        mode = config.failure_mode or ("failOpen" if self.raw else "failClosed")
        self.fail_open = mode == "failOpen"
        self.min_size = config.min_size_bytes
        self._path = config.path
        self._headers: list[tuple[str, Expression]] = [
            (name.lower(), compile_expression(source)) for name, source in config.headers.items()
        ]
        self._forward = [
            (
                match.name.lower().encode("latin-1"),
                match.value.exact.encode("latin-1") if match.value.exact is not None else None,
                re.compile(match.value.regex.encode("latin-1")) if match.value.regex is not None else None,
            )
            for match in config.forward_header_matches
        ]
        self._endpoints: dict[str, Endpoint] = {}

    def _endpoint(self, path: str) -> Endpoint:
        endpoint = self._endpoints.get(path)
        if endpoint is None:
            endpoint = self._endpoints[path] = Endpoint.parse(self._base + path)
        return endpoint

    def _request_parts(self, default_path: str, request: ChatRequest, exchange: Exchange) -> tuple[str, bytes]:
        path = self._path or default_path
        lines = b"Content-Type: application/json\r\n"
        for forward, expected, pattern in self._forward:
            values = [value for key, value in request.headers if key == forward]
            if any((expected is not None and v == expected) or (pattern and pattern.fullmatch(v)) for v in values):
                for header in values:
                    lines += header_line(forward, header)
        if self._headers:
            activation = request_activation(exchange.method, exchange.path, request.headers, request.raw, request.body)
            for name, expression in self._headers:
                try:
                    value = expression.evaluate(activation)
                except CelEvaluationError as exc:
                    logger.debug("webhook header expression for %s failed: %s", name, exc)
                    continue
                if value is None:
                    continue
                text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
                if name == ":path":
                    path = text if text.startswith("/") else "/" + text
                elif name != ":method":
                    lines += header_line(name.encode("latin-1"), text.encode("latin-1"))
        return path, lines

    async def call(
        self, client: UpstreamClient, default_path: str, payload: Any, request: ChatRequest, exchange: Exchange
    ) -> Any:
        """The webhook's parsed answer; None when ``minSizeBytes`` skipped the call; raises GatewayError (503)."""
        body = orjson.dumps(payload)
        if self.min_size and len(body) < self.min_size:
            return None
        path, headers = self._request_parts(default_path, request, exchange)
        answer = await _post(client, self._endpoint(path), headers, body, f"guardrail webhook at {self.where}")
        try:
            return orjson.loads(answer)
        except orjson.JSONDecodeError:
            raise _unavailable(f"guardrail webhook at {self.where}", "its answer is not JSON") from None


class _Moderation:
    __slots__ = ("_endpoint", "_headers", "model", "where")

    def __init__(self, config: ModerationGuard) -> None:
        self.where = config.base_url
        self._endpoint = Endpoint.parse(config.base_url + "/v1/moderations")
        self.model = config.model
        headers = b"Content-Type: application/json\r\n"
        auth = config.policies.backend_auth if config.policies is not None else None
        if auth is not None:
            headers += header_line(b"Authorization", b"Bearer " + auth.key.get_secret_value().encode("latin-1"))
        self._headers = headers

    async def flagged(self, client: UpstreamClient, texts: list[str]) -> bool:
        body = orjson.dumps({"model": self.model, "input": texts})
        answer = await _post(client, self._endpoint, self._headers, body, f"moderation service at {self.where}")
        try:
            results = orjson.loads(answer)["results"]
            return any(result.get("flagged") is True for result in results)
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            raise _unavailable(f"moderation service at {self.where}", "its answer has no results") from None


def _compile(guard: Any) -> _Compiled:
    if guard.regex is not None:
        return _Compiled("regex", guard.rejection, rules=RegexRules(guard.regex))
    if guard.webhook is not None:
        return _Compiled("webhook", guard.rejection, webhook=_Webhook(guard.webhook))
    return _Compiled("moderation", guard.rejection, moderation=_Moderation(guard.open_ai_moderation))


def _webhook_action(answer: Any) -> tuple[str, Any]:
    """agentgateway's untagged action: ``reject`` (body + status_code), ``mask`` (body object), else ``pass``."""
    action = answer.get("action") if isinstance(answer, dict) else None
    if not isinstance(action, dict):
        return "pass", None
    if "status_code" in action and isinstance(action.get("body"), str):
        return "reject", action
    if isinstance(action.get("body"), dict):
        return "mask", action["body"]
    return "pass", None


async def _ask_webhook(
    guard: _Compiled,
    client: Any,
    path: str,
    payload: Any,
    request: ChatRequest,
    exchange: Exchange,
    closed_rejects: bool = False,
) -> Any:
    """The guard's webhook's answer; None when it could not be consulted and fails open (logged). Failing closed:
    its 503, or with ``closed_rejects`` (a stream already under way) the guard's rejection carrying it."""
    webhook = guard.webhook
    assert webhook is not None
    try:
        return await webhook.call(client, path, payload, request, exchange)
    except GatewayError as exc:
        if webhook.fail_open:
            logger.warning("guardrail webhook unavailable, failing open: %s", exc.message)
            return None
        if closed_rejects:
            raise _rejection(guard.rejection, exc.status, exc.message) from None
        raise


def _regex_applied(rules: RegexRules, rejection: GuardRejection, text: str) -> str | None:
    """``text`` masked by ``rules`` (None: nothing to mask); ``rejection`` raised when they reject and match."""
    if rules.reject:
        if rules.found(text):
            raise _rejection(rejection)
        return None
    return rules.mask(text)


def _webhook_mask(guard: _Compiled, answer: Any) -> Any:
    """The mask a webhook's answer asks for (its action's ``body``; None: pass); a reject raises the guard's
    rejection, with the webhook's status when it is an error status."""
    kind, action = _webhook_action(answer)
    if kind == "reject":
        status = action.get("status_code")
        valid = isinstance(status, int) and 400 <= status <= 599
        raise _rejection(guard.rejection, status if valid else None, action["body"])
    return action if kind == "mask" else None


class Guardrails:
    """The guards one backend runs (``models[].guardrails`` resolved, ``llm.policies.guardrails`` first)."""

    __slots__ = ("request", "response", "stream_hooks", "stream_rules", "streaming")

    def __init__(self, config: PromptGuard) -> None:
        self.request = [_compile(guard) for guard in config.request]
        self.response = [_compile(guard) for guard in config.response]
        self.streaming = config.streaming == "enabled" and bool(self.response)
        #: (rules, rejection) of the regex response guards, for streams
        self.stream_rules = [(g.rules, g.rejection) for g in self.response if g.rules is not None]
        #: the webhook response guards, which see streams window by window (`WebhookWindows`)
        self.stream_hooks = [g for g in self.response if g.webhook is not None]

    # -- requests ----------------------------------------------------------------------------------------------

    async def check_request(self, request: ChatRequest, exchange: Exchange, client: UpstreamClient) -> ChatRequest:
        """The request to send (masked when a guard masked it); raises the rejection or the 503 of a guard that
        could not be consulted (``failClosed``)."""
        api = request.api
        if api not in ("chat", "messages"):
            return request
        body = request.body
        texts: list[str] | None = None
        joined = ""
        changed = False
        for guard in self.request:
            if guard.rules is not None:
                if texts is None:
                    texts = request_texts(body, api)
                    joined = "".join(texts)
                rules = guard.rules
                candidates = rules.candidates(joined)
                if not candidates:
                    continue
                if rules.reject:
                    if any(rules.found(text, candidates) for text in texts):
                        raise _rejection(guard.rejection)
                    continue
                masked = [rules.mask(text, candidates) for text in texts]
                if any(m is not None for m in masked):
                    texts = [m if m is not None else t for m, t in zip(masked, texts, strict=True)]
                    joined = "".join(texts)
                    changed = True
                continue
            if changed:
                body, changed = with_request_texts(body, api, texts or []), False
                request = request.derive(request.model, body)
            texts = None
            if guard.moderation is not None:
                if await guard.moderation.flagged(client, request_texts(body, api)):
                    raise _rejection(guard.rejection)
                continue
            assert guard.webhook is not None
            replaced = await self._webhook_request(guard, request, exchange, client)
            if replaced is not None:
                body = replaced
                request = request.derive(request.model, body)
        if changed:
            request = request.derive(request.model, with_request_texts(body, api, texts or []))
        return request

    async def _webhook_request(
        self, guard: _Compiled, request: ChatRequest, exchange: Exchange, client: UpstreamClient
    ) -> dict[str, Any] | None:
        webhook = guard.webhook
        assert webhook is not None
        body = request.body
        messages = body.get("messages") or []
        if webhook.raw:
            payload: Any = {"messages": messages, "model": request.model}
        else:
            simple = [
                {"role": m.get("role", "user"), "content": _message_text(m.get("content"))}
                for m in messages
                if isinstance(m, dict)
            ]
            payload = {"body": {"messages": simple}}
        answer = await _ask_webhook(guard, client, "/request", payload, request, exchange)
        if answer is None:
            return None
        if webhook.raw:
            replacement = answer.get("messages") if isinstance(answer, dict) else None
            if replacement is None:
                return None
            if not isinstance(replacement, list) or not all(isinstance(m, dict) for m in replacement):
                raise _unavailable(f"guardrail webhook at {webhook.where}", "its messages are not a list of objects")
            return {**body, "messages": replacement}
        mask = _webhook_mask(guard, answer)
        if mask is not None:
            new = mask.get("messages")
            if not isinstance(new, list):
                raise _unavailable(f"guardrail webhook at {webhook.where}", "its mask has no messages")
            contents = iter(m.get("content", "") if isinstance(m, dict) else "" for m in new)
            out = []
            for message in messages:
                content = next(contents, None) if isinstance(message, dict) else None
                if content is None:
                    out.append(message)
                elif isinstance(content, str) and request.api == "messages":
                    out.append({**message, "content": _with_text(message.get("content"), content)})
                else:
                    out.append({**message, "content": content})
            return {**body, "messages": out}
        return None

    # -- answers -----------------------------------------------------------------------------------------------

    async def check_answer(self, body: bytes, request: ChatRequest | None, exchange: Exchange, client: Any) -> bytes:
        """A whole OpenAI answer (an Anthropic ``message`` for /v1/messages) with the response guards applied:
        masked, or the rejection raised."""
        if exchange.api == "messages":
            return await self.check_message(body, request, exchange, client)
        try:
            answer = orjson.loads(body)
            choices = answer["choices"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return body
        changed = False
        for guard in self.response:
            if guard.rules is not None:
                for choice in choices:
                    message = choice.get("message") if isinstance(choice, dict) else None
                    if not isinstance(message, dict):
                        continue
                    content = message.get("content")
                    if not isinstance(content, str) or not content:
                        continue
                    masked = _regex_applied(guard.rules, guard.rejection, content)
                    if masked is not None:
                        message["content"] = masked
                        changed = True
                continue
            assert guard.webhook is not None and request is not None
            payload = {
                "body": {
                    "choices": [
                        {"message": {"role": "assistant", "content": (c.get("message") or {}).get("content") or ""}}
                        for c in choices
                    ]
                }
            }
            mask = _webhook_mask(guard, await _ask_webhook(guard, client, "/response", payload, request, exchange))
            if mask is not None:
                for choice, new in zip(choices, mask.get("choices") or [], strict=False):
                    content = ((new or {}).get("message") or {}).get("content")
                    if isinstance(content, str) and isinstance(choice.get("message"), dict):
                        choice["message"]["content"] = content
                        changed = True
        return orjson.dumps(answer) if changed else body

    async def check_message(self, body: bytes, request: ChatRequest | None, exchange: Exchange, client: Any) -> bytes:
        """A whole Anthropic ``message`` with the response guards applied to its text blocks (thinking, tool input
        and the other blocks are left as they came: a signature vouches for the thinking text)."""
        try:
            answer = orjson.loads(body)
            content = answer["content"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return body
        if not isinstance(content, list):
            return body
        changed = False
        for guard in self.response:
            if guard.rules is not None:
                for position, block in enumerate(content):
                    if not _is_text_block(block) or not block["text"]:
                        continue
                    masked = _regex_applied(guard.rules, guard.rejection, block["text"])
                    if masked is not None:
                        content[position] = {**block, "text": masked}
                        changed = True
                continue
            assert guard.webhook is not None and request is not None
            text = "".join(block["text"] for block in content if _is_text_block(block))
            payload = {"body": {"choices": [{"message": {"role": "assistant", "content": text}}]}}
            mask = _webhook_mask(guard, await _ask_webhook(guard, client, "/response", payload, request, exchange))
            if mask is not None:
                choices = mask.get("choices") or []
                new = ((choices[0] or {}).get("message") or {}).get("content") if choices else None
                if isinstance(new, str) and new != text:
                    content = answer["content"] = _with_text(content, new)
                    changed = True
        return orjson.dumps(answer) if changed else body

    def stream(self, api: str = "chat") -> StreamGuard | MessagesStreamGuard:
        """The guard of one streamed answer, for the client API's frames."""
        if api == "messages":
            return MessagesStreamGuard(self.stream_rules)
        return StreamGuard(self.stream_rules)


class StreamGuard:
    """The regex response guards of one streamed answer: `feed` takes the core's complete OpenAI SSE frames and
    returns them with content masked (some of it held back, at most HOLD_BACK characters per choice); `finish`
    returns what is still held. A reject raises the rejection (the exchange ends the stream with it)."""

    __slots__ = ("_held", "_last", "_masks", "_rejects", "_sent")

    def __init__(self, rules: Sequence[tuple[RegexRules | None, GuardRejection]]) -> None:
        self._masks = [r for r, _ in rules if r is not None and not r.reject]
        self._rejects = [(r, rejection) for r, rejection in rules if r is not None and r.reject]
        #: choice index -> text not yet sent / the last characters sent (scan context)
        self._held: dict[int, str] = {}
        self._sent: dict[int, str] = {}
        #: the last chunk's id, created and model, for a chunk of held text sent on its own
        self._last: dict[str, Any] = {}

    def _release(self, index: int, text: str, final: bool) -> str:
        """Adds ``text`` to the choice's held text and returns what may go out now (masked)."""
        held = self._held.get(index, "") + text
        if not held:
            return ""
        context = self._sent.get(index, "")
        scan = context + held
        skip = len(context)
        for rules, rejection in self._rejects:
            if any(start >= skip or end > skip for start, end, _ in rules.spans(scan)):
                raise _rejection(rejection)
        spans: list[Span] = []
        for rules in self._masks:
            found = [s for s in rules.spans(scan) if s[0] >= skip]
            spans = _union(spans, found) if spans else found
        cut = len(scan) if final else max(skip, len(scan) - HOLD_BACK)
        if not final:
            for start, end, _ in spans:
                if start < cut < end or (start < cut and end == len(scan)):
                    cut = start
                    break
        if cut <= skip:
            self._held[index] = held
            return ""
        shifted = [(s - skip, e - skip, r) for s, e, r in spans if e <= cut]
        out = _replace(held, shifted, cut - skip)
        self._held[index] = held[cut - skip :]
        self._sent[index] = (context + held[: cut - skip])[-_CONTEXT:]
        return out

    def feed(self, frames: bytes) -> bytes:
        if b'"content"' not in frames and b'"finish_reason":"' not in frames and b"[DONE]" not in frames:
            return frames
        out: list[bytes] = []
        for frame in frames.split(b"\n\n"):
            if not frame:
                continue
            out.append(self._frame(frame))
        return b"".join(part + b"\n\n" for part in out if part)

    def _frame(self, frame: bytes) -> bytes:
        if frame.startswith(b"data: [DONE]") or frame.startswith(b'data: {"error"'):
            return self._flush() + frame
        if not frame.startswith(b"data: {"):
            return frame
        try:
            chunk = orjson.loads(frame[6:])
        except orjson.JSONDecodeError:
            return frame
        choices = chunk.get("choices") if isinstance(chunk, dict) else None
        if not choices:
            return frame
        self._last = {key: chunk[key] for key in ("id", "object", "created", "model") if key in chunk}
        changed = False
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            index = choice.get("index", 0)
            delta = choice.get("delta")
            content = delta.get("content") if isinstance(delta, dict) else None
            final = choice.get("finish_reason") is not None
            if isinstance(content, str) and (content or final):
                assert isinstance(delta, dict)
                delta["content"] = self._release(index, content, final)
                changed = True
            elif final and self._held.get(index):
                released = self._release(index, "", True)
                if isinstance(delta, dict):
                    delta["content"] = released
                else:
                    choice["delta"] = {"content": released}
                changed = True
        return b"data: " + orjson.dumps(chunk) if changed else frame

    def _flush(self) -> bytes:
        """A chunk with every choice's held text (masked), or b"" when nothing is held."""
        choices = []
        for index in sorted(self._held):
            if self._held[index]:
                released = self._release(index, "", True)
                choices.append({"index": index, "delta": {"content": released}, "finish_reason": None})
        if not choices:
            return b""
        chunk = {**self._last, "object": "chat.completion.chunk", "choices": choices}
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    def finish(self) -> bytes:
        return self._flush()


class MessagesStreamGuard:
    """The regex response guards of one Anthropic Messages stream (/v1/messages, issue 21): the same hold-back as
    `StreamGuard`, over the ``text_delta`` pieces of each text block (by its ``index``), whatever the backend (a
    Claude pass-through's events or the core's Anthropic encoder). What is held of a block is flushed, masked, as one
    more ``text_delta`` just before that block's ``content_block_stop`` (and before ``message_delta``,
    ``message_stop`` or ``error``, should a block not be closed); a delta whose text is all held back is not sent.
    Thinking, signatures, tool input and citations pass untouched. A reject raises the rejection (the exchange ends
    the stream with it as the ``event: error``)."""

    __slots__ = ("_text",)

    def __init__(self, rules: Sequence[tuple[RegexRules | None, GuardRejection]]) -> None:
        #: the hold-back machinery, keyed by content block index instead of choice index
        self._text = StreamGuard(rules)

    def feed(self, frames: bytes) -> bytes:
        if b'"text_delta"' not in frames and b"content_block_stop" not in frames and not self._text._held:
            return frames
        out: list[bytes] = []
        for frame in frames.split(b"\n\n"):
            if frame:
                out.append(self._frame(frame))
        return b"".join(part for part in out if part)

    def _frame(self, frame: bytes) -> bytes:
        name, _, data = frame.partition(b"\ndata: ")
        if not name.startswith(b"event: ") or not data:
            return frame + b"\n\n"
        name = name[7:]
        if name == b"content_block_delta":
            if b'"text_delta"' not in data:
                return frame + b"\n\n"
            try:
                event = orjson.loads(data)
                index, delta = event["index"], event["delta"]
                text = delta["text"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                return frame + b"\n\n"
            if not isinstance(text, str) or not isinstance(index, int):
                return frame + b"\n\n"
            released = self._text._release(index, text, False)
            if released == text:
                return frame + b"\n\n"
            return _text_delta(index, released) if released else b""
        if name == b"content_block_stop":
            try:
                index = orjson.loads(data)["index"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                return frame + b"\n\n"
            return self._flush(index) + frame + b"\n\n"
        if name in (b"message_delta", b"message_stop", b"error"):
            return self.finish() + frame + b"\n\n"
        return frame + b"\n\n"

    def _flush(self, index: Any) -> bytes:
        if not self._text._held.get(index):
            self._text._held.pop(index, None)
            return b""
        released = self._text._release(index, "", True)
        self._text._held.pop(index, None)
        self._text._sent.pop(index, None)
        return _text_delta(index, released) if released else b""

    def finish(self) -> bytes:
        return b"".join(self._flush(index) for index in sorted(self._text._held))


#: characters of streamed text a webhook response guard sees at once (agentgateway's eval threshold), and how many
#: characters of the window before it go with each window so that a match across two windows is seen whole
WEBHOOK_WINDOW = 1024
WEBHOOK_OVERLAP = 256


def _stream_text(frames: bytes, api: str) -> str:
    """The answer text in complete SSE frames: OpenAI chunks' ``delta.content`` (every choice), or an Anthropic
    stream's ``text_delta`` pieces."""
    if api == "messages":
        if b'"text_delta"' not in frames:
            return ""
        texts = []
        for frame in frames.split(b"\n\n"):
            data = frame.partition(b"\ndata: ")[2]
            if b'"text_delta"' in data:
                with contextlib.suppress(orjson.JSONDecodeError, KeyError, TypeError):
                    delta = orjson.loads(data)["delta"]
                    if delta.get("type") == "text_delta" and isinstance(delta.get("text"), str):
                        texts.append(delta["text"])
        return "".join(texts)
    if b'"content"' not in frames:
        return ""
    texts = []
    for frame in frames.split(b"\n\n"):
        if frame.startswith(b"data: {") and b'"content"' in frame:
            with contextlib.suppress(orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
                for choice in orjson.loads(frame[6:])["choices"]:
                    content = (choice.get("delta") or {}).get("content")
                    if isinstance(content, str):
                        texts.append(content)
    return "".join(texts)


class WebhookWindows:
    """The webhook response guards of one stream (``streaming: enabled``), as agentgateway runs them: the stream's
    frames are held while their text adds up to `WEBHOOK_WINDOW` characters (or the stream ends); then each webhook
    is POSTed that window (with the last `WEBHOOK_OVERLAP` characters of the previous one ahead of it) as a
    ``/response`` call with one choice. Every webhook passing it, the held frames go out; one rejecting it, they are
    dropped and the rejection raised (the stream ends with it as its error event). What went out with earlier
    windows stays sent. A webhook's ``mask`` verdict cannot be applied to a stream and is ignored (agentgateway
    does the same); ``failureMode`` is honoured."""

    __slots__ = ("_api", "_client", "_exchange", "_guards", "_held", "_pending", "_request", "_tail")

    def __init__(self, guards: list[_Compiled], api: str, request: ChatRequest, exchange: Exchange, client: Any):
        self._guards, self._api, self._request, self._exchange, self._client = guards, api, request, exchange, client
        self._held: list[bytes] = []
        self._pending = ""
        self._tail = ""

    async def feed(self, frames: bytes, final: bool) -> bytes:
        """What may go out now of ``frames`` (complete SSE frames) and of what was held; raises GuardRejected. A
        window closes at the frame that fills it, wherever the network read ended."""
        out: list[bytes] = []
        try:
            await self._feed(frames, final, out)
        except GuardRejected as exc:
            exc.passed = b"".join(out)  # the windows of this read that passed still go out, ahead of the error
            raise
        return b"".join(out)

    async def _feed(self, frames: bytes, final: bool, out: list[bytes]) -> None:
        if frames:
            if len(self._pending) + len(frames) < WEBHOOK_WINDOW:
                # cannot fill a window, whatever its frames hold (text is no longer than the bytes carrying it)
                self._held.append(frames)
                self._pending += _stream_text(frames, self._api)
            else:
                for frame in frames.split(b"\n\n"):
                    if not frame:
                        continue
                    self._held.append(frame + b"\n\n")
                    self._pending += _stream_text(frame, self._api)
                    if len(self._pending) >= WEBHOOK_WINDOW:
                        out.append(await self._window())
        if final:
            out.append(await self._window())

    async def _window(self) -> bytes:
        """Every webhook's verdict on the text pending (its frames released when all pass)."""
        if self._pending:
            window = self._tail + self._pending
            self._tail, self._pending = window[-WEBHOOK_OVERLAP:], ""
            for guard in self._guards:
                await self._check(guard, window)
        out = b"".join(self._held)
        self._held.clear()
        return out

    async def _check(self, guard: _Compiled, window: str) -> None:
        payload = {"body": {"choices": [{"message": {"role": "assistant", "content": window}}]}}
        reply = await _ask_webhook(
            guard, self._client, "/response", payload, self._request, self._exchange, closed_rejects=True
        )
        if _webhook_mask(guard, reply) is not None:
            logger.debug("a webhook's mask of a streamed answer is not applied (streams are passed or rejected)")


def _text_delta(index: int, text: str) -> bytes:
    payload = {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}}
    return b"event: content_block_delta\ndata: " + orjson.dumps(payload) + b"\n\n"


def _union(a: list[Span], b: list[Span]) -> list[Span]:
    """Two sorted span lists as one, overlaps joined (``a``'s replacement wins)."""
    return _joined(sorted(a + b, key=lambda s: (s[0], -s[1])))


def _joined(spans: Iterable[Span]) -> list[Span]:
    """Spans sorted by start, overlapping ones joined into one (the first one's replacement wins)."""
    merged: list[Span] = []
    for start, end, replacement in spans:
        if merged and start < merged[-1][1]:
            last = merged[-1]
            merged[-1] = (last[0], max(last[1], end), last[2])
        else:
            merged.append((start, end, replacement))
    return merged


# -- the hook around what the exchange sends ---------------------------------------------------------------------


def has_response_guards(router: Router) -> bool:
    """Whether any backend guards answers (else the gateway does not wrap ``send`` at all)."""
    return any(backend.guardrails is not None and backend.guardrails.response for backend in router.backends)


def guard_responses(exchange: Exchange, send: Send, client: Any) -> Send:
    """``send`` with the response guards of the backend that answers applied to a 200 chat answer: whole answers
    are held until their body (masked, or replaced by the rejection); streams, when the guards are enabled on
    streams, go through a StreamGuard frame by frame. Other answers (errors, other APIs) pass untouched."""
    passing = False
    start: Message | None = None
    guards: Guardrails | None = None
    stream: StreamGuard | MessagesStreamGuard | None = None
    state: dict[str, Any] = {}

    async def guarded(message: Message) -> None:
        nonlocal passing, start, guards, stream
        if passing:
            await send(message)
            return
        kind = message["type"]
        if kind == "http.response.start":
            guarded_api = exchange.api in _GUARDED_APIS
            guards = _guards_of(exchange) if message.get("status") == 200 and guarded_api else None
            if guards is None or (exchange.streamed and not guards.streaming):
                passing = True
                await send(message)
            elif exchange.streamed:
                stream = guards.stream(exchange.api)
                await send(message)
            else:
                start = message
            return
        if kind != "http.response.body":
            await send(message)
        elif stream is not None:
            if "windows" not in state:
                hooks = guards.stream_hooks if guards is not None else []
                request = exchange.request
                state["windows"] = (
                    WebhookWindows(hooks, exchange.api, request, exchange, client) if hooks and request else None
                )
            await _send_stream(stream, message, state, exchange, send)
        elif start is not None and guards is not None:
            head, start = start, None
            try:
                body = await guards.check_answer(message.get("body", b""), exchange.request, exchange, client)
            except GatewayError as exc:
                logger.info("a response guard refused the answer for %s: %s", exchange.client_model, exc.message)
                exchange.status = exc.status
                exchange.facts.error, exchange.facts.error_type = exc.message, exc.code
                headers = [h for h in head["headers"] if h[0] == b"content-type" or h[0].startswith(b"x-")]
                await send({**head, "status": exc.status, "headers": headers + exc.headers})
                body = exc.anthropic_body() if exchange.api == "messages" else exc.body()
                await send({"type": "http.response.body", "body": body})
                return
            await send(head)
            await send({**message, "body": body} if body is not message.get("body") else message)
        else:
            await send(message)

    return guarded


async def _send_stream(
    stream: StreamGuard | MessagesStreamGuard, message: Message, state: dict[str, Any], exchange: Exchange, send: Send
) -> None:
    more = message.get("more_body", False)
    if state.get("rejected"):
        # The stream was refused: only its end (the exchange's error event, written from our rejection) goes out.
        if not more:
            body = message.get("body", b"")
            error = body.startswith((b'data: {"error"', b"event: error\n"))
            await send({**message, "body": body if error else b""})
        return
    try:
        body = stream.feed(message.get("body", b""))
        if not more:
            body += stream.finish()
        windows: WebhookWindows | None = state.get("windows")
        if windows is not None:
            body = await windows.feed(body, not more)
    except GuardRejected as exc:
        state["rejected"] = True
        logger.info("a response guard refused the stream for %s: %s", exchange.client_model, exc.message)
        if more:
            if exc.passed:
                await send({**message, "body": exc.passed})
            raise  # the exchange stops reading the upstream and ends the stream with this error
        exchange.facts.error, exchange.facts.error_type = exc.message, exc.code
        event = exc.anthropic_stream_event() if exchange.api == "messages" else exc.stream_event()
        await send({**message, "body": exc.passed + event})
        return
    if body or not more:
        await send({**message, "body": body})


#: the inbound APIs whose answers the response guards read (chat completions, Anthropic Messages)
_GUARDED_APIS = frozenset(("chat", "messages"))


def _guards_of(exchange: Exchange) -> Guardrails | None:
    if not exchange.attempts:
        return None
    guards: Guardrails | None = getattr(exchange.attempts[-1].backend, "guardrails", None)
    return guards if guards is not None and guards.response else None
