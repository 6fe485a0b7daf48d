"""The app's state, built once in the FastAPI lifespan and handed to routes by dependency."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import httpx
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter

from gateway.call_records import CallRecorder
from gateway.config import LockgateSettings
from gateway.costs import CostTable
from gateway.metrics import Metrics
from gateway.prompts import PromptResolver
from gateway.providers import Provider, ProviderContext, build_providers
from gateway.proxy import Proxy
from gateway.routing import Router
from gateway.tracing import INSTRUMENTATION, build_tracer_provider
from registry.registry import Registry


@dataclass
class GatewayState:
    settings: LockgateSettings
    registry: Registry
    http: httpx.AsyncClient
    providers: dict[str, Provider]
    router: Router
    tracer_provider: TracerProvider
    metrics: Metrics
    recorder: CallRecorder | None
    costs: CostTable | None
    proxy: Proxy

    async def aclose(self) -> None:
        for provider in self.providers.values():
            await provider.aclose()
        await self.http.aclose()
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
    http = httpx.AsyncClient(
        timeout=httpx.Timeout(upstream.read_timeout_s, connect=upstream.connect_timeout_s),
        limits=httpx.Limits(
            max_connections=upstream.max_connections,
            max_keepalive_connections=upstream.max_keepalive_connections,
        ),
        follow_redirects=False,
    )
    providers = build_providers(ProviderContext(http, gateway))
    router = Router(gateway, providers, registry)
    tracer_provider = build_tracer_provider(gateway.tracing, span_exporters)
    metrics = Metrics()
    costs: CostTable | None = None
    recorder: CallRecorder | None = None
    if gateway.call_records.enabled:
        if gateway.call_records.compute_cost:
            costs = CostTable()
            costs.load_in_background(local_cost_map=gateway.litellm_local_cost_map)
        recorder = CallRecorder(registry, gateway.call_records, metrics, costs)
        recorder.start()
    proxy = Proxy(
        settings=gateway,
        router=router,
        prompts=PromptResolver(registry, gateway.prompt_cache_ttl_s),
        tracer=tracer_provider.get_tracer(INSTRUMENTATION),
        metrics=metrics,
        recorder=recorder,
    )
    return GatewayState(
        settings, registry, http, providers, router, tracer_provider, metrics, recorder,
        costs, proxy,
    )  # fmt: skip
