"""Every non-OpenAI-compatible provider through litellm's async SDK, in the OpenAI shape.

A deployment's ``model`` is litellm's ``provider/model`` string (``anthropic/claude-…``).
litellm is never imported when the CLI starts. When a configured route goes through litellm,
the provider imports and warms it in a background thread as the gateway starts
(:func:`gateway._litellm.warm_litellm`, seconds), and :meth:`LiteLLMProvider.warming` keeps
``/readyz`` at 503 until that is done; a call that comes sooner waits for it off the event
loop. Otherwise (a ``registry:`` model through litellm) the first call loads it, off the loop.

litellm reads many keywords as its own options (``api_base``, ``base_url``, ``api_key``,
``extra_headers``, ``fallbacks``, ``mock_response``, …), so only an allowlist reaches it: the
OpenAI API's fields of the operation (:data:`gateway.schemas.OPENAI_FIELDS`) and the
deployment's configured ``params``; the address, key and headers are the deployment's own.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import anyio.to_thread
import orjson

from lockgate.gateway._litellm import load_litellm, warm_litellm
from lockgate.gateway.errors import UpstreamError, UpstreamTimeout, UpstreamUnreachable
from lockgate.gateway.providers import (
    ProviderContext,
    UpstreamCall,
    UpstreamResponse,
    encode_body,
    register_provider,
)
from lockgate.gateway.schemas import OPENAI_FIELDS
from lockgate.gateway.settings import GatewaySettings
from lockgate.registry.errors import LockgateError

log = logging.getLogger(__name__)

_FUNCTIONS = {
    "chat": "acompletion",
    "text_completion": "atext_completion",
    "embeddings": "aembedding",
}
_DONE = b"data: [DONE]\n\n"


def _to_dict(obj: Any) -> dict[str, Any]:
    if isinstance(obj, dict):
        return obj
    dumped: dict[str, Any] = obj.model_dump(exclude_none=True)
    return dumped


def map_litellm_error(exc: Exception, label: str, secret: str = "") -> LockgateError:
    """litellm's exceptions carry the upstream status; keep it and the message (without the
    API key, should the upstream quote it)."""
    name = type(exc).__name__
    message = str(getattr(exc, "message", None) or exc)
    if secret and secret in message:
        message = message.replace(secret, "[REDACTED]")
    if "Timeout" in name:
        return UpstreamTimeout(f"upstream {label} did not answer in time: {message}")
    if "APIConnectionError" in name:
        return UpstreamUnreachable(f"upstream {label} unreachable: {message}")
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and 400 <= status < 600:
        return UpstreamError(status, message)
    return UpstreamUnreachable(f"upstream {label} failed: {name}: {message}")


def _secret(call: UpstreamCall) -> str:
    key = call.deployment.api_key
    return key.get_secret_value() if key is not None else ""


def routes_use_litellm(settings: GatewaySettings) -> bool:
    """Whether a configured route has a deployment served through litellm."""
    return any(
        deployment.implementation == "litellm"
        for route in settings.routes.values()
        for deployment in route.deployments
    )


class LiteLLMProvider:
    def __init__(self, context: ProviderContext, *, warm_up: bool | None = None) -> None:
        """``warm_up``: load litellm in the background now (default: when a route uses it)."""
        self._local_cost_map = context.settings.litellm_local_cost_map
        self._sdk: Any = None
        self._warmed = threading.Event()
        self._warm_up: threading.Thread | None = None
        if routes_use_litellm(context.settings) if warm_up is None else warm_up:
            # imported whole here, not half-way through in the thread: the openai SDK looks
            # httpx up in sys.modules, and would find it half-initialised in another thread
            import httpx  # noqa: F401

            self._warm_up = threading.Thread(
                target=self._run_warm_up, name="lockgate-litellm-warm-up", daemon=True
            )
            self._warm_up.start()

    def warming(self) -> str | None:
        """``"litellm"`` while the start-up warm-up runs; None once it is done (or if none)."""
        return "litellm" if self._warm_up is not None and not self._warmed.is_set() else None

    def _run_warm_up(self) -> None:
        try:
            self._sdk = warm_litellm(self._local_cost_map)
        except Exception:  # boundary: a failed warm-up leaves the first call to load litellm
            log.warning("litellm warm-up failed; its first call will load it", exc_info=True)
        finally:
            self._warmed.set()
        from lockgate.gateway.serve import refreeze

        refreeze()

    def _load(self) -> Any:
        if self._warm_up is not None:
            self._warmed.wait()
        return self._sdk if self._sdk is not None else load_litellm(self._local_cost_map)

    async def _litellm(self) -> Any:
        """litellm, loaded (or the warm-up waited for) in a thread: never on the event loop."""
        if self._sdk is None:
            self._sdk = await anyio.to_thread.run_sync(self._load, abandon_on_cancel=True)
        return self._sdk

    @staticmethod
    def _kwargs(call: UpstreamCall) -> dict[str, Any]:
        encode_body(call)  # what the upstream could not be sent is a 400 here too
        d = call.deployment
        fields, params = OPENAI_FIELDS[call.operation], d.params
        kwargs = {k: v for k, v in call.body.items() if k in fields or k in params}
        kwargs["model"] = d.model
        if d.api_base:
            kwargs["api_base"] = d.api_base
        if d.api_key is not None:
            kwargs["api_key"] = d.api_key.get_secret_value()
        if call.headers:
            kwargs["extra_headers"] = call.headers
        return kwargs

    async def _call(self, call: UpstreamCall, **extra: Any) -> Any:
        kwargs = self._kwargs(call)  # a 400 here is the request's, not the upstream's
        function = getattr(await self._litellm(), _FUNCTIONS[call.operation])
        try:
            return await function(**kwargs, **extra)
        except Exception as exc:  # boundary: every litellm failure becomes a gateway error
            raise map_litellm_error(exc, call.deployment.label, _secret(call)) from exc

    async def complete(self, call: UpstreamCall) -> UpstreamResponse:
        data = _to_dict(await self._call(call))
        return UpstreamResponse(orjson.dumps(data), data)

    async def stream(self, call: UpstreamCall) -> AsyncGenerator[bytes, None]:
        chunks: AsyncIterator[Any] = (await self._call(call)).__aiter__()
        try:  # the first chunk, so that a refused call fails before the response starts
            first = await chunks.__anext__()
        except StopAsyncIteration:
            first = None
        except Exception as exc:  # boundary, as above
            raise map_litellm_error(exc, call.deployment.label, _secret(call)) from exc
        return self._relay(first, chunks, call.deployment.label)

    @staticmethod
    async def _relay(
        first: Any, chunks: AsyncIterator[Any], label: str
    ) -> AsyncGenerator[bytes, None]:
        if first is not None:
            yield b"data: " + orjson.dumps(_to_dict(first)) + b"\n\n"
            try:
                async for chunk in chunks:
                    yield b"data: " + orjson.dumps(_to_dict(chunk)) + b"\n\n"
            except Exception as exc:  # boundary, as above
                raise map_litellm_error(exc, label) from exc
        yield _DONE

    async def aclose(self) -> None:
        """litellm keeps its own clients; nothing of ours to close."""


@register_provider("litellm")
def _factory(context: ProviderContext) -> LiteLLMProvider:
    return LiteLLMProvider(context)
