"""``GET /healthz`` (the process answers) and ``GET /readyz`` (the registry database does, and
no provider is still warming up: litellm's import, at start-up, when a route uses it; and the
process is not draining after a SIGTERM: :mod:`gateway.drain`)."""

from __future__ import annotations

import anyio
import anyio.to_thread
from fastapi import APIRouter
from sqlalchemy import text
from starlette.responses import JSONResponse

from lockgate.gateway.api.deps import StateDep
from lockgate.gateway.providers import WarmsUp
from lockgate.registry.registry import Registry

router = APIRouter(tags=["health"])
READY_TIMEOUT_S = 3.0


@router.get("/healthz")
async def healthz() -> JSONResponse:
    return JSONResponse({"status": "ok"})


def _ping(registry: Registry) -> None:
    with registry.db.engine.connect() as connection:
        connection.execute(text("SELECT 1"))


@router.get("/readyz")
async def readyz(state: StateDep) -> JSONResponse:
    if state.drain.draining:  # SIGTERM: the load balancer takes this replica out first
        reason = "draining: shutting down, requests are still served until the drain ends"
        return JSONResponse({"status": "draining", "reason": reason}, status_code=503)
    warming = [w for p in state.providers.values() if isinstance(p, WarmsUp) and (w := p.warming())]
    if warming:
        reason = f"warming up: {', '.join(warming)}"
        return JSONResponse({"status": "unavailable", "reason": reason}, status_code=503)
    try:
        with anyio.fail_after(READY_TIMEOUT_S):
            await anyio.to_thread.run_sync(_ping, state.registry, abandon_on_cancel=True)
    except Exception as exc:  # boundary: any failure means not ready, and says why
        reason = f"database unreachable: {type(exc).__name__}: {exc}".splitlines()[0]
        return JSONResponse({"status": "unavailable", "reason": reason}, status_code=503)
    return JSONResponse({"status": "ready"})
