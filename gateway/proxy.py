"""The request path shared by chat, completions and embeddings.

authenticate → read and check the body → admit it under the key's limits → render a registry
prompt into it → check the key may use the model → plan the deployments → for a key with a
budget, check every deployment has a price → send, retrying and falling back
(:mod:`gateway.dispatch`) → answer (bytes as they came, or the stream as it comes,
:mod:`gateway.relay`) → end the span, count the metrics, queue the call record, give the key's
limiter slot back with the call's tokens and cost → hand a call its judges sampled to them
(:mod:`gateway.judges`, off the path).

Nothing here touches the database when the key and prompt caches are warm, and nothing is
logged per request. A limiter slot belongs to a number the gateway draws for the request
(``Call.slot``), never to the client's ``x-request-id``, which is echoed back (at most
:data:`MAX_REQUEST_ID` characters) and recorded. A client that goes away while the gateway
waits for the upstream cancels the upstream request.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope

from lockgate.gateway.auth import Authenticator, Principal
from lockgate.gateway.body import parse_body, read_body
from lockgate.gateway.call_records import CallRecorder
from lockgate.gateway.costs import CostTable
from lockgate.gateway.dispatch import Dispatcher
from lockgate.gateway.errors import LimiterUnavailable, ModelUnpriced, RateLimited, UpstreamError
from lockgate.gateway.limits import KeyLimits, Limiter
from lockgate.gateway.metrics import Metrics
from lockgate.gateway.prompts import PromptResolver
from lockgate.gateway.providers import Operation, UpstreamCall
from lockgate.gateway.relay import CLIENT_CLOSED, RelayResponse
from lockgate.gateway.routing import Plan, Router, Target
from lockgate.gateway.settings import GatewaySettings
from lockgate.gateway.spans import Call, response_attributes, start_attributes, stream_attributes
from lockgate.gateway.streaming import StreamScan
from lockgate.gateway.tracing import PROPAGATOR, Redactor, trace_headers
from lockgate.registry.calls import NewCall
from lockgate.registry.errors import LockgateError

if TYPE_CHECKING:
    from lockgate.gateway.judges import Judges

log = logging.getLogger(__name__)
T = TypeVar("T")
LIMIT_CODES = {"rpm": "rpm_limit", "tpm": "tpm_limit", "parallel": "parallel_limit",
               "budget": "budget_exceeded"}  # fmt: skip
MAX_REQUEST_ID = 64  # as the call record keeps it
SCOPE_PRINCIPAL = "lockgate.principal"  # an in-process caller's principal (gateway/ui)
SCOPE_JUDGE = "lockgate.judge"  # a judge's own call (gateway.judges): never sampled itself


CHAT_PATH = "/v1/chat/completions"


def in_process_chat(
    payload: bytes,
    principal: Principal,
    after_body: Callable[[], Awaitable[Message]],
    *,
    base: Scope | None = None,
    headers: Iterable[tuple[bytes, bytes]] = ((b"host", b"localhost"),),
    extra: Mapping[str, Any] | None = None,
) -> tuple[Scope, Receive]:
    """The ASGI scope and receive of a chat completion made inside the gateway for
    ``principal`` (the UI's playground, a judge): ``payload`` is the JSON body, sent once;
    after it, ``receive`` answers what ``after_body`` does (a browser's own disconnect, or
    never). ``base`` is the scope to copy (the caller's request); ``extra`` adds scope keys
    no client can set (:data:`SCOPE_JUDGE`)."""
    scope: Scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "root_path": "", "client": ("127.0.0.1", 0),
        "server": ("127.0.0.1", 0), **(base or {}),
        "path": CHAT_PATH, "raw_path": CHAT_PATH.encode(), "query_string": b"",
        "headers": [*headers, (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode())],
        SCOPE_PRINCIPAL: principal, **(extra or {}),
    }  # fmt: skip
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": payload, "more_body": False}
        return await after_body()

    return scope, receive


class ClientGone(Exception):
    """The client disconnected before the answer was ready."""


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
        auth: Authenticator,
        limiter: Limiter,
        dispatcher: Dispatcher,
        costs: CostTable | None,
        judges: Judges | None = None,
    ) -> None:
        self._router = router
        self._judges = judges
        self._ids = random.Random()  # uuid4 reads os.urandom: slow on some VMs
        self._prompts = prompts
        self._tracer = tracer
        self._metrics = metrics
        self._recorder = recorder
        self._auth = auth
        self._limiter = limiter
        self._dispatcher = dispatcher
        self._costs = costs
        self._requests = settings.requests
        self._fail_open = settings.limiter_failure == "open"
        self._stream_usage = settings.upstream.stream_usage
        self._refuse_unpriced = settings.unpriced == "refuse"
        tracing = settings.tracing
        self._redact = (
            Redactor(tracing.redact_patterns, tracing.redaction)
            if tracing.capture_content
            else None
        )
        self._releases: set[asyncio.Task[None]] = set()
        self._last_limiter_warning = 0.0

    async def handle(self, request: Request, operation: Operation) -> Response:
        started = time.perf_counter()
        headers = request.headers
        parent = PROPAGATOR.extract(headers) if "traceparent" in headers else None
        span = self._tracer.start_span(
            operation, context=parent, kind=SpanKind.CLIENT,
            attributes={"gen_ai.operation.name": operation},
        )  # fmt: skip
        slot = format(self._ids.getrandbits(128), "032x")
        given = headers.get("x-request-id")
        call = Call(
            operation, span, started, datetime.now(UTC),
            given[:MAX_REQUEST_ID] if given else slot, slot,
        )  # fmt: skip
        try:
            return await self._forward(request, call)
        except LockgateError as exc:
            self.finish(call, exc.status_code, exc)
            raise
        except (ClientGone, ClientDisconnect):
            self.finish(call, CLIENT_CLOSED, None, error_type="client_closed")
            return Response(status_code=CLIENT_CLOSED)
        except Exception as exc:  # boundary: record the failure; the 500 handler answers
            self.finish(call, 500, exc)
            raise
        except BaseException:  # cancelled: the server is going away
            self.finish(call, CLIENT_CLOSED, None, error_type="client_closed")
            raise

    async def _forward(self, request: Request, call: Call) -> Response:
        # a caller already authenticated in process (the UI's playground: a signed-in
        # session's key) puts its principal in the ASGI scope, which no client can set
        given_principal = request.scope.get(SCOPE_PRINCIPAL)
        call.principal = principal = (
            given_principal if isinstance(given_principal, Principal)
            else await self._auth.authenticate(request.headers)
        )  # fmt: skip
        if principal.key_id is not None:
            call.attributes["lockgate.key.id"] = principal.key_id
        principal.require_scope("inference")
        body = parse_body(await read_body(request, self._requests), call.operation)
        requested = body.get("model")
        call.model = requested if isinstance(requested, str) else None
        await self._admit(call)  # before rendering: a key over its limits renders nothing
        applied = await self._prompts.apply(call.operation, body)
        if applied is not None:
            call.prompt_name, call.prompt_version = applied.name, applied.version
        model = body.get("model")
        if principal.models is not None and isinstance(model, str):
            principal.require_model(model)
        plan = await self._router.plan(model)
        call.route, call.target = plan.route, plan.candidates[0]
        limits = principal.limits
        if limits is not None and limits.budget_usd is not None and self._refuse_unpriced:
            await self._require_prices(plan, principal.name)
        call.stream = stream = body.get("stream") is True
        judges = self._judges
        if judges is not None and SCOPE_JUDGE not in request.scope:
            call.judges = judges.pick(call.operation, plan.route)
        upstream_headers = trace_headers(call.span)
        strip_usage = False
        if stream and self._stream_usage and call.operation != "embeddings":
            options = body.get("stream_options")
            if not (isinstance(options, dict) and options.get("include_usage")):
                strip_usage = True
                body["stream_options"] = {**(options or {}), "include_usage": True}
        sent: dict[str, Any] = body

        def build(target: Target) -> UpstreamCall:
            nonlocal sent
            deployment = target.deployment
            sent = {**deployment.params, **body, "model": deployment.model}
            return UpstreamCall(
                call.operation, deployment, sent, upstream_headers, target.timeouts.connect_s
            )

        dispatcher = self._dispatcher
        response_headers = {"x-request-id": call.request_id}
        if not stream:
            target, result = await self._until_disconnect(
                request, dispatcher.complete(plan, build, call.failures)
            )
            call.target = target
            start_attributes(call, sent, call.model, self._redact)
            response_attributes(call, result.data, self._redact)
            self.finish(call, 200, None)
            if call.judges and judges is not None:
                judges.submit(call, sent, result.data)
            return Response(result.content, media_type="application/json", headers=response_headers)
        target, opened = await self._until_disconnect(
            request, dispatcher.stream(plan, build, call.failures)
        )
        call.target = target
        start_attributes(call, sent, call.model, self._redact)
        capture = self._redact is not None or bool(call.judges)
        scan = StreamScan(strip_usage=strip_usage, capture=capture)
        if call.judges:
            call.judge_input = sent
        headers = {**response_headers, "cache-control": "no-cache"}
        return RelayResponse(call, opened, scan, self._finish_stream, headers)

    async def _admit(self, call: Call) -> None:
        principal = call.principal
        limits = principal.limits if principal is not None else None
        if limits is None or principal is None:
            return
        try:
            decision = await self._limiter.acquire(limits, call.slot)
        except Exception as exc:  # boundary: Redis down → count it, warn now and then, and
            # admit (gateway.limiter_failure: open) or refuse (closed)
            self._metrics.limiter_errors.inc()
            now = time.monotonic()
            if now - self._last_limiter_warning > 60:
                self._last_limiter_warning = now
                verdict = "admitting" if self._fail_open else "refusing"
                log.warning("the rate limiter failed; %s requests", verdict, exc_info=True)
            if self._fail_open:
                return
            raise LimiterUnavailable(
                "the rate limiter is unavailable and this gateway refuses requests it cannot "
                "limit (gateway.limiter_failure: closed); retry shortly"
            ) from exc
        if not decision.allowed:
            reason = decision.reason or "rpm"
            raise RateLimited(
                decision.message(principal.name),
                code=LIMIT_CODES.get(reason, "rate_limit_exceeded"),
                retry_after_s=decision.retry_after_s,
            )
        call.admitted = True

    async def _require_prices(self, plan: Plan, key_name: str) -> None:
        """A key with a budget may call only priced models (gateway.unpriced: refuse)."""
        costs = self._costs
        if costs is not None:
            await costs.wait_ready()
        unpriced = sorted({
            t.deployment.model for t in plan.candidates
            if costs is None or costs.price(t.deployment.provider, t.deployment.model) is None
        })  # fmt: skip
        if unpriced:
            raise ModelUnpriced(
                f"key {key_name!r} has a budget, and model {', '.join(map(repr, unpriced))} "
                f"(route {plan.route!r}) has no price, so its calls could not be counted against "
                "it: set one in gateway.prices (input_per_million, output_per_million), or "
                "let such calls through uncounted with gateway.unpriced: allow",
                param="model",
            )

    @staticmethod
    async def _until_disconnect(request: Request, work: Awaitable[T]) -> T:
        """Await ``work``; if the client disconnects first, cancel it and raise ClientGone."""
        gone = False

        async def watch(guard: asyncio.Timeout) -> None:
            nonlocal gone
            while True:
                message = await request.receive()
                if message["type"] == "http.disconnect":
                    gone = True
                    guard.reschedule(asyncio.get_running_loop().time())
                    return

        try:
            async with asyncio.timeout(None) as guard:
                watcher = asyncio.ensure_future(watch(guard))
                try:
                    return await work
                finally:
                    watcher.cancel()
        except TimeoutError:
            if gone:
                raise ClientGone() from None
            raise

    def _finish_stream(
        self, call: Call, status: int, error: BaseException | None, scan: StreamScan
    ) -> None:
        stream_attributes(call, scan, self._redact)
        self.finish(call, status, error, error_type="client_closed" if status == 499 else None)
        if call.judges and status == 200 and self._judges is not None:
            self._judges.submit_stream(call, scan)

    def finish(
        self, call: Call, status: int, error: BaseException | None, *, error_type: str | None = None
    ) -> None:
        """End the span, count the call, queue its record and free its limiter slot (once)."""
        if call.finished:
            return
        call.finished = True
        latency = time.perf_counter() - call.started
        span = call.span
        if error is not None and error_type is None:
            error_type = getattr(error, "code", None) or type(error).__name__
            if isinstance(error, UpstreamError):  # low cardinality: the upstream's status
                error_type = str(status)
        attributes = call.attributes
        if call.input_tokens is not None:
            attributes["gen_ai.usage.input_tokens"] = call.input_tokens
        if call.output_tokens is not None:
            attributes["gen_ai.usage.output_tokens"] = call.output_tokens
        attributes["http.response.status_code"] = status
        if error_type is not None:
            attributes["error.type"] = error_type
            span.set_status(Status(StatusCode.ERROR, str(error) if error else error_type))
        if call.failures and call.target is None:
            attributes["lockgate.failed_attempts"] = call.failures
        span.set_attributes(attributes)
        span.end()
        route = call.route or "-"
        self._metrics.observe_call(
            call.operation, route, status, latency, call.ttft_s,
            call.input_tokens, call.output_tokens, error_type,
        )  # fmt: skip
        deployment = call.target.deployment if call.target is not None else None
        cost = None
        principal = call.principal
        if self._costs is not None and deployment is not None:  # embeddings: input tokens only
            cost = self._costs.cost(
                deployment.provider, deployment.model, call.input_tokens, call.output_tokens
            )
            self._metrics.observe_cost(call.operation, route, cost)
        if call.admitted and principal is not None and principal.limits is not None:
            used = (call.input_tokens or 0) + (call.output_tokens or 0)
            self._release(principal.limits, call.slot, used, cost or 0.0)
        if self._recorder is None:
            return
        context = span.get_span_context()
        self._recorder.submit(
            NewCall(
                created_at=call.created_at,
                request_id=call.request_id,
                trace_id=format(context.trace_id, "032x") if context.trace_id else None,
                operation=call.operation,
                route=call.route[:200] if call.route is not None else None,
                model=deployment.model if deployment is not None else _short(call.model),
                provider=deployment.provider if deployment is not None else None,
                deployment=deployment.label if deployment is not None else None,
                prompt_name=call.prompt_name,
                prompt_version=call.prompt_version,
                key_id=principal.key_id if principal is not None else None,
                status_code=status,
                error_type=error_type[:100] if error_type is not None else None,
                stream=call.stream,
                latency_ms=latency * 1000,
                ttft_ms=call.ttft_s * 1000 if call.ttft_s is not None else None,
                input_tokens=call.input_tokens,
                output_tokens=call.output_tokens,
                cost_usd=cost,
                finish_reason=call.finish_reason,
            )
        )

    def _release(self, limits: KeyLimits, slot: str, tokens: int, cost: float) -> None:
        task = asyncio.get_running_loop().create_task(
            self._limiter.release(limits, slot, tokens=tokens, cost_usd=cost)
        )
        self._releases.add(task)
        task.add_done_callback(self._released)

    def _released(self, task: asyncio.Task[None]) -> None:
        self._releases.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._metrics.limiter_errors.inc()

    async def drain(self) -> None:
        """Wait for pending limiter releases (at shutdown)."""
        if self._releases:
            await asyncio.gather(*self._releases, return_exceptions=True)


def _short(model: str | None) -> str | None:
    return model[:200] if model is not None else None
