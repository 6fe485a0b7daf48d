"""``/api/v1``: the registry's REST API, one module per registry part.

Each module defines ``router`` (an :class:`fastapi.APIRouter` without a prefix); this
package mounts them under ``/api/v1`` in the order of :data:`MODULES`. Conventions every
module follows are in :mod:`gateway.api.rest.common`: scopes, paging, references, errors in
the gateway's error shape, and compare-and-set with ``ETag``/``If-Match``.
"""

from __future__ import annotations

import importlib

from fastapi import APIRouter

PREFIX = "/api/v1"
# lockgate.gateway.api.rest.<name>, mounted in this order. Modules with routes under
# /models/{name}/... (labels, gates) must come before "models": its /models/{name:path}
# matches any path below /models (model names may hold "/").
MODULES: tuple[str, ...] = (
    "labels", "gates", "prompts",  # before models: their {name:path} suffixes come first
    "models", "datasets", "runs", "jobs", "calls", "keys", "drift", "monitors", "events",
)  # fmt: skip


def build_router() -> APIRouter:
    router = APIRouter(prefix=PREFIX)
    for name in MODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        router.include_router(module.router)
    return router
