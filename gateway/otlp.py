"""OTLP/HTTP span export with a direct protobuf wire encoder.

The OpenTelemetry exporter encodes a batch by building a protobuf object for every span,
attribute and value and then serialising the tree: about 50 µs of Python per span for the
gateway's ~20-attribute spans, on the exporter thread but holding the GIL that the request
path needs (the largest single cost after the HTTP client and server themselves, see
docs/benchmarks.md). The OTLP trace schema is small and fixed, so this module writes the same
bytes straight from the SDK's spans in about a quarter of the time; a test checks the output is
byte for byte what the SDK's encoder produces for every kind of value, event, link, status and
parent.

``FastOTLPSpanExporter`` is the SDK's ``OTLPSpanExporter`` (its endpoint, headers,
compression, retries, timeouts, ``OTEL_EXPORTER_OTLP_*`` variables and self-metrics) with only
the encoding step replaced. It relies on the exporter's HTTP client attribute; an SDK
without it gets the SDK's own ``export`` (correct, only slower), and a test fails so the
upgrade is noticed.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext

_logger = logging.getLogger(__name__)

_pack_double = struct.Struct("<d").pack
_pack_fixed64 = struct.Struct("<Q").pack
_pack_fixed32 = struct.Struct("<I").pack
_SMALL_VARINTS = [bytes((n,)) for n in range(128)]
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_UINT64_MASK = (1 << 64) - 1

# SpanFlags: the context-has-is-remote bit always; is-remote when the parent came over the wire
_FLAGS_HAS_IS_REMOTE = 0x100
_FLAGS_IS_REMOTE = 0x200
_KEY_CACHE_LIMIT = 1024
_PAIR_CACHE_LIMIT = 4096


def _varint(n: int) -> bytes:
    if n < 0x80:
        return _SMALL_VARINTS[n]
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: tag, length, payload."""
    return tag + _varint(len(payload)) + payload


def _flags(parent: SpanContext | None) -> bytes:
    flags = _FLAGS_HAS_IS_REMOTE
    if parent is not None and parent.is_remote:
        flags |= _FLAGS_IS_REMOTE
    return _pack_fixed32(flags)


class SpanEncoder:
    """Encodes batches of SDK spans to a serialised ``ExportTraceServiceRequest``. It keeps
    the encoded attribute keys and string attribute pairs it has seen (bounded), so one
    encoder belongs to one exporter."""

    def __init__(self) -> None:
        self._keys: dict[str, bytes] = {}
        self._pairs: dict[tuple[bytes, str, str], bytes] = {}

    def encode(self, spans: Sequence[ReadableSpan]) -> bytes:
        """A serialised ``ExportTraceServiceRequest``: the bytes of the SDK's
        ``encode_spans(spans).SerializePartialToString()``, spans grouped by resource, then by
        instrumentation scope, in the order first seen."""
        groups: list[tuple[Resource, list[tuple[InstrumentationScope | None, list[bytes]]]]] = []
        last_resource: Resource | None = None
        last_scope: InstrumentationScope | None = None
        last_list: list[bytes] = []
        for span in spans:
            resource, scope = span.resource, span.instrumentation_scope or None
            if resource is not last_resource or scope is not last_scope or not groups:
                last_list = _group(groups, resource, scope)
                last_resource, last_scope = resource, scope
            last_list.append(_field(b"\x12", self._span(span)))
        out = []
        for resource, scopes in groups:
            body = [self._resource(resource)]
            for scope, encoded in scopes:
                scope_fields = [self._scope(scope), *encoded]
                if scope is not None and scope.schema_url:
                    scope_fields.append(_field(b"\x1a", scope.schema_url.encode()))
                body.append(_field(b"\x12", b"".join(scope_fields)))
            if resource.schema_url:
                body.append(_field(b"\x1a", resource.schema_url.encode()))
            out.append(_field(b"\x0a", b"".join(body)))
        return b"".join(out)

    def _any_value(self, value: Any) -> bytes:
        """``opentelemetry.proto.common.v1.AnyValue``, with the SDK encoder's type order."""
        if value is None:
            return b""
        if isinstance(value, bool):
            return b"\x10\x01" if value else b"\x10\x00"
        if isinstance(value, str):
            return _field(b"\x0a", value.encode())
        if isinstance(value, int):
            if not _INT64_MIN <= value <= _INT64_MAX:
                raise ValueError(f"integer {value} does not fit in int64")
            return b"\x18" + _varint(value & _UINT64_MASK)
        if isinstance(value, float):
            return b"\x21" + _pack_double(value)
        if isinstance(value, bytes):
            return _field(b"\x3a", value)
        if isinstance(value, Sequence):
            return _field(b"\x2a", b"".join([_field(b"\x0a", self._any_value(v)) for v in value]))
        if isinstance(value, Mapping):
            pairs = [
                _field(b"\x0a", self._key(str(k)) + _field(b"\x12", self._any_value(v)))
                for k, v in value.items()
            ]
            return _field(b"\x32", b"".join(pairs))
        raise TypeError(f"Invalid type {type(value)} of value {value}")

    def _key(self, key: str) -> bytes:
        """``KeyValue.key`` with its tag and length; attribute names repeat, so they are cached."""
        encoded = self._keys.get(key)
        if encoded is None:
            encoded = _field(b"\x0a", key.encode())
            if len(self._keys) >= _KEY_CACHE_LIMIT:
                self._keys.clear()
            self._keys[key] = encoded
        return encoded

    def _attributes(self, tag: bytes, attributes: Mapping[str, Any] | None) -> list[bytes]:
        """Each attribute as a ``KeyValue`` field; one that cannot be encoded is logged and left
        out, as the SDK's encoder does. Pairs with a string value repeat from span to span (the
        operation, provider, model, route), so their whole field is cached."""
        if not attributes:
            return []
        out = []
        pairs = self._pairs
        for key, value in attributes.items():
            try:
                if type(value) is str:
                    encoded = pairs.get((tag, key, value))
                    if encoded is None:
                        raw = value.encode()
                        any_value = b"\x0a" + _varint(len(raw)) + raw
                        encoded = _field(tag, self._key(key) + _field(b"\x12", any_value))
                        if len(pairs) >= _PAIR_CACHE_LIMIT:
                            pairs.clear()
                        pairs[(tag, key, value)] = encoded
                    out.append(encoded)
                else:
                    out.append(
                        _field(tag, self._key(key) + _field(b"\x12", self._any_value(value)))
                    )
            except Exception as error:
                _logger.exception("Failed to encode key %s: %s", key, error)
        return out

    def _span(self, span: ReadableSpan) -> bytes:
        """``opentelemetry.proto.trace.v1.Span``, fields in number order as upb writes them."""
        context = span.get_span_context()
        assert context is not None  # an ended SDK span always has one
        parts = [
            b"\x0a\x10" + context.trace_id.to_bytes(16, "big"),
            b"\x12\x08" + context.span_id.to_bytes(8, "big"),
        ]
        if context.trace_state:
            state = ",".join([f"{k}={v}" for k, v in context.trace_state.items()])
            if state:
                parts.append(_field(b"\x1a", state.encode()))
        parent = span.parent
        if parent is not None:
            parts.append(b"\x22\x08" + parent.span_id.to_bytes(8, "big"))
        if span.name:
            parts.append(_field(b"\x2a", span.name.encode()))
        parts.append(b"\x30" + _varint(span.kind.value + 1))  # SpanKind.INTERNAL (0) is 1 in OTLP
        if span.start_time:
            parts.append(b"\x39" + _pack_fixed64(span.start_time))
        if span.end_time:
            parts.append(b"\x41" + _pack_fixed64(span.end_time))
        parts += self._attributes(b"\x4a", span.attributes)
        if span.dropped_attributes:
            parts.append(b"\x50" + _varint(span.dropped_attributes))
        for event in span.events:
            fields = [b"\x09" + _pack_fixed64(event.timestamp)] if event.timestamp else []
            if event.name:
                fields.append(_field(b"\x12", event.name.encode()))
            fields += self._attributes(b"\x1a", event.attributes)
            if event.dropped_attributes:
                fields.append(b"\x20" + _varint(event.dropped_attributes))
            parts.append(_field(b"\x5a", b"".join(fields)))
        if span.dropped_events:
            parts.append(b"\x60" + _varint(span.dropped_events))
        for link in span.links:
            fields = [
                b"\x0a\x10" + link.context.trace_id.to_bytes(16, "big"),
                b"\x12\x08" + link.context.span_id.to_bytes(8, "big"),
            ]
            fields += self._attributes(b"\x22", link.attributes)
            if link.dropped_attributes:
                fields.append(b"\x28" + _varint(link.dropped_attributes))
            fields.append(b"\x35" + _flags(link.context))
            parts.append(_field(b"\x6a", b"".join(fields)))
        if span.dropped_links:
            parts.append(b"\x70" + _varint(span.dropped_links))
        status = span.status
        if status is not None:
            fields = []
            if status.description:
                fields.append(_field(b"\x12", status.description.encode()))
            if status.status_code.value:
                fields.append(b"\x18" + _varint(status.status_code.value))
            parts.append(_field(b"\x7a", b"".join(fields)))
        parts.append(b"\x85\x01" + _flags(parent))
        return b"".join(parts)

    def _resource(self, resource: Resource) -> bytes:
        """``ResourceSpans.resource`` field (once per batch and resource)."""
        return _field(b"\x0a", b"".join(self._attributes(b"\x0a", resource.attributes)))

    def _scope(self, scope: InstrumentationScope | None) -> bytes:
        """``ScopeSpans.scope`` field (once per batch and scope)."""
        fields = []
        if scope is not None:
            if scope.name:
                fields.append(_field(b"\x0a", scope.name.encode()))
            if scope.version:
                fields.append(_field(b"\x12", scope.version.encode()))
            fields += self._attributes(b"\x1a", scope.attributes)
        return _field(b"\x0a", b"".join(fields))


def encode_spans(spans: Sequence[ReadableSpan]) -> bytes:
    """The bytes of the SDK's ``encode_spans(spans).SerializePartialToString()`` (with a
    fresh :class:`SpanEncoder`)."""
    return SpanEncoder().encode(spans)


def _group(
    groups: list[tuple[Resource, list[tuple[InstrumentationScope | None, list[bytes]]]]],
    resource: Resource,
    scope: InstrumentationScope | None,
) -> list[bytes]:
    """The span list for ``(resource, scope)``, grouped by equality as the SDK's dicts do."""
    for known, scopes in groups:
        if known is resource or known == resource:
            for known_scope, encoded in scopes:
                if known_scope is scope or known_scope == scope:
                    return encoded
            scopes.append((scope, []))
            return scopes[-1][1]
    groups.append((resource, [(scope, [])]))
    return groups[-1][1][0][1]


class FastOTLPSpanExporter(OTLPSpanExporter):
    """The SDK's OTLP/HTTP span exporter with a :class:`SpanEncoder` as its encoder."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._encoder = SpanEncoder()

    @property
    def fast_path(self) -> bool:
        """Whether this SDK version exposes what the fast path needs."""
        client, metrics = getattr(self, "_client", None), getattr(self, "_metrics", None)
        return callable(getattr(client, "export", None)) and hasattr(metrics, "export_operation")

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if getattr(self, "_shutdown", False) or not self.fast_path:
            return super().export(spans)
        with self._metrics.export_operation(len(spans)) as result:
            try:
                data = self._encoder.encode(spans)
            except Exception as error:
                _logger.error("Failed to encode span batch: %s", error)
                result.error = error
                return SpanExportResult.FAILURE
            limit = getattr(self, "_max_request_size", 0)
            if limit > 0 and len(data) > limit:
                _logger.warning(
                    "Dropping span batch: serialized size %d bytes exceeds max_request_size "
                    "%d bytes.",
                    len(data),
                    limit,
                )
                result.error = ValueError(f"span batch of {len(data)} bytes exceeds {limit}")
                return SpanExportResult.FAILURE
            outcome = self._client.export(data)
            if not outcome.success:
                result.error = outcome.error
                if outcome.status_code is not None:
                    result.error_attrs = {"http.response.status_code": outcome.status_code}
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS
