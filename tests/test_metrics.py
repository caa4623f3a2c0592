"""Metrics (issue 18): /metrics of the real gateway over two workers, parsed with prometheus-client's parser, and
scraped by a real Prometheus server; readiness; a flood of model names; a worker that dies and is respawned.

Every wait below waits for a condition (a count reached, a port answering) up to a generous deadline: nothing
depends on how fast a loaded machine is.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from conftest import TEST_KEY, RunningGateway, abort_stream, free_port, openai_client, process_tree, start_gateway
from fakes.anthropic_upstream import FakeAnthropic, start_fake_anthropic
from fakes.openai_upstream import FakeOpenAI
from prometheus_client.parser import text_string_to_metric_families

MESSAGES = [{"role": "user", "content": "Hello"}]
TOKEN_BUCKETS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864]
GENAI_DURATION_BUCKETS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92]
TTFT_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0]


def config(openai_url: str, anthropic_origin: str, stats: int, ready: int, extra: str = "") -> str:
    return f"""
llm:
  models:
  - name: gpt-4o-mini
    provider: openAI
    params: {{model: upstream-model, apiKey: {TEST_KEY}, baseUrl: {openai_url}}}
  - name: "passthrough-*"
    provider: {{custom: {{formats: [{{type: completions}}]}}}}
    params: {{baseUrl: {openai_url}}}
  - name: claude
    provider: anthropic
    params: {{model: claude-real, apiKey: {TEST_KEY}, baseUrl: "{anthropic_origin}"}}
  - name: down
    visibility: internal
    provider: openAI
    params: {{apiKey: {TEST_KEY}, baseUrl: "http://127.0.0.1:{free_port()}/v1"}}
  virtualModels:
  - name: resilient
    routing: {{failover: {{targets: [{{model: down, priority: 0}}, {{model: gpt-4o-mini, priority: 1}}]}}}}
config:
  statsAddr: "127.0.0.1:{stats}"
  readinessAddr: "127.0.0.1:{ready}"
  modelCatalog:
  - {{name: upstream-model, input: 1000000, output: 2000000}}
{extra}
"""


class Stats:
    def __init__(self, gateway: RunningGateway, stats: int, ready: int) -> None:
        self.gateway = gateway
        self.stats = stats
        self.ready = ready

    def scrape(self, path: str = "/metrics") -> dict[str, Any]:
        text = httpx.get(f"http://127.0.0.1:{self.stats}{path}", timeout=10).text
        return {family.name: family for family in text_string_to_metric_families(text)}

    def samples(self, sample_name: str, **labels: str) -> list[Any]:
        family = sample_name.removesuffix("_total").removesuffix("_bucket").removesuffix("_count").removesuffix("_sum")
        found = self.scrape().get(family)
        if found is None:
            return []
        return [
            s for s in found.samples if s.name == sample_name and all(s.labels.get(k) == v for k, v in labels.items())
        ]

    def value(self, sample_name: str, **labels: str) -> float:
        return sum(s.value for s in self.samples(sample_name, **labels))

    def wait_value(self, sample_name: str, expected: float, **labels: str) -> float:
        """The value once it reaches ``expected`` (an aborted request settles after its client left)."""
        deadline = time.monotonic() + 30
        while True:
            value = self.value(sample_name, **labels)
            if value >= expected or time.monotonic() > deadline:
                return value
            time.sleep(0.05)


def start(fake_openai: FakeOpenAI, anthropic: FakeAnthropic, tmp: Path, extra: str = "", **kwargs: Any) -> Stats:
    stats, ready = free_port(), free_port()
    gateway = start_gateway(config(fake_openai.base_url, anthropic.origin, stats, ready, extra), tmp, **kwargs)
    return Stats(gateway, stats, ready)


@pytest.fixture(scope="module")
def anthropic() -> Iterator[FakeAnthropic]:
    fake, stop = start_fake_anthropic(TEST_KEY)
    yield fake
    stop()


@pytest.fixture(scope="module")
def served(
    fake_openai: FakeOpenAI, anthropic: FakeAnthropic, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stats]:
    """Two workers; one request of each kind: plain, streamed (OpenAI and Anthropic), failed, failed over,
    aborted by its client, and a model nothing serves."""
    stats = start(fake_openai, anthropic, tmp_path_factory.mktemp("metrics"), workers=2)
    client = openai_client(stats.gateway.url)
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    for _ in client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True):
        pass
    for _ in client.chat.completions.create(model="claude", messages=MESSAGES, stream=True):
        pass
    client.chat.completions.create(model="resilient", messages=MESSAGES)
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="passthrough-503", messages=MESSAGES)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=MESSAGES)
    asyncio.run(abort_stream(stats.gateway.port, {"model": "passthrough-hang", "messages": MESSAGES, "stream": True}))
    assert stats.wait_value("agentgateway_requests_total", 7) == 7
    yield stats
    stats.gateway.stop()


def test_metric_names_and_types_are_agentgateways(served: Stats) -> None:
    families = served.scrape()
    expected = {
        "agentgateway_requests": "counter",
        "agentgateway_request_duration_seconds": "histogram",
        "agentgateway_gen_ai_client_token_usage": "histogram",
        "agentgateway_gen_ai_server_request_duration": "histogram",
        "agentgateway_gen_ai_server_time_to_first_token": "histogram",
        "agentgateway_gen_ai_server_time_per_output_token": "histogram",
        "agentgateway_gen_ai_client_cost_usd": "counter",
        "agentgateway_retries": "counter",
        "agentgateway_build": "info",
        "agentgateway_config_synchronized": "gauge",
        "agentgateway_upstream_attempts": "counter",
        "agentgateway_backend_evictions": "counter",
        "agentgateway_rate_limit_rejections": "counter",
        "agentgateway_redis_failures": "counter",
    }
    for name, kind in expected.items():
        if kind == "info":  # exported as a gauge named *_info, as agentgateway's
            assert families["agentgateway_build_info"].type == "gauge"
            continue
        assert name in families, sorted(families)
        assert families[name].type == kind, name
    assert served.value("agentgateway_config_synchronized") == 1
    assert served.scrape("/stats/prometheus").keys() == families.keys()


def _bounds(stats: Stats, family: str) -> list[float]:
    samples = [s for s in stats.scrape()[family].samples if s.name == family + "_bucket"]
    first = samples[0].labels
    same = [s for s in samples if {k: v for k, v in s.labels.items() if k != "le"} == {
        k: v for k, v in first.items() if k != "le"
    }]  # fmt: skip
    return [float(s.labels["le"]) for s in same]


def test_buckets_follow_the_genai_conventions(served: Stats) -> None:
    assert _bounds(served, "agentgateway_gen_ai_client_token_usage") == [*TOKEN_BUCKETS, float("inf")]
    assert _bounds(served, "agentgateway_gen_ai_server_request_duration") == [*GENAI_DURATION_BUCKETS, float("inf")]
    assert _bounds(served, "agentgateway_gen_ai_server_time_to_first_token") == [*TTFT_BUCKETS, float("inf")]


def test_labels_name_provider_operation_and_configured_models(served: Stats) -> None:
    ok = served.samples("agentgateway_requests_total", status="200")
    by_model = {(s.labels["gen_ai_request_model"], s.labels["gen_ai_provider_name"]): s.value for s in ok}
    # The virtual model is labelled with its own name; it was served by gpt-4o-mini's backend.
    assert by_model == {("gpt-4o-mini", "openai"): 2, ("claude", "anthropic"): 1, ("resilient", "openai"): 1}
    for sample in served.samples("agentgateway_requests_total"):
        assert sample.labels["gen_ai_operation_name"] == "chat"
        assert set(sample.labels) == {
            "backend", "protocol", "method", "status", "gen_ai_operation_name", "gen_ai_provider_name",
            "gen_ai_system", "gen_ai_request_model",
        }  # fmt: skip
    # A model nothing serves is "other"; a pattern entry's models are labelled with the pattern.
    assert served.value("agentgateway_requests_total", status="404", gen_ai_request_model="other") == 1
    assert served.value("agentgateway_requests_total", status="502", gen_ai_request_model="passthrough-*") == 0
    assert served.value("agentgateway_requests_total", status="503", gen_ai_request_model="passthrough-*") == 1
    assert served.value("agentgateway_requests_total", status="499", gen_ai_request_model="passthrough-*") == 1
    # error_type on durations, from the error vocabulary.
    assert served.value("agentgateway_request_duration_seconds_count", status="404", error_type="model_not_found") == 1
    assert served.value("agentgateway_gen_ai_server_request_duration_count", error_type="client_closed") == 1
    assert served.value("agentgateway_gen_ai_server_request_duration_count", error_type="") == 4
    # Response model: the id sent upstream.
    assert served.value("agentgateway_gen_ai_server_request_duration_count", gen_ai_response_model="claude-real") == 1


def test_tokens_ttft_and_cost_for_plain_and_streamed_answers(served: Stats) -> None:
    openai_input = served.value(
        "agentgateway_gen_ai_client_token_usage_sum", gen_ai_token_type="input", gen_ai_request_model="gpt-4o-mini"
    )
    openai_output = served.value(
        "agentgateway_gen_ai_client_token_usage_sum", gen_ai_token_type="output", gen_ai_request_model="gpt-4o-mini"
    )
    assert openai_input == 2 * 12, "plain and streamed: the fake reports 12 prompt tokens each"
    assert openai_output > 0
    assert (
        served.value(
            "agentgateway_gen_ai_client_token_usage_count", gen_ai_token_type="output", gen_ai_provider_name="anthropic"
        )
        == 1
    )
    # Streams only: the OpenAI and Anthropic streams, and the aborted one (its first chunk had been sent).
    assert served.value("agentgateway_gen_ai_server_time_to_first_token_count") == 3
    assert served.value("agentgateway_gen_ai_server_time_per_output_token_count", gen_ai_provider_name="openai") == 1
    # USD 1 per input token and 2 per output token (the catalog above), for every upstream-model request.
    resilient_usage = served.value(
        "agentgateway_gen_ai_client_token_usage_sum", gen_ai_token_type="output", gen_ai_request_model="resilient"
    )
    cost = served.value("agentgateway_gen_ai_client_cost_usd_total")
    assert cost == pytest.approx(3 * 12 + 2 * (openai_output + resilient_usage))
    # claude-real has no price: counted as unpriced, never as cost.
    assert served.value("agentgateway_model_catalog_unpriced_requests_total", gen_ai_response_model="claude-real") == 1


def test_attempts_and_retries_show_the_failover(served: Stats) -> None:
    assert served.value("agentgateway_upstream_attempts_total", backend="down", outcome="failover") == 1
    assert served.value("agentgateway_retries_total", backend="down", reason="failover") == 1
    assert served.value("agentgateway_backend_evictions_total", backend="down") == 1
    assert served.value("agentgateway_upstream_attempts_total", backend="passthrough-*", outcome="failed") == 1
    # The stream its client left had been answered: the attempt succeeded, the request settled as 499.
    assert served.value("agentgateway_upstream_attempts_total", backend="passthrough-*", outcome="ok") == 1
    assert served.value("agentgateway_upstream_attempts_total", backend="gpt-4o-mini", outcome="ok") == 3


def test_readiness_is_ready_when_every_worker_serves(served: Stats) -> None:
    response = httpx.get(f"http://127.0.0.1:{served.ready}/healthz/ready", timeout=10)
    assert response.status_code == 200
    assert served.value("agentgateway_workers_ready") == 2


def test_a_flood_of_random_model_names_does_not_grow_the_series(served: Stats) -> None:
    def series() -> int:
        return sum(len(family.samples) for family in served.scrape().values())

    client = openai_client(served.gateway.url)
    client.chat.completions.create(model=f"passthrough-{uuid.uuid4().hex}", messages=MESSAGES)
    before_requests = served.value("agentgateway_requests_total")
    before = series()
    for _ in range(60):
        client.chat.completions.create(model=f"passthrough-{uuid.uuid4().hex}", messages=MESSAGES)
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model=uuid.uuid4().hex, messages=MESSAGES)
    assert served.wait_value("agentgateway_requests_total", before_requests + 120) == before_requests + 120
    assert series() == before


def test_stats_addr_off_and_the_environment_wins(
    fake_openai: FakeOpenAI, anthropic: FakeAnthropic, tmp_path: Path
) -> None:
    stats = start(fake_openai, anthropic, tmp_path, env={"STATS_ADDR": "off"})
    try:
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{stats.stats}/metrics", timeout=5)
        assert httpx.get(f"http://127.0.0.1:{stats.ready}/healthz/ready", timeout=5).status_code == 200
    finally:
        stats.gateway.stop()
    port = free_port()
    stats = start(fake_openai, anthropic, tmp_path, env={"STATS_ADDR": f"127.0.0.1:{port}"})
    try:
        stats.stats = port
        openai_client(stats.gateway.url).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert stats.wait_value("agentgateway_requests_total", 1) == 1
    finally:
        stats.gateway.stop()


def _workers(gateway: RunningGateway) -> set[int]:
    return set(process_tree(gateway.process.pid)) - {gateway.process.pid}


def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_counts_survive_a_worker_that_dies_and_is_respawned(
    fake_openai: FakeOpenAI, anthropic: FakeAnthropic, tmp_path: Path
) -> None:
    stats = start(fake_openai, anthropic, tmp_path, workers=2)
    try:
        client = openai_client(stats.gateway.url)
        for _ in range(20):
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert stats.wait_value("agentgateway_requests_total", 20) == 20
        workers = _workers(stats.gateway)
        assert len(workers) >= 2
        victim = max(workers)
        os.kill(victim, signal.SIGKILL)
        _until(lambda: victim not in _workers(stats.gateway), "the killed worker is gone")
        _until(
            lambda: len(_workers(stats.gateway)) >= 2 and stats.value("agentgateway_workers_ready") == 2,
            "granian respawned the worker and it serves",
        )
        assert stats.value("agentgateway_requests_total") == 20, "the dead worker's counts are kept"
        for _ in range(20):
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert stats.wait_value("agentgateway_requests_total", 40) == 40
        assert stats.value("agentgateway_requests_total") == 40, "and counted once"
    finally:
        stats.gateway.stop()


# -- a real Prometheus server ------------------------------------------------------------------------------------------


@pytest.fixture
def prometheus_binary() -> str:
    binary = shutil.which("prometheus")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("prometheus is missing: .ci/run must apt-get install it")
        pytest.skip("prometheus is not installed (apt-get install -y prometheus)")
    return binary


def test_a_prometheus_server_scrapes_the_request_count(
    fake_openai: FakeOpenAI, anthropic: FakeAnthropic, tmp_path: Path, prometheus_binary: str
) -> None:
    stats = start(fake_openai, anthropic, tmp_path, workers=2)
    port = free_port()
    (tmp_path / "prometheus.yml").write_text(
        f"""
global: {{scrape_interval: 1s, evaluation_interval: 1s}}
scrape_configs:
- job_name: agentgateway
  static_configs: [{{targets: ["127.0.0.1:{stats.stats}"]}}]
"""
    )
    log = (tmp_path / "prometheus.log").open("wb")
    server = subprocess.Popen(
        [
            prometheus_binary,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        client = openai_client(stats.gateway.url)
        requests = 25
        for index in range(requests):
            stream = index % 2 == 1
            answer = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=stream)
            if stream:
                for _ in answer:  # type: ignore[union-attr]
                    pass

        def query() -> float | None:
            try:
                response = httpx.get(
                    f"http://127.0.0.1:{port}/api/v1/query",
                    params={"query": 'sum(agentgateway_requests_total{gen_ai_request_model="gpt-4o-mini"})'},
                    timeout=5,
                )
            except httpx.TransportError:
                return None
            result = response.json()["data"]["result"]
            return float(result[0]["value"][1]) if result else None

        deadline = time.monotonic() + 90
        value = None
        while time.monotonic() < deadline:
            value = query()
            if value == requests:
                break
            time.sleep(0.5)
        assert value == requests, (tmp_path / "prometheus.log").read_text()[-2000:]
    finally:
        server.terminate()
        server.wait(30)
        log.close()
        stats.gateway.stop()


def test_rate_limit_rejections_are_counted_by_limit(
    fake_openai: FakeOpenAI, anthropic: FakeAnthropic, tmp_path: Path
) -> None:
    stats_port = free_port()
    limited = config(fake_openai.base_url, anthropic.origin, stats_port, free_port()).replace(
        "llm:\n",
        "llm:\n  policies:\n    localRateLimit: [{type: requests, maxTokens: 1, tokensPerFill: 1, fillInterval: 1h}]\n",
        1,
    )
    gateway = start_gateway(limited, tmp_path)
    try:
        stats = Stats(gateway, stats_port, 0)
        client = openai_client(gateway.url)
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert stats.wait_value("agentgateway_rate_limit_rejections_total", 1, limit="global:requests") == 1
    finally:
        gateway.stop()
