"""The gateway as an in-process ``httpx`` transport: evals talk to it without a server.

The app's lifespan (registry, HTTP pool, tracer, call-record writer) starts on the first
request and stops when the transport is closed, exactly as under uvicorn.
"""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx

from lockgate.gateway.config import LockgateSettings


class InProcessGateway(httpx.AsyncBaseTransport):
    def __init__(self, settings: LockgateSettings) -> None:
        from lockgate.gateway.app import create_app

        self._app = create_app(settings)
        self._inner = httpx.ASGITransport(app=self._app)
        self._lifespan: AbstractAsyncContextManager[Any] | None = None
        self._lock = asyncio.Lock()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._lifespan is None:
            async with self._lock:
                if self._lifespan is None:
                    lifespan = self._app.router.lifespan_context(self._app)
                    await lifespan.__aenter__()
                    self._lifespan = lifespan
        request.headers["host"] = "localhost"  # in process: a loopback caller (open mode)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        if self._lifespan is not None:
            lifespan, self._lifespan = self._lifespan, None
            await lifespan.__aexit__(None, None, None)
        await self._inner.aclose()
