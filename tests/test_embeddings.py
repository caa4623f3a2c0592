"""``POST /v1/embeddings`` (issue 19) end to end: the openai SDK's ``embeddings.create`` -> the real gateway -> fake
OpenAI, Bedrock (InvokeModel on Titan and Cohere, SigV4 recomputed with botocore, bodies checked against the models'
documented schemas), Gemini API (``batchEmbedContents`` validated with google-genai types) and Vertex AI
(``predict``) upstreams, through the same exchange as chat: inbound keys and allowedModels, virtual models with
failover, metrics."""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest
from conftest import TEST_KEY, RunningGateway, free_port, openai_client, start_gateway
from fakes.bedrock_upstream import FakeBedrock, start_fake_bedrock
from fakes.embedding_vectors import decode_base64, fake_vector
from fakes.gemini_upstream import FakeGoogle, start_fake_google
from fakes.openai_upstream import FakeOpenAI
from prometheus_client.parser import text_string_to_metric_families
from test_bedrock import ACCESS_KEY, AWS_ENV_VARS, SECRET_KEY, SESSION_TOKEN, aws_env
from test_vertex import adc_env

KEY_ALL = "sk-embeddings-all-0123456789"
KEY_OPENAI_ONLY = "sk-embeddings-openai-only-0123"
TITAN = "amazon.titan-embed-text-v2:0"

#: model name -> the size its fake answers without ``dimensions``
DEFAULT_SIZE = {
    "oai-embed": 8,
    "titan": 1024,
    "cohere": 1024,
    "cohere-v4": 1536,
    "gemini-embed": 3072,
    "vertex-embed": 768,
    "vertex-text": 768,
}
#: the backends that take ``dimensions`` (Cohere v3 has a fixed size), with a size each accepts
DIMENSIONS = {
    "oai-embed": 5,
    "titan": 256,
    "cohere-v4": 256,
    "gemini-embed": 256,
    "vertex-embed": 256,
    "vertex-text": 64,
}


@dataclass
class Served:
    gateway: RunningGateway
    openai: FakeOpenAI
    bedrock: FakeBedrock
    google: FakeGoogle
    stats: int

    def client(self, key: str = KEY_ALL, v1: bool = False) -> openai.OpenAI:
        return openai_client(self.gateway.url + ("/v1" if v1 else ""), key)

    def metrics(self) -> dict[str, Any]:
        text = httpx.get(f"http://127.0.0.1:{self.stats}/metrics", timeout=10).text
        return {family.name: family for family in text_string_to_metric_families(text)}


@pytest.fixture(scope="module")
def served(fake_openai: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    bedrock, stop_bedrock = start_fake_bedrock(keys={ACCESS_KEY: (SECRET_KEY, SESSION_TOKEN)})
    google, stop_google = start_fake_google(TEST_KEY)
    stats = free_port()
    aws = f'awsRegion: us-east-1, baseUrl: "{bedrock.base_url}"'
    vertex = f'vertexProject: test-project, vertexRegion: us-central1, baseUrl: "{google.origin}"'
    config = f"""
llm:
  models:
  - name: oai-embed
    provider: openAI
    params: {{model: text-embedding-3-small, apiKey: {TEST_KEY}, baseUrl: {fake_openai.base_url}}}
  - name: down-embed
    visibility: internal
    provider: openAI
    params: {{model: text-embedding-3-small-503, apiKey: {TEST_KEY}, baseUrl: {fake_openai.base_url}}}
  - name: titan
    provider: bedrock
    params: {{model: "{TITAN}", {aws}}}
  - name: titan-throttled
    provider: bedrock
    params: {{model: "{TITAN}-throttle", {aws}}}
  - name: cohere
    provider: bedrock
    params: {{model: cohere.embed-english-v3, {aws}}}
  - name: cohere-v4
    provider: bedrock
    params: {{model: "us.cohere.embed-v4:0", {aws}}}
  - name: gemini-embed
    provider: gemini
    params: {{model: gemini-embedding-001, apiKey: {TEST_KEY}, baseUrl: "{google.origin}"}}
  - name: vertex-embed
    provider: vertex
    params: {{model: gemini-embedding-001, {vertex}}}
  - name: vertex-text
    provider: vertex
    params: {{model: text-embedding-005, {vertex}}}
  - name: claude
    provider: anthropic
    params: {{apiKey: {TEST_KEY}, baseUrl: "http://127.0.0.1:{free_port()}"}}
  virtualModels:
  - name: resilient-embed
    routing: {{failover: {{targets: [{{model: down-embed, priority: 0}}, {{model: titan, priority: 1}}]}}}}
  policies:
    apiKey:
      keys:
      - {{key: {KEY_ALL}, metadata: {{name: all}}}}
      - {{key: {KEY_OPENAI_ONLY}, metadata: {{name: openai-only}}, allowedModels: [oai-embed]}}
config:
  statsAddr: "127.0.0.1:{stats}"
"""
    tmp = tmp_path_factory.mktemp("gw-embeddings")
    env = {
        **adc_env(tmp, google.service_account_info()),
        **aws_env(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_SESSION_TOKEN=SESSION_TOKEN),
    }
    running = start_gateway(config, tmp, env=env, unset=AWS_ENV_VARS)
    yield Served(running, fake_openai, bedrock, google, stats)
    running.stop()
    stop_google()
    stop_bedrock()


BACKENDS = list(DEFAULT_SIZE)


# -- every backend, float and base64 -------------------------------------------------------------------------------


@pytest.mark.parametrize("model", BACKENDS)
def test_a_string_as_floats_from_every_backend(served: Served, model: str) -> None:
    answer = served.client().embeddings.create(model=model, input="hello embeddings", encoding_format="float")
    assert answer.model == model
    assert answer.object == "list"
    assert [d.index for d in answer.data] == [0]
    assert answer.data[0].object == "embedding"
    assert answer.data[0].embedding == fake_vector("hello embeddings", DEFAULT_SIZE[model])
    if model == "gemini-embed":
        assert answer.usage.prompt_tokens == 0  # the Gemini API reports no token counts
    else:
        assert answer.usage.prompt_tokens == 2  # the fakes count words; the provider's count is reported
    assert answer.usage.total_tokens == answer.usage.prompt_tokens


@pytest.mark.parametrize("model", BACKENDS)
def test_a_list_as_base64_from_every_backend(served: Served, model: str) -> None:
    texts = ["first text", "second", "the third one"]
    raw = served.client().embeddings.with_raw_response.create(model=model, input=texts, encoding_format="base64")
    body = raw.http_response.json()
    assert body["model"] == model
    assert [d["index"] for d in body["data"]] == [0, 1, 2]
    for text, item in zip(texts, body["data"], strict=True):
        assert isinstance(item["embedding"], str)  # little-endian float32, base64, as OpenAI sends
        assert decode_base64(item["embedding"]) == fake_vector(text, DEFAULT_SIZE[model])
    # The SDK's default (it asks for base64 and decodes it): the same numbers.
    decoded = served.client().embeddings.create(model=model, input=texts)
    assert [d.embedding for d in decoded.data] == [fake_vector(t, DEFAULT_SIZE[model]) for t in texts]


@pytest.mark.parametrize("model", list(DIMENSIONS))
def test_dimensions_reach_every_backend(served: Served, model: str) -> None:
    size = DIMENSIONS[model]
    answer = served.client(v1=True).embeddings.create(model=model, input=["a b", "c"], dimensions=size)
    assert [len(d.embedding) for d in answer.data] == [size, size]
    assert answer.data[1].embedding == fake_vector("c", size)


def test_what_openai_receives(served: Served) -> None:
    served.client().embeddings.create(model="oai-embed", input=["x", "y"], dimensions=5, user="u-1")
    recorded = served.openai.last()
    assert recorded.path == "/v1/embeddings"
    assert recorded.headers["Authorization"] == f"Bearer {TEST_KEY}"  # the entry's key, never the client's
    assert recorded.body == {
        "model": "text-embedding-3-small",
        "input": ["x", "y"],
        "dimensions": 5,
        "user": "u-1",
        "encoding_format": "base64",
    }


def test_base64_from_openai_is_passed_through_as_sent(served: Served) -> None:
    raw = served.client().embeddings.with_raw_response.create(model="oai-embed", input="z", encoding_format="base64")
    vector = fake_vector("z", 8)
    assert raw.http_response.json()["data"][0]["embedding"] == base64.b64encode(struct.pack("<8f", *vector)).decode()


def test_what_titan_receives(served: Served) -> None:
    served.client().embeddings.create(model="titan", input=["one", "two"], dimensions=512)
    bodies = sorted((r.body["inputText"], r.body) for r in served.bedrock.requests[-2:])
    assert [body for _, body in bodies] == [
        {"inputText": "one", "dimensions": 512, "normalize": True},
        {"inputText": "two", "dimensions": 512, "normalize": True},
    ]
    recorded = served.bedrock.last()
    assert recorded.raw_path == "/model/amazon.titan-embed-text-v2%3A0/invoke"
    assert recorded.headers["Authorization"].startswith("AWS4-HMAC-SHA256 ")  # recomputed by the fake
    assert recorded.headers["X-Amz-Security-Token"] == SESSION_TOKEN


def test_what_cohere_receives(served: Served) -> None:
    served.client().embeddings.create(
        model="cohere-v4", input=["q"], dimensions=256, extra_body={"input_type": "search_query"}
    )
    recorded = served.bedrock.last()
    assert recorded.raw_path == "/model/us.cohere.embed-v4%3A0/invoke"
    assert recorded.body == {
        "texts": ["q"],
        "input_type": "search_query",
        "embedding_types": ["float"],
        "output_dimension": 256,
    }
    served.client().embeddings.create(model="cohere", input="doc")
    assert served.bedrock.last().body == {
        "texts": ["doc"],
        "input_type": "search_document",
        "embedding_types": ["float"],
    }


def test_what_gemini_and_vertex_receive(served: Served) -> None:
    served.client().embeddings.create(
        model="gemini-embed", input=["a", "b"], dimensions=256, extra_body={"task_type": "RETRIEVAL_QUERY"}
    )
    recorded = served.google.last()
    assert recorded.path == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert recorded.headers["x-goog-api-key"] == TEST_KEY
    assert recorded.body == {
        "requests": [
            {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": text}]},
             "taskType": "RETRIEVAL_QUERY", "outputDimensionality": 256}
            for text in ("a", "b")
        ]
    }  # fmt: skip
    served.client().embeddings.create(model="vertex-text", input=["a", "b"], dimensions=64)
    recorded = served.google.last()
    assert recorded.path == (
        "/v1/projects/test-project/locations/us-central1/publishers/google/models/text-embedding-005:predict"
    )
    assert recorded.headers["authorization"].startswith("Bearer ")
    assert recorded.body == {
        "instances": [{"content": "a"}, {"content": "b"}],
        "parameters": {"outputDimensionality": 64},
    }


# -- several calls per request -------------------------------------------------------------------------------------


def test_titan_inputs_go_out_concurrently_and_come_back_in_order(served: Served) -> None:
    texts = [f"slow {i}" if i % 3 == 0 else f"fast {i}" for i in range(12)]
    before = len(served.bedrock.requests)
    served.bedrock.in_flight_max = 0
    answer = served.client().embeddings.create(model="titan", input=texts, encoding_format="float")
    assert len(served.bedrock.requests) - before == len(texts)  # one InvokeModel call per input
    assert served.bedrock.in_flight_max > 1  # at once, not one after the other
    assert [d.index for d in answer.data] == list(range(12))
    assert [d.embedding for d in answer.data] == [fake_vector(t, 1024) for t in texts]
    assert answer.usage.prompt_tokens == 24


def test_cohere_takes_96_texts_per_call(served: Served) -> None:
    texts = [f"text {i}" for i in range(100)]
    before = len(served.bedrock.requests)
    answer = served.client().embeddings.create(model="cohere", input=texts, encoding_format="float")
    calls = served.bedrock.requests[before:]
    assert sorted(len(call.body["texts"]) for call in calls) == [4, 96]
    assert [d.embedding for d in answer.data] == [fake_vector(t, 1024) for t in texts]
    assert answer.usage.prompt_tokens == 200


def test_vertex_gemini_embedding_takes_one_instance_per_call(served: Served) -> None:
    before = len(served.google.requests)
    answer = served.client().embeddings.create(model="vertex-embed", input=["x", "y", "z"], encoding_format="float")
    assert len(served.google.requests) - before == 3
    assert [d.embedding for d in answer.data] == [fake_vector(t, 768) for t in "xyz"]


# -- the exchange: failover, auth, errors, metrics -----------------------------------------------------------------


def test_failover_through_a_virtual_model(served: Served) -> None:
    before = served.openai.count("text-embedding-3-small-503")
    answer = served.client().embeddings.create(model="resilient-embed", input="fail over", encoding_format="float")
    assert served.openai.count("text-embedding-3-small-503") == before + 1  # the first target was tried
    assert answer.model == "resilient-embed"
    assert answer.data[0].embedding == fake_vector("fail over", 1024)  # ... and Titan answered


def test_an_upstream_error_keeps_its_status(served: Served) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        served.client().embeddings.create(model="titan-throttled", input=["a", "b", "c"])
    assert "Too many requests" in caught.value.message


def test_inbound_keys_and_allowed_models_apply(served: Served) -> None:
    with pytest.raises(openai.AuthenticationError):
        served.client(key="sk-unknown").embeddings.create(model="oai-embed", input="x")
    with pytest.raises(openai.PermissionDeniedError) as caught:
        served.client(key=KEY_OPENAI_ONLY).embeddings.create(model="titan", input="x")
    assert caught.value.code == "model_not_allowed"
    assert served.client(key=KEY_OPENAI_ONLY).embeddings.create(model="oai-embed", input="x").data


@pytest.mark.parametrize("model", ["titan", "cohere", "gemini-embed", "vertex-text"])
def test_token_arrays_are_a_400_naming_input_where_the_provider_takes_text(served: Served, model: str) -> None:
    for tokens in ([1, 2, 3], [[1, 2], [3]]):
        with pytest.raises(openai.BadRequestError) as caught:
            served.client().embeddings.create(model=model, input=tokens)
        assert caught.value.param == "input"


def test_token_arrays_pass_on_to_openai(served: Served) -> None:
    answer = served.client().embeddings.create(model="oai-embed", input=[[1, 2], [3]], encoding_format="float")
    assert served.openai.last().body["input"] == [[1, 2], [3]]
    assert [d.embedding for d in answer.data] == [fake_vector([1, 2], 8), fake_vector([3], 8)]


def test_anthropic_has_no_embeddings(served: Served) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        served.client().embeddings.create(model="claude", input="x")
    assert "no embeddings" in caught.value.message


def test_dimensions_a_model_cannot_honour_are_a_400(served: Served) -> None:
    for model, size in (("titan", 300), ("cohere", 256)):
        with pytest.raises(openai.BadRequestError) as caught:
            served.client().embeddings.create(model=model, input="x", dimensions=size)
        assert caught.value.param == "dimensions"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "oai-embed"}, "input"),
        ({"input": "x"}, "model"),
        ({"model": "oai-embed", "input": ""}, "input"),
        ({"model": "oai-embed", "input": []}, "input"),
        ({"model": "oai-embed", "input": ["a", 1]}, "input[1]"),
        ({"model": "oai-embed", "input": [[1], [-2]]}, "input[1][0]"),
        ({"model": "oai-embed", "input": "x", "dimensions": "8"}, "dimensions"),
        ({"model": "oai-embed", "input": "x", "dimensions": 0}, "dimensions"),
        ({"model": "oai-embed", "input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({"model": "oai-embed", "input": "x", "user": 7}, "user"),
        ({"model": "oai-embed", "input": ["x"] * 2049}, "input"),
    ],
)
def test_request_checks_name_the_field(served: Served, body: dict[str, Any], param: str) -> None:
    response = httpx.post(
        served.gateway.url + "/v1/embeddings", json=body, headers={"authorization": f"Bearer {KEY_ALL}"}, timeout=10
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"


def test_get_is_405(served: Served) -> None:
    response = httpx.get(served.gateway.url + "/embeddings", timeout=10)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


def test_metrics_name_the_embeddings_operation(served: Served) -> None:
    served.client().embeddings.create(model="titan", input="counted once", encoding_format="float")
    families = served.metrics()
    requests = [
        s
        for s in families["agentgateway_requests"].samples
        if s.labels.get("gen_ai_operation_name") == "embeddings" and s.labels.get("gen_ai_request_model") == "titan"
    ]
    assert requests
    answered = [s for s in requests if s.labels["status"] == "200"]
    assert answered
    assert all(s.labels["gen_ai_provider_name"] == "aws.bedrock" for s in answered)
    tokens = [
        s
        for s in families["agentgateway_gen_ai_client_token_usage"].samples
        if s.name.endswith("_sum")
        and s.labels.get("gen_ai_operation_name") == "embeddings"
        and s.labels.get("gen_ai_token_type") == "input"
        and s.labels.get("gen_ai_request_model") == "titan"
    ]
    assert tokens
    assert tokens[0].value > 0
    assert not any(s.labels.get("gen_ai_operation_name") == "chat" for s in families["agentgateway_requests"].samples)
