"""The HTTP client of an eval run: one pooled ``httpx.AsyncClient`` speaking OpenAI-compatible
JSON, with a per-call timeout and retries.

``transport_factory`` is the seam for the in-process gateway: when the suite gives no
``base_url``, the runner asks the factory for an ``httpx`` transport (for example
``httpx.ASGITransport(app=gateway_app)``) and sends requests to ``IN_PROCESS_URL`` through it.
"""

from __future__ import annotations

import asyncio
import importlib
import math
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from lockgate.evals.errors import TargetUnreachable

TransportFactory = Callable[[], httpx.AsyncBaseTransport]
IN_PROCESS_URL = "http://lockgate.in-process/v1"
_RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class SubPoolTransport(httpx.AsyncBaseTransport):
    """HTTP transport spreading requests over small connection pools.

    httpcore's pool scans every connection for every queued request, so one pool of 50
    connections spends most of its CPU in bookkeeping (about 8 ms per request measured
    here, against about 1 ms with pools of 4). Sub-pools of ``per_pool`` connections,
    each request going to the least busy one, keep the cost flat as concurrency grows.
    """

    def __init__(self, concurrency: int, *, tls: bool = True, per_pool: int = 4) -> None:
        count = max(1, math.ceil(concurrency / per_pool))
        limits = httpx.Limits(max_connections=per_pool, max_keepalive_connections=per_pool)
        # one TLS context for all pools (loading the CA bundle costs ~30 ms each time)
        verify: Any = httpx.create_ssl_context() if tls else False
        self._pools = [httpx.AsyncHTTPTransport(limits=limits, verify=verify) for _ in range(count)]
        self._busy = [0] * count

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        i = min(range(len(self._pools)), key=self._busy.__getitem__)
        self._busy[i] += 1
        try:
            response = await self._pools[i].handle_async_request(request)
        except BaseException:
            self._busy[i] -= 1
            raise
        response.stream = _Release(response.stream, self._busy, i)
        return response

    async def aclose(self) -> None:
        for pool in self._pools:
            await pool.aclose()


class _Release(httpx.AsyncByteStream):
    """A response stream that marks its sub-pool less busy once closed."""

    def __init__(self, stream: object, busy: list[int], index: int) -> None:
        assert isinstance(stream, httpx.AsyncByteStream)
        self._stream, self._busy, self._index = stream, busy, index

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            self._busy[self._index] -= 1


class AiohttpTransport(httpx.AsyncBaseTransport):
    """An ``httpx`` transport that sends requests with aiohttp's connection pool.

    The client stays an ``httpx.AsyncClient`` (so the in-process gateway plugs in as an
    ``httpx.ASGITransport``), but the network I/O skips httpcore: measured here with 1,000
    requests at concurrency 50, the client's CPU time falls from about 1.4 s to 0.3 s.
    Bodies are passed through undecoded; ``httpx`` decodes them as usual.
    """

    def __init__(self, concurrency: int) -> None:
        self._aiohttp: Any = importlib.import_module("aiohttp")
        self._concurrency = concurrency
        self._session: Any = None

    def _open(self) -> Any:
        if self._session is None:
            connector = self._aiohttp.TCPConnector(limit=self._concurrency)
            self._session = self._aiohttp.ClientSession(
                connector=connector, auto_decompress=False, trust_env=False
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        aiohttp = self._aiohttp
        timeouts = request.extensions.get("timeout", {})
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=timeouts.get("connect"), sock_read=timeouts.get("read")
        )
        headers = [
            (k, v) for k, v in request.headers.multi_items()
            if k.lower() not in ("host", "content-length", "transfer-encoding")
        ]  # fmt: skip
        try:
            async with self._open().request(
                request.method, str(request.url), headers=headers, data=await request.aread(),
                timeout=timeout, allow_redirects=False,
            ) as response:  # fmt: skip
                content = await response.read()
                raw_headers = [(k.decode("latin-1"), v.decode("latin-1"))
                               for k, v in response.raw_headers]  # fmt: skip
                status = response.status
        except aiohttp.ClientConnectorError as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc
        except TimeoutError as exc:
            raise httpx.ReadTimeout(
                f"no answer within {timeouts.get('read')} s", request=request
            ) from exc
        except aiohttp.ClientError as exc:
            raise httpx.ReadError(f"{type(exc).__name__}: {exc}", request=request) from exc
        return httpx.Response(status, headers=raw_headers, content=content, request=request)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def network_transport(concurrency: int, *, tls: bool) -> httpx.AsyncBaseTransport:
    """aiohttp-backed when aiohttp is installed (it comes with litellm), else httpcore."""
    try:
        return AiohttpTransport(concurrency)
    except ImportError:
        return SubPoolTransport(concurrency, tls=tls)


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
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout), headers=dict(headers or {}),
            transport=transport
            or network_transport(concurrency, tls=self.base_url.startswith("https:")),
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
            from lockgate.evals.errors import ScorerInvalid

            raise ScorerInvalid(f"a scorer's call failed: {exc}") from exc
