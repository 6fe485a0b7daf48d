"""The app's state, built once in the FastAPI lifespan and handed to routes by dependency."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiohttp
import anyio.to_thread
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter

from lockgate.gateway.auth import Authenticator
from lockgate.gateway.breaker import CircuitBreakers
from lockgate.gateway.call_records import CallRecorder
from lockgate.gateway.config import LockgateSettings
from lockgate.gateway.costs import CostTable
from lockgate.gateway.dispatch import Dispatcher
from lockgate.gateway.drain import Drain
from lockgate.gateway.errors import SecretScrubber
from lockgate.gateway.judges import Judges
from lockgate.gateway.limits import BUDGET_THRESHOLDS, Limiter, MemoryLimiter, RedisLimiter
from lockgate.gateway.metrics import Metrics
from lockgate.gateway.predict import Predictor
from lockgate.gateway.predict_samples import SampleWriter
from lockgate.gateway.prompts import PromptResolver
from lockgate.gateway.providers import Provider, ProviderContext, build_providers
from lockgate.gateway.proxy import Proxy
from lockgate.gateway.routing import Router
from lockgate.gateway.settings import GatewaySettings
from lockgate.gateway.tracing import INSTRUMENTATION, build_tracer_provider
from lockgate.gateway.webhooks import WebhookDispatcher
from lockgate.registry.registry import Registry

log = logging.getLogger(__name__)


@dataclass
class GatewayState:
    settings: LockgateSettings
    registry: Registry
    http: aiohttp.ClientSession
    providers: dict[str, Provider]
    router: Router
    tracer_provider: TracerProvider
    metrics: Metrics
    recorder: CallRecorder | None
    costs: CostTable | None
    proxy: Proxy
    auth: Authenticator
    limiter: Limiter
    breakers: CircuitBreakers
    scrub: SecretScrubber
    predictor: Predictor
    webhooks: WebhookDispatcher | None = None  # delivers registry events (webhooks section)
    drain: Drain = field(default_factory=Drain)  # set on SIGTERM (server.shutdown_drain_s)
    judges: Judges | None = None  # LLM judges of sampled traffic (gateway.judges)

    async def aclose(self) -> None:
        try:
            if self.judges is not None:  # their calls need the proxy and the HTTP pool
                await self.judges.aclose()
            if self.webhooks is not None:
                await anyio.to_thread.run_sync(self.webhooks.stop)
            await self.proxy.drain()
            await self.predictor.aclose()
            await self.limiter.close()
            for provider in self.providers.values():
                await provider.aclose()
            await self.http.close()
        finally:  # whatever failed above, the queued call records are written
            if self.recorder is not None:
                self.recorder.close()
            self.tracer_provider.shutdown()
            self.registry.close()


def build_state(
    settings: LockgateSettings, span_exporters: Sequence[SpanExporter] = ()
) -> GatewayState:
    gateway = settings.gateway
    registry = Registry(settings.registry, actor="gateway")
    upstream = gateway.upstream
    http = aiohttp.ClientSession(  # needs the running loop: build_state runs in the lifespan
        connector=aiohttp.TCPConnector(
            limit=upstream.max_connections, keepalive_timeout=upstream.keepalive_timeout_s
        ),
        timeout=aiohttp.ClientTimeout(
            total=None, connect=gateway.timeouts.connect_s, sock_read=gateway.timeouts.read_s
        ),
        auto_decompress=True,
        # one session serves every caller: an upstream's cookies must not follow one caller's
        # request into another's (and the jar's per-request bookkeeping goes with them)
        cookie_jar=aiohttp.DummyCookieJar(),
    )
    providers = build_providers(ProviderContext(http, gateway, registry))
    router = Router(gateway, providers, registry)
    tracer_provider = build_tracer_provider(gateway.tracing, span_exporters)
    metrics = Metrics()
    costs = CostTable(gateway.prices)  # budgets need prices, call records or not
    recorder: CallRecorder | None = None
    if gateway.call_records.enabled:
        record_costs = gateway.call_records.compute_cost
        if record_costs:
            costs.load_in_background()  # else loaded by the first call that needs a price
        recorder = CallRecorder(
            registry.calls, gateway.call_records, metrics, costs if record_costs else None
        )
        recorder.start()
    auth = Authenticator(gateway, registry)
    limiter = build_limiter(gateway, registry, settings.webhooks.budget_thresholds)
    breakers = CircuitBreakers(gateway.breaker)
    judges = Judges(gateway, registry, metrics) if gateway.judges else None
    proxy = Proxy(
        settings=gateway,
        router=router,
        prompts=PromptResolver(registry, gateway.prompt_cache_ttl_s),
        tracer=tracer_provider.get_tracer(INSTRUMENTATION),
        metrics=metrics,
        recorder=recorder,
        auth=auth,
        limiter=limiter,
        dispatcher=Dispatcher(breakers),
        costs=costs,
        judges=judges,
    )
    if judges is not None:
        judges.attach(proxy.handle)
    return GatewayState(
        settings, registry, http, providers, router, tracer_provider, metrics, recorder,
        costs, proxy, auth, limiter, breakers, SecretScrubber.of(gateway),
        build_predictor(gateway, registry, tracer_provider, metrics, recorder, auth, limiter),
        WebhookDispatcher(registry.events, settings.webhooks).start()
        if settings.webhooks.endpoints else None, judges=judges,
    )  # fmt: skip


def build_predictor(
    gateway: GatewaySettings,
    registry: Registry,
    tracer_provider: TracerProvider,
    metrics: Metrics,
    recorder: CallRecorder | None,
    auth: Authenticator,
    limiter: Limiter,
) -> Predictor:
    """``:predict`` for registry scikit-learn models, with its sample writer (if sampling)."""
    settings = gateway.predict
    samples = None
    if settings.sample_rate > 0:
        samples = SampleWriter(
            registry.predictions,
            queue_size=settings.sample_queue_size,
            flush_interval_s=settings.sample_flush_interval_s,
            metrics=metrics.registry,
        )
        samples.start()
    return Predictor(
        settings=gateway, registry=registry, tracer=tracer_provider.get_tracer(INSTRUMENTATION),
        metrics=metrics, recorder=recorder, auth=auth, limiter=limiter, samples=samples,
    )  # fmt: skip


def build_limiter(
    gateway: GatewaySettings,
    registry: Registry,
    budget_thresholds: Sequence[float] = BUDGET_THRESHOLDS,
) -> Limiter:
    """Redis when ``gateway.redis_url`` is set (shared by replicas), else in process. A key's
    spend crossing a share of its budget is a ``budget.threshold`` event."""

    async def load_spend(key_id: str) -> float:
        return await anyio.to_thread.run_sync(registry.keys.spend, key_id)

    async def on_budget(key_id: str, share: float, spent: float, budget: float) -> None:
        data = {"key_id": key_id, "share": share, "spent_usd": spent, "budget_usd": budget}
        try:
            await anyio.to_thread.run_sync(
                registry.events.record, "budget.threshold", f"key:{key_id}", data
            )
        except Exception:  # boundary: a lost event must not fail the call's release
            log.warning("could not record budget.threshold of key %s", key_id, exc_info=True)

    if gateway.redis_url:
        return RedisLimiter(
            gateway.redis_url, load_spend, on_budget=on_budget, budget_thresholds=budget_thresholds
        )
    return MemoryLimiter(load_spend, on_budget=on_budget, budget_thresholds=budget_thresholds)
