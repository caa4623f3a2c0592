"""Upstream connectivity behind a corporate egress proxy (issue 16): a real tinyproxy from Debian, started on loopback
with a config written here; a TLS fake upstream whose certificate a test CA signs (trusted through SSL_CERT_FILE);
the real gateway and the openai SDK. Also the connection cap and compressed answers, against counting fakes."""

from __future__ import annotations

import asyncio
import datetime
import gzip
import ipaddress
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest
from aiohttp import web
from conftest import TEST_KEY, RunningGateway, free_port, openai_client, start_gateway
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fakes.server import serve_in_thread

PROXY_USER, PROXY_PASSWORD = "gw-user", "s3cret-pass_word"
_PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY")


# -- a test CA and a TLS upstream ------------------------------------------------------------------------------------


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_ca(tmp: Path, label: str) -> tuple[Path, Any, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(f"agentgateway test CA {label}"))
        .issuer_name(_name(f"agentgateway test CA {label}"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = tmp / f"ca-{label}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path, key, cert


def make_leaf(tmp: Path, ca_key: Any, ca_cert: x509.Certificate) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "leaf.pem", tmp / "leaf.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def completion(model: str, text: str) -> dict[str, Any]:
    return {
        "id": "x",
        "object": "chat.completion",
        "created": 1,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> bytes:
    payload = {
        "id": "x",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + orjson.dumps(payload) + b"\n\n"


@dataclass
class Upstream:
    """An OpenAI-compatible fake that counts requests and the connections open to it."""

    origin: str = ""
    requests: int = 0
    open_max: int = 0
    hold: float = 0.0
    transports: set[Any] = field(default_factory=set)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        # The connections open right now: every one the gateway opens carries a request, so the peak is seen here.
        self.transports = {t for t in self.transports if not t.is_closing()} | {request.transport}
        self.open_max = max(self.open_max, len(self.transports))
        body = orjson.loads(await request.read())
        model = body["model"]
        if self.hold:
            await asyncio.sleep(self.hold)
        if model.startswith("gzip"):
            data = orjson.dumps(completion(model, "compressed hello"))
            if model == "gzip-truncated":
                encoded, encoding = gzip.compress(data)[:-10], "gzip"
            elif model == "gzip-bomb":
                encoded, encoding = gzip.compress(b" " * (70 << 20), 9), "gzip"  # 70 MiB of spaces in ~70 KiB
            elif model == "gzip-deflate":
                encoded, encoding = zlib.compress(data), "deflate"
            elif model == "gzip-raw-deflate":
                compressor = zlib.compressobj(wbits=-15)
                encoded, encoding = compressor.compress(data) + compressor.flush(), "deflate"
            elif model == "gzip-unknown":
                encoded, encoding = data, "br"
            else:
                encoded, encoding = gzip.compress(data), "gzip"
            return web.Response(
                body=encoded, headers={"content-type": "application/json", "content-encoding": encoding}
            )
        if body.get("stream"):
            response = web.StreamResponse(headers={"content-type": "text/event-stream"})
            await response.prepare(request)
            await response.write(chunk(model, {"role": "assistant", "content": "streamed"}))
            await response.write(chunk(model, {"content": " hello"}))
            await response.write(chunk(model, {}, "stop") + b"data: [DONE]\n\n")
            await response.write_eof()
            return response
        return web.json_response(completion(model, f"hello from {model}"))


def start_upstream(ssl_context: ssl.SSLContext | None = None) -> tuple[Upstream, Callable[[], None]]:
    fake = Upstream()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", fake.handle)
    if ssl_context is None:
        fake.origin, stop = serve_in_thread(app, "proxy-test-upstream")
        return fake, stop
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, access_log=None)
    port = free_port()
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port, ssl_context=ssl_context).start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10)
    fake.origin = f"https://localhost:{port}"

    def stop() -> None:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()

    return fake, stop


# -- tinyproxy -------------------------------------------------------------------------------------------------------


@dataclass
class Tinyproxy:
    port: int
    log_path: Path
    process: subprocess.Popen[bytes]

    def url(self, credentials: str | None = f"{PROXY_USER}:{PROXY_PASSWORD}") -> str:
        return f"http://{credentials + '@' if credentials else ''}127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_tinyproxy(tmp: Path, *, connect_ports: tuple[int, ...] = ()) -> Tinyproxy:
    binary = shutil.which("tinyproxy")
    if binary is None:
        pytest.fail("tinyproxy is not installed: .ci/run installs it (apt-get install -y tinyproxy)")
    port = free_port()
    log_path = tmp / f"tinyproxy-{port}.log"
    lines = [
        f"Port {port}",
        "Listen 127.0.0.1",
        "Timeout 60",
        "MaxClients 400",
        "Allow 127.0.0.1",
        f"BasicAuth {PROXY_USER} {PROXY_PASSWORD}",
        "LogLevel Connect",
        "DisableViaHeader Yes",
        *(f"ConnectPort {p}" for p in connect_ports),
    ]
    config = tmp / f"tinyproxy-{port}.conf"
    config.write_text("\n".join(lines) + "\n")
    with log_path.open("wb") as log:
        process = subprocess.Popen([binary, "-d", "-c", str(config)], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"tinyproxy exited:\n{log_path.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return Tinyproxy(port, log_path, process)
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"tinyproxy did not start:\n{log_path.read_text()}")


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Upstream, Path, Path]]:
    tmp = tmp_path_factory.mktemp("tls")
    ca_path, ca_key, ca_cert = make_ca(tmp, "good")
    other_ca, _, _ = make_ca(tmp, "other")
    cert, key = make_leaf(tmp, ca_key, ca_cert)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    upstream, stop = start_upstream(context)
    yield upstream, ca_path, other_ca
    stop()


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tinyproxy]:
    running = start_tinyproxy(tmp_path_factory.mktemp("proxy"))
    yield running
    running.process.terminate()
    running.process.wait(10)


def config_for(origin: str, name: str = "m") -> str:
    return f"""
llm:
  models:
  - name: "{name}"
    provider:
      custom: {{formats: [{{type: completions}}]}}
    params: {{baseUrl: "{origin}/v1", apiKey: {TEST_KEY}}}
  timeouts: {{connect: 5, firstByte: 20, idle: 20}}
"""


def gateway_env(**env: str) -> dict[str, str]:
    return env


def run_gateway(tmp: Path, config: str, **env: str) -> RunningGateway:
    return start_gateway(config, tmp, env=env, unset=_PROXY_VARS)


def ask(gateway: RunningGateway, model: str = "m", *, stream: bool = False) -> str:
    client = openai_client(gateway.url)
    messages = [{"role": "user", "content": "hi"}]
    if stream:
        return "".join(
            c.choices[0].delta.content or ""
            for c in client.chat.completions.create(model=model, messages=messages, stream=True)  # type: ignore[arg-type]
            if c.choices
        )
    return client.chat.completions.create(model=model, messages=messages).choices[0].message.content or ""  # type: ignore[arg-type]


def test_https_upstream_through_the_proxy_with_credentials_plain_and_streamed(
    tls: tuple[Upstream, Path, Path], proxy: Tinyproxy, tmp_path: Path
) -> None:
    upstream, ca, _ = tls
    before = upstream.requests
    port = upstream.origin.rsplit(":", 1)[1]
    gateway = run_gateway(tmp_path, config_for(upstream.origin), HTTPS_PROXY=proxy.url(), SSL_CERT_FILE=str(ca))
    try:
        assert ask(gateway) == "hello from m"
        assert ask(gateway, stream=True) == "streamed hello"
        assert upstream.requests == before + 2
        # The proxy tunnelled the upstream's origin, and saw no failed authentication.
        assert f"CONNECT localhost:{port}" in proxy.log()
        assert PROXY_PASSWORD not in gateway.log()
    finally:
        gateway.stop()


def test_no_proxy_bypasses_the_proxy(tls: tuple[Upstream, Path, Path], proxy: Tinyproxy, tmp_path: Path) -> None:
    upstream, ca, _ = tls
    port = upstream.origin.rsplit(":", 1)[1]
    tunnels = proxy.log().count(f"CONNECT localhost:{port}")
    gateway = run_gateway(
        tmp_path,
        config_for(upstream.origin),
        HTTPS_PROXY=proxy.url(),
        NO_PROXY="example.com,localhost",
        SSL_CERT_FILE=str(ca),
    )
    try:
        assert ask(gateway) == "hello from m"
        assert proxy.log().count(f"CONNECT localhost:{port}") == tunnels
    finally:
        gateway.stop()


def test_plain_http_upstream_through_the_proxy_in_absolute_form(proxy: Tinyproxy, tmp_path: Path) -> None:
    upstream, stop = start_upstream()
    gateway = run_gateway(tmp_path, config_for(upstream.origin), http_proxy=proxy.url())
    try:
        assert ask(gateway) == "hello from m"
        assert ask(gateway, stream=True) == "streamed hello"
        assert f"POST {upstream.origin}/v1/chat/completions" in proxy.log()
    finally:
        gateway.stop()
        stop()


def test_a_proxy_that_refuses_is_a_clear_502(tls: tuple[Upstream, Path, Path], tmp_path: Path) -> None:
    upstream, ca, _ = tls
    refusing = start_tinyproxy(tmp_path, connect_ports=(443,))  # CONNECT only to 443: the upstream's port is not
    try:
        gateway = run_gateway(tmp_path, config_for(upstream.origin), HTTPS_PROXY=refusing.url(), SSL_CERT_FILE=str(ca))
        try:
            with pytest.raises(openai.APIStatusError) as refused:
                ask(gateway)
            assert refused.value.status_code == 502
            assert f"127.0.0.1:{refusing.port} (https_proxy) refused the tunnel" in refused.value.message
            assert "403" in refused.value.message
        finally:
            gateway.stop()
        # Wrong credentials: tinyproxy answers 407.
        gateway = run_gateway(
            tmp_path, config_for(upstream.origin), HTTPS_PROXY=refusing.url("gw-user:wrong"), SSL_CERT_FILE=str(ca)
        )
        try:
            with pytest.raises(openai.APIStatusError) as refused:
                ask(gateway)
            # tinyproxy answers 401 (most proxies 407): either way a 502 that says so.
            assert refused.value.status_code == 502
            assert re.search(r"refused the tunnel to localhost:\d+: 40[17] ", refused.value.message)
            assert "wrong" not in refused.value.message
        finally:
            gateway.stop()
    finally:
        refusing.process.terminate()
        refusing.process.wait(10)


def test_tls_with_the_wrong_ca_is_a_clear_502_naming_the_certificate_problem(
    tls: tuple[Upstream, Path, Path], tmp_path: Path
) -> None:
    upstream, _, other_ca = tls
    gateway = run_gateway(tmp_path, config_for(upstream.origin), SSL_CERT_FILE=str(other_ca))
    try:
        with pytest.raises(openai.APIStatusError) as failed:
            ask(gateway)
        assert failed.value.status_code == 502
        assert "CERTIFICATE_VERIFY_FAILED" in failed.value.message
    finally:
        gateway.stop()


def test_connections_per_origin_are_capped_and_requests_wait(tmp_path: Path) -> None:
    upstream, stop = start_upstream()
    upstream.hold = 0.05
    gateway = run_gateway(tmp_path, config_for(upstream.origin))
    try:

        async def burst() -> list[str]:
            client = openai.AsyncOpenAI(base_url=gateway.url, api_key="sk-client", max_retries=0, timeout=60)
            try:
                answers = await asyncio.gather(
                    *(
                        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
                        for _ in range(300)
                    )
                )
            finally:
                await client.close()
            return [a.choices[0].message.content or "" for a in answers]

        answers = asyncio.run(burst())
        assert answers == ["hello from m"] * 300
        assert upstream.requests == 300
        print(f"at most {upstream.open_max} connections were open to the upstream")
        assert 1 <= upstream.open_max <= 100, upstream.open_max
    finally:
        gateway.stop()
        stop()


@pytest.mark.parametrize("model", ["gzip", "gzip-deflate", "gzip-raw-deflate"])
def test_compressed_answers_are_decoded(model: str, compressing: RunningGateway) -> None:
    assert ask(compressing, model) == "compressed hello"


@pytest.mark.parametrize(
    ("model", "problem"),
    [
        ("gzip-truncated", "compressed body is truncated"),
        ("gzip-bomb", "larger than 64 MiB once decoded"),
        ("gzip-unknown", "unsupported content-encoding: br"),
    ],
)
def test_bad_compressed_answers_are_upstream_protocol_errors(
    model: str, problem: str, compressing: RunningGateway
) -> None:
    with pytest.raises(openai.APIStatusError) as failed:
        ask(compressing, model)
    assert failed.value.status_code == 502
    assert problem in failed.value.message


@pytest.fixture(scope="module")
def compressing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    upstream, stop = start_upstream()
    gateway = run_gateway(tmp_path_factory.mktemp("gzip"), config_for(upstream.origin, "gzip*"))
    yield gateway
    gateway.stop()
    stop()


def test_the_google_token_fetch_goes_through_the_same_proxy(proxy: Tinyproxy, tmp_path: Path) -> None:
    from fakes.gemini_upstream import start_fake_google
    from test_vertex import adc_env

    google, stop = start_fake_google(TEST_KEY)
    config = f"""
llm:
  models:
  - name: "*"
    provider: vertex
    params: {{vertexProject: test-project, vertexRegion: us-central1, baseUrl: "{google.origin}"}}
"""
    env = {**adc_env(tmp_path, google.service_account_info()), "http_proxy": proxy.url()}
    gateway = start_gateway(config, tmp_path, env=env, unset=_PROXY_VARS)
    try:
        client = openai_client(gateway.url)
        client.chat.completions.create(model="gemini-2.5-flash", messages=[{"role": "user", "content": "hi"}])
        assert len(google.token_requests) == 1
        log = proxy.log()
        assert f"POST {google.origin}/token" in log  # google-auth's token call (urllib)
        assert f"POST {google.origin}/v1/projects/test-project" in log  # the gateway's own request
    finally:
        gateway.stop()
        stop()


def test_an_unknown_transfer_coding_is_an_upstream_protocol_error() -> None:
    from agentgateway.config import Timeouts
    from agentgateway.errors import UpstreamProtocolError
    from agentgateway.upstream import Endpoint, UpstreamClient, UpstreamRequest

    async def run() -> str:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            body = gzip.compress(b'{"ok": true}')
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
            )
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = UpstreamClient(Timeouts(connect=5, first_byte=5, idle=5))
        try:
            endpoint = Endpoint.parse(f"http://127.0.0.1:{port}/v1/chat/completions")
            with pytest.raises(UpstreamProtocolError) as failed:
                await client.send(UpstreamRequest(endpoint, b"", b"{}"))
            return failed.value.message
        finally:
            await client.aclose()
            server.close()
            await server.wait_closed()

    assert "unsupported transfer-coding: gzip, chunked" in asyncio.run(run())
