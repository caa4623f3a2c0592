"""A fake Amazon Bedrock runtime (Converse / ConverseStream) that checks what the gateway sends as AWS would.

- Auth: ``Authorization: Bearer <api key>``, or SigV4, recomputed with botocore's own ``SigV4Auth`` from the request
  as received (raw path, signed headers, body) and compared byte for byte; a wrong signature, an unknown access key
  or a stale ``X-Amz-Date`` is refused with the status, ``x-amzn-errortype`` and message AWS uses. Access keys listed
  in ``expired_keys`` get 403 ``ExpiredTokenException``.
- Bodies: validated with botocore's ``ParamValidator`` against the ``bedrock-runtime`` service model's
  ``Converse`` / ``ConverseStream`` input shapes, plus the rules the service enforces beyond the shapes (roles
  alternate starting with user, no blank text, ``toolConfig`` whenever the history holds tool blocks, images as
  base64 bytes). A failure is a 400 ``ValidationException``.
- Streams: real binary event stream messages (prelude and message CRC32), encoded here independently of the
  gateway's decoder.

Behaviour by model id (the part after the last ``.``-free suffix check, see `answer`):
``*-throttle`` 429; ``*-reasoning`` reasoning with a signature then text; ``*-length`` stopReason max_tokens;
``*-guardrail`` guardrail_intervened; ``*-throttle-midstream`` a throttlingException frame mid-stream;
``*-stream-fixture`` the recorded modelStreamErrorException frame; ``*-corrupt`` a frame with a bad CRC;
``*-cut`` a stream cut inside a frame; ``*-split`` frames written a few bytes at a time; ``*-unavailable`` 503
ServiceUnavailableException; ``*-first-exception`` a stream whose FIRST frame is a serviceUnavailableException. A
toolChoice that forces a tool (or ``*-tool`` with tools) answers with a toolUse; an outputConfig answers with JSON text.

Claude through InvokeModel (issue 19): ``/invoke`` and ``/invoke-with-response-stream`` take an Anthropic Messages
body without ``model`` and ``stream`` and with ``anthropic_version: bedrock-2023-05-31`` (``anthropic_beta`` a
list), validated with the ``anthropic`` package's types; the answers are the fake Anthropic API's (`answer`, the
model id's suffixes as there), streamed as ``chunk`` events ``{"bytes": <base64 of one Anthropic event>}``.
``/count-tokens`` is validated against botocore's ``CountTokens`` input shape (an ``invokeModel`` body must be
an InvokeModel body) and answers ``{"inputTokens": N}``.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import re
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import orjson
from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.session import get_session
from botocore.validate import ParamValidator
from pydantic import ValidationError

from .anthropic_upstream import _CLASSIC_API_FIELDS, _NON_STREAMING, Rejected, _consume, check_rules, count_of
from .anthropic_upstream import answer as claude_answer
from .anthropic_upstream import stream_events as claude_stream_events
from .embedding_vectors import fake_vector, token_count
from .server import serve_in_thread

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "fixtures"
_SERVICE_MODEL = get_session().get_service_model("bedrock-runtime")
INPUT_SHAPES = {
    "converse": _SERVICE_MODEL.operation_model("Converse").input_shape,
    "converse-stream": _SERVICE_MODEL.operation_model("ConverseStream").input_shape,
    "count-tokens": _SERVICE_MODEL.operation_model("CountTokens").input_shape,
}
INVOKE_OPERATIONS = ("invoke", "invoke-with-response-stream")
ERROR_NAMESPACE = "http://internal.amazon.com/coral/com.amazon.bedrock/"
USAGE = {"inputTokens": 10, "outputTokens": 5, "totalTokens": 20, "cacheReadInputTokens": 3, "cacheWriteInputTokens": 2}


def frame(headers: list[tuple[str, str]], payload: bytes) -> bytes:
    """One event stream message with string headers and both CRCs."""
    head = b"".join(
        struct.pack("B", len(name)) + name.encode() + b"\x07" + struct.pack(">H", len(value)) + value.encode()
        for name, value in headers
    )
    total = 12 + len(head) + len(payload) + 4
    prelude = struct.pack(">II", total, len(head))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    message = prelude + head + payload
    return message + struct.pack(">I", zlib.crc32(message))


def event(kind: str, payload: dict[str, Any]) -> bytes:
    # The service pads payloads with a "p" field of varying length (against traffic analysis).
    body = orjson.dumps({**payload, "p": "abcdefghijklmnopqrstuvwxyzABCDEF"[: len(kind)]})
    return frame([(":event-type", kind), (":content-type", "application/json"), (":message-type", "event")], body)


def exception(kind: str, message: str) -> bytes:
    return frame(
        [(":exception-type", kind), (":content-type", "application/json"), (":message-type", "exception")],
        orjson.dumps({"message": message}),
    )


class Invalid(Exception):
    pass


INVOKE_SHAPE = _SERVICE_MODEL.operation_model("InvokeModel").input_shape


def stop_at_sequences(
    blocks: list[dict[str, Any]], stop_reason: str, body: dict[str, Any]
) -> tuple[list[dict[str, Any]], str, dict[str, Any] | None]:
    """What Converse does with ``inferenceConfig.stopSequences``: the text ends before the first sequence it holds
    (the sequence itself is not sent), ``stopReason: stop_sequence``; the model's own ``stop_sequence`` field comes
    back in ``additionalModelResponseFields`` only when ``additionalModelResponseFieldPaths`` asked for it."""
    sequences = (body.get("inferenceConfig") or {}).get("stopSequences") or []
    for position, block in enumerate(blocks):
        text = block.get("text")
        if not isinstance(text, str):
            continue
        found = [(text.find(s), s) for s in sequences if s and s in text]
        if not found:
            continue
        at, sequence = min(found)
        cut = [*blocks[:position], {"text": text[:at]}] if text[:at] else blocks[:position]
        asked = "/stop_sequence" in (body.get("additionalModelResponseFieldPaths") or [])
        return cut, "stop_sequence", {"stop_sequence": sequence} if asked else None
    return blocks, stop_reason, None


def embedding_family(model_id: str) -> str | None:
    """``titan`` / ``cohere`` for the embedding models the fake serves through InvokeModel (issue 19)."""
    if "amazon.titan-embed-text" in model_id:
        return "titan"
    if "cohere.embed-" in model_id:
        return "cohere"
    return None


def _check_fields(body: Any, allowed: dict[str, Callable[[Any], bool]], required: tuple[str, ...]) -> None:
    if not isinstance(body, dict):
        raise Invalid("the body must be a JSON object")
    for name in required:
        if name not in body:
            raise Invalid(f"required key [{name}] not found")
    for name, value in body.items():
        check = allowed.get(name)
        if check is None:
            raise Invalid(f"extraneous key [{name}] is not permitted")
        if not check(value):
            raise Invalid(f"#/{name}: invalid value {value!r}")


def check_titan_body(model_id: str, body: Any) -> None:
    """Titan Text Embeddings' request schema (Bedrock user guide, "Amazon Titan Text Embeddings"): v2 takes
    ``inputText`` (1 to 50,000 characters), ``dimensions`` (1024, 512, 256), ``normalize``, ``embeddingTypes``
    (float, binary); v1 ``inputText`` only."""
    allowed: dict[str, Callable[[Any], bool]] = {"inputText": lambda v: isinstance(v, str) and 0 < len(v) <= 50000}
    if "titan-embed-text-v2" in model_id:
        allowed["dimensions"] = lambda v: v in (256, 512, 1024) and not isinstance(v, bool)
        allowed["normalize"] = lambda v: isinstance(v, bool)
        allowed["embeddingTypes"] = lambda v: isinstance(v, list) and set(v) <= {"float", "binary"} and bool(v)
    _check_fields(body, allowed, ("inputText",))


def check_cohere_body(model_id: str, body: Any) -> None:
    """Cohere Embed's request schema (Bedrock user guide, "Cohere Embed v3" / "v4"): ``input_type`` required;
    ``texts`` (at most 96, each at most 2048 characters on v3), ``images``, ``truncate``, ``embedding_types``;
    v4 also ``output_dimension`` (256, 512, 1024, 1536) and ``max_tokens``."""
    v4 = "embed-v4" in model_id
    kinds = {"float", "int8", "uint8", "binary", "ubinary"}
    allowed: dict[str, Callable[[Any], bool]] = {
        "input_type": lambda v: v in ("search_document", "search_query", "classification", "clustering"),
        "texts": lambda v: (
            isinstance(v, list) and 0 < len(v) <= 96 and all(isinstance(t, str) and (v4 or len(t) <= 2048) for t in v)
        ),
        "images": lambda v: isinstance(v, list),
        "truncate": lambda v: v in (("NONE", "LEFT", "RIGHT") if v4 else ("NONE", "START", "END")),
        "embedding_types": lambda v: isinstance(v, list) and bool(v) and set(v) <= kinds,
    }
    if v4:
        allowed["output_dimension"] = lambda v: v in (256, 512, 1024, 1536) and not isinstance(v, bool)
        allowed["max_tokens"] = lambda v: isinstance(v, int) and v > 0
    _check_fields(body, allowed, ("input_type", "texts"))


def _check_rules(body: dict[str, Any]) -> None:
    """What the service refuses beyond the shapes (its ValidationException messages, paraphrased)."""
    messages = body.get("messages", [])
    if not messages:
        raise Invalid(
            "A conversation must start with a user message. Try again with a conversation that starts "
            "with a user message."
        )
    tool_blocks = False
    for i, message in enumerate(messages):
        expected = "user" if i % 2 == 0 else "assistant"
        if message["role"] != expected:
            raise Invalid(
                "A conversation must alternate between user and assistant roles. Make sure the conversation "
                "alternates between user and assistant roles and try again."
                if i
                else "A conversation must start with a user message. Try again with a conversation that starts "
                "with a user message."
            )
        if not message["content"]:
            raise Invalid(f"The content field in the Message object at messages.{i} is empty.")
        for j, block in enumerate(message["content"]):
            if "text" in block and not block["text"].strip():
                raise Invalid(f"The text field in the ContentBlock object at messages.{i}.content.{j} is blank.")
            if "toolUse" in block or "toolResult" in block:
                tool_blocks = True
    for block in body.get("system", []):
        if "text" in block and not block["text"].strip():
            raise Invalid("The text field in the SystemContentBlock object is blank.")
    if tool_blocks and "toolConfig" not in body:
        raise Invalid("The toolConfig field must be defined when using toolUse and toolResult content blocks.")


def check_invoke_body(body: dict[str, Any], *, streaming: bool) -> None:
    """An InvokeModel body for Claude: the Messages API's, without model and stream, with Bedrock's version."""
    if body.get("anthropic_version") != "bedrock-2023-05-31":
        raise Invalid("anthropic_version: must be bedrock-2023-05-31")
    for key in ("model", "stream"):
        if key in body:
            raise Invalid(f"extraneous key [{key}] is not permitted")
    betas = body.get("anthropic_beta", [])
    if not isinstance(betas, list) or not all(isinstance(b, str) for b in betas):
        raise Invalid("anthropic_beta: must be a list of strings")
    typed = {k: v for k, v in body.items() if k not in ("anthropic_version", "anthropic_beta")}
    unknown = set(typed) - _CLASSIC_API_FIELDS
    if unknown:
        raise Invalid(f"extraneous key {sorted(unknown)} is not permitted")
    sampling = {k: typed.pop(k) for k in ("temperature", "top_p", "top_k") if k in typed}
    if not all(isinstance(v, (int, float)) for v in sampling.values()):
        raise Invalid("sampling parameters must be numbers")
    try:
        _consume(_NON_STREAMING.validate_python({**typed, "model": "claude"}))
        system = body.get("system")
        check_rules({**body, "system": [{"type": "text", "text": system}]} if isinstance(system, str) else body)
    except ValidationError as exc:
        raise Invalid(f"invalid request body: {exc}") from None
    except Rejected as exc:
        raise Invalid(str(exc)) from None


def _blobs_to_bytes(body: dict[str, Any]) -> None:
    """Blobs arrive as base64 strings in the JSON protocol; the shapes want bytes."""
    for message in body.get("messages", []):
        for block in message.get("content", []):
            for kind in ("image", "document"):
                media = block.get(kind)
                if media is not None:
                    try:
                        media["source"]["bytes"] = base64.b64decode(media["source"]["bytes"], validate=True)
                    except (ValueError, TypeError, KeyError) as exc:
                        raise Invalid(f"{kind} bytes are not base64: {exc}") from None
            document = block.get("document")
            if document is not None and not re.fullmatch(
                r"[A-Za-z0-9\-()\[\]]+( [A-Za-z0-9\-()\[\]]+)*", document["name"]
            ):
                raise Invalid(
                    "The document file name can only contain alphanumeric characters, whitespace characters, hyphens, "
                    "parentheses, and square brackets. The name can't contain more than one consecutive whitespace "
                    "character."
                )
            reasoning = block.get("reasoningContent")
            if reasoning is not None and "redactedContent" in reasoning:
                reasoning["redactedContent"] = base64.b64decode(reasoning["redactedContent"], validate=True)


@dataclass
class Recorded:
    path: str
    raw_path: str
    model_id: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeBedrock:
    region: str = "us-east-1"
    #: access key -> (secret key, session token)
    keys: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    api_keys: set[str] = field(default_factory=set)
    expired_keys: set[str] = field(default_factory=set)
    requests: list[Recorded] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    base_url: str = ""
    #: InvokeModel embeddings calls in flight now, and the most seen at once
    in_flight: int = 0
    in_flight_max: int = 0

    def last(self) -> Recorded:
        return self.requests[-1]

    def count(self, model_id: str) -> int:
        """How many requests arrived for ``model_id``: the attempts the gateway made there."""
        return sum(1 for recorded in self.requests if recorded.model_id == model_id)

    # -- checks ----------------------------------------------------------------------------------------------

    def _error(self, status: int, kind: str, message: str) -> web.Response:
        self.refused.append(kind)
        return web.Response(
            status=status,
            headers={"x-amzn-errortype": f"{kind}:{ERROR_NAMESPACE}", "x-amzn-RequestId": "req-fake-error"},
            content_type="application/json",
            body=orjson.dumps({"message": message}),
        )

    def _check_auth(self, request: web.Request, raw: bytes) -> web.Response | None:
        authorization = request.headers.get("Authorization", "")
        if authorization.startswith("Bearer "):
            if authorization[7:] in self.api_keys:
                return None
            return self._error(
                403, "AccessDeniedException", "Invalid API Key format: Must start with pre-defined prefix"
            )
        if not authorization.startswith("AWS4-HMAC-SHA256 "):
            return self._error(403, "MissingAuthenticationTokenException", "Missing Authentication Token")
        fields = dict(part.strip().split("=", 1) for part in authorization[len("AWS4-HMAC-SHA256 ") :].split(","))
        access_key, date, region, service, terminator = fields["Credential"].split("/")
        if access_key not in self.keys:
            return self._error(
                403, "UnrecognizedClientException", "The security token included in the request is invalid."
            )
        if access_key in self.expired_keys:
            return self._error(403, "ExpiredTokenException", "The security token included in the request is expired")
        secret, token = self.keys[access_key]
        amz_date = request.headers.get("X-Amz-Date", "")
        signed = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
        if abs((datetime.datetime.now(datetime.timezone.utc) - signed).total_seconds()) > 300:
            return self._error(403, "InvalidSignatureException", "Signature expired")
        if (region, service, terminator, date) != (self.region, "bedrock", "aws4_request", amz_date[:8]):
            return self._error(403, "InvalidSignatureException", f"Credential should be scoped correctly: {fields}")
        if token is not None and request.headers.get("X-Amz-Security-Token") != token:
            return self._error(
                403, "UnrecognizedClientException", "The security token included in the request is invalid."
            )
        # Recompute with botocore from the request as received: the signed headers, the raw path, the body.
        names = fields["SignedHeaders"].split(";")
        headers = {name: request.headers[name] for name in names if name != "host"}
        aws_request = AWSRequest(
            method=request.method, url=f"http://{request.headers['Host']}{request.raw_path}", data=raw, headers=headers
        )
        signer = SigV4Auth(Credentials(access_key, secret, token), "bedrock", self.region)
        aws_request.context["timestamp"] = amz_date
        canonical = signer.canonical_request(aws_request)
        expected = signer.signature(signer.string_to_sign(aws_request, canonical), aws_request)
        if fields["Signature"] != expected or "host" not in names or "x-amz-date" not in names:
            return self._error(
                403,
                "InvalidSignatureException",
                "The request signature we calculated does not match the signature you provided. Check your AWS "
                "Secret Access Key and signing method. Consult the service documentation for details.",
            )
        return None

    # -- handler ---------------------------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        # The model id travels percent-encoded as one segment (an ARN's '/' as %2F): read the raw path.
        segments = request.raw_path.split("?")[0].split("/")
        if len(segments) == 4 and segments[3] == "invoke" and embedding_family(unquote(segments[2])) is not None:
            return await self.invoke_embeddings(request, unquote(segments[2]), raw)
        if len(segments) != 4 or (segments[3] not in INPUT_SHAPES and segments[3] not in INVOKE_OPERATIONS):
            return self._error(404, "UnknownOperationException", f"no operation at {request.raw_path}")
        operation = segments[3]
        model_id = unquote(segments[2])
        refused = self._check_auth(request, raw)
        if refused is not None:
            return refused
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return self._error(400, "SerializationException", "Start of structure or map found where not expected.")
        self.requests.append(
            Recorded(request.path, request.raw_path, model_id, dict(request.headers), orjson.loads(raw))
        )
        if request.headers.get("Content-Type") != "application/json":
            return self._error(400, "SerializationException", "Content-Type must be application/json")
        if operation in INVOKE_OPERATIONS:
            return await self.invoke(request, model_id, body, operation == "invoke-with-response-stream")
        if operation == "count-tokens":
            return self.count_tokens(model_id, body)
        try:
            _blobs_to_bytes(body)
            report = ParamValidator().validate({**body, "modelId": model_id}, INPUT_SHAPES[operation])
            if report.has_errors():
                raise Invalid(report.generate_report())
            _check_rules(body)
        except Invalid as exc:
            return self._error(400, "ValidationException", str(exc))
        if model_id.endswith("-throttle"):
            return self._error(429, "ThrottlingException", "Too many requests, please wait before trying again.")
        if model_id.endswith("-unavailable"):
            return self._error(503, "ServiceUnavailableException", "Bedrock is unable to process your request.")
        blocks, stop_reason = self.answer(model_id, body)
        blocks, stop_reason, fields = stop_at_sequences(blocks, stop_reason, body)
        if operation == "converse":
            return web.Response(
                content_type="application/json",
                headers={"x-amzn-RequestId": "req-fake-converse"},
                body=orjson.dumps(
                    {
                        "output": {"message": {"role": "assistant", "content": blocks}},
                        "stopReason": stop_reason,
                        **({"additionalModelResponseFields": fields} if fields else {}),
                        "usage": USAGE,
                        "metrics": {"latencyMs": 42},
                    }
                ),
            )
        return await self.stream(request, model_id, blocks, stop_reason, fields)

    async def invoke_embeddings(self, request: web.Request, model_id: str, raw: bytes) -> web.Response:
        """``InvokeModel`` on a Titan Text Embeddings or Cohere Embed model (issue 19): SigV4 checked as for
        Converse, the call validated against botocore's ``InvokeModel`` input shape, the body against the model's
        documented request schema (`check_titan_body`, `check_cohere_body`). Titan answers a text starting with
        ``slow`` 0.1 s later (answers then finish out of order); ``in_flight_max`` records how many calls were in
        flight at once. ``*-throttle`` answers 429."""
        refused = self._check_auth(request, raw)
        if refused is not None:
            return refused
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return self._error(400, "SerializationException", "Start of structure or map found where not expected.")
        self.requests.append(Recorded(request.path, request.raw_path, model_id, dict(request.headers), body))
        report = ParamValidator().validate(
            {"body": raw, "modelId": model_id, "contentType": request.headers.get("Content-Type", "")},
            INVOKE_SHAPE,
        )
        if report.has_errors():
            return self._error(400, "ValidationException", report.generate_report())
        if request.headers.get("Content-Type") != "application/json":
            return self._error(400, "ValidationException", "Content-Type must be application/json")
        family = embedding_family(model_id)
        try:
            (check_titan_body if family == "titan" else check_cohere_body)(model_id, body)
        except Invalid as exc:
            return self._error(
                400, "ValidationException", f"Malformed input request: {exc}, please reformat your input and try again."
            )
        if model_id.endswith("-throttle"):
            return self._error(429, "ThrottlingException", "Too many requests, please wait before trying again.")
        self.in_flight += 1
        self.in_flight_max = max(self.in_flight_max, self.in_flight)
        try:
            if family == "titan":
                text = body["inputText"]
                await asyncio.sleep(0.1 if text.startswith("slow") else 0.01)
                tokens = token_count(text)
                answer: dict[str, Any] = {
                    "embedding": fake_vector(text, body.get("dimensions", 1024 if "v2" in model_id else 1536)),
                    "inputTextTokenCount": tokens,
                }
            else:
                texts = body["texts"]
                await asyncio.sleep(0.01)
                tokens = sum(token_count(text) for text in texts)
                vectors = [fake_vector(text, body.get("output_dimension", 1024 if "v3" in model_id else 1536))
                           for text in texts]  # fmt: skip
                if "embedding_types" in body:
                    answer = {"id": "emb-fake", "response_type": "embeddings_by_type", "texts": texts,
                              "embeddings": {kind: vectors for kind in body["embedding_types"]}}  # fmt: skip
                else:
                    answer = {"id": "emb-fake", "response_type": "embeddings_floats", "texts": texts,
                              "embeddings": vectors}  # fmt: skip
                answer["meta"] = {"api_version": {"version": "1"}, "billed_units": {"input_tokens": tokens}}
        finally:
            self.in_flight -= 1
        return web.Response(
            content_type="application/json",
            headers={"x-amzn-RequestId": "req-fake-invoke", "X-Amzn-Bedrock-Input-Token-Count": str(tokens)},
            body=orjson.dumps(answer),
        )

    def count_tokens(self, model_id: str, body: dict[str, Any]) -> web.Response:
        report = ParamValidator().validate({**body, "modelId": model_id}, INPUT_SHAPES["count-tokens"])
        if report.has_errors():
            return self._error(400, "ValidationException", report.generate_report())
        counted = body["input"]
        if "invokeModel" in counted:
            try:
                invoked = orjson.loads(base64.b64decode(counted["invokeModel"]["body"], validate=True))
                check_invoke_body(invoked, streaming=False)
            except (ValueError, Invalid) as exc:
                return self._error(400, "ValidationException", f"invokeModel.body: {exc}")
            counted = invoked
        return web.json_response({"inputTokens": count_of(counted)})

    async def invoke(
        self, request: web.Request, model_id: str, body: dict[str, Any], streaming: bool
    ) -> web.StreamResponse:
        try:
            check_invoke_body(body, streaming=streaming)
            message = claude_answer(model_id, {**body, "model": model_id})
        except Invalid as exc:
            return self._error(400, "ValidationException", str(exc))
        except Rejected as exc:
            return self._error(400, "ValidationException", str(exc))
        if model_id.endswith("-throttle"):
            return self._error(429, "ThrottlingException", "Too many requests, please wait before trying again.")
        if model_id.endswith("-unavailable"):
            return self._error(503, "ServiceUnavailableException", "Bedrock is unable to process your request.")
        headers = {"x-amzn-RequestId": "req-fake-invoke"}
        if not streaming:
            return web.Response(content_type="application/json", headers=headers, body=orjson.dumps(message))
        response = web.StreamResponse(headers={"Content-Type": "application/vnd.amazon.eventstream", **headers})
        await response.prepare(request)
        for sse_event in claude_stream_events(message):
            data = sse_event.split(b"\ndata: ", 1)[1].rstrip(b"\n")
            await response.write(event("chunk", {"bytes": base64.b64encode(data).decode()}))
        await response.write_eof()
        return response

    def answer(self, model_id: str, body: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
        tool_config = body.get("toolConfig") or {}
        tools = [t["toolSpec"] for t in tool_config.get("tools", []) if "toolSpec" in t]
        choice = tool_config.get("toolChoice") or {}
        forced = choice.get("tool", {}).get("name") or (tools[0]["name"] if "any" in choice and tools else None)
        if forced is None and model_id.endswith("-tool") and tools:
            forced = tools[0]["name"]
        if forced is not None:
            tool_input = {"answer": 42} if forced == "agentgateway_json_output" else {"city": "Paris"}
            call = {"toolUse": {"toolUseId": "tooluse_fake1", "name": forced, "input": tool_input}}
            # Claude writes no text before a call that toolChoice forces (tool or any), only when it chose to call.
            text = [] if "tool" in choice or "any" in choice else [{"text": "Let me check."}]
            return [*text, call], "tool_use"
        if "outputConfig" in body:
            return [{"text": '{"answer": 42}'}], "end_turn"
        blocks: list[dict[str, Any]] = []
        if model_id.endswith("-reasoning"):
            blocks.append({"reasoningContent": {"reasoningText": {"text": "2 and 2 is 4.", "signature": "sig-abc=="}}})
        blocks.append({"text": "Hello from Bedrock"})
        stop = "end_turn"
        if model_id.endswith("-length"):
            stop = "max_tokens"
        elif model_id.endswith("-guardrail"):
            stop = "guardrail_intervened"
        return blocks, stop

    async def stream(
        self,
        request: web.Request,
        model_id: str,
        blocks: list[dict[str, Any]],
        stop_reason: str,
        fields: dict[str, Any] | None = None,
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "application/vnd.amazon.eventstream", "x-amzn-RequestId": "req-fake-stream"}
        )
        await response.prepare(request)
        if model_id.endswith("-first-exception"):
            await response.write(exception("serviceUnavailableException", "Bedrock is unable to process your request."))
            await response.write_eof()
            return response
        if model_id.endswith("-stream-fixture"):
            await response.write((FIXTURES / "bedrock" / "stream_exception_model_stream_error.bin").read_bytes())
            await response.write_eof()
            return response
        out = [event("messageStart", {"role": "assistant"})]
        for index, block in enumerate(blocks):
            if "text" in block:
                text = block["text"]
                for start in range(0, len(text), 6):
                    out.append(
                        event(
                            "contentBlockDelta",
                            {"contentBlockIndex": index, "delta": {"text": text[start : start + 6]}},
                        )
                    )
            elif "toolUse" in block:
                tool = block["toolUse"]
                out.append(
                    event(
                        "contentBlockStart",
                        {
                            "contentBlockIndex": index,
                            "start": {"toolUse": {"toolUseId": tool["toolUseId"], "name": tool["name"]}},
                        },
                    )
                )
                arguments = orjson.dumps(tool["input"]).decode()
                for start in range(0, len(arguments), 5):
                    out.append(
                        event(
                            "contentBlockDelta",
                            {"contentBlockIndex": index, "delta": {"toolUse": {"input": arguments[start : start + 5]}}},
                        )
                    )
            elif "reasoningContent" in block:
                reasoning = block["reasoningContent"]["reasoningText"]
                out.append(
                    event(
                        "contentBlockDelta",
                        {"contentBlockIndex": index, "delta": {"reasoningContent": {"text": reasoning["text"][:4]}}},
                    )
                )
                out.append(
                    event(
                        "contentBlockDelta",
                        {"contentBlockIndex": index, "delta": {"reasoningContent": {"text": reasoning["text"][4:]}}},
                    )
                )
                out.append(
                    event(
                        "contentBlockDelta",
                        {
                            "contentBlockIndex": index,
                            "delta": {"reasoningContent": {"signature": reasoning["signature"]}},
                        },
                    )
                )
            out.append(event("contentBlockStop", {"contentBlockIndex": index}))
            if model_id.endswith("-throttle-midstream"):
                out.append(exception("throttlingException", "Too many tokens, please wait before trying again."))
                break
        else:
            stop: dict[str, Any] = {"stopReason": stop_reason}
            if fields:
                stop["additionalModelResponseFields"] = fields
            out.append(event("messageStop", stop))
            out.append(event("metadata", {"usage": USAGE, "metrics": {"latencyMs": 42}}))
        data = b"".join(out)
        if model_id.endswith("-corrupt"):
            data = data[:-1] + bytes([data[-1] ^ 0xFF])
        if model_id.endswith("-cut"):
            data = data[:-7]
        if model_id.endswith("-split"):
            for start in range(0, len(data), 7):
                await response.write(data[start : start + 7])
                await asyncio.sleep(0)
        else:
            await response.write(data)
        await response.write_eof()
        return response


def start_fake_bedrock(**kwargs: Any) -> tuple[FakeBedrock, Callable[[], None]]:
    """Serves the fake on 127.0.0.1 (a free port) from a daemon thread."""
    fake = FakeBedrock(**kwargs)
    app = web.Application(handler_args={"lingering_time": 0})
    # Matched on the raw path in the handler: a model id may hold an encoded '/' (ARNs).
    app.router.add_post("/model/{tail:.*}", fake.handle)
    fake.base_url, stop = serve_in_thread(app, "fake-bedrock")
    return fake, stop
