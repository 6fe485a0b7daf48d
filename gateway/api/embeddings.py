"""``POST /v1/embeddings``: OpenAI-compatible, forwarded by :class:`gateway.proxy.Proxy`."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from lockgate.gateway.api.deps import StateDep

router = APIRouter(tags=["openai"])


@router.post("/v1/embeddings")
async def embeddings(request: Request, state: StateDep) -> Response:
    return await state.proxy.handle(request, "embeddings")
