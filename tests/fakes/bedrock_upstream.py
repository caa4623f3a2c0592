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

from .server import serve_in_thread

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures"
_SERVICE_MODEL = get_session().get_service_model("bedrock-runtime")
INPUT_SHAPES = {
    "converse": _SERVICE_MODEL.operation_model("Converse").input_shape,
    "converse-stream": _SERVICE_MODEL.operation_model("ConverseStream").input_shape,
}
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
        if len(segments) != 4 or segments[3] not in INPUT_SHAPES:
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
        if operation == "converse":
            return web.Response(
                content_type="application/json",
                headers={"x-amzn-RequestId": "req-fake-converse"},
                body=orjson.dumps(
                    {
                        "output": {"message": {"role": "assistant", "content": blocks}},
                        "stopReason": stop_reason,
                        "usage": USAGE,
                        "metrics": {"latencyMs": 42},
                    }
                ),
            )
        return await self.stream(request, model_id, blocks, stop_reason)

    def answer(self, model_id: str, body: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
        tool_config = body.get("toolConfig") or {}
        tools = [t["toolSpec"] for t in tool_config.get("tools", []) if "toolSpec" in t]
        choice = tool_config.get("toolChoice") or {}
        forced = choice.get("tool", {}).get("name") or (tools[0]["name"] if "any" in choice and tools else None)
        if forced is None and model_id.endswith("-tool") and tools:
            forced = tools[0]["name"]
        if forced is not None:
            tool_input = {"answer": 42} if forced == "agentgateway_json_output" else {"city": "Paris"}
            return (
                [
                    {"text": "Let me check."},
                    {"toolUse": {"toolUseId": "tooluse_fake1", "name": forced, "input": tool_input}},
                ],
                "tool_use",
            )
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
        self, request: web.Request, model_id: str, blocks: list[dict[str, Any]], stop_reason: str
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
            out.append(event("messageStop", {"stopReason": stop_reason}))
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
