"""Errors answered in the gateway's error shape, however a request reached its handler:
through the router and the app's exception handlers, or by the app's fast path
(:class:`gateway.app.GatewayApp`), which skips both. :func:`answered` is the one way the fast
path's endpoints (the proxy's, ``:predict``) turn an exception into the same response the
routed path gives."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable

import orjson
from starlette.requests import Request
from starlette.responses import Response

from lockgate.registry.errors import LockgateError

log = logging.getLogger("lockgate.gateway.app")
JSON = "application/json"


def error_response(status: int, body: object, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=JSON, headers=headers)


async def lockgate_error(request: Request, exc: Exception) -> Response:
    """A :class:`LockgateError` as its status and body (scrubbed of provider keys), with
    ``retry-after`` when it names one."""
    assert isinstance(exc, LockgateError)
    content = orjson.dumps(exc.to_dict())
    state = getattr(request.app.state, "gateway", None)
    if state is not None:
        content = state.scrub(content)
    retry_after = getattr(exc, "retry_after_s", None)
    headers = {"retry-after": str(max(1, math.ceil(retry_after)))} if retry_after else None
    return Response(content, status_code=exc.status_code, media_type=JSON, headers=headers)


async def unexpected_error(request: Request, exc: Exception) -> Response:
    """Anything else: logged with its traceback, answered 500 without its message."""
    log.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    body = {"error": {"message": f"internal error: {type(exc).__name__}", "type": "server_error",
                      "param": None, "code": "internal_error"}}  # fmt: skip
    return error_response(500, body)


async def answered(request: Request, work: Awaitable[Response]) -> Response:
    """``work``'s response, or its error's."""
    try:
        return await work
    except LockgateError as exc:
        return await lockgate_error(request, exc)
    except Exception as exc:  # boundary: logged, answered 500 as the other routes are
        return await unexpected_error(request, exc)
