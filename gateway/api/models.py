"""``GET /v1/models``: the configured routes, then ``registry:NAME@LABEL`` for every label of
a registered model the gateway can serve: ``upstream``, ``hf`` and ``lora`` versions (through
the chat endpoints) and ``sklearn`` versions registered with an input schema (through
``POST /v1/models/{NAME@LABEL}:predict``); a key limited to some models sees only those."""

from __future__ import annotations

import functools
from typing import Any

import anyio.to_thread
import orjson
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from lockgate.gateway.api.deps import StateDep
from lockgate.gateway.routing import LOCAL_FLAVORS, REGISTRY_PREFIX

SERVED_FLAVORS = frozenset({"upstream", *LOCAL_FLAVORS, "sklearn"})
# served only when registered with a reference dataset (the schema :predict checks against)
NEED_SCHEMA = frozenset({"sklearn"})

router = APIRouter(tags=["openai"])


def _model(model_id: str, owned_by: str, created: int = 0) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": created, "owned_by": owned_by}


@router.get("/v1/models")
async def list_models(request: Request, state: StateDep) -> Response:
    principal = await state.auth.authenticate(request.headers)
    principal.require_scope("inference")
    data = [_model(name, "lockgate") for name in state.router.route_names]
    labels = await anyio.to_thread.run_sync(
        functools.partial(state.registry.models.served, SERVED_FLAVORS, need_schema=NEED_SCHEMA)
    )
    for name, label, created in labels:
        data.append(
            _model(f"{REGISTRY_PREFIX}{name}@{label}", "registry", int(created.timestamp()))
        )
    if principal.models is not None:
        data = [m for m in data if m["id"] in principal.models]
    return Response(orjson.dumps({"object": "list", "data": data}), media_type="application/json")
