"""``/api/v1/drift``: drift reports, which are runs of kind ``drift``
(``lockgate drift check``, a monitor's drift signal).

A report's JSON is its ``drift.json`` artifact; its page, the ``report.html`` artifact, is
served as ``text/html`` under a Content-Security-Policy that allows no script, no connection,
no form and no plug-in, and sandboxes the page (an opaque origin: even markup that slipped
into it cannot act as the gateway's origin); ``X-Content-Type-Options: nosniff``.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter
from starlette.responses import Response

from lockgate.gateway.api.deps import StateDep
from lockgate.gateway.api.rest.common import READ, Cursor, Limit
from lockgate.gateway.api.rest.runs import (
    NameQuery,
    RunId,
    get_run_of_kind,
    list_runs_page,
    run_object,
)
from lockgate.registry.errors import InvalidInput, NotFound

router = APIRouter(tags=["drift"], dependencies=[READ])

KIND = "drift"
REPORT_JSON = "drift.json"
REPORT_HTML = "report.html"
REPORT_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'self'; sandbox"
)
REPORT_HEADERS = {
    "Content-Security-Policy": REPORT_CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "private, max-age=0",
}


@router.get(
    "/drift",
    summary="List drift reports",
    response_description="A page of drift runs, newest first.",
)
def list_drift(
    state: StateDep, name: NameQuery = None, limit: Limit = 50, cursor: Cursor = None
) -> dict[str, Any]:
    return list_runs_page(state.registry, KIND, name, limit, cursor)


@router.get(
    "/drift/{run_id}",
    summary="Get a drift report",
    response_description="The drift run and its report (drift.json), null when it has none.",
)
def get_drift(state: StateDep, run_id: RunId) -> dict[str, Any]:
    """The run (params name the reference, the current data and the subject; metrics the
    share of drifted columns) with ``report``: per column, the test, statistic and verdict."""
    registry = state.registry
    run = get_run_of_kind(registry, run_id, KIND)
    report = None
    if REPORT_JSON in run.artifacts:
        data = registry.artifacts.read_bytes(run.artifacts[REPORT_JSON])  # hash-verified
        try:
            report = json.loads(data)
        except ValueError:
            raise InvalidInput(f"run {run_id}'s {REPORT_JSON} is not JSON") from None
    return {**run_object(registry, run), "report": report}


@router.get(
    "/drift/{run_id}/report.html",
    summary="A drift report's page",
    response_description="The HTML report (text/html, no scripts: see the CSP header).",
    response_class=Response,
    responses={200: {"content": {"text/html": {}}}},
)
def get_drift_html(state: StateDep, run_id: RunId) -> Response:
    registry = state.registry
    run = get_run_of_kind(registry, run_id, KIND)
    digest = run.artifacts.get(REPORT_HTML)
    if digest is None:
        raise NotFound(f"drift run {run_id} has no HTML report", param="run_id")
    page = registry.artifacts.read_bytes(digest)  # hash-verified
    return Response(page, media_type="text/html; charset=utf-8", headers=REPORT_HEADERS)
