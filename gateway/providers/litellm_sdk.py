"""Every non-OpenAI-compatible provider through litellm's async SDK, in the OpenAI shape.

A deployment's ``model`` is litellm's ``provider/model`` string (``anthropic/claude-…``).
litellm is imported on first use, never when the gateway or the CLI starts.

litellm reads many keywords as its own options (``api_base``, ``base_url``, ``api_key``,
``extra_headers``, ``fallbacks``, ``mock_response``, …), so only an allowlist reaches it: the
OpenAI API's fields of the operation (:data:`gateway.schemas.OPENAI_FIELDS`) and the
deployment's configured ``params``; the address, key and headers are the deployment's own.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import orjson

from lockgate.gateway._litellm import load_litellm
from lockgate.gateway.errors import UpstreamError, UpstreamTimeout, UpstreamUnreachable
from lockgate.gateway.providers import (
    ProviderContext,
    UpstreamCall,
    UpstreamResponse,
    encode_body,
    register_provider,
)
from lockgate.gateway.schemas import OPENAI_FIELDS
from lockgate.registry.errors import LockgateError

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


class LiteLLMProvider:
    def __init__(self, context: ProviderContext) -> None:
        self._local_cost_map = context.settings.litellm_local_cost_map
        self._sdk: Any = None

    def _litellm(self) -> Any:
        if self._sdk is None:
            self._sdk = load_litellm(self._local_cost_map)
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
        function = getattr(self._litellm(), _FUNCTIONS[call.operation])
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
