"""Type stubs for `agentgateway._core`, the Rust streaming core (source: `rust/sse_core`).

Everything here is bytes in, bytes out: the gateway's upstream client feeds each network read to a
`ResponseParser` (HTTP/1.1 framing), the body bytes to a `StreamTranslator`, and writes what that
returns to the client unchanged. No
Python callbacks are made from Rust and no per-event objects are created.

Errors: every failure raises `CoreError` (a `ValueError`), including a bug inside the core (a Rust
panic is caught per call, so one bad stream fails alone).
"""

from typing import final

__all__ = [
    "CLIENT_APIS",
    "ERROR_KINDS",
    "PROVIDERS",
    "STATS_BUCKETS",
    "AccessLogBatches",
    "CoreError",
    "ResponseParser",
    "SigV4Signer",
    "StatsTable",
    "StreamTranslator",
    "UpstreamReportedError",
    "__version__",
    "anthropic_error",
    "count_chat_tokens",
    "error_event",
    "error_kind",
    "error_type_for_status",
    "load_tokenizer",
    "translate_response",
]

__version__: str
"""The version of the Rust core (the package version, defined once in Cargo.toml)."""

ERROR_KINDS: tuple[str, ...]
"""The names of the error kinds of the gateway's one error vocabulary (rust/sse_core/src/error_kind.rs), in the
table's order: ``invalid_request``, ``model_not_found``, ``upstream_error``, ``upstream_unreachable``,
``upstream_timeout``, ``upstream_protocol_error``, ``event_too_large``, ``stream_truncated``, ``internal_error``."""

PROVIDERS: tuple[str, ...]
"""The provider names `StreamTranslator` and `translate_response` accept: ``openai`` (and every
OpenAI-compatible server), ``anthropic`` (also Claude on Vertex AI), ``bedrock`` (Converse /
ConverseStream), ``bedrock-anthropic`` (Claude on Bedrock through InvokeModel /
InvokeModelWithResponseStream: Anthropic Messages bodies and events) and ``gemini`` (also Gemini on
Vertex AI)."""

CLIENT_APIS: tuple[str, ...]
"""The client APIs the core writes answers for: ``openai`` (Chat Completions) and ``anthropic``
(Messages)."""

def error_kind(name: str) -> tuple[int, str, str | None]:
    """``(status, OpenAI type, code)`` of the error kind `name` (one of `ERROR_KINDS`).

    ``upstream_error`` (an error the upstream reported) gives the fallback for an upstream that names neither
    status nor code: ``(502, "server_error", "upstream_error")``. ``invalid_request`` has no code of its own.

    Raises:
        CoreError: an unknown kind.
    """

def error_type_for_status(status: int, client_api: str = "openai") -> str:
    """The error ``type`` a status stands for in the client API's vocabulary.

    ``"openai"``, as OpenAI sends it: 401 ``authentication_error``, 403 ``permission_error``, 404
    ``not_found_error``, 429 ``rate_limit_error``, any other 4xx ``invalid_request_error``, anything else
    ``server_error``. ``"anthropic"``, as Anthropic sends it: 400 ``invalid_request_error``, 401
    ``authentication_error``, 402 ``billing_error``, 403 ``permission_error``, 404 ``not_found_error``, 413
    ``request_too_large``, 429 ``rate_limit_error``, 503 and 529 ``overloaded_error``, 504 ``timeout_error``, any
    other 4xx ``invalid_request_error``, anything else ``api_error``.

    Raises:
        CoreError: an unknown client API.
    """

def anthropic_error(message: str, status: int, event: bool = False) -> bytes:
    """Anthropic's error shape, its ``type`` the one `status` stands for (`error_type_for_status` with
    ``client_api="anthropic"``): the body ``{"type":"error","error":{"type","message"}}`` of an error response
    (send it with `status`; 503 keeps its status, the type reads ``overloaded_error``), or with `event` the
    in-stream ``event: error\ndata: <body>\n\n`` the core itself ends an Anthropic stream with."""

def error_event(message: str, type: str, code: str | None, status: int | None = None) -> bytes:
    """The one in-stream error event, as the core writes its own:
    ``data: {"error": {"message", "type", "param": null, "code", "status"}}\n\n``.

    Args:
        status: the HTTP status the error stands for; ``None``: the one `type` stands for when it is one of
            OpenAI's (``server_error`` → 500), else 500.
    """

def count_chat_tokens(model: str, texts: list[str]) -> tuple[int, bool]:
    """``(tokens, exact)``: the tokens of a chat request whose messages hold `texts` (one per message), counted
    with `model`'s tiktoken vocabulary as OpenAI counts chat: each message's text plus 4, the reply 3 more.
    ``exact`` is false when `model` is not one of OpenAI's: then ``cl100k_base`` gives an estimate. Special-token
    text (``<|endoftext|>``) counts as ordinary text. Runs without the GIL."""

def load_tokenizer(model: str) -> str:
    """Builds `model`'s vocabulary now (once per process; 0.1-0.3 s and tens of MB); returns its tiktoken name
    (``o200k_base``, ``o200k_harmony`` or ``cl100k_base``)."""

class CoreError(ValueError):
    """An upstream response the core cannot translate, or an internal error of the core.

    Raised for: an unknown provider name; a whole response body (`translate_response`) that is not
    valid JSON or not a JSON object; an internal error of the core: a caught panic in any entry point,
    its message naming what failed (``"the Bedrock eventstream translator failed: ..."``, ``"the
    HTTP/1.1 response parser failed: ..."``, ``"the SigV4 signer failed: ..."``). An object that
    panicked (translator, response parser, signer) is poisoned: every later call raises, its getters
    report it as failed. A bad *stream* chunk does not raise: see `StreamTranslator.failed`. After
    `StreamTranslator.feed` or `StreamTranslator.finish` raised, the stream is over: send the client
    an error event and close.
    """

class UpstreamReportedError(CoreError):
    """A successful HTTP answer whose body is the provider's error (Anthropic can answer 200 with
    ``{"type": "error", ...}``; Gemini with ``{"error": {"code", "message", "status"}}``, whose status
    name is then the code). ``args`` is ``(message, status, code)``: the provider's message,
    the HTTP status its error type stands for (``overloaded_error`` → 529) and that type."""

    args: tuple[str, int, str]

_Usage = tuple[int, int, int, int | None, int | None, int | None]
"""(Not at runtime: the shape of every usage the core returns.) Token counts as an upstream
reported them: ``(prompt_tokens, completion_tokens, total_tokens, cached_tokens,
cache_write_tokens, reasoning_tokens)``. A missing count among the first three is 0; the last
three are None when the provider did not say. ``prompt_tokens`` includes cache reads and writes;
``cached_tokens`` are the reads (OpenAI's ``prompt_tokens_details.cached_tokens``, Anthropic's
``cache_read_input_tokens``, Gemini's ``cachedContentTokenCount``), ``cache_write_tokens`` the
writes (Anthropic's ``cache_creation_input_tokens``, Bedrock's ``cacheWriteInputTokens``),
``reasoning_tokens`` part of ``completion_tokens`` (``completion_tokens_details.reasoning_tokens``,
Gemini's ``thoughtsTokenCount``)."""

@final
class StreamTranslator:
    """Translates one upstream streaming response into the client API's stream: OpenAI Chat Completions SSE
    frames (``client_api="openai"``, the default) or the Anthropic Messages event stream
    (``client_api="anthropic"``).

    Sans-IO: call `feed` with each chunk read from the upstream body (split anywhere), write the
    returned bytes (zero or more complete ``data: ...\\n\\n`` frames) to the client, and call
    `finish` once at upstream EOF. Read the facts (`usage`, `finish_reason`, `error`, `done`) at
    the end. One instance per stream, used from one task; not reusable.

    For provider ``"openai"`` (and OpenAI-compatible servers) the chunks pass through, copied
    verbatim unless edited: the top-level ``model`` is replaced by `client_model`; when
    `include_usage` is false the usage chunk (``choices: []`` with a ``usage``) is dropped and
    ``"usage": null`` is removed from the other chunks. ``data: [DONE]`` ends the stream (later
    events are ignored). An upstream error payload (a top-level ``error`` key, or an SSE event
    named ``error``) ends the stream with the error event (`error_event`): its ``message`` and
    ``type`` kept, ``code`` its code (else its type, else ``upstream_error``), ``status`` its
    numeric ``code`` when that is an HTTP error status, else the one its type stands for, else
    502; it is recorded in `error`.

    Every error event, whatever the provider, has one shape, ``data: {"error": {"message",
    "type", "param": null, "code", "status"}}``, with the type, code and status of its kind
    (`error_kind`); an error the upstream reported keeps its status and its name as ``code``,
    and (but for OpenAI's own, which keep theirs) its ``type`` is `error_type_for_status` of
    that status.

    For ``"anthropic"`` (the Messages API, also Claude on Vertex AI) every chunk is written by the
    core's OpenAI encoder: one id (the message's), the client's model, a role chunk first, text as
    ``content``, thinking as ``reasoning_content`` plus one ``thinking_blocks`` entry with the
    signature when each thinking block ends, each ``tool_use`` block as the next tool-call index
    (its ``{}`` arguments sent when it streamed none), then the finish chunk, the usage chunk when
    asked (prompt = input + cache read + cache creation tokens), and ``[DONE]``. An ``error`` event
    becomes the error event (``code``: its Anthropic type, ``status``: the HTTP status that type
    stands for) and ends the stream. A ``tool_use`` of ``agentgateway_json_output`` (the tool the
    gateway forces for ``response_format`` json_object) is written as ``content`` (its input), and
    finish reason ``stop`` when no other tool was called -- as ``"bedrock"`` does.

    For ``"gemini"`` (the Gemini API and Gemini on Vertex AI, ``streamGenerateContent?alt=sse``):
    each event is a whole ``GenerateContentResponse``. Text → ``content``, thought parts →
    ``reasoning_content``, a ``functionCall`` → one tool call with a generated id (``call_…``; its
    ``thoughtSignature`` appended as ``__thought__<signature>``), a signature on a thought or text
    part → one ``delta.thinking_blocks`` entry; ``usageMetadata`` is cumulative (the last is
    reported: completion = candidates + thoughts tokens). The upstream sends no ``[DONE]``: EOF
    after a ``finishReason`` (or a blocked prompt, answered as ``content_filter``) ends the stream
    cleanly, EOF without one is a truncation. An ``{"error": ...}`` event becomes the error event
    (``code``: its status name, ``status``: its HTTP code) and ends the stream.

    For ``"bedrock"`` the body is the binary AWS event stream of ``ConverseStream`` (both CRCs
    of every message checked; a bad CRC, length or header ends the stream with an
    ``upstream_protocol_error`` frame, a message cut off at EOF with ``stream_truncated``).
    ``messageStart``, ``contentBlockStart`` (tool use), ``contentBlockDelta`` (text, tool input,
    reasoning), ``contentBlockStop``, ``messageStop`` and ``metadata`` become OpenAI chunks; the
    finish chunk is held until ``metadata`` (which brings the usage after ``messageStop``) or EOF,
    so the usage chunk follows it. An exception message ends the stream with an error frame whose
    ``code`` is its ``:exception-type`` and ``status`` 429 (throttling), 400 (validation), 503
    (service unavailable) or 500.

    For ``"bedrock-anthropic"`` (Claude through ``InvokeModelWithResponseStream``) the body is the AWS
    event stream whose ``chunk`` events carry ``{"bytes": "<base64 of one Anthropic event>"}``: each
    event is translated as for ``"anthropic"``; exceptions end the stream as for ``"bedrock"``.

    **Anthropic clients** (``client_api="anthropic"``): the answer is written as Anthropic's event stream,
    ``event: <type>\ndata: <json>\n\n`` frames. From ``"anthropic"`` and ``"bedrock-anthropic"`` the events
    pass through byte for byte (thinking signatures, citations, server tool blocks, unknown block types),
    only ``message_start``'s ``message.model`` rewritten to `client_model`; a stream that ends after the
    ``message_delta`` with a stop reason but without ``message_stop`` gets one. From every other provider
    the core's Anthropic encoder writes ``message_start`` (the upstream's id or a ``msg_…`` one, the
    client's model, the input usage known so far), ``ping``, one ``content_block_start`` /
    ``content_block_delta`` (``text_delta``, ``thinking_delta``, ``signature_delta``, ``input_json_delta``) /
    ``content_block_stop`` run per block (text, thinking with its signature, redacted_thinking, tool_use
    with the upstream's id or a generated ``toolu_…`` one), ``message_delta`` with ``stop_reason``
    (``end_turn``, ``max_tokens``, ``stop_sequence``, ``tool_use``, ``refusal``, ``pause_turn``,
    ``model_context_window_exceeded``) and the whole usage (``input_tokens`` excludes cache reads and
    writes, which are ``cache_read_input_tokens`` / ``cache_creation_input_tokens``), then
    ``message_stop``. Only choice 0 is written. ``"openai"`` upstreams are decoded for it (choice deltas,
    ``reasoning_content`` / ``reasoning``, ``tool_calls`` by index, ``finish_reason``, the usage chunk, error
    payloads). Every error (upstream-reported, truncation, protocol error, event too large) is
    ``event: error`` with ``{"type": "error", "error": {"type", "message"}}`` (`anthropic_error`), and
    nothing follows it. `include_usage` does not apply (Anthropic streams always carry usage). The facts
    stay in OpenAI's terms: `finish_reason` is ``stop`` / ``length`` / ``tool_calls`` / ``content_filter``;
    `done` means ``message_stop`` was sent.

    Args:
        provider: the upstream provider, one of `PROVIDERS`: ``"openai"``, ``"anthropic"``,
            ``"bedrock"``, ``"bedrock-anthropic"``, ``"gemini"``.
        client_model: the model name the client asked for, written into every chunk in place of
            the upstream's; ``None`` keeps the upstream's.
        include_usage: whether the client asked for ``stream_options.include_usage`` (OpenAI clients).
        client_api: the client's API, one of `CLIENT_APIS`: ``"openai"`` or ``"anthropic"``.
        choice: write the answer as choice ``choice`` of one the gateway merges from several upstream answers
            (``n`` > 1 on providers that answer one choice per call, exchange.py's fan-out): every chunk carries
            that ``index``, and the stream ends without ``data: [DONE]`` (the merged stream writes one, and the
            summed usage chunk: pass ``include_usage=False``). Decoded OpenAI streams only (not ``"openai"``'s
            pass-through, nor Anthropic clients).
        completion_id: with `choice`, the ``id`` of every chunk instead of the upstream's ("" keeps it).

    Raises:
        CoreError: unknown provider or client API, or a `choice` this translator cannot write.
    """

    def __new__(
        cls,
        provider: str,
        client_model: str | None,
        include_usage: bool,
        client_api: str = "openai",
        *,
        choice: int | None = None,
        completion_id: str = "",
    ) -> StreamTranslator: ...
    def feed(self, chunk: bytes) -> bytes:
        """Translate one chunk of the upstream body.

        Returns:
            Complete SSE frames, possibly ``b""`` (an event split across reads is held back until
            its end arrives). When a payload is not a JSON object the frames before it are
            returned followed by an error frame (``"code": "upstream_protocol_error"``), when an
            event passes 16 MiB without ending by one with ``"code": "event_too_large"`` (both
            status 502); the translator is then `failed`.

        Raises:
            CoreError: an internal error only.
        """

    def finish(self) -> bytes:
        """Signal upstream EOF and return the last frames.

        A pending event without its final blank line is still translated. Then, unless the
        stream ended with ``[DONE]`` or carried an error: if a ``finish_reason`` was seen, a
        ``data: [DONE]\\n\\n`` is added (the upstream omitted it); otherwise the stream was cut
        short, and an error frame with ``"code": "stream_truncated"`` (status 502) is added and
        recorded in `error`. An event cut off in the middle of its payload counts as a truncation,
        not as invalid JSON (for every provider). Calling `finish` again returns ``b""``.

        Raises:
            CoreError: an internal error only.
        """

    @property
    def usage(self) -> _Usage | None:
        """The last non-null ``usage`` seen (see `_Usage`), even when the usage chunk was not sent
        to the client."""

    @property
    def finish_reason(self) -> str | None:
        """The last non-null ``choices[*].finish_reason`` seen."""

    @property
    def error(self) -> str | None:
        """The message of the first error recorded: an upstream error payload, a chunk that
        could not be translated, the truncation message, or the panic that poisoned the translator.
        ``None`` for a clean stream."""

    @property
    def done(self) -> bool:
        """Whether the client's stream ended normally: ``data: [DONE]`` was sent (passed through or added by
        `finish`), or ``message_stop`` for an Anthropic client."""

    @property
    def failed(self) -> bool:
        """Whether an untranslatable upstream chunk ended the client's stream with an error frame
        (or the translator panicked): stop reading the upstream (later input is ignored)."""

@final
class ResponseParser:
    """Frames one upstream HTTP/1.1 response (RFC 9112), sans-IO: one `feed` per network read.

    Bodies end by ``Content-Length``, by chunked transfer coding (decoded here), or by the connection
    closing (then `finish` ends them). Interim ``1xx`` answers are skipped; ``204``/``304`` have no body.
    Only an unfinished head or chunk-size line is held between calls; body bytes pass straight through.
    """

    def __new__(cls) -> ResponseParser: ...
    def feed(self, data: bytes) -> tuple[tuple[int, list[tuple[bytes, bytes]]] | None, bytes]:
        """Parse one read.

        Returns:
            ``(head, body)``: ``head`` is ``(status, [(lower-cased name, value), ...])`` in the call
            where the head completed, else None; ``body`` is the decoded body bytes of this read.

        Raises:
            CoreError: a malformed head (or one over 64 KiB), a bad Content-Length or chunk size,
                chunk data not followed by CRLF, or a 101 answer.
        """

    def finish(self) -> None:
        """The connection closed: a close-delimited body is complete now.

        Raises:
            CoreError: the head or a length-framed or chunked body was cut short.
        """

    @property
    def complete(self) -> bool:
        """Whether the whole response has been read (false once the parser panicked)."""

    @property
    def keep_alive(self) -> bool:
        """Whether the connection may carry another request: the response is complete, is not
        close-delimited, did not say ``Connection: close`` (HTTP/1.1; HTTP/1.0 needs ``keep-alive``),
        and no bytes followed it; false once the parser panicked (the connection is never reused)."""

def translate_response(
    provider: str, body: bytes, client_model: str | None, client_api: str = "openai"
) -> tuple[bytes, _Usage | None]:
    """Translate a whole (non-streaming) upstream response body into a body of the client API: an OpenAI
    Chat Completions body (``client_api="openai"``) or an Anthropic ``message`` (``client_api="anthropic"``).

    For an Anthropic client: from ``"anthropic"`` and ``"bedrock-anthropic"`` (an ``InvokeModel`` body is a
    Messages body) the body passes through byte for byte with only its top-level ``model`` rewritten to
    `client_model`; from the others it is written by the core's Anthropic encoder
    (``{"id", "type": "message", "role": "assistant", "model", "content": [thinking | redacted_thinking |
    text | tool_use], "stop_reason", "stop_sequence": null, "usage": {"input_tokens", "output_tokens",
    "cache_creation_input_tokens", "cache_read_input_tokens"}}``; reasoning first, then the text, then
    the tool calls, whose ``input`` is their arguments object — ``{}`` when the arguments are not a JSON
    object — and whose ids are the upstream's, else generated ``toolu_…`` ones). ``"openai"`` bodies are
    decoded for it (``content`` string or text parts, ``refusal``, ``reasoning_content``,
    ``thinking_blocks``, ``tool_calls``, ``finish_reason``, ``usage``).

    For an OpenAI client, ``"openai"``: the top-level ``model`` is replaced by `client_model` (the
    body is returned byte for byte when it is ``None`` or already equal). For ``"anthropic"`` and
    ``"bedrock-anthropic"``: a Messages API response becomes a ``chat.completion`` (text joined into
    ``content``, ``tool_use`` blocks into ``tool_calls``, thinking into ``reasoning_content`` and
    ``thinking_blocks``, stop reason and usage mapped); `client_model` names the model (``None``:
    the upstream's). For ``"bedrock"``: a Converse
    response (content blocks, ``stopReason``, ``usage``) becomes a ``chat.completion`` body.

    For ``"gemini"``: a ``GenerateContentResponse`` becomes a ``chat.completion`` (first candidate only;
    see `StreamTranslator` for the mapping and rust/sse_core/src/providers/gemini.rs for the details).

    Returns:
        The body to send, and its usage (see `_Usage`; ``None`` when absent or null).

    Raises:
        UpstreamReportedError: the body is the provider's error.
        CoreError: unknown provider or client API, or a body that is not a JSON object.
    """

@final
class SigV4Signer:
    """AWS Signature Version 4 for the gateway's upstream requests (``POST``, JSON body, no query).

    The ``Authorization`` it writes is byte for byte what botocore's ``SigV4Auth`` writes for the
    same request, at a small fraction of the cost. Signed headers: ``content-type``, ``host``,
    ``x-amz-date``, and ``x-amz-security-token`` with a session token. The canonical URI is the
    path as sent, encoded once more. The signing key is cached per (date, secret key).

    Args:
        region: the AWS region of the credential scope.
        service: the signing name (``"bedrock"``).
        host: the ``Host`` header the request is sent with.
        content_type: the ``Content-Type`` header the request is sent with.
    """

    def __new__(cls, region: str, service: str, host: str, content_type: str) -> SigV4Signer: ...
    def headers(
        self,
        path: str,
        body: bytes,
        access_key: str,
        secret_key: str,
        session_token: str | None,
        amz_date: str | None = None,
    ) -> bytes:
        """Sign one request.

        Args:
            path: the request path as sent (already percent-encoded).
            body: the request body.
            amz_date: the signing time, ``YYYYMMDD'T'HHMMSS'Z'``; default: now.

        Returns:
            The header lines ``X-Amz-Date``, ``X-Amz-Security-Token`` (with a session token) and
            ``Authorization``, each ending with ``\\r\\n``.

        Raises:
            CoreError: the access key, token or date contain control characters.
        """

STATS_BUCKETS: tuple[tuple[float, ...], ...]
"""The bounds of the histograms `StatsTable.record` fills (rust/sse_core/src/stats.rs), in this order: HTTP request
duration, GenAI request duration, token usage, time to first token, time per output token (telemetry/_metrics.py
checks they are its own)."""

@final
class StatsTable:
    """The metric updates of one settled exchange in one call (issue 18): the worker's table of ``f64`` values
    (telemetry/_table.py's memory-mapped file) and the slots of each label group.

    Every histogram takes ``len(bounds) + 2`` consecutive values: a count per bucket (the first bound not below
    the value, as ``bisect_left`` finds it), one for ``+Inf``, then the sum. Every write is checked against the
    bound buffer's length: a group whose series do not fit writes nothing and raises.
    """

    def __new__(cls) -> StatsTable: ...
    def bind(self, buffer: object) -> None:
        """Writes go to ``buffer``'s memory from now on (a writable buffer, 8-byte aligned: the worker's mmap),
        read as native ``f64`` values. The table holds a ctypes view made with ``from_buffer`` until `unbind`:
        while it does, the mmap cannot be closed or resized (``BufferError``), so call `unbind` first.

        Raises:
            TypeError: not a writable buffer.
            CoreError: not 8-byte aligned.
        """

    def unbind(self) -> None:
        """Drops the view of the buffer; `record` and `add` raise until the next `bind`."""

    def __len__(self) -> int:
        """How many ``f64`` values the bound buffer holds (0 when unbound)."""

    def add_group(
        self,
        requests: int,
        duration: int,
        genai: tuple[int, int, int, int, int, int, int, int, int] | None = None,
        counters: tuple[int, ...] | None = None,
    ) -> int:
        """A label group: the slots of its request counter and HTTP duration histogram and, for a request that
        reached a backend, ``genai``: the GenAI duration histogram, the input, output, cache-read and cache-write
        token histograms, the time-to-first-token and time-per-output-token histograms, the cost counter and the
        unpriced counter; ``counters``: other counters each `record` of the group adds one to (its upstream
        attempt's). Returns the group's index for `record`."""

    def clear_groups(self) -> None:
        """Forgets every group: their indexes are not valid any more."""

    @property
    def groups(self) -> int:
        """How many groups there are."""

    def record(
        self,
        group: int,
        elapsed: float,
        streamed: bool,
        ttft: float | None,
        input: float | None,
        output: float,
        cached: float,
        cache_write: float,
        cost: float | None,
    ) -> None:
        """One settled exchange of ``group``, as telemetry/_metrics.py's recorder wrote it: the request count and
        the HTTP duration; with GenAI series, the GenAI duration; with usage (``input`` not None), the input and
        output token histograms, the cache ones when not zero, and the cost (or, ``cost`` None, the unpriced
        count); streamed with a ``ttft``, the time to first token and, past one output token, the time per
        output token, ``(elapsed - ttft) / (output - 1)``.

        Raises:
            CoreError: no such group, or its series end past the bound buffer (nothing is written then).
        """

    def add(self, slot: int, amount: float) -> None:
        """Adds ``amount`` to the value at ``slot``.

        Raises:
            CoreError: ``slot`` is past the bound buffer.
        """

@final
class AccessLogBatches:
    """The access log's lines waiting to be written, in batches of at most ``batch_bytes`` (``PIPE_BUF``: whole
    lines stay whole with several writers on one pipe), and the plain text and JSON lines written in the core. A
    line that does not fit after the current batch closes it (a longer line goes alone). Sans-IO: the caller
    writes.
    """

    def __new__(cls, batch_bytes: int = 4096) -> AccessLogBatches: ...
    def text(
        self,
        request_id: str,
        upstream_id: str | None,
        caller: str | None,
        model: str | None,
        backend: str | None,
        attempts: int,
        status: int,
        input: int | None,
        output: int,
        cached: int,
        reasoning: int,
        cost: float | None,
        duration: float,
        ttft: float | None,
        error: str | None,
        millis: int | None = None,
    ) -> bool:
        """Adds the text line of one request, byte for byte telemetry/_access_log.py's ``_text_line``:
        ``<UTC time to the ms> request id=.. upstream_id=.. caller=.. model=.. backend=.. attempts=.. status=..
        input=.. output=.. cached=.. reasoning=.. cost=.. duration=.. ttft=.. error=..``, ``-`` for None (all four
        counts when ``input`` is None), strings as they are when made of letters, digits and ``-_.:/@*+`` and else
        quoted as JSON strings, ``cost`` and ``ttft`` as ``format(x, '.6g')``, ``duration`` as ``f"{x:.6f}"``.

        Args:
            millis: the time, in milliseconds since the Unix epoch; default: now.

        Returns:
            Whether a closed batch waits (`drain_full`).

        Raises:
            TypeError: a count that is not an int (the caller writes such a line itself).
            OverflowError: a count past 64 bits.
        """

    def json(
        self,
        request_id: str,
        upstream_id: str | None,
        caller: str | None,
        model: str | None,
        backend: str | None,
        attempts: int,
        status: int,
        input: int | None,
        output: int,
        cached: int,
        reasoning: int,
        cost: float | None,
        duration: float,
        ttft: float | None,
        error: str | None,
        millis: int | None = None,
    ) -> bool:
        """Adds the JSON line of one request, byte for byte what telemetry/_access_log.py's orjson dict writes:
        ``{"time","id","upstream_id","caller","model","backend","attempts","status","input","output","cached",
        "reasoning","cost","duration","ttft","error"}`` in that order, compact, with a newline; a member left out
        when its value is None (the four counts when ``input`` is None); ``duration`` and ``ttft`` after Python's
        ``round(x, 6)``; floats as orjson writes them (shortest round-trip digits, fixed notation for exponents -5
        to 15, ``null`` for NaN and infinities), strings escaped as orjson escapes them.

        Returns:
            Whether a closed batch waits (`drain_full`).

        Raises:
            TypeError: a count that is not an int, or a ``cost``, ``duration`` or ``ttft`` that is not exactly a
                ``float`` (orjson writes an int as an int: the caller writes such a line itself).
            OverflowError: a count past 64 bits.
        """

    def push(self, line: bytes) -> bool:
        """Adds a line written elsewhere (with its newline); whether a closed batch waits."""

    def drain_full(self) -> tuple[bytes, ...]:
        """The closed batches, taken, oldest first (the open one stays)."""

    def drain(self) -> tuple[bytes, ...]:
        """Every batch, taken, in order: the closed ones, then the open one; ``()`` when nothing waits."""

    def __len__(self) -> int:
        """Bytes waiting."""
