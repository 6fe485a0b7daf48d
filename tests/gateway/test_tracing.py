"""Spans by the GenAI semantic conventions (in-memory exporter), and once through OTLP/HTTP."""

from __future__ import annotations

import time
from collections.abc import Iterator

import openai
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from tests.gateway.conftest import Gateway, StartGateway
from tests.gateway.servers import OTLPReceiver
from tests.gateway.upstream import Upstream

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


def _only(spans: list[ReadableSpan]) -> ReadableSpan:
    assert len(spans) == 1, [s.name for s in spans]
    return spans[0]


def test_chat_span_attributes(gateway: Gateway, client: openai.OpenAI, upstream: Upstream) -> None:
    client.chat.completions.create(
        model="gpt-test",
        messages=[{"role": "user", "content": "hi"}],
        temperature=0.5,
        max_tokens=20,
        top_p=0.9,
        stop="END",
        seed=3,
        n=2,
        response_format={"type": "json_object"},
        extra_headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"},
    )
    span = _only(gateway.wait_spans(1))
    assert span.name == "chat stub-model"
    assert span.kind is SpanKind.CLIENT
    attrs = dict(span.attributes or {})
    port = int(upstream.url.rsplit(":", 1)[1])  # type: ignore[attr-defined]
    assert attrs == {
        **attrs,
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "stub-model",
        "gen_ai.request.temperature": 0.5,
        "gen_ai.request.max_tokens": 20,
        "gen_ai.request.top_p": 0.9,
        "gen_ai.request.stop_sequences": ("END",),
        "gen_ai.request.seed": 3,
        "gen_ai.request.choice.count": 2,
        "gen_ai.output.type": "json",
        "gen_ai.response.model": "stub-model-0001",
        "gen_ai.response.id": "chatcmpl-stub",
        "gen_ai.response.finish_reasons": ("stop", "stop"),
        "gen_ai.usage.input_tokens": 7,
        "gen_ai.usage.output_tokens": 2,
        "server.address": "127.0.0.1",
        "server.port": port,
        "lockgate.route": "gpt-test",
        "lockgate.deployment": "openai/stub-model",
        "lockgate.stream": False,
        "http.response.status_code": 200,
    }
    assert "error.type" not in attrs and "gen_ai.input.messages" not in attrs  # capture is off
    # the incoming traceparent is continued, and the span's own context goes upstream
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert span.parent is not None and format(span.parent.span_id, "016x") == PARENT_ID
    sent = upstream.requests[-1]["headers"]["traceparent"]
    assert sent == f"00-{TRACE_ID}-{format(span.context.span_id, '016x')}-01"


def test_stream_span_has_ttft_usage_and_finish_reasons(
    gateway: Gateway, client: openai.OpenAI
) -> None:
    list(client.chat.completions.create(model="slow", messages=[], stream=True))
    span = _only(gateway.wait_spans(1))
    attrs = dict(span.attributes or {})
    assert span.name == "chat slow-stream"
    assert attrs["lockgate.stream"] is True
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)
    assert attrs["gen_ai.response.id"] == "chatcmpl-stream"
    assert (attrs["gen_ai.usage.input_tokens"], attrs["gen_ai.usage.output_tokens"]) == (7, 2)
    assert 0 < float(attrs["lockgate.time_to_first_token_ms"]) < 300  # type: ignore[arg-type]


def test_error_span(gateway: Gateway, client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="fail-429", messages=[])
    span = _only(gateway.wait_spans(1))
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes["error.type"] == "429"
    assert span.attributes["http.response.status_code"] == 429


def test_unknown_model_span(gateway: Gateway, client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="nope", input="x")
    span = _only(gateway.wait_spans(1))
    assert span.name == "embeddings"
    assert span.attributes is not None and span.attributes["error.type"] == "model_not_found"


def test_content_capture_is_redacted(start_gateway: StartGateway) -> None:
    gw = start_gateway(tracing={"capture_content": True})
    text = "mail bob@example.com, key sk-abcdefghijklmnopqrstuvwx"
    gw.client().chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": text}]
    )
    attrs = dict(_only(gw.wait_spans(1)).attributes or {})
    captured = str(attrs["gen_ai.input.messages"])
    assert "bob@example.com" not in captured and "sk-abcdefghijklmnop" not in captured
    assert captured.count("[REDACTED]") == 2
    assert "Hello world" in str(attrs["gen_ai.output.messages"])


@pytest.fixture
def otlp_receiver() -> Iterator[OTLPReceiver]:
    receiver = OTLPReceiver()
    yield receiver
    receiver.close()


def test_otlp_http_export_end_to_end(
    start_gateway: StartGateway, otlp_receiver: OTLPReceiver
) -> None:
    received = otlp_receiver.requests
    tracing = {"otlp_endpoint": otlp_receiver.base_url, "export_delay_s": 0.05}
    gw = start_gateway(tracing=tracing)
    gw.client().chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "x"}]
    )
    deadline = time.monotonic() + 10
    while not received and time.monotonic() < deadline:
        time.sleep(0.05)
    spans = [
        span
        for message in received
        for resource_spans in message.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
    ]
    assert [s.name for s in spans] == ["chat stub-model"]
    attrs = {a.key: a.value for a in spans[0].attributes}
    assert attrs["gen_ai.provider.name"].string_value == "openai"
    assert attrs["gen_ai.usage.output_tokens"].int_value == 2
    service = {
        a.key: a.value.string_value for a in received[0].resource_spans[0].resource.attributes
    }
    assert service["service.name"] == "lockgate"
