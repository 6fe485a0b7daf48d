"""The ``Provider`` seam: how the gateway talks to an upstream, and the registered kinds.

Two implementations now, registered by name in :data:`PROVIDERS`:

- ``openai``: the fast path for every OpenAI-compatible upstream (OpenAI, vLLM, TGI, Ollama,
  LM Studio, …): one pooled ``aiohttp.ClientSession``, the request body forwarded as JSON, the
  response bytes returned untouched and the SSE stream relayed as it arrives.
- ``litellm``: every other provider (Anthropic, Bedrock, Vertex, Gemini, Cohere, …) through
  litellm's async SDK, normalised to the OpenAI shape; litellm is imported in the background
  at start-up when a route uses it (else on first use). A provider still loading is
  :class:`WarmsUp`: ``/readyz`` answers 503 until it is done.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import aiohttp
import orjson

from lockgate.gateway.body import TOO_DEEP
from lockgate.gateway.errors import InvalidRequest
from lockgate.gateway.settings import DeploymentSettings, GatewaySettings

if TYPE_CHECKING:
    from lockgate.registry.registry import Registry

Operation = Literal["chat", "text_completion", "embeddings"]
PATHS: dict[str, str] = {
    "chat": "/chat/completions",
    "text_completion": "/completions",
    "embeddings": "/embeddings",
}


@dataclass(slots=True)
class UpstreamCall:
    """One request to one deployment; ``body`` already names the upstream model."""

    operation: Operation
    deployment: DeploymentSettings
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    connect_timeout_s: float | None = None


@dataclass(slots=True)
class UpstreamResponse:
    """A successful non-streaming answer: the bytes to return and their parsed form."""

    content: bytes
    data: dict[str, Any]


def encode_body(call: UpstreamCall) -> bytes:
    """The call's JSON body; what cannot be encoded (nesting past 254 levels, an integer
    beyond 64 bits) is the request's fault: a 400, never a 500 nor a deployment failure."""
    try:
        return orjson.dumps(call.body)
    except orjson.JSONEncodeError as exc:
        reason = str(exc)
        if "Recursion" in reason:
            raise InvalidRequest(TOO_DEEP) from None
        raise InvalidRequest(f"the request body cannot be sent on as JSON: {reason}") from None


class Provider(Protocol):
    """Sends calls upstream; raises ``gateway.errors`` exceptions on failure."""

    async def complete(self, call: UpstreamCall) -> UpstreamResponse:
        """Send a non-streaming call and return the OpenAI-shaped answer."""
        ...

    async def stream(self, call: UpstreamCall) -> AsyncGenerator[bytes, None]:
        """Open a streaming call; raise here (before any byte) if the upstream refuses it.

        The generator yields OpenAI SSE bytes (``data: {...}\\n\\n`` … ``data: [DONE]``)
        as they arrive; closing it releases the upstream connection.
        """
        ...

    async def aclose(self) -> None: ...


@runtime_checkable
class WarmsUp(Protocol):
    """A provider that loads something slow in the background as the gateway starts."""

    def warming(self) -> str | None:
        """What is still loading (for ``/readyz``); None once ready."""
        ...


@dataclass(frozen=True, slots=True)
class ProviderContext:
    """What a provider is built from, in the lifespan."""

    http: aiohttp.ClientSession
    settings: GatewaySettings
    registry: Registry | None = None  # for the local provider's registry models


ProviderFactory = Callable[[ProviderContext], Provider]
PROVIDERS: dict[str, ProviderFactory] = {}


def register_provider(name: str) -> Callable[[ProviderFactory], ProviderFactory]:
    def decorate(factory: ProviderFactory) -> ProviderFactory:
        PROVIDERS[name] = factory
        return factory

    return decorate


def build_providers(context: ProviderContext) -> dict[str, Provider]:
    """One instance of every registered provider (cheap: SDKs load on first use)."""
    from lockgate.gateway.providers import (  # noqa: F401  (registration)
        litellm_sdk,
        local,
        openai_compatible,
    )

    return {name: factory(context) for name, factory in PROVIDERS.items()}


__all__ = [
    "PATHS",
    "PROVIDERS",
    "Operation",
    "Provider",
    "ProviderContext",
    "UpstreamCall",
    "UpstreamResponse",
    "WarmsUp",
    "build_providers",
    "encode_body",
    "register_provider",
]
