"""Drift reports (runs of kind ``drift``) and monitor decisions (runs of kind ``monitor``).

A drift report's page shows its verdict, the share of drifted columns and a table of every
column's test and verdict (from its ``drift.json``), and links to its HTML report, which the
UI serves as ``/api/v1/drift/{id}/report.html`` does: under a Content-Security-Policy that
allows no script and sandboxes the page.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from lockgate.gateway.api.rest.drift import REPORT_HEADERS, REPORT_HTML, REPORT_JSON
from lockgate.gateway.api.rest.runs import LINKED_LIMIT
from lockgate.gateway.state import GatewayState
from lockgate.gateway.ui.routes import PREFIX, UIDep, UIError
from lockgate.registry.errors import LockgateError, NotFound
from lockgate.registry.records import RunInfo
from lockgate.registry.registry import Registry

router = APIRouter(prefix=PREFIX, include_in_schema=False)
PAGE_SIZE = 50


def _state(request: Request) -> GatewayState:
    state: GatewayState = request.app.state.gateway
    return state


def _run(registry: Registry, run_id: str, kind: str) -> RunInfo:
    run = registry.runs.get(run_id, series=False)
    if run.kind != kind:
        raise NotFound(f"no {kind} run with id {run_id!r}", param="run_id")
    return run


def _listing(
    registry: Registry, kind: str, name: str | None, after: str | None
) -> tuple[list[RunInfo], str | None]:
    runs = registry.runs.list(kind, name=name, limit=PAGE_SIZE + 1, after=after)
    more = len(runs) > PAGE_SIZE
    runs = runs[:PAGE_SIZE]
    return runs, runs[-1].id if more else None


async def _list(request: Request, ui: UIDep, kind: str, template: str, param: str) -> Response:
    viewer = await ui.viewer(request)
    params = request.query_params
    name = params.get(param, "").strip()[:200]
    after = params.get("after", "").strip()[:64] or None
    error = ""
    runs: list[RunInfo] = []
    next_after = None
    try:
        runs, next_after = await ui.call(
            _listing, _state(request).registry, kind, name or None, after
        )
    except UIError:
        error = "The page link is broken: start from the newest."
    return ui.page(
        request, template, 400 if error else 200, viewer=viewer, runs=runs, name=name,
        after=after, next_after=next_after, error=error,
    )  # fmt: skip


def _drift(registry: Registry, run_id: str) -> dict[str, Any]:
    run = _run(registry, run_id, "drift")
    report: dict[str, Any] | None = None
    problem = ""
    if REPORT_JSON in run.artifacts:
        try:
            loaded = json.loads(registry.artifacts.read_bytes(run.artifacts[REPORT_JSON]))
            report = loaded if isinstance(loaded, dict) else None
            if report is None:
                problem = f"its {REPORT_JSON} is not an object"
        except (ValueError, LockgateError) as exc:
            problem = f"its {REPORT_JSON} cannot be read ({exc})"
    columns = report.get("columns") if report else None
    return {
        "run": run,
        "report": report,
        "columns": [c for c in columns if isinstance(c, dict)] if isinstance(columns, list) else [],
        "skipped": report.get("skipped") if report and isinstance(report.get("skipped"), dict)
        else {},
        "problem": problem,
        "has_html": REPORT_HTML in run.artifacts,
        "used_by": [r for r, _ in registry.runs.linked("run", run.id, limit=LINKED_LIMIT)],
    }  # fmt: skip


def _monitor(registry: Registry, run_id: str) -> dict[str, Any]:
    run = _run(registry, run_id, "monitor")
    actions = run.tags.get("actions")
    return {
        "run": run,
        "actions_text": json.dumps(actions, indent=2, sort_keys=True, default=str)
        if actions
        else "",
        "params_text": json.dumps(run.params, indent=2, sort_keys=True, default=str),
    }


@router.get("/drift")
async def drift_list(request: Request, ui: UIDep) -> Response:
    return await _list(request, ui, "drift", "drift_list.html", "name")


@router.get("/drift/{run_id}/report.html")
async def drift_html(request: Request, run_id: str, ui: UIDep) -> Response:
    await ui.viewer(request)
    registry = _state(request).registry
    run = await ui.call(_run, registry, run_id[:64], "drift")
    digest = run.artifacts.get(REPORT_HTML)
    if digest is None:
        raise UIError(404, "Not found", f"drift run {run.id} has no HTML report")
    page = await ui.call(registry.artifacts.read_bytes, digest)  # hash-verified
    return Response(page, media_type="text/html; charset=utf-8", headers=REPORT_HEADERS)


@router.get("/drift/{run_id}")
async def drift_page(request: Request, run_id: str, ui: UIDep) -> Response:
    viewer = await ui.viewer(request)
    found = await ui.call(_drift, _state(request).registry, run_id[:64])
    return ui.page(request, "drift.html", viewer=viewer, **found)


@router.get("/monitors")
async def monitor_list(request: Request, ui: UIDep) -> Response:
    return await _list(request, ui, "monitor", "monitors.html", "policy")


@router.get("/monitors/{run_id}")
async def monitor_page(request: Request, run_id: str, ui: UIDep) -> Response:
    viewer = await ui.viewer(request)
    found = await ui.call(_monitor, _state(request).registry, run_id[:64])
    return ui.page(request, "monitor.html", viewer=viewer, **found)
