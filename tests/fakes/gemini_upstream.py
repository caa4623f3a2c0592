"""A fake Gemini API and Vertex AI (Google and Anthropic publishers), plus Google's token endpoint and metadata
server, checking what the gateway sends and answering in the exact wire format.

Every ``generateContent`` body is validated with the ``google-genai`` package's own types (its pydantic models
forbid unknown fields) and with the API rules the types cannot express: roles ``user``/``model`` and no two turns
of one role in a row (stricter than the API, to pin the gateway's merging), function responses right after the
turn that called and naming its functions, and -- for ``gemini-3*`` models, like Gemini 3 -- every ``functionCall``
that the fake signed coming back with its exact ``thoughtSignature`` (400 otherwise). Claude bodies on Vertex
(``:rawPredict``) are validated with the ``anthropic`` package's types, with no ``model`` and
``anthropic_version: vertex-2023-10-16``.

Auth: the Gemini API wants ``x-goog-api-key``; Vertex wants a Bearer token that the fake token endpoint issued and
that has not expired (or the express-mode API key). The token endpoint verifies the RS256 JWT assertion's
signature with the service account's public key and its claims, or an authorized_user refresh token; the
metadata server wants ``Metadata-Flavor: Google``. Token lifetimes are settable to test renewal.

Behaviour by model name (Gemini):
- ``*-tool``      two parallel ``functionCall`` parts (``gemini-3*``: the first signed) unless the last turn holds
                  function responses: then text about them
- ``*-think``     thought parts (when ``includeThoughts``) then the answer; signature on the last text part
- ``*-json``      a JSON text (``responseMimeType: application/json`` required)
- ``*-429``       429 RESOURCE_EXHAUSTED with ``RetryInfo`` (vercel/ai's capture), no Retry-After header
- ``*-blocked``   a prompt blocked by ``promptFeedback`` (vercel/ai's capture)
- ``*-safety`` / ``*-max``  finishReason SAFETY / MAX_TOKENS
- ``*-midstream-error``  text, then an error JSON event in the stream
- ``*-bare-error`` text, then a 429 RESOURCE_EXHAUSTED error as Google ends a failing stream: the JSON object
                  pretty-printed over several lines, bare (no ``data:``), then EOF
- ``*-error-200`` (not streamed) an error body with HTTP 200
- ``*-truncated`` a stream that ends without a finishReason
- ``*-garbage``   a stream whose second event is not JSON (an HTML error page from a proxy), then more text
- ``*-reset``     a stream whose connection is reset after its first event
- ``*-stall``     a stream that goes silent after its first event until the gateway hangs up (30 s at most)
- ``*-503``       503 UNAVAILABLE (plain and streamed)
- ``*-first-error``  a stream whose FIRST event is an error JSON event (HTTP 200)
- ``*-fixture``   streams ``tests/data/fixtures/gemini/stream_text_thought_signature.sse`` as recorded
- ``candidateCount`` N > 1: N candidates (indexes 0..N-1) in every chunk, candidate i's texts ending `` #i``
- otherwise       "You said: <last user text>"
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from google.genai import types
from google.genai._common import BaseModel as GenaiModel
from pydantic import BaseModel as PydanticModel
from pydantic import ConfigDict, ValidationError

from .anthropic_upstream import (
    _CLASSIC_API_FIELDS,
    _NON_STREAMING,
    _STREAMING,
    Rejected,
    _consume,
    check_count_tokens,
    check_rules,
    count_of,
)
from .anthropic_upstream import answer as claude_answer
from .anthropic_upstream import error_response as claude_error
from .anthropic_upstream import stream as claude_stream
from .embedding_vectors import fake_vector, token_count
from .server import serve_in_thread, stream_in_pieces

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "fixtures" / "gemini" / "stream_text_thought_signature.sse"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
USAGE = {
    "promptTokenCount": 21,
    "candidatesTokenCount": 9,
    "thoughtsTokenCount": 4,
    "cachedContentTokenCount": 5,
    "totalTokenCount": 34,
}
RETRY_INFO_429 = {
    "error": {
        "code": 429,
        "message": "You exceeded your current quota, please check your plan.",
        "status": "RESOURCE_EXHAUSTED",
        "details": [
            {
                "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                "violations": [{"quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"}],
            },
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "34.4s"},
        ],
    }
}
MISSING_SIGNATURE = (
    "Function call is missing a thought_signature in functionCall parts. This is required for tools to work "
    "correctly, and missing thought_signature may lead to degraded model performance. Additional data, function "
    "call `default_api:{name}` , position {position}. Please refer to "
    "https://ai.google.dev/gemini-api/docs/thought-signatures for more details."
)


class WireRequest(GenaiModel):
    """The ``generateContent`` request body (google-genai has types for its parts, not for the whole body)."""

    contents: list[types.Content]
    system_instruction: types.Content | None = None
    tools: list[types.Tool] | None = None
    tool_config: types.ToolConfig | None = None
    generation_config: types.GenerationConfig | None = None
    safety_settings: list[types.SafetySetting] | None = None
    cached_content: str | None = None


#: How Google ends a stream that fails after its 200 (googleapis/python-genai issue 1162): the error object
#: pretty-printed, outside any SSE field, CRLF line ends as in Google's SSE.
BARE_ERROR_429 = (
    orjson.dumps(
        {
            "error": {
                "code": 429,
                "message": "Resource has been exhausted (e.g. check quota).",
                "status": "RESOURCE_EXHAUSTED",
            }
        },
        option=orjson.OPT_INDENT_2,
    ).replace(b"\n", b"\r\n")
    + b"\r\n"
)


def signature_for(part: dict[str, Any]) -> str:
    """The signature the fake gives a part: bound to its content, so a signature moved elsewhere is refused."""
    digest = hashlib.sha256(orjson.dumps(part, option=orjson.OPT_SORT_KEYS)).digest()
    return base64.b64encode(b"sig:" + digest).decode()


class GoogleRejected(Exception):
    def __init__(self, message: str, status: int = 400, name: str = "INVALID_ARGUMENT") -> None:
        super().__init__(message)
        self.status = status
        self.name = name


def google_error(status: int, name: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": status, "message": message, "status": name}}, status=status)


@dataclass
class Recorded:
    path: str
    query: str
    headers: dict[str, str]
    body: Any


@dataclass
class Account:
    """The service account, authorized user and metadata identity the token endpoint knows."""

    key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    client_email: str = "gateway@test-project.iam.gserviceaccount.com"
    client_id: str = "client-id-123.apps.googleusercontent.com"
    client_secret: str = "client-secret-xyz"
    refresh_token: str = "1//refresh-token-abc"


@dataclass
class FakeGoogle:
    api_key: str
    origin: str = ""
    account: Account = field(default_factory=Account)
    requests: list[Recorded] = field(default_factory=list)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    metadata_requests: list[str] = field(default_factory=list)
    tokens: dict[str, float] = field(default_factory=dict)  # token -> expiry (time.time())
    token_lifetime: int = 3600
    token_delay: float = 0.0
    revoked: set[str] = field(default_factory=set)

    def last(self) -> Recorded:
        return self.requests[-1]

    def count(self, model: str) -> int:
        """How many generateContent requests arrived for ``model``: the attempts the gateway made there."""
        return sum(1 for recorded in self.requests if recorded.path.rsplit("/", 1)[-1].partition(":")[0] == model)

    @property
    def token_uri(self) -> str:
        return self.origin + "/token"

    # -- generateContent ---------------------------------------------------------------------------------------

    async def gemini(self, request: web.Request) -> web.StreamResponse:
        model, _, method = request.match_info["model_method"].partition(":")
        raw = await request.read()
        self.requests.append(
            Recorded(
                request.path,
                request.query_string,
                {k.lower(): v for k, v in request.headers.items()},
                orjson.loads(raw),
            )
        )
        if request.headers.get("x-goog-api-key") != self.api_key:
            return google_error(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.")
        if method == "batchEmbedContents":
            return batch_embed_contents(model, raw)
        return await self.generate(request, model, method, raw)

    async def vertex(self, request: web.Request) -> web.StreamResponse:
        model, _, method = request.match_info["model_method"].partition(":")
        raw = await request.read()
        self.requests.append(
            Recorded(
                request.path,
                request.query_string,
                {k.lower(): v for k, v in request.headers.items()},
                orjson.loads(raw),
            )
        )
        if not self.authorized(request):
            return google_error(
                401,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or "
                "other valid authentication credential.",
            )
        if request.match_info.get("publisher") == "anthropic":
            return await self.claude(request, model, method, raw)
        if method == "predict":
            return predict_embeddings(model, raw)
        return await self.generate(request, model, method, raw)

    def authorized(self, request: web.Request) -> bool:
        if "project" not in request.match_info:  # express mode
            return request.headers.get("x-goog-api-key") == self.api_key
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        expiry = self.tokens.get(token)
        return scheme == "Bearer" and expiry is not None and expiry > time.time() and token not in self.revoked

    async def generate(self, request: web.Request, model: str, method: str, raw: bytes) -> web.StreamResponse:
        if method == "countTokens":
            return self.count_tokens(request, raw)
        streaming = method == "streamGenerateContent"
        if method not in ("generateContent", "streamGenerateContent"):
            return google_error(404, "NOT_FOUND", f"Method {method} not found.")
        if streaming and request.query.get("alt") != "sse":
            return google_error(400, "INVALID_ARGUMENT", "this fake answers streams as SSE only (alt=sse)")
        if request.headers.get("content-type") != "application/json":
            return google_error(400, "INVALID_ARGUMENT", "content-type must be application/json")
        try:
            WireRequest.model_validate_json(raw)
            body = orjson.loads(raw)
            check_rules_gemini(model, body)
        except ValidationError as exc:
            return google_error(400, "INVALID_ARGUMENT", f"Invalid JSON payload received. {exc}")
        except GoogleRejected as exc:
            return google_error(exc.status, exc.name, str(exc))
        if model.endswith("-429"):
            return web.json_response(RETRY_INFO_429, status=429)
        if model.endswith("-503"):
            return google_error(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")
        if model.endswith("-error-200") and not streaming:
            error = {"code": 503, "message": "The service is currently unavailable.", "status": "UNAVAILABLE"}
            return web.json_response({"error": error})  # an error body with a success status
        if model.endswith("-fixture") and streaming:
            return await replay(request)
        if model.endswith("-blocked"):
            chunks = [
                {
                    "promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
                    "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9},
                    "modelVersion": model,
                    "responseId": "blocked-1",
                }
            ]
        else:
            try:
                chunks = answer_chunks(model, body)
            except GoogleRejected as exc:
                return google_error(exc.status, exc.name, str(exc))
        if not streaming:
            return web.json_response(merge_chunks(chunks))
        response = web.StreamResponse(headers={"content-type": "text/event-stream", "x-request-id": "g-stream"})
        await response.prepare(request)
        for index, chunk in enumerate(chunks):
            if model.endswith("-first-error"):
                error = {"code": 503, "message": "The model is overloaded. Try again later.", "status": "UNAVAILABLE"}
                await response.write(b"data: " + orjson.dumps({"error": error}) + b"\r\n\r\n")
                break
            if model.endswith("-midstream-error") and index == 1:
                await response.write(
                    b"data: "
                    + orjson.dumps(
                        {
                            "error": {
                                "code": 503,
                                "message": "The model is overloaded. Please try again later.",
                                "status": "UNAVAILABLE",
                            }
                        }
                    )
                    + b"\r\n\r\n"
                )
                break
            if model.endswith("-bare-error") and index == 1:
                await response.write(BARE_ERROR_429)
                break
            if model.endswith("-truncated") and "finishReason" in chunk["candidates"][0]:
                break
            if index == 1 and model.endswith("-garbage"):
                await response.write(b"data: <html>502 Bad Gateway</html>\r\n\r\n")
                await response.write(b"data: " + orjson.dumps(chunk) + b"\r\n\r\n")
                return response
            if index == 1 and model.endswith("-reset"):
                assert request.transport is not None
                request.transport.abort()
                return response
            if index == 1 and model.endswith("-stall"):
                await asyncio.sleep(30)  # cancelled when the gateway closes the connection (handler_cancellation)
            await response.write(b"data: " + orjson.dumps(chunk) + b"\r\n\r\n")
            await asyncio.sleep(0)
        await response.write_eof()
        return response

    def count_tokens(self, request: web.Request, raw: bytes) -> web.Response:
        """``:countTokens``: the Gemini API takes ``{"generateContentRequest": {"model", ...}}``, Vertex AI the
        ``contents`` / ``systemInstruction`` / ``tools`` at the top; both validated as generateContent bodies."""
        body = orjson.loads(raw)
        inner = body.get("generateContentRequest") if "project" not in request.match_info else body
        try:
            if not isinstance(inner, dict):
                raise GoogleRejected("countTokens: generateContentRequest is required on the Gemini API")
            if "project" not in request.match_info and not str(inner.pop("model", "")).startswith("models/"):
                raise GoogleRejected("generateContentRequest.model must be models/<id>")
            WireRequest.model_validate(inner)
        except ValidationError as exc:
            return google_error(400, "INVALID_ARGUMENT", f"Invalid JSON payload received. {exc}")
        except GoogleRejected as exc:
            return google_error(exc.status, exc.name, str(exc))
        return web.json_response({"totalTokens": max(1, len(orjson.dumps(inner)) // 4)})

    async def claude(self, request: web.Request, model: str, method: str, raw: bytes) -> web.StreamResponse:
        body = orjson.loads(raw)
        if model == "count-tokens" and method == "rawPredict":  # Claude's token counting on Vertex AI
            try:
                if body.pop("anthropic_version", None) != "vertex-2023-10-16":
                    raise Rejected("anthropic_version: must be vertex-2023-10-16")
                check_count_tokens(body)
            except Rejected as exc:
                return claude_error(exc.status, exc.kind, str(exc))
            return web.json_response({"input_tokens": count_of(body)})
        try:
            if method not in ("rawPredict", "streamRawPredict"):
                raise Rejected(f"unknown method {method}", 404, "not_found_error")
            if "model" in body:
                raise Rejected("model: Extra inputs are not permitted (the model is in the URL on Vertex AI)")
            if body.get("anthropic_version") != "vertex-2023-10-16":
                raise Rejected("anthropic_version: must be vertex-2023-10-16")
            if bool(body.get("stream")) != (method == "streamRawPredict"):
                raise Rejected("stream must be true on streamRawPredict and absent on rawPredict")
            typed = {k: v for k, v in body.items() if k != "anthropic_version"}
            unknown = set(typed) - _CLASSIC_API_FIELDS
            if unknown:
                raise Rejected(f"{sorted(unknown)}: Extra inputs are not permitted")
            sampling = {k: typed.pop(k) for k in ("temperature", "top_p", "top_k") if k in typed}
            if not all(isinstance(v, (int, float)) for v in sampling.values()):
                raise Rejected("sampling parameters must be numbers")
            try:
                _consume(
                    (_STREAMING if body.get("stream") else _NON_STREAMING).validate_python({**typed, "model": model})
                )
            except ValidationError as exc:
                raise Rejected(f"invalid request body: {exc}") from None
            check_rules(body)
            message = claude_answer(model, {**body, "model": model})
        except Rejected as exc:
            return claude_error(exc.status, exc.kind, str(exc))
        if model.endswith("-429"):
            return claude_error(
                429, "rate_limit_error", "Number of requests has exceeded your rate limit", {"retry-after": "7"}
            )
        if body.get("stream"):
            return await claude_stream(request, message, fault=model.rpartition("-")[2])
        return web.json_response(message)

    # -- OAuth2 token endpoint and metadata server ------------------------------------------------------------

    def issue(self) -> dict[str, Any]:
        token = f"ya29.fake-{len(self.tokens) + 1}-{time.time_ns()}"
        self.tokens[token] = time.time() + self.token_lifetime
        return {"access_token": token, "expires_in": self.token_lifetime, "token_type": "Bearer"}

    async def token(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        self.token_requests.append({k: str(v) for k, v in form.items()})
        if self.token_delay:
            await asyncio.sleep(self.token_delay)
        grant = form.get("grant_type")
        if grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            problem = self.check_assertion(str(form.get("assertion", "")))
        elif grant == "refresh_token":
            account = self.account
            ok = (form.get("client_id"), form.get("client_secret"), form.get("refresh_token")) == (
                account.client_id,
                account.client_secret,
                account.refresh_token,
            )
            problem = None if ok else "Bad Request"
        else:
            problem = f"unsupported grant_type {grant!r}"
        if problem is not None:
            return web.json_response({"error": "invalid_grant", "error_description": problem}, status=400)
        return web.json_response(self.issue())

    def check_assertion(self, assertion: str) -> str | None:
        """None when the JWT is signed by the service account's key with the right claims, else what is wrong."""
        try:
            header_b64, claims_b64, signature_b64 = assertion.split(".")
            header = orjson.loads(_b64url(header_b64))
            claims = orjson.loads(_b64url(claims_b64))
            signature = _b64url(signature_b64)
        except (ValueError, orjson.JSONDecodeError):
            return "Invalid JWT: not a JWS compact serialization"
        if header.get("alg") != "RS256":
            return f"Invalid JWT: alg {header.get('alg')!r}"
        try:
            self.account.key.public_key().verify(
                signature, f"{header_b64}.{claims_b64}".encode(), padding.PKCS1v15(), hashes.SHA256()
            )
        except Exception:
            return "Invalid JWT Signature."
        now = time.time()
        if claims.get("iss") != self.account.client_email:
            return "Invalid JWT: iss"
        # google-auth signs for Google's token endpoint whatever the file's token_uri (which it POSTs to); Google
        # accepts both audiences.
        if claims.get("aud") not in (self.token_uri, GOOGLE_TOKEN_URI):
            return f"Invalid JWT: aud {claims.get('aud')!r}"
        if CLOUD_PLATFORM not in str(claims.get("scope", "")).split():
            return "Invalid JWT: scope"
        iat, exp = claims.get("iat"), claims.get("exp")
        if not isinstance(iat, int) or not isinstance(exp, int) or not iat - 300 <= now <= exp or exp - iat > 3600:
            return "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe."
        return None

    async def metadata(self, request: web.Request) -> web.Response:
        self.metadata_requests.append(request.path_qs)
        headers = {"Metadata-Flavor": "Google"}
        if request.headers.get("Metadata-Flavor") != "Google":
            return web.Response(status=403, text="Missing Metadata-Flavor header", headers=headers)
        path = request.path.removeprefix("/computeMetadata/v1/")
        if path == "instance/service-accounts/default/":
            return web.json_response(
                {"email": self.account.client_email, "scopes": [CLOUD_PLATFORM], "aliases": ["default"]},
                headers=headers,
            )
        if path == "instance/service-accounts/default/token":
            return web.json_response(self.issue(), headers=headers)
        if path == "universe/universe-domain":
            return web.Response(text="googleapis.com", headers=headers)
        if path == "project/project-id":
            return web.Response(text="test-project", headers=headers)
        return web.Response(status=404, text="not found", headers=headers)

    async def metadata_ping(self, request: web.Request) -> web.Response:
        return web.Response(text="", headers={"Metadata-Flavor": "Google"})

    def service_account_info(self) -> dict[str, str]:
        from cryptography.hazmat.primitives import serialization

        pem = self.account.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        return {
            "type": "service_account",
            "project_id": "test-project",
            "private_key_id": "key-1",
            "private_key": pem,
            "client_email": self.account.client_email,
            "client_id": "1234567890",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": self.token_uri,
        }

    def authorized_user_info(self) -> dict[str, str]:
        return {
            "type": "authorized_user",
            "client_id": self.account.client_id,
            "client_secret": self.account.client_secret,
            "refresh_token": self.account.refresh_token,
            "token_uri": self.token_uri,
        }


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def check_rules_gemini(model: str, body: dict[str, Any]) -> None:
    """The generateContent rules that the types do not express (see the module docs)."""
    contents = body["contents"]
    if not contents:
        raise GoogleRejected("* GenerateContentRequest.contents: contents is not specified")
    signed = model.startswith("gemini-3")
    for index, content in enumerate(contents):
        role = content.get("role")
        if role not in ("user", "model"):
            raise GoogleRejected(f"Please use a valid role: user, model. (contents[{index}].role = {role!r})")
        if index and role == contents[index - 1]["role"]:
            raise GoogleRejected(f"contents[{index}]: two {role} turns in a row (the gateway must merge them)")
        if not content.get("parts"):
            raise GoogleRejected(f"* GenerateContentRequest.contents[{index}].parts: contents.parts must not be empty.")
        calls = [p for p in content["parts"] if "functionCall" in p]
        responses = [p["functionResponse"] for p in content["parts"] if "functionResponse" in p]
        if responses:
            previous = contents[index - 1] if index else {"parts": []}
            called = [p["functionCall"]["name"] for p in previous["parts"] if "functionCall" in p]
            if sorted(called) != sorted(r["name"] for r in responses):
                raise GoogleRejected(
                    "Please ensure that the number of function response parts is equal to the number of function "
                    "call parts of the function call turn."
                )
        if signed and calls:
            first = calls[0]
            expected = signature_for(first["functionCall"] | {"id": None})
            if first.get("thoughtSignature") != expected:
                position = content["parts"].index(first) + 1
                raise GoogleRejected(MISSING_SIGNATURE.format(name=first["functionCall"]["name"], position=position))
        for part in content["parts"]:
            if (
                "text" in part
                and part.get("thought")
                and signed
                and part.get("thoughtSignature") not in (None, signature_for({"thought": part["text"]}))
            ):
                raise GoogleRejected(f"contents[{index}]: Corrupted thought signature.")
    for tool in body.get("tools", []):
        for declaration in tool.get("functionDeclarations", []):
            if "parameters" in declaration and "parametersJsonSchema" in declaration:
                raise GoogleRejected("parameters and parametersJsonSchema are mutually exclusive")


def last_user_text(body: dict[str, Any]) -> str:
    for content in reversed(body["contents"]):
        texts = [p["text"] for p in content["parts"] if "text" in p and not p.get("thought")]
        if content["role"] == "user" and texts:
            return " ".join(texts)
    return ""


def answer_chunks(model: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The answer as the stream chunks Gemini would send (a whole answer merges them)."""
    config = body.get("generationConfig", {})
    parts_per_chunk: list[list[dict[str, Any]]] = []
    finish = "STOP"
    signed = model.startswith("gemini-3")
    last = body["contents"][-1]
    results = [p["functionResponse"] for p in last["parts"] if "functionResponse" in p]
    if "-think" in model and config.get("thinkingConfig", {}).get("includeThoughts"):
        thought = f"The user sent {len(body['contents'])} turns; answer briefly."
        parts_per_chunk.append([{"text": thought[:12], "thought": True}])
        parts_per_chunk.append(
            [{"text": thought[12:], "thought": True, "thoughtSignature": signature_for({"thought": thought})}]
        )
    if "-tool" in model and not results:
        tool = body["tools"][0]["functionDeclarations"][0]["name"]
        first: dict[str, Any] = {"functionCall": {"name": tool, "args": {"city": "Paris"}}}
        if signed:
            first["thoughtSignature"] = signature_for(first["functionCall"] | {"id": None})
        second = {"functionCall": {"name": tool, "args": {"city": "Tokyo", "n": [1, 2]}}}
        parts_per_chunk.append([first, second])
        parts_per_chunk.append([{"text": ""}])
    elif results:
        summary = "; ".join(f"{r['name']}={orjson.dumps(r['response']).decode()}" for r in results)
        parts_per_chunk.append([{"text": f"Tool results: {summary}"}])
    elif model.endswith("-json"):
        if config.get("responseMimeType") != "application/json":
            raise GoogleRejected("the -json model needs responseMimeType application/json")
        parts_per_chunk.append([{"text": '{"answer": '}])
        parts_per_chunk.append([{"text": "42}"}])
    else:
        text = f"You said: {last_user_text(body)}"
        parts_per_chunk.append([{"text": text[:9]}])
        parts_per_chunk.append([{"text": text[9:]}])
    if "-think" in model:
        parts_per_chunk.append([{"text": "", "thoughtSignature": signature_for({"final": model})}])
    if model.endswith("-max"):
        finish = "MAX_TOKENS"
    elif model.endswith("-safety"):
        finish = "SAFETY"
    chunks = []
    count = config.get("candidateCount", 1)
    # Candidate i > 0 is candidate 0 with " #i" after its last answer text.
    last_text = max(
        (i for i, parts in enumerate(parts_per_chunk) if any(p.get("text") and not p.get("thought") for p in parts)),
        default=-1,
    )
    for index, parts in enumerate(parts_per_chunk):
        candidates = []
        for choice in range(count):
            if choice == 0 or index != last_text:
                choice_parts = [dict(part) for part in parts]
            else:
                choice_parts = [_suffixed(part, f" #{choice}") for part in parts]
            candidate: dict[str, Any] = {"content": {"parts": choice_parts, "role": "model"}, "index": choice}
            candidates.append(candidate)
        is_last = index == len(parts_per_chunk) - 1
        if is_last:
            for candidate in candidates:
                candidate["finishReason"] = finish
        usage = dict(USAGE) if is_last else {"promptTokenCount": USAGE["promptTokenCount"], "totalTokenCount": 21}
        chunks.append(
            {"candidates": candidates, "usageMetadata": usage, "modelVersion": model, "responseId": "resp-gemini-1"}
        )
    return chunks


def _suffixed(part: dict[str, Any], suffix: str) -> dict[str, Any]:
    """A non-empty answer text part of another candidate, told apart by ``suffix``."""
    if part.get("text") and not part.get("thought"):
        return {**part, "text": part["text"] + suffix}
    return dict(part)


def merge_chunks(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """A whole answer: each candidate's parts from the chunks in one candidate (adjacent plain text merged, as
    Gemini does)."""
    if "candidates" not in chunks[0]:
        return chunks[0]
    candidates = []
    for position, first in enumerate(chunks[-1]["candidates"]):
        parts: list[dict[str, Any]] = []
        for chunk in chunks:
            for part in chunk["candidates"][position]["content"]["parts"]:
                previous = parts[-1] if parts else None
                textual = set(part) <= {"text", "thought", "thoughtSignature"}
                if (
                    textual
                    and previous is not None
                    and set(previous) <= {"text", "thought"}
                    and previous.get("thought") == part.get("thought")
                ):
                    previous.update(part, text=previous["text"] + part["text"])
                elif part != {"text": ""}:
                    parts.append(dict(part))
        candidates.append({**first, "content": {"parts": parts, "role": "model"}})
    last = chunks[-1]
    return {
        "candidates": candidates,
        "usageMetadata": last["usageMetadata"],
        "modelVersion": last["modelVersion"],
        "responseId": last["responseId"],
    }


# -- embeddings (issue 19) ----------------------------------------------------------------------------------------


class EmbedRequestWire(GenaiModel):
    """One request of ``batchEmbedContents`` (google-genai builds it in ``_EmbedContentParametersPrivate_to_mldev``:
    ``model``, ``content``, ``taskType``, ``title``, ``outputDimensionality``); google-genai's own types inside."""

    model: str
    content: types.Content
    task_type: str | None = None
    title: str | None = None
    output_dimensionality: int | None = None


class BatchEmbedWire(GenaiModel):
    requests: list[EmbedRequestWire]


class _Strict(PydanticModel):
    model_config = ConfigDict(extra="forbid")


class PredictInstance(_Strict):
    """A Vertex AI text-embedding ``predict`` instance, snake_case on the wire (google-genai's PREDICT mapping)."""

    content: str
    task_type: str | None = None
    title: str | None = None


class PredictParameters(_Strict):
    outputDimensionality: int | None = None  # the wire's names
    autoTruncate: bool | None = None


class PredictWire(_Strict):
    instances: list[PredictInstance]
    parameters: PredictParameters | None = None


def batch_embed_contents(model: str, raw: bytes) -> web.Response:
    """``models/{model}:batchEmbedContents``: at most 100 requests, each naming this model, one text part each;
    ``*-503`` answers 503. The answer is parsed back by google-genai's ``EmbedContentResponse``."""
    try:
        wire = BatchEmbedWire.model_validate_json(raw)
    except ValidationError as exc:
        return google_error(400, "INVALID_ARGUMENT", f"Invalid JSON payload received. {exc}")
    if not 0 < len(wire.requests) <= 100:
        return google_error(400, "INVALID_ARGUMENT", "* BatchEmbedContentsRequest.requests: at most 100 requests")
    if model.endswith("-503"):
        return google_error(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")
    embeddings = []
    for index, one in enumerate(wire.requests):
        if one.model != f"models/{model}":
            return google_error(400, "INVALID_ARGUMENT", f"requests[{index}].model must be models/{model}")
        parts = one.content.parts or []
        if len(parts) != 1 or parts[0].text is None:
            return google_error(400, "INVALID_ARGUMENT", "this fake embeds one text part per request")
        embeddings.append({"values": fake_vector(parts[0].text, one.output_dimensionality or 3072)})
    answer = {"embeddings": embeddings}
    types.EmbedContentResponse.model_validate(answer)
    return web.json_response(answer)


def predict_embeddings(model: str, raw: bytes) -> web.Response:
    """Vertex AI ``predict`` on a text-embedding model: gemini-embedding models take one instance per request (as
    Vertex AI's), the others up to 250."""
    try:
        wire = PredictWire.model_validate_json(raw)
    except ValidationError as exc:
        return google_error(400, "INVALID_ARGUMENT", f"Invalid JSON payload received. {exc}")
    limit = 1 if model.startswith("gemini-embedding") else 250
    if not 0 < len(wire.instances) <= limit:
        return google_error(400, "INVALID_ARGUMENT", f"{model} takes 1 to {limit} instances per request")
    dimensions = wire.parameters.outputDimensionality if wire.parameters is not None else None
    predictions = []
    for instance in wire.instances:
        vector = fake_vector(instance.content, dimensions or 768)
        tokens = token_count(instance.content)
        predictions.append(
            {"embeddings": {"values": vector, "statistics": {"token_count": tokens, "truncated": False}}}
        )
    return web.json_response({"predictions": predictions, "metadata": {"billableCharacterCount": 42}})


async def replay(request: web.Request) -> web.StreamResponse:
    return await stream_in_pieces(request, FIXTURE.read_bytes(), 89)


def start_fake_google(api_key: str) -> tuple[FakeGoogle, Callable[[], None]]:
    fake = FakeGoogle(api_key)
    app = web.Application(handler_args={"lingering_time": 0})
    app.router.add_post("/{version:v1beta|v1}/models/{model_method}", fake.gemini)
    app.router.add_post(
        "/v1/projects/{project}/locations/{region}/publishers/{publisher}/models/{model_method}", fake.vertex
    )
    app.router.add_post("/v1/publishers/{publisher}/models/{model_method}", fake.vertex)
    app.router.add_post("/token", fake.token)
    app.router.add_get("/computeMetadata/v1/{path:.*}", fake.metadata)
    app.router.add_get("/", fake.metadata_ping)
    fake.origin, stop = serve_in_thread(app, "fake-google")
    return fake, stop
