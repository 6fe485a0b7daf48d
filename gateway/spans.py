"""What one call learns on its way (:class:`Call`), and how it lands on the call's span.

Attributes gather in ``Call.attributes`` and go onto the span in one ``set_attributes`` when
the call finishes (:meth:`gateway.proxy.Proxy.finish`): the SDK takes a lock and checks the
values once per call rather than once per step. Attribute names follow the GenAI semantic
conventions (``gen_ai.*``) plus ``lockgate.*``: route, deployment, request id, stream, prompt
name and version, key id, attempts and the fallback route that answered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from opentelemetry.trace import Span

from lockgate.gateway.auth import Principal
from lockgate.gateway.providers import Operation
from lockgate.gateway.routing import Target
from lockgate.gateway.streaming import StreamScan
from lockgate.gateway.tracing import (
    Redactor,
    output_messages,
    request_attributes,
    server_attributes,
)

MAX_FINISH_REASON = 40  # characters, as the call record keeps it


@dataclass(slots=True)
class Call:
    """What one call learns on its way, for the span, the metrics and the call record."""

    operation: Operation
    span: Span
    started: float
    created_at: datetime
    request_id: str  # the client's x-request-id (capped), else the slot
    slot: str  # the gateway's own number for the request: its limiter slot
    principal: Principal | None = None
    model: str | None = None
    route: str | None = None
    target: Target | None = None
    prompt_name: str | None = None
    prompt_version: int | None = None
    stream: bool = False
    ttft_s: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    finish_reason: str | None = None  # for the call record: the first choice's, a stream's last
    judges: tuple[str, ...] = ()  # the judges that sampled this call (gateway.judges)
    judge_input: Any = None  # what a sampled call sent: its messages or prompt
    admitted: bool = False  # holds a limiter slot to give back
    finished: bool = False
    failures: list[str] = field(default_factory=list)
    attributes: dict[str, Any] = field(default_factory=dict)  # for the span, set at the end


def tokens(usage: Any) -> tuple[int | None, int | None]:
    if not isinstance(usage, dict):
        return None, None
    given = usage.get("prompt_tokens", usage.get("input_tokens"))
    taken = usage.get("completion_tokens", usage.get("output_tokens"))
    return (
        given if isinstance(given, int) else None,
        taken if isinstance(taken, int) else None,
    )


def start_attributes(
    call: Call, body: dict[str, Any], requested: str | None, redact: Redactor | None
) -> None:
    """Set once the deployment that answers is known (``redact`` when capturing content)."""
    target = call.target
    assert target is not None
    d = target.deployment
    upstream_model = d.model.split("/", 1)[1] if d.model.startswith(d.provider + "/") else d.model
    call.span.update_name(f"{call.operation} {upstream_model}")
    attributes = call.attributes
    attributes.update({
        "gen_ai.provider.name": d.provider,
        "gen_ai.request.model": upstream_model,
        "lockgate.route": call.route or target.route,
        "lockgate.deployment": d.label,
        "lockgate.request_id": call.request_id,
        "lockgate.stream": call.stream,
    })  # fmt: skip
    if call.route is not None and target.route != call.route:
        attributes["lockgate.fallback_route"] = target.route
    if call.failures:
        attributes["lockgate.attempts"] = len(call.failures) + 1
        attributes["lockgate.failed_attempts"] = call.failures
    if requested is not None and requested != call.route:
        attributes["lockgate.requested_model"] = requested
    if call.prompt_name is not None:
        attributes["lockgate.prompt.name"] = call.prompt_name
        attributes["lockgate.prompt.version"] = call.prompt_version
    attributes.update(server_attributes(d.api_base))
    attributes.update(request_attributes(body))
    if redact is not None:
        content = body.get("messages", body.get("prompt", body.get("input")))
        attributes["gen_ai.input.messages"] = redact.json(content)


def response_attributes(call: Call, data: dict[str, Any], redact: Redactor | None) -> None:
    call.input_tokens, call.output_tokens = tokens(data.get("usage"))
    attributes = call.attributes
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
        call.finish_reason = reasons[0][:MAX_FINISH_REASON]
    if redact is not None and call.operation != "embeddings":
        attributes["gen_ai.output.messages"] = redact.json(output_messages(data))


def stream_attributes(call: Call, scan: StreamScan, redact: Redactor | None) -> None:
    call.input_tokens, call.output_tokens = tokens(scan.usage)
    attributes = call.attributes
    if scan.response_id:
        attributes["gen_ai.response.id"] = scan.response_id
    if scan.response_model:
        attributes["gen_ai.response.model"] = scan.response_model
    if scan.finish_reasons:
        attributes["gen_ai.response.finish_reasons"] = scan.finish_reasons
        last = scan.finish_reasons[-1]
        call.finish_reason = last[:MAX_FINISH_REASON] if isinstance(last, str) else None
    if call.ttft_s is not None:
        attributes["lockgate.time_to_first_token_ms"] = call.ttft_s * 1000
    if redact is not None:
        texts = [
            {"role": "assistant", "content": "".join(t)} for _, t in sorted(scan.texts.items())
        ]
        attributes["gen_ai.output.messages"] = redact.json(texts)
