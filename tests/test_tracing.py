"""Traces (issue 18): OTLP receivers in the test (http and grpc, decoded with opentelemetry-proto) get a SERVER span
per request and a CLIENT span per upstream attempt with the GenAI attributes; a client's traceparent continues its
trace and each attempt sends its own upstream; a collector that never answers changes nothing for the client."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from conftest import TEST_KEY, free_port, openai_client, start_gateway
from fakes.openai_upstream import FakeOpenAI
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2

MESSAGES = [{"role": "user", "content": "Hello"}]
CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
CLIENT_SPAN = "b7ad6b7169203331"


def config(upstream: str, tracing: str, extra: str = "") -> str:
    return f"""
llm:
  models:
  - {{name: gpt-4o-mini, provider: openAI, params: {{model: upstream-model, apiKey: {TEST_KEY}, baseUrl: {upstream}}}}}
  - name: down
    visibility: internal
    provider: openAI
    params: {{apiKey: {TEST_KEY}, baseUrl: "http://127.0.0.1:{free_port()}/v1"}}
  virtualModels:
  - name: resilient
    routing: {{failover: {{targets: [{{model: down, priority: 0}}, {{model: gpt-4o-mini, priority: 1}}]}}}}
config:
  tracing: {tracing}
{extra}
"""


class Spans:
    def __init__(self) -> None:
        self.spans: list[trace_pb2.Span] = []
        self.headers: list[dict[str, str]] = []
        self.lock = threading.Lock()

    def add(self, request: trace_service_pb2.ExportTraceServiceRequest, headers: dict[str, str]) -> None:
        with self.lock:
            self.headers.append(headers)
            for resource in request.resource_spans:
                for scope in resource.scope_spans:
                    self.spans.extend(scope.spans)

    def of_trace(self, trace_id: bytes, count: int, timeout: float = 30) -> list[trace_pb2.Span]:
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                found = [span for span in self.spans if span.trace_id == trace_id]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.05)


def attributes(span: trace_pb2.Span) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for attribute in span.attributes:
        value = attribute.value
        kind = value.WhichOneof("value")
        if kind == "array_value":
            out[attribute.key] = [getattr(v, v.WhichOneof("value")) for v in value.array_value.values]
        else:
            out[attribute.key] = getattr(value, kind)
    return out


@pytest.fixture
def http_receiver() -> Iterator[tuple[str, Spans]]:
    spans = Spans()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            request = trace_service_pb2.ExportTraceServiceRequest()
            request.ParseFromString(body)
            spans.add(request, {k.lower(): v for k, v in self.headers.items()})
            answer = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", spans
    server.shutdown()
    server.server_close()


@pytest.fixture
def grpc_receiver() -> Iterator[tuple[str, Spans]]:
    spans = Spans()

    class Service(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request: Any, context: Any) -> Any:
            spans.add(request, dict(context.invocation_metadata()))
            return trace_service_pb2.ExportTraceServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Service(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}", spans
    server.stop(0)


def test_spans_over_http_continue_the_clients_trace_and_show_the_failover(
    fake_openai: FakeOpenAI, tmp_path: Path, http_receiver: tuple[str, Spans]
) -> None:
    endpoint, received = http_receiver
    tracing = f'{{otlpEndpoint: "{endpoint}", otlpProtocol: http, headers: {{x-collector-token: tok-123}}}}'
    gateway = start_gateway(config(fake_openai.base_url, tracing), tmp_path)
    try:
        raw = openai_client(gateway.url).chat.completions.with_raw_response.create(
            model="resilient",
            messages=MESSAGES,
            extra_headers={"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"},
        )
        raw.parse()
        upstream_traceparent = fake_openai.last().headers["traceparent"]
        spans = received.of_trace(bytes.fromhex(CLIENT_TRACE), 3)
    finally:
        gateway.stop()
    assert len(spans) == 3, spans
    (server,) = [s for s in spans if s.kind == trace_pb2.Span.SPAN_KIND_SERVER]
    clients = sorted(
        (s for s in spans if s.kind == trace_pb2.Span.SPAN_KIND_CLIENT), key=lambda s: s.start_time_unix_nano
    )
    assert server.parent_span_id == bytes.fromhex(CLIENT_SPAN), "the client's trace goes on"
    assert server.name == "chat resilient"
    server_attributes = attributes(server)
    assert server_attributes["gen_ai.operation.name"] == "chat"
    assert server_attributes["gen_ai.provider.name"] == "openai"
    assert server_attributes["gen_ai.request.model"] == "resilient"
    assert server_attributes["gen_ai.response.model"] == "upstream-model"
    assert server_attributes["gen_ai.usage.input_tokens"] == 12
    assert server_attributes["gen_ai.usage.output_tokens"] > 0
    assert server_attributes["agentgateway.request_id"] == raw.headers["x-request-id"]
    # Failover: two sibling attempts under the server span.
    assert [c.name for c in clients] == ["chat down", "chat gpt-4o-mini"]
    assert all(c.parent_span_id == server.span_id for c in clients)
    down, ok = (attributes(c) for c in clients)
    assert down["agentgateway.attempt.outcome"] == "failover"
    assert down["error.type"] == "upstream_unreachable"
    assert ok["agentgateway.attempt.outcome"] == "ok"
    assert ok["server.address"] == "127.0.0.1"
    assert ok["http.response.status_code"] == 200
    assert clients[1].status.code != trace_pb2.Status.STATUS_CODE_ERROR
    assert clients[0].status.code == trace_pb2.Status.STATUS_CODE_ERROR
    # Upstream got its attempt's own span as parent, in the client's trace.
    assert upstream_traceparent == f"00-{CLIENT_TRACE}-{clients[1].span_id.hex()}-01"
    assert received.headers[0]["x-collector-token"] == "tok-123"
    for span in spans:  # no prompt or completion text
        assert "Hello" not in str(attributes(span))


def test_spans_over_grpc_for_streams_with_usage_and_finish_reason(
    fake_openai: FakeOpenAI, tmp_path: Path, grpc_receiver: tuple[str, Spans]
) -> None:
    endpoint, received = grpc_receiver
    gateway = start_gateway(
        config(fake_openai.base_url, f'{{otlpEndpoint: "{endpoint}", otlpProtocol: grpc}}'), tmp_path
    )
    try:
        for _ in openai_client(gateway.url).chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True
        ):
            pass
        traceparent = fake_openai.last().headers["traceparent"]
        trace_id = bytes.fromhex(traceparent.split("-")[1])
        spans = received.of_trace(trace_id, 2)
    finally:
        gateway.stop()
    assert len(spans) == 2
    (server,) = [s for s in spans if s.kind == trace_pb2.Span.SPAN_KIND_SERVER]
    (client,) = [s for s in spans if s.kind == trace_pb2.Span.SPAN_KIND_CLIENT]
    assert server.parent_span_id == b"", "no traceparent from the client: a new trace"
    assert client.parent_span_id == server.span_id
    assert traceparent.split("-")[2] == client.span_id.hex()
    server_attributes = attributes(server)
    assert server_attributes["gen_ai.response.finish_reasons"] == ["stop"]
    assert server_attributes["gen_ai.usage.input_tokens"] == 12
    assert server.name == "chat gpt-4o-mini"


def test_a_collector_that_never_answers_changes_nothing_for_the_client(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    # Accepts connections (the kernel's backlog) and never reads or answers.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(100)
    stats = free_port()
    tracing = f'{{otlpEndpoint: "http://127.0.0.1:{silent.getsockname()[1]}", otlpProtocol: http, maxQueueSize: 4}}'
    gateway = start_gateway(
        config(fake_openai.base_url, tracing, f'  statsAddr: "127.0.0.1:{stats}"'), tmp_path, workers=1
    )
    try:
        client = openai_client(gateway.url)
        for index in range(40):
            answer = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=index % 2 == 1)
            if index % 2:
                for _ in answer:  # type: ignore[union-attr]
                    pass
        text = httpx.get(f"http://127.0.0.1:{stats}/metrics", timeout=10).text
        dropped = [line for line in text.splitlines() if line.startswith("agentgateway_trace_spans_dropped_total")]
        assert dropped, "a full export queue drops spans and counts them"
        assert float(dropped[0].split()[-1]) > 0
    finally:
        gateway.stop()
        silent.close()


def test_tracing_changes_live_a_new_endpoint_protocol_and_sampling_and_off_again(
    fake_openai: FakeOpenAI, tmp_path: Path, http_receiver: tuple[str, Spans], grpc_receiver: tuple[str, Spans]
) -> None:
    """A reload (issue 16) rebuilds the exporter: spans go where the config now says, with its sampling."""
    from test_reload import at_latest, wait_for, write

    http_endpoint, over_http = http_receiver
    grpc_endpoint, over_grpc = grpc_receiver
    path = tmp_path / "config.yaml"
    path.write_text(config(fake_openai.base_url, "null"))
    gateway = start_gateway(None, tmp_path, "-f", str(path), workers=2)

    def traced(trace_id: str | None = None) -> str | None:
        """One request (with a sampled client traceparent when ``trace_id`` is given); the traceparent upstream."""
        headers = {"traceparent": f"00-{trace_id}-{CLIENT_SPAN}-01"} if trace_id else {}
        openai_client(gateway.url).chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, extra_headers=headers
        )
        return fake_openai.last().headers.get("traceparent")

    sent: list[bytes] = []

    def arrives(received: Spans, timeout: float = 30) -> bool:
        """A traced request's two spans reach ``received`` (within ``timeout``: short where a wait retries)."""
        trace_id = os.urandom(16).hex()
        sent.append(bytes.fromhex(trace_id))
        traced(trace_id)
        return len(received.of_trace(bytes.fromhex(trace_id), 2, timeout=timeout)) == 2

    try:
        untraced = os.urandom(16).hex()
        assert traced(untraced) is None, "no tracing: no traceparent upstream"

        write(path, config(fake_openai.base_url, f'{{otlpEndpoint: "{http_endpoint}", otlpProtocol: http}}'))
        wait_for("spans over http", lambda: arrives(over_http, 2), gateway)
        wait_for("both workers on generation 2", lambda: at_latest(gateway, 2), gateway)
        for _ in range(4):  # whichever worker serves it
            assert arrives(over_http)

        tracing = f'{{otlpEndpoint: "{grpc_endpoint}", otlpProtocol: grpc, randomSampling: false}}'
        write(path, config(fake_openai.base_url, tracing))
        wait_for("spans over grpc", lambda: arrives(over_grpc, 2), gateway)
        wait_for("both workers on generation 3", lambda: at_latest(gateway, 3), gateway)
        del sent[:]
        for _ in range(4):
            assert arrives(over_grpc)
            assert traced() is None, "randomSampling false: a request without a traceparent is not traced"
        with over_http.lock:
            assert not {span.trace_id for span in over_http.spans} & set(sent), "the old exporter gets nothing new"

        write(path, config(fake_openai.base_url, "null"))
        wait_for("both workers on generation 4", lambda: at_latest(gateway, 4), gateway)
        for _ in range(4):
            assert traced(os.urandom(16).hex()) is None
        assert not over_http.of_trace(bytes.fromhex(untraced), 1, timeout=0)
    finally:
        gateway.stop()
