"""The request path shared by chat, completions and embeddings.

parse the body → render a registry prompt into it → pick the deployment → start the span →
forward (fast path or litellm) → answer (bytes as they came, or the stream as it comes) →
end the span, count the metrics, queue the call record. Nothing here touches the database
when the prompt cache is warm, and nothing is logged per request.
"""

from __future__ import annotations

import random
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from opentelemetry.trace import (
    Span,
    SpanKind,
    Status,
    StatusCode,
    Tracer,
    set_span_in_context,
)
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from gateway.call_records import CallRecorder
from gateway.errors import InvalidRequest, UpstreamError
from gateway.metrics import Metrics
from gateway.prompts import PromptResolver
from gateway.providers import Operation, UpstreamCall
from gateway.routing import Router, Target
from gateway.settings import GatewaySettings
from gateway.streaming import StreamScan
from gateway.tracing import (
    PROPAGATOR,
    Redactor,
    output_messages,
    request_attributes,
    server_attributes,
)
from registry.errors import LockgateError

CLIENT_CLOSED = 499


@dataclass(slots=True)
class Call:
    """What one call learns on its way, for the span, the metrics and the call record."""

    operation: Operation
    span: Span
    started: float
    created_at: datetime
    request_id: str
    model: str | None = None
    target: Target | None = None
    prompt_name: str | None = None
    prompt_version: int | None = None
    stream: bool = False
    ttft_s: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    finished: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def _tokens(usage: Any) -> tuple[int | None, int | None]:
    if not isinstance(usage, dict):
        return None, None
    given = usage.get("prompt_tokens", usage.get("input_tokens"))
    taken = usage.get("completion_tokens", usage.get("output_tokens"))
    return (
        given if isinstance(given, int) else None,
        taken if isinstance(taken, int) else None,
    )


class Proxy:
    def __init__(
        self,
        *,
        settings: GatewaySettings,
        router: Router,
        prompts: PromptResolver,
        tracer: Tracer,
        metrics: Metrics,
        recorder: CallRecorder | None,
    ) -> None:
        self._router = router
        self._ids = random.Random()  # uuid4 reads os.urandom: slow on some VMs
        self._prompts = prompts
        self._tracer = tracer
        self._metrics = metrics
        self._recorder = recorder
        self._stream_usage = settings.upstream.stream_usage
        self._capture = settings.tracing.capture_content
        tracing = settings.tracing
        self._redact = Redactor(tracing.redact_patterns, tracing.redaction)

    async def handle(self, request: Request, operation: Operation) -> Response:
        started = time.perf_counter()
        headers = request.headers
        parent = PROPAGATOR.extract(headers) if "traceparent" in headers else None
        span = self._tracer.start_span(
            operation, context=parent, kind=SpanKind.CLIENT,
            attributes={"gen_ai.operation.name": operation},
        )  # fmt: skip
        call = Call(
            operation, span, started, datetime.now(UTC),
            headers.get("x-request-id") or format(self._ids.getrandbits(128), "032x"),
        )  # fmt: skip
        try:
            return await self._forward(request, call)
        except LockgateError as exc:
            self.finish(call, exc.status_code, exc)
            raise
        except Exception as exc:  # boundary: record the failure; the 500 handler answers
            self.finish(call, 500, exc)
            raise
        except BaseException:  # cancelled: the client went away
            self.finish(call, CLIENT_CLOSED, None, error_type="client_closed")
            raise

    async def _forward(self, request: Request, call: Call) -> Response:
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError as exc:
            raise InvalidRequest(f"the request body is not valid JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise InvalidRequest("the request body must be a JSON object")
        call.model = model = body.get("model") if isinstance(body.get("model"), str) else None
        applied = await self._prompts.apply(call.operation, body)
        if applied is not None:
            call.prompt_name, call.prompt_version = applied.name, applied.version
        call.target = target = await self._router.resolve(body.get("model"))
        deployment = target.deployment
        for key, value in deployment.params.items():
            body.setdefault(key, value)
        body["model"] = deployment.model
        call.stream = stream = body.get("stream") is True
        self._start_attributes(call, body, model)
        upstream_headers: dict[str, str] = {}
        PROPAGATOR.inject(upstream_headers, context=set_span_in_context(call.span))
        response_headers = {"x-request-id": call.request_id}
        if not stream:
            upstream = UpstreamCall(call.operation, deployment, body, upstream_headers)
            result = await target.provider.complete(upstream)
            self._response_attributes(call, result.data)
            self.finish(call, 200, None)
            return Response(result.content, media_type="application/json", headers=response_headers)
        strip_usage = False
        if self._stream_usage and call.operation != "embeddings":
            options = body.get("stream_options")
            if not (isinstance(options, dict) and options.get("include_usage")):
                strip_usage = True
                body["stream_options"] = {**(options or {}), "include_usage": True}
        upstream = UpstreamCall(call.operation, deployment, body, upstream_headers)
        chunks = await target.provider.stream(upstream)
        scan = StreamScan(strip_usage=strip_usage, capture=self._capture)
        return StreamingResponse(
            self._relay(call, chunks, scan), media_type="text/event-stream",
            headers={**response_headers, "cache-control": "no-cache"},
        )  # fmt: skip

    async def _relay(
        self, call: Call, chunks: AsyncGenerator[bytes, None], scan: StreamScan
    ) -> AsyncGenerator[bytes, None]:
        status, error, error_type = 200, None, None
        try:
            async for chunk in chunks:
                if call.ttft_s is None:
                    call.ttft_s = time.perf_counter() - call.started
                out = scan.feed(chunk)
                if out:
                    yield out
            tail = scan.finish()
            if tail:
                yield tail
        except LockgateError as exc:  # the upstream failed mid-stream: say so in the stream
            status, error = exc.status_code, exc
            yield b"data: " + orjson.dumps(exc.to_dict()) + b"\n\n"
        except BaseException:
            status, error_type = CLIENT_CLOSED, "client_closed"
            raise
        finally:
            await chunks.aclose()
            self._stream_attributes(call, scan)
            self.finish(call, status, error, error_type=error_type)

    def _start_attributes(self, call: Call, body: dict[str, Any], requested: str | None) -> None:
        target = call.target
        assert target is not None
        d = target.deployment
        upstream_model = (
            d.model.split("/", 1)[1] if d.model.startswith(d.provider + "/") else d.model
        )
        span = call.span
        span.update_name(f"{call.operation} {upstream_model}")
        attributes: dict[str, Any] = {
            "gen_ai.provider.name": d.provider,
            "gen_ai.request.model": upstream_model,
            "lockgate.route": target.route,
            "lockgate.deployment": d.label,
            "lockgate.request_id": call.request_id,
            "lockgate.stream": call.stream,
        }
        if requested is not None and requested != target.route:
            attributes["lockgate.requested_model"] = requested
        if call.prompt_name is not None:
            attributes["lockgate.prompt.name"] = call.prompt_name
            attributes["lockgate.prompt.version"] = call.prompt_version
        attributes.update(server_attributes(d.api_base))
        attributes.update(request_attributes(body))
        if self._capture:
            content = body.get("messages", body.get("prompt", body.get("input")))
            attributes["gen_ai.input.messages"] = self._redact.json(content)
        span.set_attributes(attributes)

    def _response_attributes(self, call: Call, data: dict[str, Any]) -> None:
        call.input_tokens, call.output_tokens = _tokens(data.get("usage"))
        attributes: dict[str, Any] = {}
        if isinstance(data.get("id"), str):
            attributes["gen_ai.response.id"] = data["id"]
        if isinstance(data.get("model"), str):
            attributes["gen_ai.response.model"] = data["model"]
        reasons = [
            c["finish_reason"] for c in data.get("choices") or []
            if isinstance(c, dict) and isinstance(c.get("finish_reason"), str)
        ]  # fmt: skip
        if reasons:
            attributes["gen_ai.response.finish_reasons"] = reasons
        if self._capture and call.operation != "embeddings":
            attributes["gen_ai.output.messages"] = self._redact.json(output_messages(data))
        call.span.set_attributes(attributes)

    def _stream_attributes(self, call: Call, scan: StreamScan) -> None:
        call.input_tokens, call.output_tokens = _tokens(scan.usage)
        attributes: dict[str, Any] = {}
        if scan.response_id:
            attributes["gen_ai.response.id"] = scan.response_id
        if scan.response_model:
            attributes["gen_ai.response.model"] = scan.response_model
        if scan.finish_reasons:
            attributes["gen_ai.response.finish_reasons"] = scan.finish_reasons
        if call.ttft_s is not None:
            attributes["lockgate.time_to_first_token_ms"] = call.ttft_s * 1000
        if self._capture:
            texts = [
                {"role": "assistant", "content": "".join(t)} for _, t in sorted(scan.texts.items())
            ]
            attributes["gen_ai.output.messages"] = self._redact.json(texts)
        call.span.set_attributes(attributes)

    def finish(
        self, call: Call, status: int, error: BaseException | None, *, error_type: str | None = None
    ) -> None:
        """End the span, count the call and queue its record (once per call)."""
        if call.finished:
            return
        call.finished = True
        latency = time.perf_counter() - call.started
        span = call.span
        if error is not None and error_type is None:
            error_type = getattr(error, "code", None) or type(error).__name__
            if isinstance(error, UpstreamError):  # low cardinality: the upstream's status
                error_type = str(status)
        if call.input_tokens is not None:
            span.set_attribute("gen_ai.usage.input_tokens", call.input_tokens)
        if call.output_tokens is not None:
            span.set_attribute("gen_ai.usage.output_tokens", call.output_tokens)
        span.set_attribute("http.response.status_code", status)
        if error_type is not None:
            span.set_attribute("error.type", error_type)
            span.set_status(Status(StatusCode.ERROR, str(error) if error else error_type))
        span.end()
        target = call.target
        route = target.route if target is not None else "-"
        self._metrics.observe_call(
            call.operation, route, status, latency, call.ttft_s,
            call.input_tokens, call.output_tokens, error_type,
        )  # fmt: skip
        if self._recorder is None:
            return
        deployment = target.deployment if target is not None else None
        context = span.get_span_context()
        self._recorder.submit(
            {
                "created_at": call.created_at,
                "request_id": call.request_id[:64],
                "trace_id": format(context.trace_id, "032x") if context.trace_id else None,
                "operation": call.operation,
                "route": route if target is not None else None,
                "model": deployment.model if deployment is not None else call.model,
                "provider": deployment.provider if deployment is not None else None,
                "deployment": deployment.label if deployment is not None else None,
                "prompt_name": call.prompt_name,
                "prompt_version": call.prompt_version,
                "key_id": None,
                "status_code": status,
                "error_type": error_type,
                "stream": call.stream,
                "latency_ms": latency * 1000,
                "ttft_ms": call.ttft_s * 1000 if call.ttft_s is not None else None,
                "input_tokens": call.input_tokens,
                "output_tokens": call.output_tokens,
            }
        )
