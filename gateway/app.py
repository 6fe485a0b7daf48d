"""The FastAPI app: ``create_app(settings)`` for tests and embedding, ``app_factory`` for
``uvicorn --factory`` (several workers), each building its state in the lifespan."""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import orjson
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from opentelemetry.sdk.trace.export import SpanExporter
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from gateway.api import chat, completions, embeddings, files, fine_tuning, health, metrics, models
from gateway.config import LockgateSettings
from gateway.providers import Operation
from gateway.schemas import install_openapi
from gateway.state import build_state
from registry.errors import LockgateError

log = logging.getLogger(__name__)
_JSON = "application/json"


def _error_response(status: int, body: object, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=_JSON, headers=headers)


async def _lockgate_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LockgateError)
    content = orjson.dumps(exc.to_dict())
    state = getattr(request.app.state, "gateway", None)
    if state is not None:
        content = state.scrub(content)
    retry_after = getattr(exc, "retry_after_s", None)
    headers = {"retry-after": str(max(1, math.ceil(retry_after)))} if retry_after else None
    return Response(content, status_code=exc.status_code, media_type=_JSON, headers=headers)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    param = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
    message = str(first.get("msg", "invalid request"))
    body = {"error": {"message": message, "type": "invalid_request_error", "param": param,
                      "code": "validation_error"}}  # fmt: skip
    return _error_response(400, body)


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    body = {"error": {"message": f"internal error: {type(exc).__name__}", "type": "server_error",
                      "param": None, "code": "internal_error"}}  # fmt: skip
    return _error_response(500, body)


# answered by GatewayApp straight from the ASGI scope (the routes in gateway/api describe them
# in the OpenAPI document and serve them when middleware has been added)
PROXY_PATHS: dict[str, Operation] = {
    "/v1/chat/completions": "chat",
    "/v1/completions": "text_completion",
    "/v1/embeddings": "embeddings",
}


class GatewayApp(FastAPI):
    """FastAPI, except that ``POST`` to the three proxy endpoints goes straight to the proxy.

    FastAPI's middleware stack, router and dependency solving cost about a third of the CPU
    of a proxied call (docs/benchmarks.md, "Gateway"); the proxy endpoints use none of it:
    they read the raw request and answer a ready response. Errors are answered by the same
    handlers as on the FastAPI path. With any user middleware added, every request takes
    the FastAPI path, so that middleware sees it.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not self.user_middleware:
            path: str = scope["path"]
            root = scope.get("root_path")
            if root and path.startswith(root):
                path = path[len(root) :]
            operation = PROXY_PATHS.get(path)
            if operation is not None:
                scope["app"] = self
                await self._proxy(scope, receive, send, operation)
                return
        await super().__call__(scope, receive, send)

    async def _proxy(
        self, scope: Scope, receive: Receive, send: Send, operation: Operation
    ) -> None:
        request = Request(scope, receive, send)
        try:
            response = await self.state.gateway.proxy.handle(request, operation)
        except LockgateError as exc:
            response = await _lockgate_error(request, exc)
        except Exception as exc:  # boundary: logged, answered 500 as the FastAPI path does
            response = await _unexpected_error(request, exc)
        await response(scope, receive, send)


def create_app(
    settings: LockgateSettings,
    *,
    span_exporters: Sequence[SpanExporter] = (),
    tune_runtime: bool = False,
) -> FastAPI:
    """The gateway app; its registry, HTTP pool, tracer and writers live for its lifespan.

    ``span_exporters`` are added to the app's tracer provider (e.g. an in-memory one in tests).
    ``tune_runtime`` (for a serving worker, which owns its process): once the state is built, see
    :func:`gateway.serve.tune_runtime`.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = build_state(settings, span_exporters)
        app.state.gateway = state
        if tune_runtime:
            from gateway.serve import tune_runtime as tune

            tune()
        try:
            yield
        finally:
            await state.aclose()

    app = GatewayApp(title="lockgate gateway", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.add_exception_handler(LockgateError, _lockgate_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)
    for module in (chat, completions, embeddings, models, files, fine_tuning, health, metrics):
        app.include_router(module.router)
    install_openapi(app)
    return app


def app_factory() -> FastAPI:
    """For ``uvicorn gateway.app:app_factory --factory``: settings from ``LOCKGATE_CONFIG``."""
    from gateway.config import load_settings

    return create_app(load_settings(), tune_runtime=True)
