"""The hand-written OTLP span encoder writes exactly the SDK encoder's bytes, and the exporter
built on it delivers them over OTLP/HTTP with the SDK's client (compression, errors)."""

from __future__ import annotations

import gzip
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    set_span_in_context,
)
from opentelemetry.trace.span import TraceState

from lockgate.gateway.otlp import FastOTLPSpanExporter, SpanEncoder, encode_spans
from tests.gateway.servers import OTLPReceiver

REMOTE = SpanContext(
    0x4BF92F3577B34DA6A3CE929D0E0E4736,
    0x00F067AA0BA902B7,
    is_remote=True,
    trace_flags=TraceFlags(1),
    trace_state=TraceState([("vendor", "abc"), ("other", "1")]),
)


class _Keep(SpanExporter):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans: Any) -> SpanExportResult:
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS


def _record(
    build: Callable[[TracerProvider], None], resource: Resource | None = None
) -> list[ReadableSpan]:
    keep = _Keep()
    provider = TracerProvider(resource=resource or Resource.create({"service.name": "lockgate"}))
    provider.add_span_processor(SimpleSpanProcessor(keep))
    build(provider)
    return keep.spans


def gateway_like(provider: TracerProvider) -> None:
    tracer = provider.get_tracer("lockgate.gateway")
    for i in range(20):
        span = tracer.start_span("chat gpt-4o-mini", kind=SpanKind.CLIENT)
        span.set_attributes(
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.request.temperature": 0.2,
                "gen_ai.request.max_tokens": 16,
                "gen_ai.response.id": f"chatcmpl-{i}",
                "gen_ai.response.finish_reasons": ("stop",),
                "gen_ai.usage.input_tokens": 12 + i,
                "gen_ai.usage.output_tokens": 5,
                "server.address": "127.0.0.1",
                "server.port": 8000,
                "lockgate.prompt.name": "greet",
                "lockgate.prompt.version": 3,
            }
        )
        span.end()


def every_value_type(provider: TracerProvider) -> None:
    span = provider.get_tracer("t").start_span("values ✓")
    span.set_attributes(
        {
            "str": "x",
            "empty": "",
            "unicode": "ünïcødé ✓",
            "true": True,
            "false": False,
            "zero": 0,
            "negative": -25,
            "int64.min": -(1 << 63),
            "int64.max": (1 << 63) - 1,
            "double.zero": 0.0,
            "double": -1.5e300,
            "strings": ("a", "", "b"),
            "ints": [1, -2, 0],
            "bools": [True, False],
            "doubles": [0.5, -0.25],
            "no.items": [],
            "long": "y" * 300,  # a length that needs a two-byte varint
        }
    )
    span.end()


def events_links_status_parents(provider: TracerProvider) -> None:
    tracer = provider.get_tracer("lockgate.gateway", "1.2.3", schema_url="https://example/s")
    remote_parent = set_span_in_context(NonRecordingSpan(REMOTE))
    for i, kind in enumerate(SpanKind):
        span = tracer.start_span(
            f"op {i}",
            kind=kind,
            context=remote_parent if i % 2 else None,
            links=[Link(REMOTE, {"link.index": i})] if i % 3 == 0 else None,
        )
        span.add_event("first token", {"gen_ai.ttft_ms": 1.5 * i})
        span.add_event("")
        if i == 0:
            span.set_status(Status(StatusCode.ERROR, "upstream said no"))
        elif i == 1:
            span.set_status(StatusCode.OK)
        span.end()
    parent = tracer.start_span("parent")
    child = tracer.start_span("child", context=set_span_in_context(parent))
    child.end()
    parent.end()


def several_scopes(provider: TracerProvider) -> None:
    a, b = provider.get_tracer("a"), provider.get_tracer("b", "2")
    for tracer in (a, b, a, b):
        tracer.start_span("s").end()


def several_resources(provider: TracerProvider) -> None:
    provider.get_tracer("a").start_span("first").end()


@pytest.mark.parametrize(
    "build",
    [gateway_like, every_value_type, events_links_status_parents, several_scopes],
    ids=lambda f: f.__name__,
)
def test_encoder_writes_the_sdk_encoders_bytes(build: Callable[[TracerProvider], None]) -> None:
    spans = _record(build, Resource.create({"service.name": "lockgate", "n": 3}, "https://r"))
    assert spans
    expected = sdk_encode(spans).SerializePartialToString()
    encoder = SpanEncoder()
    assert encoder.encode(spans) == expected
    assert encoder.encode(spans) == expected  # the second pass comes from its caches


def test_spans_from_different_resources_group_as_the_sdk_does() -> None:
    first = _record(several_resources, Resource.create({"service.name": "one"}))
    second = _record(several_resources, Resource.create({"service.name": "two"}))
    again = _record(several_resources, Resource.create({"service.name": "one"}))  # equal, not same
    spans = first + second + again
    assert encode_spans(spans) == sdk_encode(spans).SerializePartialToString()
    decoded = ExportTraceServiceRequest.FromString(encode_spans(spans))
    assert [len(r.scope_spans[0].spans) for r in decoded.resource_spans] == [2, 1]


def test_unencodable_attribute_is_left_out_like_the_sdk(caplog: pytest.LogCaptureFixture) -> None:
    def build(provider: TracerProvider) -> None:
        span = provider.get_tracer("t").start_span("x")
        span.set_attributes({"too.big": 1 << 70, "surrogate": "a\udc80", "kept": 1})
        span.end()

    spans = _record(build)
    assert encode_spans(spans) == sdk_encode(spans).SerializePartialToString()
    kept = ExportTraceServiceRequest.FromString(encode_spans(spans))
    attributes = kept.resource_spans[0].scope_spans[0].spans[0].attributes
    assert [a.key for a in attributes] == ["kept"]
    assert "Failed to encode key too.big" in caplog.text


def test_empty_batch() -> None:
    assert encode_spans([]) == sdk_encode([]).SerializePartialToString() == b""


@pytest.fixture
def receiver() -> Iterator[OTLPReceiver]:
    receiver = OTLPReceiver()
    yield receiver
    receiver.close()


@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip])
def test_exporter_posts_the_encoded_batch(receiver: OTLPReceiver, compression: Compression) -> None:
    spans = _record(gateway_like)
    exporter = FastOTLPSpanExporter(endpoint=receiver.url, compression=compression)
    assert exporter.fast_path, "the SDK's exporter changed shape: the fast path is not taken"
    assert exporter.export(spans) is SpanExportResult.SUCCESS
    [(encoding, body)] = receiver.raw
    if compression is Compression.Gzip:
        assert encoding == "gzip"
        body = gzip.decompress(body)
    assert body == sdk_encode(spans).SerializePartialToString()
    exporter.shutdown()


def test_exporter_reports_a_refused_batch(receiver: OTLPReceiver) -> None:
    receiver.status = 400  # not retryable: one attempt, then failure
    exporter = FastOTLPSpanExporter(endpoint=receiver.url, timeout=5)
    assert exporter.export(_record(gateway_like)) is SpanExportResult.FAILURE
    assert len(receiver.raw) == 1
    exporter.shutdown()
    assert exporter.export(_record(gateway_like)) is SpanExportResult.FAILURE  # after shutdown
