"""From the model string a request names to a deployment and the provider that serves it.

- a configured route (``gateway.routes``): one of its deployments, chosen by weight;
- ``registry:NAME@LABEL``: the registered ``upstream`` model version the label points to
  (cached like prompts), served with the provider defaults in ``gateway.providers``.
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
from gateway.settings import DeploymentSettings, GatewaySettings, RouteSettings
from registry.records import ModelVersionInfo, Ref
from registry.registry import Registry

REGISTRY_PREFIX = "registry:"


@dataclass(frozen=True, slots=True)
class Target:
    route: str
    deployment: DeploymentSettings
    provider: Provider


class _Route:
    __slots__ = ("name", "targets", "totals")

    def __init__(self, name: str, route: RouteSettings, providers: dict[str, Provider]) -> None:
        self.name = name
        self.targets = [Target(name, d, providers[d.implementation]) for d in route.deployments]
        self.totals = list(accumulate(d.weight for d in route.deployments))

    def choose(self, rng: random.Random) -> Target:
        if len(self.targets) == 1:
            return self.targets[0]
        index = bisect.bisect_right(self.totals, rng.random() * self.totals[-1])
        return self.targets[min(index, len(self.targets) - 1)]


class Router:
    def __init__(
        self, settings: GatewaySettings, providers: dict[str, Provider], registry: Registry
    ) -> None:
        self._settings = settings
        self._providers = providers
        self._registry = registry
        self._rng = random.Random()
        self._routes = {
            name: _Route(name, route, providers) for name, route in settings.routes.items()
        }
        self._models: TTLCache[Target] = TTLCache(settings.prompt_cache_ttl_s)

    @property
    def route_names(self) -> list[str]:
        return list(self._routes)

    async def resolve(self, model: Any) -> Target:
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

    def _registry_target(self, model: str, ref: Ref) -> Target:
        deployment = self.registry_deployment(self._registry.get_model(ref))
        return Target(model, deployment, self._providers[deployment.implementation])

    def registry_deployment(self, info: ModelVersionInfo) -> DeploymentSettings:
        if info.flavor != "upstream":
            raise InvalidRequest(
                f"model {info.name}@{info.version} is a {info.flavor!r} model; the gateway serves "
                "'upstream' models (in-process models arrive with fine-tuning)",
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
