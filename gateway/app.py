"""The FastAPI app: ``create_app(settings)`` for tests and embedding, ``app_factory`` for
``uvicorn --factory`` (several workers), each building its state in the lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from opentelemetry.sdk.trace.export import SpanExporter
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from lockgate.gateway.api import files, fine_tuning, health, metrics, models, predict, rest
from lockgate.gateway.api.answers import answered, error_response, lockgate_error, unexpected_error
from lockgate.gateway.auth import is_loopback
from lockgate.gateway.config import LockgateSettings
from lockgate.gateway.drain import closing, install_drain
from lockgate.gateway.errors import GatewayError, LoopbackOnly, UnsupportedMediaType
from lockgate.gateway.providers import Operation
from lockgate.gateway.schemas import install_openapi
from lockgate.gateway.state import build_state
from lockgate.gateway.ui import routes as ui_routes
from lockgate.registry.errors import LockgateError


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    param = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
    message = str(first.get("msg", "invalid request"))
    body = {"error": {"message": message, "type": "invalid_request_error", "param": param,
                      "code": "validation_error"}}  # fmt: skip
    return error_response(400, body)


async def _http_error(request: Request, exc: Exception) -> Response:
    """A path no route matches (404) or a method it does not take (405): the gateway's error
    shape under ``/v1`` and ``/api``; Starlette's own answer elsewhere (the UI's pages)."""
    assert isinstance(exc, StarletteHTTPException)
    if not request.url.path.startswith(("/v1/", "/api/")):
        return await http_exception_handler(request, exc)
    codes = {404: "not_found", 405: "method_not_allowed"}
    body = {"error": {"message": str(exc.detail), "type": "invalid_request_error",
                      "param": None, "code": codes.get(exc.status_code, "http_error")}}  # fmt: skip
    return error_response(exc.status_code, body, headers=dict(exc.headers or {}))


# the OpenAI-compatible endpoints the proxy answers (:class:`ProxyRoute`): path → operation
PROXY_PATHS: dict[str, Operation] = {
    "/v1/chat/completions": "chat",
    "/v1/completions": "text_completion",
    "/v1/embeddings": "embeddings",
}
_PROXY_NAMES: dict[Operation, tuple[str, str]] = {  # the route's name and OpenAPI summary
    "chat": ("chat_completions", "Chat Completions"),
    "text_completion": ("completions", "Completions"),
    "embeddings": ("embeddings", "Embeddings"),
}


async def proxy_answer(request: Request, operation: Operation) -> Response:
    """The answer of a proxy endpoint, errors included: what the proxy gives, else the
    response the app's exception handlers would give. The one implementation of the proxy
    endpoints, however a request reaches them (see :class:`GatewayApp`)."""
    return await answered(request, request.app.state.gateway.proxy.handle(request, operation))


class ProxyRoute(APIRoute):
    """``POST`` to a proxy endpoint, as a route of the app's router: FastAPI describes it in
    the OpenAPI document (its body and errors: :func:`gateway.schemas.install_openapi`), and
    the router hands it to :meth:`serve`, the ASGI handler the fast path calls too — no
    dependency solving, no second handler."""

    def __init__(self, path: str, operation: Operation) -> None:
        name, summary = _PROXY_NAMES[operation]

        async def endpoint(request: Request) -> Response:  # for the OpenAPI document
            return await proxy_answer(request, operation)

        endpoint.__name__ = endpoint.__qualname__ = name
        super().__init__(
            path, endpoint, methods=["POST"], name=name, summary=summary, tags=["openai"]
        )
        self.operation = operation
        self.app = self.serve  # what the router calls once the path and method match

    async def serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        await (await proxy_answer(request, self.operation))(scope, receive, send)


# bodies other than JSON: the multipart upload, and the UI's forms (gateway/ui checks them)
NOT_JSON_PATHS = frozenset({"/v1/files"})
NOT_JSON_PREFIX = "/ui/"
_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})


def _is_json(content_type: bytes) -> bool:
    media = content_type.partition(b";")[0].strip().lower()
    return media == b"application/json" or media.endswith(b"+json")


def _loopback_origin(origin: str) -> bool:
    scheme, sep, rest = origin.partition("://")
    if not sep or scheme not in ("http", "https"):
        return False  # "null" (a sandboxed or file: page) included
    return is_loopback(_host_name(rest.partition("/")[0]))


def _host_name(authority: str) -> str:
    """``host[:port]`` or ``[v6][:port]`` → the host."""
    if authority.startswith("["):
        return authority[: authority.find("]") + 1]
    return authority.rpartition(":")[0] if authority.count(":") == 1 else authority


def refusal(scope: Scope, path: str, is_open: bool) -> GatewayError | None:
    """The ASGI-level checks every request passes, the proxy fast path included: a body
    sent with a Content-Type must be JSON (but for an upload: 415), and in open mode the
    ``Host`` must be a loopback name (DNS rebinding) and an ``Origin``, if any, a loopback
    origin (a page elsewhere: cross-site request forgery). One pass over the headers."""
    check_type = (
        scope["method"] in _WITH_BODY
        and path not in NOT_JSON_PATHS
        and not path.startswith(NOT_JSON_PREFIX)
    )
    if not (check_type or is_open):
        return None
    host = origin = content_type = None
    for name, value in scope["headers"]:
        if name == b"content-type":
            content_type = value
        elif name == b"host":
            host = value
        elif name == b"origin":
            origin = value
    if is_open:
        name = _host_name(host.decode("latin-1")) if host is not None else ""
        if not is_loopback(name):
            return LoopbackOnly(
                f"this gateway has no API keys (open mode) and answers loopback names only: "
                f"Host {name!r} is not localhost, 127.0.0.1 or [::1]; to serve other names, "
                "create a key (lockgate keys create --name NAME) and send it",
                code="host_not_loopback",
            )
        if origin is not None and not _loopback_origin(origin.decode("latin-1")):
            return LoopbackOnly(
                f"this gateway has no API keys (open mode) and refuses requests from web "
                f"pages elsewhere: Origin {origin.decode('latin-1')!r} is not a loopback "
                "origin; create a key (lockgate keys create --name NAME) and send it",
                code="origin_not_loopback",
            )
    if check_type and content_type is not None and not _is_json(content_type):
        return UnsupportedMediaType(
            f"{scope['method']} {path} takes a JSON body: send Content-Type: "
            f"application/json (not {content_type.decode('latin-1')!r})",
            param="content-type",
        )
    return None


class GatewayApp(FastAPI):
    """FastAPI, except that ``POST`` to the three proxy endpoints goes straight to the proxy.

    FastAPI's middleware stack, router and dependency solving cost about a third of the CPU
    of a proxied call (docs/benchmarks.md, "Gateway"); the proxy endpoints use none of it:
    they read the raw request and answer a ready response. The fast path calls the same
    :meth:`ProxyRoute.serve` the router would, so the two paths cannot answer differently.
    With any user middleware added, every request takes the router, so that middleware sees
    it. Every HTTP request first passes :func:`refusal` (content type; loopback only in
    open mode), here, on both paths.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.proxy_routes = {path: ProxyRoute(path, op) for path, op in PROXY_PATHS.items()}
        self.router.routes.extend(self.proxy_routes.values())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            root = scope.get("root_path")
            if root and path.startswith(root):
                path = path[len(root) :]
            state = getattr(self.state, "gateway", None)
            if state is not None:
                if state.drain.draining:  # SIGTERM: answers close their connection
                    send = closing(send)
                auth = state.auth
                try:
                    is_open = auth.may_be_open and await auth.is_open()
                except LockgateError:  # the registry is down before its first answer: the
                    is_open = False  # routes' authentication refuses (503) what needs a key
                error = refusal(scope, path, is_open)
                if error is not None:
                    scope["app"] = self
                    request = Request(scope, receive, send)
                    await (await lockgate_error(request, error))(scope, receive, send)
                    return
            if scope["method"] == "POST" and not self.user_middleware:
                route = self.proxy_routes.get(path)
                if route is not None:
                    scope["app"] = self
                    await route.serve(scope, receive, send)
                    return
                model = predict.predict_path_model(path)
                if model is not None:  # :predict, likewise (gateway.api.predict)
                    scope["app"] = self
                    scope["path_params"] = {"model": model}
                    await predict.serve_predict(scope, receive, send, model)
                    return
        await super().__call__(scope, receive, send)


def create_app(
    settings: LockgateSettings,
    *,
    span_exporters: Sequence[SpanExporter] = (),
    tune_runtime: bool = False,
    drain_on_sigterm: bool = False,
) -> FastAPI:
    """The gateway app; its registry, HTTP pool, tracer and writers live for its lifespan.

    ``span_exporters`` are added to the app's tracer provider (e.g. an in-memory one in tests).
    ``tune_runtime`` (for a serving worker, which owns its process): once the state is built, see
    :func:`gateway.serve.tune_runtime`. ``drain_on_sigterm`` (likewise): SIGTERM starts a drain
    of ``server.shutdown_drain_s`` before the server stops (:mod:`gateway.drain`).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = build_state(settings, span_exporters)
        app.state.gateway = state
        if tune_runtime:
            from lockgate.gateway.serve import tune_runtime as tune

            tune()
        restore = (
            install_drain(state.drain, settings.server.shutdown_drain_s)
            if drain_on_sigterm
            else None
        )
        try:
            yield
        finally:
            if restore is not None:
                restore()
            await state.aclose()

    app = GatewayApp(title="lockgate gateway", lifespan=lifespan, docs_url="/docs", redoc_url=None)
    app.add_exception_handler(LockgateError, lockgate_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, unexpected_error)
    for module in (models, predict, files, fine_tuning, health, metrics):
        app.include_router(module.router)
    app.include_router(rest.build_router())
    ui_routes.mount(app, settings)  # /ui, unless ui.enabled is false
    install_openapi(app)
    return app


def app_factory() -> FastAPI:
    """For ``uvicorn lockgate.gateway.app:app_factory --factory``: settings as every command
    reads them (``LOCKGATE_CONFIG``, else ``./lockgate.yaml``, then ``LOCKGATE_*``)."""
    from lockgate.gateway.config import load_settings

    return create_app(load_settings(), tune_runtime=True, drain_on_sigterm=True)
