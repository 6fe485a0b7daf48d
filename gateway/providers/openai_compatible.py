"""The fast path: OpenAI-compatible upstreams over one pooled ``httpx.AsyncClient``.

Nothing is parsed and re-serialised that does not have to be: the response body goes back
as the bytes that came, and a stream is relayed chunk by chunk as it arrives.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import httpx
import orjson

from gateway.errors import UpstreamError, UpstreamTimeout, UpstreamUnreachable
from gateway.providers import (
    PATHS,
    ProviderContext,
    UpstreamCall,
    UpstreamResponse,
    register_provider,
)
from gateway.settings import DEFAULT_API_BASES, DeploymentSettings


def upstream_error(status: int, content: bytes) -> UpstreamError:
    """An upstream error answer, kept as it came when it is OpenAI-shaped."""
    try:
        data: Any = orjson.loads(content)
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        err = data["error"]
        return UpstreamError(
            status,
            str(err.get("message") or f"upstream returned HTTP {status}"),
            body=data,
            code=err.get("code") if isinstance(err.get("code"), str) else None,
            param=err.get("param") if isinstance(err.get("param"), str) else None,
        )
    if isinstance(data, dict) and isinstance(data.get("message"), str):  # vLLM / TGI style
        return UpstreamError(status, data["message"])
    text = content[:300].decode("utf-8", errors="replace").strip()
    return UpstreamError(status, f"upstream returned HTTP {status}: {text or '(empty body)'}")


def transport_error(exc: httpx.HTTPError, deployment: DeploymentSettings) -> Exception:
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamTimeout(f"upstream {deployment.label} did not answer in time")
    return UpstreamUnreachable(
        f"upstream {deployment.label} unreachable: {type(exc).__name__}: {exc}"
    )


class OpenAICompatibleProvider:
    def __init__(self, context: ProviderContext) -> None:
        self._http = context.http
        self._urls: dict[tuple[str, str], str] = {}

    def _url(self, deployment: DeploymentSettings, operation: str) -> str:
        base = deployment.api_base or DEFAULT_API_BASES.get(deployment.provider)
        if base is None:
            raise UpstreamUnreachable(
                f"deployment {deployment.label} has no api_base: set one in lockgate.yaml"
            )
        key = (base, operation)
        url = self._urls.get(key)
        if url is None:
            url = self._urls[key] = base.rstrip("/") + PATHS[operation]
        return url

    @staticmethod
    def _headers(call: UpstreamCall) -> dict[str, str]:
        headers = {"content-type": "application/json", **call.headers}
        key = call.deployment.api_key
        if key is not None:
            headers["authorization"] = "Bearer " + key.get_secret_value()
        return headers

    async def complete(self, call: UpstreamCall) -> UpstreamResponse:
        url = self._url(call.deployment, call.operation)
        try:
            resp = await self._http.post(
                url, content=orjson.dumps(call.body), headers=self._headers(call)
            )
        except httpx.HTTPError as exc:
            raise transport_error(exc, call.deployment) from exc
        content = resp.content
        if resp.status_code >= 400:
            raise upstream_error(resp.status_code, content)
        try:
            data = orjson.loads(content)
        except orjson.JSONDecodeError as exc:
            raise UpstreamUnreachable(
                f"upstream {call.deployment.label} answered with invalid JSON"
            ) from exc
        return UpstreamResponse(content, data if isinstance(data, dict) else {})

    async def stream(self, call: UpstreamCall) -> AsyncGenerator[bytes, None]:
        url = self._url(call.deployment, call.operation)
        headers = self._headers(call)
        headers["accept-encoding"] = "identity"  # relayed raw: no compression to undo
        request = self._http.build_request(
            "POST", url, content=orjson.dumps(call.body), headers=headers
        )
        try:
            resp = await self._http.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise transport_error(exc, call.deployment) from exc
        if resp.status_code >= 400:
            try:
                content = await resp.aread()
            finally:
                await resp.aclose()
            raise upstream_error(resp.status_code, content)
        return self._relay(resp, call.deployment)

    @staticmethod
    async def _relay(
        resp: httpx.Response, deployment: DeploymentSettings
    ) -> AsyncGenerator[bytes, None]:
        try:
            async for chunk in resp.aiter_raw():
                yield chunk
        except httpx.HTTPError as exc:
            raise transport_error(exc, deployment) from exc
        finally:
            await resp.aclose()

    async def aclose(self) -> None:
        """The pooled client belongs to the lifespan, which closes it."""


@register_provider("openai")
def _factory(context: ProviderContext) -> OpenAICompatibleProvider:
    return OpenAICompatibleProvider(context)
