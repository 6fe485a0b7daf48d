"""``GET /metrics``: Prometheus text format (see :mod:`gateway.metrics` for the series)."""

from __future__ import annotations

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import Response

from lockgate.gateway.api.deps import StateDep

router = APIRouter(tags=["metrics"])


@router.get("/metrics")
async def prometheus_metrics(state: StateDep) -> Response:
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
