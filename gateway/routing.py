"""From the model string a request names to the deployments that may serve it, in order.

- a configured route (``gateway.routes``): one of its deployments chosen by weight, then its
  other deployments (by weight again), then the deployments of its ``fallbacks`` routes;
- ``registry:NAME@LABEL``: the registered ``upstream`` model version the label points to
  (cached like prompts), served with the provider defaults in ``gateway.providers``;
- ``ft:JOB_ID:ckpt-step-N``: a fine-tuning job's stored checkpoint, served in process.

A provider's key goes only to that provider's configured base URLs: a registered model that
names another host (its ``api_base``/``base_url``, or the same in its ``params``) is refused
(403 ``upstream_host_not_allowed``) unless ``gateway.providers.<provider>.allowed_api_bases``
lists it; :func:`check_upstream_spec` is the rule, used here at call time and by
``lockgate model register`` at registration. Its ``params`` may not carry any other field
that chooses credentials, headers or client options.

Each :class:`Target` carries its route's timeouts; the :class:`Plan` carries the retry policy
of the route the request named.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import accumulate
from typing import Any
from urllib.parse import urlsplit

from lockgate.gateway.body import refuse_control_fields
from lockgate.gateway.cache import TTLCache
from lockgate.gateway.errors import InvalidRequest, ModelNotFound, UpstreamHostNotAllowed
from lockgate.gateway.prompts import parse_ref
from lockgate.gateway.providers import Provider
from lockgate.gateway.schemas import CONTROL_FIELDS
from lockgate.gateway.settings import (
    DEFAULT_API_BASES,
    DeploymentSettings,
    GatewaySettings,
    RetrySettings,
    RouteSettings,
    TimeoutSettings,
)
from lockgate.registry.records import ModelVersionInfo, Ref
from lockgate.registry.registry import Registry

REGISTRY_PREFIX = "registry:"
CHECKPOINT_PREFIX = "ft:"  # ft:JOB_ID:ckpt-step-N, a fine-tuning checkpoint (finetune.inference)
LOCAL_FLAVORS = frozenset({"hf", "lora"})
DESTINATION_FIELDS = ("api_base", "base_url")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(url: str) -> tuple[str, str, int] | None:
    try:
        parts = urlsplit(url.strip())
        scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
        port = parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:
        return None
    if not host or port is None:
        return None
    return scheme, host, port


def upstream_provider(full: str) -> tuple[str, str]:
    """``provider/model`` → (provider, rest); a bare model name is OpenAI's."""
    provider, sep, rest = full.partition("/")
    return (provider, rest) if sep else ("openai", full)


def check_upstream_spec(spec: Mapping[str, Any], settings: GatewaySettings) -> str | None:
    """The base URL an ``upstream`` model's spec may be sent to (None: its provider's
    default), or a refusal: a host its provider's key may not go to (403), or a field in its
    ``params`` that would choose credentials, headers or client options (400)."""
    provider, _ = upstream_provider(str(spec.get("model") or ""))
    params = spec.get("params") or {}
    if not isinstance(params, Mapping):
        raise InvalidRequest("an upstream model's params must be a mapping", param="params")
    named = [
        (f"{where}{field}", value)
        for where, source in (("", spec), ("params.", params))
        for field in DESTINATION_FIELDS
        if (value := source.get(field)) is not None
    ]
    others = CONTROL_FIELDS.intersection(params).difference(DESTINATION_FIELDS)
    if others:
        refuse_control_fields(others, "params.")
    if not named:
        return None
    defaults = settings.providers.get(provider)
    configured = defaults.api_base if defaults and defaults.api_base else None
    allowed = [configured or DEFAULT_API_BASES.get(provider)]
    allowed += defaults.allowed_api_bases if defaults else []
    origins = {_origin(url) for url in allowed if url}
    for field, value in named:
        origin = _origin(value) if isinstance(value, str) else None
        if origin is None or origin not in origins:
            shown = ", ".join(sorted(u for u in allowed if u)) or "none configured"
            raise UpstreamHostNotAllowed(
                f"{field} {value!r}: the {provider!r} provider's key may go only to its "
                f"configured base URLs ({shown}); to allow this host, add it to "
                f"gateway.providers.{provider}.allowed_api_bases in lockgate.yaml",
                param=field,
            )
    value = named[0][1]
    return str(value)


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
            ref = parse_ref(model[len(REGISTRY_PREFIX) :], "model")
            return await self._models.get(ref, lambda: self._registry_target(model, ref))
        if model.startswith(CHECKPOINT_PREFIX):
            return await self._models.get(model, lambda: self._checkpoint_target(model))
        shown = ", ".join(sorted(self._routes)[:20]) or "none configured"
        raise ModelNotFound(
            f"model {model!r} is not served here: use a route ({shown}), "
            "registry:NAME@LABEL or prompt:NAME@LABEL",
            param="model",
        )

    def _registry_target(self, model: str, ref: Ref) -> Plan:
        deployment = self.registry_deployment(self._registry.models.get(ref))
        provider = self._providers[deployment.implementation]
        target = Target.of(model, deployment, provider, self._settings.timeouts)
        return Plan(model, (target,), self._settings.retries)

    def _checkpoint_target(self, model: str) -> Plan:
        """``ft:JOB_ID:ckpt-step-N``: a fine-tuning job's stored checkpoint, served in process
        by the local provider like a ``lora`` version (404 when there is none)."""
        from lockgate.finetune.inference import find_checkpoint

        find_checkpoint(self._registry, model)
        deployment = DeploymentSettings(provider="local", model=model, name=model, via="local")
        target = Target.of(model, deployment, self._providers["local"], self._settings.timeouts)
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
        provider, rest = upstream_provider(full)
        api_base = check_upstream_spec(spec, self._settings)
        defaults = self._settings.providers.get(provider)
        probe = DeploymentSettings(provider=provider, model=rest)
        upstream_model = rest if probe.implementation == "openai" else full
        params = {
            k: v for k, v in (spec.get("params") or {}).items() if k not in DESTINATION_FIELDS
        }
        return DeploymentSettings(
            provider=provider,
            model=upstream_model,
            name=f"{info.name}@{info.version}",
            api_base=api_base or (defaults.api_base if defaults else None),
            api_key=defaults.api_key if defaults else None,
            params=params,
        )
