"""Dependencies: the app's state, built in the lifespan, and scope checks.

Authentication comes before any body is read. FastAPI reads and parses a route's ``Body``,
``File`` and ``Form`` parameters *before* it runs the route's dependencies, so a route that
declared one would read (and answer 400 about) a body from a caller it has not authenticated
yet. Routes that take a body therefore declare none: they take the caller from a scope
dependency (:data:`Writer`), which needs only the headers, then read the body themselves
(:func:`read_json`, or a capped stream for uploads in :mod:`gateway.api.files`).
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import Depends
from starlette.requests import Request

from lockgate.gateway.auth import Principal
from lockgate.gateway.body import read_body
from lockgate.gateway.errors import InvalidRequest, RequestTooLarge
from lockgate.gateway.state import GatewayState


async def get_state(request: Request) -> GatewayState:
    state: GatewayState = request.app.state.gateway
    return state


StateDep = Annotated[GatewayState, Depends(get_state)]


async def authorize(request: Request, state: GatewayState, scope: str) -> Principal:
    """The caller, from the request's headers alone; 401 without a valid key, 403 without
    ``scope``."""
    principal = await state.auth.authenticate(request.headers)
    principal.require_scope(scope)
    return principal


def require_scope(scope: str) -> Any:
    """A route dependency: the caller's key must carry ``scope`` (401/403 otherwise); its
    value is the caller's :class:`~gateway.auth.Principal`."""

    async def check(request: Request, state: StateDep) -> Principal:
        return await authorize(request, state, scope)

    return Depends(check)


READ = require_scope("registry:read")
WRITE = require_scope("registry:write")
Writer = Annotated[Principal, WRITE]


async def read_json(request: Request, state: GatewayState) -> dict[str, Any]:
    """The body as a JSON object, within ``gateway.requests`` (413 over ``max_body_bytes``,
    408 past ``body_timeout_s``); 400 when it is not a JSON object. Call it after
    authenticating."""
    raw = await read_body(request, state.settings.gateway.requests)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    return body


def check_declared_length(request: Request, limit: int, setting: str) -> None:
    """413 at once when the declared ``Content-Length`` is over ``limit``: nothing is read."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(limit, setting)


def too_large(limit: int, setting: str) -> RequestTooLarge:
    return RequestTooLarge(
        f"the request body is larger than {limit} bytes (gateway.requests.{setting}); "
        "send less, or raise the setting"
    )
