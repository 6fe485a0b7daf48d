"""The HTTP client of an eval run: one pooled ``httpx.AsyncClient`` speaking OpenAI-compatible
JSON, with a per-call timeout and retries.

``transport_factory`` is the seam for the in-process gateway: when the suite gives no
``base_url``, the runner asks the factory for an ``httpx`` transport (for example
``httpx.ASGITransport(app=gateway_app)``) and sends requests to ``IN_PROCESS_URL`` through it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from evals.errors import TargetUnreachable

TransportFactory = Callable[[], httpx.AsyncBaseTransport]
IN_PROCESS_URL = "http://lockgate.in-process/v1"
_RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class CallFailed(Exception):
    """One call failed for good (after retries); the runner applies ``on_error``."""


@dataclass(frozen=True)
class CallResult:
    data: dict[str, Any]
    headers: Mapping[str, str]
    latency_ms: float


def trace_id_of(headers: Mapping[str, str]) -> str | None:
    """The W3C trace id from ``traceparent``, else ``x-request-id``."""
    parent = headers.get("traceparent")
    if parent:
        parts = parent.split("-")
        if len(parts) >= 3 and len(parts[1]) == 32:
            return parts[1]
    return headers.get("x-request-id")


class TargetClient:
    """Posts JSON to ``base_url`` + path; retries transport errors, 429 and 5xx."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float,
        retries: int,
        concurrency: int,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        backoff: float = 0.1,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self.backoff = backoff
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout), limits=limits, headers=dict(headers or {}),
            transport=transport,
        )  # fmt: skip

    async def close(self) -> None:
        await self._client.aclose()

    async def call(self, path: str, body: dict[str, Any]) -> CallResult:
        url = self.base_url + path
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
            started = time.perf_counter()
            try:
                response = await self._client.post(url, json=body)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                last = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                if attempt == self.retries:
                    raise TargetUnreachable(self.base_url, last) from exc
                continue
            except httpx.TransportError as exc:  # read timeouts, dropped connections
                last = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                continue
            latency = (time.perf_counter() - started) * 1000
            if response.status_code in _RETRY_STATUS:
                last = f"HTTP {response.status_code}: {response.text[:200]}"
                continue
            if response.status_code >= 400:
                raise CallFailed(f"HTTP {response.status_code} from {url}: {response.text[:300]}")
            try:
                data = response.json()
            except ValueError as exc:
                raise CallFailed(f"{url} did not answer JSON: {response.text[:200]!r}") from exc
            if not isinstance(data, dict):
                raise CallFailed(f"{url} answered {type(data).__name__}, not a JSON object")
            return CallResult(data, response.headers, latency)
        raise CallFailed(f"{url} failed after {self.retries + 1} attempt(s): {last}")

    async def post_json(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """For scorers (embeddings, judges): the response body."""
        try:
            return (await self.call(path, body)).data
        except CallFailed as exc:
            from evals.errors import ScorerInvalid

            raise ScorerInvalid(f"a scorer's call failed: {exc}") from exc
