"""The job pages: fine-tuning jobs with their status, events and loss curve (an inline SVG
chart drawn on the server, :mod:`.charts`).

Visibility is ``/api/v1/jobs``'s: an operator's job (``command``, a retraining program) is
shown only to admin keys; to any other key its page is a 404, as an unknown id's is, and the
list leaves it out.
"""

from __future__ import annotations

import json
import math
from typing import Any

from fastapi import APIRouter
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import Response

from lockgate.gateway.api.rest.jobs import OPERATOR_KINDS
from lockgate.gateway.state import GatewayState
from lockgate.gateway.ui import charts
from lockgate.gateway.ui.routes import PREFIX, UIDep, UIError, Viewer
from lockgate.registry.errors import NotFound
from lockgate.registry.jobs import JOB_STATES, JobInfo
from lockgate.registry.registry import Registry

router = APIRouter(prefix=PREFIX, include_in_schema=False)
PAGE_SIZE = 50
EVENTS_SHOWN = 200
EVENT_BATCH = 1000
MAX_CHART_EVENTS = 50_000  # events read for the loss curve (drawn thinned to charts.MAX_POINTS)


def _state(request: Request) -> GatewayState:
    state: GatewayState = request.app.state.gateway
    return state


def is_admin(viewer: Viewer) -> bool:
    return "admin" in viewer.principal.scopes


def visible_job(registry: Registry, viewer: Viewer, job_id: str) -> JobInfo:
    """The job, unless an operator's job and the viewer is not an admin (404, as unknown)."""
    job = registry.jobs.get(job_id)
    if job.kind in OPERATOR_KINDS and not is_admin(viewer):
        raise NotFound(f"no job with id {job_id!r}", param="job_id")
    return job


def loss_series(registry: Registry, job_id: str) -> list[charts.Series]:
    """The job's step events as series: each ``*loss`` value by step (a resumed job's later
    point for a step replaces the earlier one)."""
    by_key: dict[str, dict[int, float]] = {}
    after, read = 0, 0
    while read < MAX_CHART_EVENTS:
        events = registry.jobs.events(job_id, after=after, limit=EVENT_BATCH)
        for event in events:
            data = event.data
            step = data.get("step") if isinstance(data, dict) else None
            if not isinstance(step, int) or isinstance(step, bool):
                continue
            for key, value in data.items():
                if (
                    key.endswith("loss")
                    and isinstance(value, int | float)
                    and not isinstance(value, bool)
                    and math.isfinite(value)
                ):
                    by_key.setdefault(key, {})[step] = float(value)
        read += len(events)
        if len(events) < EVENT_BATCH:
            break
        after = events[-1].id
    ordered = sorted(by_key, key=lambda k: (k != "loss", k))
    return [charts.Series(k, sorted(by_key[k].items())) for k in ordered]


def points_table(series: list[charts.Series], rows: int = 100) -> list[tuple[int, list[str]]]:
    """The series by step as table rows (at most about ``rows``, evenly spaced, the last
    step always in): the chart's points as text."""
    values: dict[int, dict[str, float]] = {}
    for s in series:
        for step, value in s.points:
            values.setdefault(int(step), {})[s.name] = value
    steps = sorted(values)
    if len(steps) > rows:
        stride = math.ceil(len(steps) / rows)
        steps = steps[::stride] + ([steps[-1]] if (len(steps) - 1) % stride else [])
    return [
        (step, [f"{values[step][s.name]:.4g}" if s.name in values[step] else "—" for s in series])
        for step in steps
    ]


def _job_page(registry: Registry, viewer: Viewer, job_id: str, after: int) -> dict[str, Any]:
    job = visible_job(registry, viewer, job_id)
    events = registry.jobs.events(job_id, after=after, limit=EVENTS_SHOWN + 1)
    series = loss_series(registry, job_id)
    return {
        "job": job,
        "events": events[:EVENTS_SHOWN],
        "more_after": events[EVENTS_SHOWN - 1].id if len(events) > EVENTS_SHOWN else None,
        "series": series,
        "table": points_table(series),
        "spec_text": json.dumps(job.spec, indent=2, sort_keys=True, default=str),
        "result_text": json.dumps(job.result, indent=2, sort_keys=True, default=str)
        if job.result
        else "",
    }


@router.get("/jobs")
async def job_list(request: Request, ui: UIDep) -> Response:
    viewer = await ui.viewer(request)
    params = request.query_params
    status = params.get("status", "").strip()
    kind = params.get("kind", "").strip()[:40]
    admin = is_admin(viewer)
    errors = []
    if status and status not in JOB_STATES:
        errors.append(f"unknown job status {status[:40]!r}; use one of {', '.join(JOB_STATES)}")
    if kind in OPERATOR_KINDS and not admin:
        errors.append(f"{kind} jobs are visible to admin keys only")
    after = params.get("after", "").strip()[:64] or None
    jobs: list[JobInfo] = []
    if not errors:
        try:
            jobs = await ui.call(
                _state(request).registry.jobs.list,
                kind or (None if admin else "finetune"),
                status=status or None, limit=PAGE_SIZE + 1, after=after,
            )  # fmt: skip
        except UIError:
            errors.append("the page link is broken: start from the newest jobs")
    more = len(jobs) > PAGE_SIZE
    jobs = jobs[:PAGE_SIZE]
    return ui.page(
        request, "jobs.html", 400 if errors else 200, viewer=viewer, jobs=jobs,
        job_status=status, kind=kind, states=JOB_STATES, admin=admin, errors=errors,
        next_after=jobs[-1].id if more else None, after=after,
    )  # fmt: skip


@router.get("/jobs/{job_id}")
async def job_page(request: Request, job_id: str, ui: UIDep) -> Response:
    viewer = await ui.viewer(request)
    after_raw = request.query_params.get("after", "0").strip()
    after = int(after_raw) if after_raw.isdigit() and len(after_raw) <= 18 else 0
    found = await ui.call(_job_page, _state(request).registry, viewer, job_id[:64], after)
    series = found["series"]
    chart = Markup("")
    if series:
        chart = charts.line_chart(
            series, title=f"Training loss of job {found['job'].id}", x_label="step",
            y_label="loss", chart_id="loss-chart",
        )  # fmt: skip
    return ui.page(
        request, "job.html", viewer=viewer, chart=chart, chart_summary=charts.summary(series),
        after=after, **found,
    )  # fmt: skip
