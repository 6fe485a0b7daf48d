"""OpenTelemetry for the gateway: one span per call, named and attributed by the GenAI
semantic conventions, on a tracer provider that belongs to the app (never the global one).

Span ``{gen_ai.operation.name} {gen_ai.request.model}``, kind CLIENT, child of the incoming
W3C ``traceparent`` when there is one; its own context goes upstream in ``traceparent``.
Exporters: OTLP/HTTP when ``gateway.tracing.otlp_endpoint`` (or the standard
``OTEL_EXPORTER_OTLP_ENDPOINT``) is set, plus any given to ``create_app`` (tests).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import orjson
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.trace import Span
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from lockgate.gateway.settings import TracingSettings

PROPAGATOR = TraceContextTextMapPropagator()
INSTRUMENTATION = "lockgate.gateway"

# request body key -> span attribute (GenAI semantic conventions)
REQUEST_ATTRIBUTES = {
    "max_tokens": "gen_ai.request.max_tokens",
    "max_completion_tokens": "gen_ai.request.max_tokens",
    "temperature": "gen_ai.request.temperature",
    "top_p": "gen_ai.request.top_p",
    "frequency_penalty": "gen_ai.request.frequency_penalty",
    "presence_penalty": "gen_ai.request.presence_penalty",
    "seed": "gen_ai.request.seed",
}


def build_tracer_provider(
    settings: TracingSettings, extra_exporters: Sequence[SpanExporter] = ()
) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": settings.service_name}))
    if settings.otlp_endpoint:
        from lockgate.gateway.otlp import FastOTLPSpanExporter

        endpoint = settings.otlp_endpoint.rstrip("/")
        if not endpoint.endswith("/v1/traces"):
            endpoint += "/v1/traces"
        exporter = FastOTLPSpanExporter(endpoint=endpoint, headers=dict(settings.otlp_headers))
        provider.add_span_processor(
            BatchSpanProcessor(exporter, schedule_delay_millis=settings.export_delay_s * 1000)
        )
    for extra in extra_exporters:
        provider.add_span_processor(SimpleSpanProcessor(extra))
    return provider


def trace_headers(span: Span) -> dict[str, str]:
    """W3C ``traceparent`` (and ``tracestate``) naming ``span`` as the parent, for the upstream.

    What ``PROPAGATOR.inject`` writes, without building a context for it on every call."""
    context = span.get_span_context()
    if not context.is_valid:
        return {}
    headers = {
        "traceparent": f"00-{context.trace_id:032x}-{context.span_id:016x}-"
        f"{context.trace_flags:02x}"
    }
    if context.trace_state:
        headers["tracestate"] = context.trace_state.to_header()
    return headers


class Redactor:
    """Replaces every match of the configured patterns (API keys, e-mail addresses, …)."""

    def __init__(self, patterns: Iterable[str], replacement: str) -> None:
        joined = "|".join(f"(?:{p})" for p in patterns)
        self._pattern = re.compile(joined) if joined else None
        self._replacement = replacement

    def __call__(self, text: str) -> str:
        return self._pattern.sub(self._replacement, text) if self._pattern else text

    def json(self, value: Any) -> str:
        return self(orjson.dumps(value).decode())


@lru_cache(maxsize=256)
def server_attributes(api_base: str | None) -> tuple[tuple[str, Any], ...]:
    if not api_base:
        return ()
    parts = urlsplit(api_base)
    out: list[tuple[str, Any]] = []
    if parts.hostname:
        out.append(("server.address", parts.hostname))
    port = parts.port or (443 if parts.scheme == "https" else 80 if parts.scheme else None)
    if port:
        out.append(("server.port", port))
    return tuple(out)


def request_attributes(body: Mapping[str, Any]) -> dict[str, Any]:
    """``gen_ai.request.*`` from the request body (only what it sets)."""
    out: dict[str, Any] = {}
    for key, attribute in REQUEST_ATTRIBUTES.items():
        value = body.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[attribute] = value
    stop = body.get("stop")
    if isinstance(stop, str):
        out["gen_ai.request.stop_sequences"] = (stop,)
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        out["gen_ai.request.stop_sequences"] = tuple(stop)
    n = body.get("n")
    if isinstance(n, int) and n != 1:
        out["gen_ai.request.choice.count"] = n
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and isinstance(fmt.get("type"), str):
        out["gen_ai.output.type"] = "text" if fmt["type"] == "text" else "json"
    encoding = body.get("encoding_format")
    if isinstance(encoding, str):
        out["gen_ai.request.encoding_formats"] = (encoding,)
    return out


def output_messages(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The choices of a non-streaming answer, for content capture."""
    out = []
    for choice in data.get("choices") or []:
        if isinstance(choice, dict):
            out.append(
                {
                    "role": "assistant",
                    "content": (choice.get("message") or {}).get("content") or choice.get("text"),
                    "finish_reason": choice.get("finish_reason"),
                }
            )
    return out
