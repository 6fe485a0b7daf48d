"""The model pages: registered models (LLM routes, LoRA adapters, Hugging Face and
scikit-learn models) with their versions, labels and label history, and each version's
lineage (the runs that produced it and those that used it) and eval runs (as a prompt
version's evidence page shows them). Labels move on the label control
(:mod:`gateway.ui.labels`, ``/ui/model-labels/NAME``)."""

from __future__ import annotations

import json

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from lockgate.gateway.api.rest.runs import LINKED_LIMIT
from lockgate.gateway.state import GatewayState
from lockgate.gateway.ui.evidence import eval_evidence, gate_rows
from lockgate.gateway.ui.routes import PREFIX, UIDep, UIError
from lockgate.registry.errors import InvalidInput
from lockgate.registry.records import Ref, check_name

router = APIRouter(prefix=PREFIX, include_in_schema=False)
PAGE_SIZE = 50
MAX_PAGE = 10_000
HISTORY_SHOWN = 200


def _state(request: Request) -> GatewayState:
    state: GatewayState = request.app.state.gateway
    return state


def _int(raw: str | None, default: int, low: int, high: int) -> int:
    if raw is None or not raw.strip().isdigit() or len(raw) > 12:
        return default
    return min(max(int(raw), low), high)


def _name(name: str) -> str:
    try:
        return check_name(name, "model name")
    except InvalidInput as exc:
        raise UIError(404, "Not found", str(exc)) from None


@router.get("/models")
async def model_list(request: Request, ui: UIDep) -> Response:
    viewer = await ui.viewer(request)
    search = request.query_params.get("q", "").strip()[:200]
    page = _int(request.query_params.get("page"), 1, 1, MAX_PAGE)
    rows, more = await ui.call(
        _state(request).registry.labels.listing, "model", search,
        offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE,
    )  # fmt: skip
    return ui.page(request, "models.html", viewer=viewer, rows=rows, q=search, page=page, more=more)


@router.get("/models/{name:path}")
async def model_page(request: Request, name: str, ui: UIDep) -> Response:
    viewer = await ui.viewer(request)
    registry = _state(request).registry
    versions = await ui.call(registry.models.versions, _name(name))
    if not versions:
        raise UIError(404, "Not found", f"model {name!r} has no versions")
    history = await ui.call(registry.labels.history, "model", name)
    labels = {label: v.version for v in versions for label in v.labels}
    return ui.page(
        request, "model.html", viewer=viewer, name=name, versions=list(reversed(versions)),
        labels=dict(sorted(labels.items())), history=list(reversed(history))[:HISTORY_SHOWN],
        history_total=len(history),
    )  # fmt: skip


@router.get("/model-version/{name:path}")
async def model_version(request: Request, name: str, ui: UIDep) -> Response:
    viewer = await ui.viewer(request)
    registry = _state(request).registry
    raw = request.query_params.get("version", "").strip()
    if not raw.isdigit() or len(raw) > 9 or int(raw) < 1:
        raise UIError(400, "Bad version", "Give the version's number, as in ?version=3.")
    version = await ui.call(registry.models.get, Ref(_name(name), version=int(raw)))
    linked = await ui.call(
        registry.runs.linked, "model", f"{version.name}@{version.version}", limit=LINKED_LIMIT
    )
    history = await ui.call(registry.labels.history, "model", version.name)
    moves = [m for m in history if version.version in (m.from_version, m.to_version)]
    runs = await ui.call(eval_evidence, registry, version.name, version.version, "model")
    return ui.page(
        request, "model_version.html", viewer=viewer, v=version,
        spec_text=json.dumps(version.spec, indent=2, sort_keys=True, default=str),
        produced_by=[run for run, role in linked if role == "output"],
        used_by=[run for run, role in linked if role == "input"],
        moves=list(reversed(moves))[:HISTORY_SHOWN], runs=runs, gate_rows=gate_rows,
    )  # fmt: skip
