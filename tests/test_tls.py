"""Backend TLS per model entry and the connection cap (issue 16): a test CA, server and client certificates made
here, TLS fake OpenAI upstreams on loopback (one of them requires a client certificate), the real gateway and the
openai SDK. Also what the config refuses (insecure not written out, unreadable or wrong PEM files) with file:line,
and ``config.backend.maxConnections`` against the fake that counts the connections open to it."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest
from agentgateway.config import load_config, load_config_file
from agentgateway.errors import ConfigError
from conftest import TEST_KEY, RunningGateway, start_gateway
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from test_proxy import _PROXY_VARS, Upstream, ask, make_ca, make_leaf, start_upstream

CLIENT_NAME = "agentgateway test client"


def make_client_cert(tmp: Path, ca_key: Any, ca_cert: x509.Certificate, label: str) -> tuple[Path, Path]:
    """A client certificate (extended key usage clientAuth) signed by the CA, and its unencrypted key."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CLIENT_NAME)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = tmp / f"client-{label}.pem", tmp / f"client-{label}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@dataclass
class Pki:
    ca: Path
    other_ca: Path
    client_cert: Path
    client_key: Path
    server_key: Path
    tls: Upstream  # server certificate only
    mtls: Upstream  # also requires a client certificate signed by the CA


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pki]:
    tmp = tmp_path_factory.mktemp("pki")
    ca, ca_key, ca_cert = make_ca(tmp, "good")
    other_ca, _, _ = make_ca(tmp, "other")
    server_cert, server_key = make_leaf(tmp, ca_key, ca_cert)
    client_cert, client_key = make_client_cert(tmp, ca_key, ca_cert, "good")
    plain = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    plain.load_cert_chain(server_cert, server_key)
    mutual = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    mutual.load_cert_chain(server_cert, server_key)
    mutual.verify_mode = ssl.CERT_REQUIRED
    mutual.load_verify_locations(ca)
    tls, stop_tls = start_upstream(plain)
    mtls, stop_mtls = start_upstream(mutual)
    yield Pki(ca, other_ca, client_cert, client_key, server_key, tls, mtls)
    stop_tls()
    stop_mtls()


def model(name: str, origin: str, tls: str = "") -> str:
    return f"""
  - name: {name}
    provider:
      custom: {{formats: [{{type: completions}}]}}
    params: {{baseUrl: "{origin}/v1", apiKey: {TEST_KEY}}}
    {tls}"""


@pytest.fixture(scope="module")
def gateway(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    tls, mtls = pki.tls.origin, pki.mtls.origin
    config = "llm:\n  models:" + "".join(
        [
            model("good", tls, f"tls: {{root: {pki.ca}}}"),
            model("wrong-ca", tls, f"backendTLS: {{root: {pki.other_ca}}}"),  # agentgateway's alias
            model("wrong-host", tls, f"tls: {{root: {pki.ca}, hostname: upstream.example}}"),
            model("any-host", tls, f"tls: {{root: {pki.ca}, hostname: upstream.example, insecureHost: true}}"),
            model("both-trusts", tls, f"tls: {{root: {pki.other_ca}, systemRoots: true}}"),
            model("insecure", tls, "tls: {insecure: true}"),
            model("mtls", mtls, f"tls: {{cert: {pki.client_cert}, key: {pki.client_key}}}"),
            model("mtls-without-cert", mtls, f"tls: {{root: {pki.ca}}}"),
        ]
    )
    config += "\n  timeouts: {connect: 5, firstByte: 20, idle: 20}\n"
    # SSL_CERT_FILE: the default trust wherever an entry names no root of its own ("mtls", "both-trusts").
    running = start_gateway(
        config, tmp_path_factory.mktemp("gw-tls"), workers=2, env={"SSL_CERT_FILE": str(pki.ca)}, unset=_PROXY_VARS
    )
    yield running
    running.stop()


def refused(gateway: RunningGateway, name: str) -> openai.APIStatusError:
    with pytest.raises(openai.APIStatusError) as failed:
        ask(gateway, name)
    return failed.value


def test_a_trusted_ca_passes_plain_and_streamed(gateway: RunningGateway) -> None:
    assert ask(gateway, "good") == "hello from good"
    assert ask(gateway, "good", stream=True) == "streamed hello"


def test_a_wrong_ca_is_a_502_naming_the_certificate_problem(pki: Pki, gateway: RunningGateway) -> None:
    error = refused(gateway, "wrong-ca")
    assert error.status_code == 502
    # OpenAI's error shape, the kind from the one error vocabulary
    assert isinstance(error.body, dict)
    assert (error.body["type"], error.body["code"]) == ("server_error", "upstream_unreachable")
    assert "certificate verify failed: unable to get local issuer certificate" in error.message
    assert str(pki.other_ca) in error.message  # what it was checked against
    log = gateway.log()
    assert "Traceback" not in log


def test_a_host_name_mismatch_is_a_502_and_insecure_host_skips_only_the_name(gateway: RunningGateway) -> None:
    error = refused(gateway, "wrong-host")
    assert error.status_code == 502
    assert "certificate verify failed: Hostname mismatch" in error.message
    assert "upstream.example" in error.message
    assert ask(gateway, "any-host") == "hello from any-host"


def test_entries_with_different_tls_to_one_host_never_share_a_connection(gateway: RunningGateway) -> None:
    # "good" leaves a keep-alive connection to the upstream in the pool; "wrong-ca" must not get it.
    for _ in range(2):
        assert ask(gateway, "good") == "hello from good"
        assert refused(gateway, "wrong-ca").status_code == 502


def test_ssl_cert_file_stays_the_default_trust_and_system_roots_adds_to_root(gateway: RunningGateway) -> None:
    # root: the other CA alone would refuse the upstream; systemRoots keeps SSL_CERT_FILE's CA beside it.
    assert ask(gateway, "both-trusts") == "hello from both-trusts"


def test_insecure_written_out_skips_verification_with_one_start_up_warning(gateway: RunningGateway) -> None:
    assert ask(gateway, "insecure") == "hello from insecure"
    log = gateway.log()
    # Named once (by the main process, not by each of the two workers), with the place in the config.
    assert log.count("llm.models[5].tls.insecure: warning: insecure: true") == 1
    assert log.count("llm.models[3].tls.insecureHost: warning: insecureHost: true") == 1


def test_mtls_presents_the_client_certificate(pki: Pki, gateway: RunningGateway) -> None:
    assert ask(gateway, "mtls") == "hello from mtls"
    assert ask(gateway, "mtls", stream=True) == "streamed hello"
    # The fake saw our certificate: its transports are the connections the gateway keeps open to it.
    subjects = {
        dict(pair[0] for pair in peer["subject"])["commonName"]
        for transport in list(pki.mtls.transports)
        if (peer := transport.get_extra_info("peercert"))
    }
    assert subjects == {CLIENT_NAME}
    error = refused(gateway, "mtls-without-cert")
    assert error.status_code == 502
    # aiohttp's server hangs up without the TLS 1.3 alert (asyncio drops it); a server that sends it gets the
    # alert's text named (test_a_certificate_required_alert_is_named)
    assert "requires a client certificate (mTLS)" in error.message


# -- what the config refuses -----------------------------------------------------------------------------------------


def tls_config(tls: str, base_url: str = "https://localhost:8443/v1") -> str:
    return f"""llm:
  models:
  - name: m
    provider: openAI
    params: {{apiKey: k, baseUrl: "{base_url}"}}
    tls:
      {tls}
"""


def config_error(text: str, tmp_path: Path) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as failed:
        load_config_file(str(path))
    return str(failed.value).replace(str(path), "config.yaml")


@pytest.mark.parametrize("value", ['"true"', "1", "yes-please", "$INSECURE"])
def test_insecure_that_is_not_written_out_as_a_boolean_is_refused(
    value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INSECURE", "true")
    problem = config_error(tls_config(f"insecure: {value}"), tmp_path)
    assert problem.startswith("config.yaml:7: llm.models[0].tls.insecure: must be written out as true or false")


def test_insecure_skip_verify_is_refused_with_agentgateways_name(tmp_path: Path) -> None:
    problem = config_error(tls_config("insecureSkipVerify: true"), tmp_path)
    assert problem == (
        "config.yaml:7: llm.models[0].tls.insecureSkipVerify: to skip certificate verification write "
        "'insecure: true' (agentgateway's name)"
    )


def test_pem_files_that_cannot_be_used_are_config_errors_naming_file_line_and_path(pki: Pki, tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    assert config_error(tls_config(f"root: {missing}"), tmp_path) == (
        f"config.yaml:7: llm.models[0].tls.root: cannot read '{missing}': No such file or directory"
    )
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    assert config_error(tls_config(f"root: {garbage}"), tmp_path) == (
        f"config.yaml:7: llm.models[0].tls.root: '{garbage}' is not a PEM certificate bundle "
        "(no '-----BEGIN CERTIFICATE' line)"
    )
    broken = tmp_path / "broken.pem"
    broken.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    assert f"llm.models[0].tls: {broken}: not a PEM certificate bundle" in config_error(
        tls_config(f"root: {broken}"), tmp_path
    )
    # the client certificate with some other key
    problem = config_error(tls_config(f"cert: {pki.client_cert}\n      key: {pki.server_key}"), tmp_path)
    assert problem == (
        f"config.yaml:7: llm.models[0].tls: {pki.server_key} is not the private key of the certificate in "
        f"{pki.client_cert}"
    )
    assert "cert and key go together" in config_error(tls_config(f"cert: {pki.client_cert}"), tmp_path)
    assert "use an https:// URL" in config_error(tls_config(f"root: {pki.ca}", "http://localhost:8000/v1"), tmp_path)


def test_a_bad_pem_path_fails_validate_only_and_start_up(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "config.yaml"
    path.write_text(tls_config(f"root: {tmp_path / 'nope.pem'}"))
    done = subprocess.run(
        [sys.executable, "-m", "agentgateway", "-f", str(path), "--validate-only"], capture_output=True, text=True
    )
    assert done.returncode != 0
    assert f"{path}:7: llm.models[0].tls.root: cannot read" in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr


def test_a_provider_tls_goes_to_the_models_that_reference_it(pki: Pki) -> None:
    config = load_config(f"""
llm:
  providers:
  - name: corp
    provider: openAI
    params: {{apiKey: k, baseUrl: "https://localhost:8443/v1"}}
    tls: {{root: {pki.ca}}}
  models:
  - {{name: a, provider: {{reference: corp}}}}
  - {{name: b, provider: {{reference: corp}}, tls: {{root: {pki.other_ca}}}}}
""")
    a, b = config.llm.models
    assert a.tls is not None and b.tls is not None
    assert str(pki.ca) in a.tls.client.trust
    assert str(pki.other_ca) in b.tls.client.trust
    # equal settings over equal files are one connection setting (pools survive a reload)
    again = load_config(f"llm:\n  models:\n{model('c', 'https://localhost:8443', f'tls: {{root: {pki.ca}}}')}")
    assert again.llm.models[0].tls is not None and again.llm.models[0].tls.client is a.tls.client


# -- the connection cap ----------------------------------------------------------------------------------------------


def cap_config(origin: str, cap: int, connect: float = 5) -> str:
    return f"""
llm:
  models:{model("m", origin)}
  timeouts: {{connect: {connect}, firstByte: 60, idle: 60}}
config:
  backend: {{maxConnections: {cap}}}
"""


def test_300_concurrent_requests_never_open_more_than_the_configured_cap(tmp_path: Path) -> None:
    upstream, stop = start_upstream()
    upstream.hold = 0.05
    gateway = start_gateway(cap_config(upstream.origin, 10), tmp_path, unset=_PROXY_VARS)
    try:

        async def burst() -> list[str]:
            client = openai.AsyncOpenAI(base_url=gateway.url, api_key="sk-client", max_retries=0, timeout=120)
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

        assert asyncio.run(burst()) == ["hello from m"] * 300
        assert upstream.requests == 300
        print(f"at most {upstream.open_max} connections were open to the upstream (cap 10)")
        assert 1 <= upstream.open_max <= 10, upstream.open_max
    finally:
        gateway.stop()
        stop()


def test_a_request_past_the_cap_waits_at_most_the_connect_timeout_then_gets_a_clear_504(tmp_path: Path) -> None:
    upstream, stop = start_upstream()
    upstream.hold = 60  # the one connection stays busy for longer than the test
    gateway = start_gateway(cap_config(upstream.origin, 1, connect=0.5), tmp_path, unset=_PROXY_VARS)
    try:

        async def two() -> BaseException | None:
            # Whichever reaches the gateway first holds the only connection; the other waits for it and gives up.
            client = openai.AsyncOpenAI(base_url=gateway.url, api_key="sk-client", max_retries=0, timeout=120)
            messages: Any = [{"role": "user", "content": "hi"}]
            calls = [
                asyncio.ensure_future(client.chat.completions.create(model="m", messages=messages)) for _ in range(2)
            ]
            try:
                done, pending = await asyncio.wait(calls, return_when=asyncio.FIRST_COMPLETED)
                assert len(done) == 1 and len(pending) == 1
                return done.pop().exception()
            finally:
                for call in calls:
                    call.cancel()
                await client.close()

        error = asyncio.run(two())
        assert isinstance(error, openai.APIStatusError)
        assert error.status_code == 504
        assert "All 1 connections to the upstream 127.0.0.1" in error.message
        assert "stayed busy for 0.5s" in error.message
        assert upstream.requests == 1  # the second never reached the upstream
    finally:
        gateway.stop()
        stop()


def test_config_backend_keys(tmp_path: Path) -> None:
    base = "llm:\n  models:" + model("m", "https://localhost:1") + "\nconfig:\n  backend:\n"
    config = load_config(base + "    maxConnections: 7\n    poolMaxSize: 4\n    poolIdleTimeout: 5s\n")
    backend = config.config.backend
    assert (backend.max_connections, backend.pool_max_size, backend.pool_idle_timeout) == (7, 4, 5.0)
    assert config_error(base + "    maxConnections: 0\n", tmp_path) == (
        "config.yaml:10: config.backend.maxConnections: Input should be greater than or equal to 1"
    )
    unserved = load_config(base + "    keepalives: {enabled: true}\n").unserved
    assert any("config.backend.keepalives: accepted but not served" in line for line in unserved)


# -- the client itself: an alert named, a reload's cap applied to waiting requests ----------------------------------


def test_a_certificate_required_alert_is_named(pki: Pki, tmp_path: Path) -> None:
    """A server that sends TLS 1.3's certificate_required alert (OpenSSL through the stdlib, unlike asyncio's
    server): the 502 quotes the alert and says what to configure."""
    import socket
    import threading

    from agentgateway.config import Timeouts
    from agentgateway.errors import UpstreamUnreachable
    from agentgateway.upstream import Endpoint, UpstreamClient, UpstreamRequest, client_tls

    ca_path, ca_key, ca_cert = make_ca(tmp_path, "alerting")
    cert, key = make_leaf(tmp_path, ca_key, ca_cert)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(ca_path)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        connection, _ = listener.accept()
        with connection:
            tls = context.wrap_socket(connection, server_side=True, do_handshake_on_connect=False)
            with pytest.raises(ssl.SSLError):
                tls.do_handshake()  # sends the alert, then fails
            # Read what the client sent after its certificate until it hangs up: closing with it unread sends a
            # RST, which can overtake the alert (the client then sees ECONNRESET instead: once in CI).
            with socket.socket(fileno=tls.detach()) as raw:
                raw.settimeout(10)
                with contextlib.suppress(OSError):
                    raw.shutdown(socket.SHUT_WR)
                    while raw.recv(65536):
                        pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()

    async def run() -> str:
        client = UpstreamClient(Timeouts(connect=5, first_byte=5, idle=5))
        tls = client_tls(root=(str(ca_path), ca_path.read_text()))
        try:
            with pytest.raises(UpstreamUnreachable) as failed:
                endpoint = Endpoint.parse(f"https://localhost:{port}/v1/chat/completions")
                await client.send(UpstreamRequest(endpoint, b"", b"{}", tls))
            return failed.value.message
        finally:
            await client.aclose()

    try:
        message = asyncio.run(run())
    finally:
        thread.join(10)
        listener.close()
    assert "tlsv13 alert certificate required" in message
    assert "requires a client certificate (mTLS): set tls.cert and tls.key" in message
    assert "_ssl.c" not in message


def test_a_reloaded_cap_lets_waiting_requests_through() -> None:
    from agentgateway.config import Timeouts
    from agentgateway.upstream import Endpoint, UpstreamClient, UpstreamRequest

    def config(cap: int) -> Any:
        return load_config(
            "llm:\n  models:" + model("m", "http://127.0.0.1:1") + f"\nconfig: {{backend: {{maxConnections: {cap}}}}}\n"
        )

    async def run() -> None:
        release = asyncio.Event()
        arrived = asyncio.Queue[int]()
        count = 0

        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal count
            await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(2)
            count += 1
            arrived.put_nowait(count)
            if count == 1:
                await release.wait()  # the first request holds its connection until the test says so
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        timeouts = Timeouts(connect=30, first_byte=30, idle=30)
        client = UpstreamClient(timeouts, pool=config(1).config.backend)
        endpoint = Endpoint.parse(f"http://127.0.0.1:{port}/v1/chat/completions")

        async def call() -> bytes:
            response = await client.send(UpstreamRequest(endpoint, b"", b"{}"))
            body = await response.read()
            response.release()
            return body

        try:
            first = asyncio.ensure_future(call())
            assert await arrived.get() == 1
            second = asyncio.ensure_future(call())
            for _ in range(5):  # let it queue behind the cap (it waits on a future: nothing else moves it)
                await asyncio.sleep(0)
            assert not second.done() and arrived.empty()
            client.reconfigure(timeouts, config(2))  # a reload raises the cap: the waiting request goes now
            assert await arrived.get() == 2
            assert await second == b"ok"
            release.set()
            assert await first == b"ok"
        finally:
            await client.aclose()
            server.close()
            await server.wait_closed()

    asyncio.run(run())


def test_a_reload_closes_the_connections_of_a_backend_tls_no_entry_uses(pki: Pki) -> None:
    from agentgateway.config import Timeouts
    from agentgateway.upstream import Endpoint, UpstreamClient, UpstreamRequest

    entry = model("good", pki.tls.origin, f"tls: {{root: {pki.ca}}}")
    before, after = (
        load_config(f"llm:\n  models:{entry}\n"),
        load_config(f"llm:\n  models:{model('m', pki.tls.origin)}\n"),
    )
    tls = before.llm.models[0].tls
    assert tls is not None

    async def run() -> tuple[int, int]:
        timeouts = Timeouts(connect=5, first_byte=5, idle=5)
        client = UpstreamClient(timeouts)
        endpoint = Endpoint.parse(f"{pki.tls.origin}/v1/chat/completions")
        try:
            response = await client.send(UpstreamRequest(endpoint, b"", b'{"model": "good"}', tls.client))
            await response.read()
            response.release()  # kept idle in the pool of this backend TLS
            pools = len(client._pools)
            client.reconfigure(timeouts, before)  # unchanged: kept
            kept = len(client._pools)
            client.reconfigure(timeouts, after)  # no entry uses it: closed
            return pools - kept, len(client._pools)
        finally:
            await client.aclose()

    assert asyncio.run(run()) == (0, 0)


def test_a_rotated_ca_file_is_served_after_reload_and_a_broken_one_keeps_the_last_good(
    pki: Pki, tmp_path: Path
) -> None:
    from test_reload import answers_with, wait_for, write

    ca_file = tmp_path / "ca.pem"
    ca_file.write_text(pki.other_ca.read_text())  # not the upstream's CA yet
    path = tmp_path / "config.yaml"
    path.write_text("llm:\n  models:" + model("m", pki.tls.origin, f"tls: {{root: {ca_file}}}") + "\n")
    gateway = start_gateway(None, tmp_path, "-f", str(path), workers=2, unset=_PROXY_VARS)
    try:
        assert refused(gateway, "m").status_code == 502
        # The CA file is watched beside the config: rotating it is a reload (workers get the validated contents).
        write(ca_file, pki.ca.read_text())
        wait_for("the rotated CA served", answers_with(gateway, "m", "hello from m"), gateway)
        write(ca_file, "not a certificate\n")
        wait_for("the broken CA refused", lambda: "config change refused" in gateway.log(), gateway)
        assert f"{path}:7: llm.models[0].tls.root: '{ca_file}' is not a PEM certificate bundle" in gateway.log()
        for _ in range(4):  # both workers keep the last good config
            assert ask(gateway, "m") == "hello from m"
        assert "Traceback" not in gateway.log()
    finally:
        gateway.stop()


def test_tls_and_backend_tls_together_and_alpn_other_than_http11_are_refused(tmp_path: Path) -> None:
    both = tls_config("insecure: false\n    backendTLS: {insecure: false}")
    assert config_error(both, tmp_path) == (
        "config.yaml:3: llm.models[0]: give tls or backendTLS (two spellings of one setting), not both"
    )
    assert "llm.models[0].tls.alpn[0]: Input should be 'http/1.1'" in config_error(tls_config("alpn: [h2]"), tmp_path)
    assert load_config(tls_config("alpn: []")).llm.models[0].tls is not None
