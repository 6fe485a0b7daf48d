"""From the model string a request names to the deployments that may serve it, in order.

- a configured route (``gateway.routes``): one of its deployments chosen by weight, then its
  other deployments (by weight again), then the deployments of its ``fallbacks`` routes;
- ``registry:NAME@LABEL``: the registered ``upstream`` model version the label points to
  (cached like prompts), served with the provider defaults in ``gateway.providers``.

Each :class:`Target` carries its route's timeouts; the :class:`Plan` carries the retry policy
of the route the request named.
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

from gateway.cache import TTLCache
from gateway.errors import InvalidRequest, ModelNotFound
from gateway.providers import Provider
from gateway.settings import (
    DeploymentSettings,
    GatewaySettings,
    RetrySettings,
    RouteSettings,
    TimeoutSettings,
)
from registry.records import ModelVersionInfo, Ref
from registry.registry import Registry

REGISTRY_PREFIX = "registry:"
LOCAL_FLAVORS = frozenset({"hf", "lora"})


@dataclass(frozen=True, slots=True)
class Target:
    route: str
    deployment: DeploymentSettings
    provider: Provider
    timeouts: TimeoutSettings
    key: str = ""  # the deployment's identity for its circuit breaker

    @staticmethod
    def of(
        route: str, d: DeploymentSettings, provider: Provider, timeouts: TimeoutSettings
    ) -> Target:
        return Target(route, d, provider, timeouts, f"{d.label} {d.api_base or ''}")


@dataclass(frozen=True, slots=True)
class Plan:
    """What a request may be served by, in the order to try, and how hard to try."""

    route: str
    candidates: tuple[Target, ...]
    retries: RetrySettings


class _Route:
    __slots__ = ("fallback_targets", "name", "plan", "retries", "targets", "totals")

    def __init__(
        self, name: str, route: RouteSettings, providers: dict[str, Provider],
        settings: GatewaySettings,
    ) -> None:  # fmt: skip
        self.name = name
        timeouts = settings.route_timeouts(route)
        self.targets = [
            Target.of(name, d, providers[d.implementation], timeouts) for d in route.deployments
        ]
        self.totals = list(accumulate(d.weight for d in route.deployments))
        self.retries = route.retries or settings.retries
        self.fallback_targets: tuple[Target, ...] = ()
        self.plan = Plan(name, tuple(self.targets), self.retries)

    def link(self, routes: dict[str, _Route], fallbacks: list[str]) -> None:
        self.fallback_targets = tuple(t for f in fallbacks for t in routes[f].targets)
        self.plan = Plan(self.name, (*self.targets, *self.fallback_targets), self.retries)

    def choose(self, rng: random.Random) -> Plan:
        if len(self.targets) == 1:
            return self.plan
        order: list[Target] = []
        targets, totals = list(self.targets), list(self.totals)
        while targets:  # weighted order without replacement
            index = bisect.bisect_right(totals, rng.random() * totals[-1])
            order.append(targets.pop(min(index, len(targets) - 1)))
            totals = list(accumulate(t.deployment.weight for t in targets))
        return Plan(self.name, (*order, *self.fallback_targets), self.retries)


class Router:
    def __init__(
        self, settings: GatewaySettings, providers: dict[str, Provider], registry: Registry
    ) -> None:
        self._settings = settings
        self._providers = providers
        self._registry = registry
        self._rng = random.Random()
        self._routes = {
            name: _Route(name, route, providers, settings)
            for name, route in settings.routes.items()
        }
        for name, route in settings.routes.items():
            self._routes[name].link(self._routes, route.fallbacks)
        self._models: TTLCache[Plan] = TTLCache(settings.prompt_cache_ttl_s)

    @property
    def route_names(self) -> list[str]:
        return list(self._routes)

    async def plan(self, model: Any) -> Plan:
        if not isinstance(model, str) or not model:
            raise InvalidRequest(
                "model is required (a route name or registry:NAME@LABEL)", param="model"
            )
        route = self._routes.get(model)
        if route is not None:
            return route.choose(self._rng)
        if model.startswith(REGISTRY_PREFIX):
            ref = Ref.parse(model[len(REGISTRY_PREFIX) :])
            return await self._models.get(ref, lambda: self._registry_target(model, ref))
        shown = ", ".join(sorted(self._routes)[:20]) or "none configured"
        raise ModelNotFound(
            f"model {model!r} is not served here: use a route ({shown}), "
            "registry:NAME@LABEL or prompt:NAME@LABEL",
            param="model",
        )

    def _registry_target(self, model: str, ref: Ref) -> Plan:
        deployment = self.registry_deployment(self._registry.get_model(ref))
        provider = self._providers[deployment.implementation]
        target = Target.of(model, deployment, provider, self._settings.timeouts)
        return Plan(model, (target,), self._settings.retries)

    def registry_deployment(self, info: ModelVersionInfo) -> DeploymentSettings:
        if info.flavor in LOCAL_FLAVORS:  # served in process by the local provider
            ref = f"{info.name}@{info.version}"
            return DeploymentSettings(provider="local", model=ref, name=ref, via="local")
        if info.flavor != "upstream":
            raise InvalidRequest(
                f"model {info.name}@{info.version} is a {info.flavor!r} model; the gateway serves "
                "'upstream', 'hf' and 'lora' models",
                param="model",
            )
        spec = info.spec
        full = str(spec["model"])
        provider, sep, rest = full.partition("/")
        if not sep:
            provider, rest = "openai", full
        defaults = self._settings.providers.get(provider)
        probe = DeploymentSettings(provider=provider, model=rest)
        upstream_model = rest if probe.implementation == "openai" else full
        return DeploymentSettings(
            provider=provider,
            model=upstream_model,
            name=f"{info.name}@{info.version}",
            api_base=spec.get("api_base") or (defaults.api_base if defaults else None),
            api_key=defaults.api_key if defaults else None,
            params=dict(spec.get("params") or {}),
        )
