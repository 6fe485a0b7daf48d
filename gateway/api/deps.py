"""Dependencies: the app's state, built in the lifespan, and scope checks."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends
from starlette.requests import Request

from gateway.state import GatewayState


async def get_state(request: Request) -> GatewayState:
    state: GatewayState = request.app.state.gateway
    return state


StateDep = Annotated[GatewayState, Depends(get_state)]


def require_scope(scope: str) -> Any:
    """A route dependency: the caller's key must carry ``scope`` (401/403 otherwise)."""

    async def check(request: Request, state: StateDep) -> None:
        principal = await state.auth.authenticate(request.headers)
        principal.require_scope(scope)

    return Depends(check)


READ = require_scope("registry:read")
WRITE = require_scope("registry:write")
