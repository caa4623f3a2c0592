"""Inbound auth (issue 17, OPERATIONS.md section 2): API keys and JWTs, allowedModels, through the real gateway
with the real openai SDK (and ``x-api-key`` as anthropic clients send it)."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import openai
import pytest
from agentgateway.config import load_config
from agentgateway.errors import ConfigError
from conftest import TEST_KEY, RunningGateway, free_port, openai_client, start_gateway
from cryptography.hazmat.primitives.asymmetric import rsa
from fakes.openai_upstream import FakeOpenAI
from jwt.algorithms import RSAAlgorithm

KEY_A = "sk-gw-team-a-0123456789abcdef"
KEY_B = "sk-gw-team-b-fedcba9876543210"
KEY_HASHED = "sk-gw-hashed-only-in-config"
MESSAGES: list[Any] = [{"role": "user", "content": "hi"}]


def _models(upstream: str) -> str:
    return f"""
  models:
  - name: gpt-4o-mini
    provider: openAI
    params: {{apiKey: {TEST_KEY}, baseUrl: {upstream}}}
  - name: "passthrough-*"
    provider: {{custom: {{formats: [{{type: completions}}]}}}}
    params: {{baseUrl: {upstream}}}
  virtualModels:
  - name: team-model
    routing: {{failover: {{targets: [{{model: passthrough-inner}}]}}}}
"""


def _client(gateway: RunningGateway, key: str) -> openai.OpenAI:
    return openai_client(gateway.url, key)


@pytest.fixture(scope="module")
def keyed(fake_openai: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    digest = hashlib.sha256(KEY_HASHED.encode()).hexdigest()
    config = f"""
llm:
{_models(fake_openai.base_url)}
  policies:
    apiKey:
      keys:
      - {{key: {KEY_A}, metadata: {{name: team-a}}}}
      - {{key: {KEY_B}, metadata: {{name: team-b}}, allowedModels: ["gpt-*", team-model]}}
      - {{keyHash: "sha256:{digest}", allowedModels: []}}
"""
    running = start_gateway(config, tmp_path_factory.mktemp("gw-keys"))
    yield running
    running.stop()


def test_a_request_without_a_key_is_refused_with_401_missing_api_key(keyed: RunningGateway) -> None:
    response = httpx.post(keyed.url + "/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": MESSAGES})
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == "missing_api_key"
    assert error["type"] == "authentication_error"
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_a_wrong_key_is_refused_through_the_openai_sdk_and_never_echoed(keyed: RunningGateway) -> None:
    wrong = "sk-not-a-gateway-key-" + "x" * 20
    with pytest.raises(openai.AuthenticationError) as caught:
        _client(keyed, wrong).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert caught.value.status_code == 401
    assert caught.value.code == "invalid_api_key"
    assert wrong not in caught.value.response.text
    assert wrong not in keyed.log()


def test_a_configured_key_passes_as_bearer_and_as_x_api_key(keyed: RunningGateway) -> None:
    completion = _client(keyed, KEY_A).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert completion.choices[0].message.content
    # What anthropic clients send.
    response = httpx.post(
        keyed.url + "/v1/chat/completions",
        headers={"x-api-key": KEY_A},
        json={"model": "gpt-4o-mini", "messages": MESSAGES},
    )
    assert response.status_code == 200, response.text
    assert KEY_A not in keyed.log()


def test_a_key_configured_only_by_its_sha256_hash_passes(keyed: RunningGateway) -> None:
    # allowedModels: [] -- authenticated (403, not 401), and allowed nothing.
    with pytest.raises(openai.PermissionDeniedError) as caught:
        _client(keyed, KEY_HASHED).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert caught.value.code == "model_not_allowed"


def test_a_model_outside_allowed_models_is_a_403_and_a_virtual_model_passes_by_its_name(
    keyed: RunningGateway, fake_openai: FakeOpenAI
) -> None:
    client = _client(keyed, KEY_B)
    with pytest.raises(openai.PermissionDeniedError) as caught:
        client.chat.completions.create(model="passthrough-x", messages=MESSAGES)
    assert caught.value.status_code == 403
    assert caught.value.code == "model_not_allowed"
    assert "passthrough-x" in caught.value.message
    # team-model is allowed by name; its target passthrough-inner is not in the list, and need not be.
    completion = client.chat.completions.create(model="team-model", messages=MESSAGES)
    assert completion.model == "team-model"
    assert fake_openai.last().body["model"] == "passthrough-inner"


def test_models_lists_only_what_the_caller_may_use(keyed: RunningGateway) -> None:
    assert [m.id for m in _client(keyed, KEY_B).models.list()] == ["gpt-4o-mini", "team-model"]
    assert [m.id for m in _client(keyed, KEY_A).models.list()] == ["gpt-4o-mini", "team-model"]
    assert [m.id for m in _client(keyed, KEY_HASHED).models.list()] == []
    with pytest.raises(openai.AuthenticationError):
        _client(keyed, "sk-wrong").models.list()


def test_the_gateway_key_never_reaches_a_provider_without_its_own_key(
    keyed: RunningGateway, fake_openai: FakeOpenAI
) -> None:
    # passthrough-* has no params.apiKey: without inbound auth it forwards the client's Authorization.
    _client(keyed, KEY_A).chat.completions.create(model="passthrough-strip", messages=MESSAGES)
    headers = {name.lower(): value for name, value in fake_openai.last().headers.items()}
    assert "authorization" not in headers
    httpx.post(
        keyed.url + "/v1/chat/completions",
        headers={"x-api-key": KEY_A},
        json={"model": "passthrough-strip", "messages": MESSAGES},
    )
    headers = {name.lower(): value for name, value in fake_openai.last().headers.items()}
    assert "x-api-key" not in headers
    assert "authorization" not in headers
    assert all(KEY_A not in value for value in headers.values())


@pytest.mark.parametrize(
    ("headers", "fragment"),
    [
        ({"authorization": "Basic dXNlcjpwYXNz"}, "must be 'Bearer <key>'"),
        ({"authorization": "Bearer"}, "must be 'Bearer <key>'"),
        ({"authorization": "Bearer " + "k" * 100_000}, "too long"),
        ({"x-api-key": "k" * 5000}, "too long"),
        ({"authorization": "Bearer sk-\u00e9\u00e8-non-ascii".encode().decode("latin-1")}, "not one of this gateway's"),
        ({"authorization": "Bearer a.b.c"}, "not one of this gateway's"),
    ],
)
def test_malformed_credentials_are_a_401_with_a_message(
    keyed: RunningGateway, headers: dict[str, str], fragment: str
) -> None:
    response = httpx.post(
        keyed.url + "/v1/chat/completions",
        headers={name: value.encode("latin-1") for name, value in headers.items()},  # type: ignore[misc]
        json={"model": "gpt-4o-mini", "messages": MESSAGES},
        timeout=30,
    )
    # granian may refuse a 100 KB header itself (431): a refusal either way, never a pass or a 500.
    assert response.status_code in (401, 431), response.text
    if response.status_code == 401:
        error = response.json()["error"]
        assert error["code"] == "invalid_api_key"
        assert fragment in error["message"]
        assert len(response.content) < 1000  # the key is not echoed


@pytest.fixture(scope="module")
def optional(fake_openai: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    config = f"""
llm:
{_models(fake_openai.base_url)}
  policies:
    apiKey:
      mode: optional
      keys: [{{key: {KEY_A}, allowedModels: [gpt-4o-mini]}}]
"""
    running = start_gateway(config, tmp_path_factory.mktemp("gw-optional"))
    yield running
    running.stop()


def test_optional_mode_lets_keyless_requests_in_says_so_at_start_up_and_still_checks_keys(
    optional: RunningGateway,
) -> None:
    response = httpx.post(optional.url + "/v1/chat/completions", json={"model": "passthrough-x", "messages": MESSAGES})
    assert response.status_code == 200
    with pytest.raises(openai.AuthenticationError):
        _client(optional, "sk-wrong").chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    with pytest.raises(openai.PermissionDeniedError):
        _client(optional, KEY_A).chat.completions.create(model="passthrough-x", messages=MESSAGES)
    assert "mode is optional: requests without credentials are let in" in optional.log()


def test_permissive_mode_lets_an_invalid_key_in(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    config = f"""
llm:
{_models(fake_openai.base_url)}
  policies:
    apiKey: {{mode: permissive, keys: [{{key: {KEY_A}}}]}}
"""
    running = start_gateway(config, tmp_path)
    try:
        completion = _client(running, "sk-wrong").chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert completion.choices
    finally:
        running.stop()


# -- config errors ----------------------------------------------------------------------------------------------


def _policies_config(policies: str) -> str:
    return f"""llm:
  models:
  - {{name: m, provider: openAI}}
  policies:
{policies}
"""


def test_a_malformed_key_hash_is_a_config_error_with_its_line_and_path() -> None:
    text = _policies_config("    apiKey:\n      keys:\n      - keyHash: 'sha256:abc'\n")
    with pytest.raises(ConfigError) as caught:
        load_config(text, "c.yaml")
    assert "c.yaml:7: llm.policies.apiKey.keys[0].keyHash: must be 'sha256:'" in str(caught.value)


def test_a_duplicated_key_is_a_config_error_even_when_once_given_as_its_hash() -> None:
    digest = hashlib.sha256(b"sk-same").hexdigest()
    text = _policies_config(f"    apiKey:\n      keys:\n      - key: sk-same\n      - keyHash: 'sha256:{digest}'\n")
    with pytest.raises(ConfigError) as caught:
        load_config(text, "c.yaml")
    assert "c.yaml:6: llm.policies.apiKey: keys[1] is the same key as keys[0]" in str(caught.value)


def test_a_key_entry_needs_exactly_one_of_key_or_key_hash() -> None:
    with pytest.raises(ConfigError, match="give exactly one of 'key' or 'keyHash'"):
        load_config(_policies_config("    apiKey:\n      keys:\n      - metadata: {name: x}\n"))


def test_keys_are_strict_by_default() -> None:
    config = load_config(_policies_config("    apiKey:\n      keys: [{key: sk-1}]\n"))
    assert config.llm.policies.api_key is not None
    assert config.llm.policies.api_key.mode == "strict"


# -- JWT ----------------------------------------------------------------------------------------------------------

_PRIVATE = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_OTHER = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ISSUER = "https://idp.example.test"
AUDIENCE = "llm-gateway"


def _jwks(kid: str = "k1") -> str:
    jwk = json.loads(RSAAlgorithm.to_jwk(_PRIVATE.public_key()))
    jwk.update(kid=kid, alg="RS256", use="sig")
    return json.dumps({"keys": [jwk]})


def _token(key: Any = _PRIVATE, kid: str = "k1", **claims: Any) -> str:
    payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "exp": int(time.time()) + 600, **claims}
    payload = {name: value for name, value in payload.items() if value is not None}
    return jwt.encode(payload, key, algorithm="RS256", headers={"kid": kid})


class _JwksServer:
    def __init__(self, body: str) -> None:
        body_bytes = body.encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body_bytes)))
                self.end_headers()
                self.wfile.write(body_bytes)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _jwt_config(upstream: str, jwks: str) -> str:
    return f"""
llm:
{_models(upstream)}
  policies:
    jwtAuth:
      issuer: {ISSUER}
      audiences: [{AUDIENCE}]
      jwks: {jwks}
"""


@pytest.fixture(scope="module")
def jwt_gateway(fake_openai: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    directory = tmp_path_factory.mktemp("gw-jwt")
    (directory / "jwks.json").write_text(_jwks())
    running = start_gateway(_jwt_config(fake_openai.base_url, f"{{file: {directory / 'jwks.json'}}}"), directory)
    yield running
    running.stop()


def test_a_valid_jwt_passes_through_the_openai_sdk(jwt_gateway: RunningGateway) -> None:
    completion = _client(jwt_gateway, _token()).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert completion.choices[0].message.content


@pytest.mark.parametrize(
    ("token", "fragment"),
    [
        (_token(exp=int(time.time()) - 60), "expired"),
        (_token(aud="someone-else"), "audience"),
        (_token(iss="https://evil.example"), "issuer"),
        (_token(exp=None), "required claim 'exp'"),
        (_token(key=_OTHER), "signature"),
        (_token(kid="unknown"), "kid"),
        (jwt.encode({"sub": "alice", "aud": AUDIENCE, "iss": ISSUER, "exp": 2**40}, None, algorithm="none"), "none"),
        (
            # The RSA public key used as an HMAC secret (the classic algorithm confusion): refused.
            jwt.encode(
                {"sub": "a", "aud": AUDIENCE, "iss": ISSUER, "exp": 2**40},
                "k" * 32,
                algorithm="HS256",
                headers={"kid": "k1"},
            ),
            "algorithm",
        ),
        ("eyJhbGciOiJSUzI1NiJ9.not-base64!.x", "well-formed"),
    ],
    ids=["expired", "audience", "issuer", "no-exp", "other-key", "unknown-kid", "alg-none", "hs256", "garbage"],
)
def test_a_bad_jwt_is_a_401_that_says_why(jwt_gateway: RunningGateway, token: str, fragment: str) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        _client(jwt_gateway, token).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert caught.value.code == "invalid_api_key"
    assert fragment in caught.value.message
    assert token not in caught.value.response.text


def test_jwks_from_a_url_is_fetched_and_a_url_that_is_down_is_a_401(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    server = _JwksServer(_jwks())
    running = start_gateway(_jwt_config(fake_openai.base_url, f"{{url: '{server.url}'}}"), tmp_path)
    try:
        completion = _client(running, _token()).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert completion.choices
    finally:
        running.stop()
        server.close()
    down = f"http://127.0.0.1:{free_port()}/jwks.json"
    running = start_gateway(_jwt_config(fake_openai.base_url, f"{{url: '{down}'}}"), tmp_path)
    try:
        with pytest.raises(openai.AuthenticationError) as caught:
            _client(running, _token()).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert "could not be fetched" in caught.value.message
    finally:
        running.stop()


def test_an_empty_jwks_loads_is_named_at_start_up_and_refuses_every_token(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    """agentgateway's own example configs write ``jwks: '{"keys":[]}'``: it loads, fail-closed."""
    config = _jwt_config(fake_openai.base_url, """'{"keys":[]}'""")
    notices = [line for line in load_config(config, "c.yaml").unserved if "jwks" in line]
    line = config.splitlines().index(next(x for x in config.splitlines() if "jwks:" in x)) + 1
    assert notices == [f"c.yaml:{line}: llm.policies.jwtAuth.jwks: has no keys: every bearer token is refused (401)"]
    running = start_gateway(config, tmp_path)
    try:
        with pytest.raises(openai.AuthenticationError) as caught:
            _client(running, _token()).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert caught.value.status_code == 401
    finally:
        running.stop()


def test_an_inline_jwks_that_is_not_one_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"llm\.policies\.jwtAuth\.jwks.*not JSON"):
        load_config(_policies_config("    jwtAuth:\n      jwks: 'not json'\n"))
    with pytest.raises(ConfigError, match="cannot read the JWKS file"):
        load_config(_policies_config("    jwtAuth:\n      jwks: {file: /nonexistent/jwks.json}\n"))
