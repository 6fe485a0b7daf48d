"""``/api/v1/runs``: eval, fine-tuning, drift, monitor and other runs.

A run's artifacts are named by the keys of its artifact map (``examples.jsonl``,
``checkpoint/step-20``), never by a path: a name is looked up in the registry, and a name the
run does not have is a 404 whatever it looks like (``../../etc/passwd``, ``/etc/passwd``).
Their bytes come from the content-addressed store, hash-verified, as attachments.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from starlette.responses import Response

from lockgate.gateway.api.deps import StateDep
from lockgate.gateway.api.rest._download import stream_blob
from lockgate.gateway.api.rest.common import (
    READ,
    Cursor,
    Limit,
    decode_key_cursor,
    forged_cursor,
    jsonable,
    key_page,
)
from lockgate.registry.errors import InvalidInput, NotFound
from lockgate.registry.records import RunInfo
from lockgate.registry.registry import Registry
from lockgate.registry.runs import RUN_KINDS

router = APIRouter(tags=["runs"], dependencies=[READ])

RunId = Annotated[str, Path(max_length=64, description="A run's full id.")]
KindQuery = Annotated[
    str | None, Query(max_length=20, description=f"One of {', '.join(sorted(RUN_KINDS))}.")
]
NameQuery = Annotated[str | None, Query(max_length=200, description="The run's exact name.")]
LINKED_LIMIT = 200


def run_summary(run: RunInfo) -> dict[str, Any]:
    """A run without its lineage, artifacts and series."""
    return {
        "id": run.id, "kind": run.kind, "name": run.name, "status": run.status,
        "params": jsonable(run.params), "metrics": jsonable(run.metrics),
        "tags": jsonable(run.tags), "error": run.error, "author": run.author,
        "created_at": jsonable(run.created_at), "ended_at": jsonable(run.ended_at),
    }  # fmt: skip


def run_object(registry: Registry, run: RunInfo) -> dict[str, Any]:
    """A run with its lineage edges, its artifacts (name and digest) and the keys of its
    step-wise metrics (read each with ``/runs/{id}/metrics/{key}``)."""
    return {
        **run_summary(run),
        "lineage": [jsonable(edge) for edge in run.lineage],
        "artifacts": [{"name": n, "digest": d} for n, d in sorted(run.artifacts.items())],
        "series_keys": registry.runs.series_keys(run.id),
    }


def list_runs_page(
    registry: Registry,
    kind: str | None,
    name: str | None,
    limit: int,
    cursor: str | None,
    render: Callable[[RunInfo], dict[str, Any]] = run_summary,
) -> dict[str, Any]:
    """One page of runs, newest first, keyset-paged on the run id."""
    if kind is not None and kind not in RUN_KINDS:
        raise InvalidInput(
            f"unknown run kind {kind!r}; use one of {', '.join(sorted(RUN_KINDS))}", param="kind"
        )
    after = decode_key_cursor(cursor)
    try:
        runs = registry.runs.list(kind, name=name, limit=limit + 1, after=after)
    except NotFound:
        raise forged_cursor(cursor or "") from None
    return key_page(runs, limit, render)


def get_run_of_kind(registry: Registry, run_id: str, kind: str | None = None) -> RunInfo:
    """The run ``run_id`` (without its series); 404 when it is not of ``kind``."""
    run = registry.runs.get(run_id, series=False)
    if kind is not None and run.kind != kind:
        raise NotFound(f"no {kind} run with id {run_id!r}", param="run_id")
    return run


@router.get(
    "/runs",
    summary="List runs",
    response_description="A page of runs, newest first.",
)
def list_runs(
    state: StateDep, kind: KindQuery = None, name: NameQuery = None, limit: Limit = 50,
    cursor: Cursor = None,
) -> dict[str, Any]:  # fmt: skip
    """Runs newest first, optionally of one ``kind`` and with one exact ``name``."""
    return list_runs_page(state.registry, kind, name, limit, cursor)


@router.get(
    "/runs/{run_id}/metrics/{key:path}",
    summary="A run's metric series",
    response_description="The metric's points by step.",
)
def get_series(state: StateDep, run_id: RunId, key: str) -> dict[str, Any]:
    """Every step-wise point of one metric (a loss curve); a key the run never logged is a
    404."""
    points = state.registry.runs.series(run_id, key)
    if not points:
        raise NotFound(f"run {run_id} has no metric series {key!r}", param="key")
    return {
        "run_id": run_id,
        "key": key,
        "data": [{"step": p.step, "value": p.value, "created_at": jsonable(p.created_at)}
                 for p in points],
    }  # fmt: skip


@router.get(
    "/runs/{run_id}/artifacts",
    summary="List a run's artifacts",
    response_description="The run's artifacts: name and digest.",
)
def list_artifacts(state: StateDep, run_id: RunId) -> dict[str, Any]:
    artifacts = state.registry.runs.artifacts(run_id)
    return {"data": [{"name": n, "digest": d} for n, d in sorted(artifacts.items())]}


@router.get(
    "/runs/{run_id}/artifacts/{name:path}",
    summary="Download a run's artifact",
    response_description="The artifact's bytes (application/octet-stream), hash-verified.",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def download_artifact(state: StateDep, run_id: RunId, name: str) -> Response:
    """The bytes of the artifact ``name`` (a key of the run's artifact map, not a path),
    with its sha256 in ``X-Content-SHA256``. A folder artifact is a 400."""
    digest, kind = state.registry.runs.artifact(run_id, name)
    if kind == "dir":
        raise InvalidInput(
            f"artifact {name!r} of run {run_id} is a folder; fetch it with the Python API "
            "(Registry.artifacts.fetch_dir)",
            param="name",
        )
    return stream_blob(state.registry.artifacts, digest, name)


@router.get(
    "/runs/{run_id}/lineage",
    summary="A run's lineage",
    response_description="What the run read and produced, and the runs that read it.",
)
def get_lineage(state: StateDep, run_id: RunId) -> dict[str, Any]:
    """``inputs`` and ``outputs``: the run's own edges (datasets, prompts, models and runs it
    read or produced); ``used_by``: the runs with this run as an input (a merged eval, a
    monitor decision), newest first."""
    registry = state.registry
    run = registry.runs.get(run_id, series=False)
    used_by = registry.runs.linked("run", run_id, limit=LINKED_LIMIT)
    return {
        "run_id": run.id,
        "inputs": [jsonable(e) for e in run.lineage if e.role == "input"],
        "outputs": [jsonable(e) for e in run.lineage if e.role == "output"],
        "used_by": [{**run_summary(r), "role": role} for r, role in used_by],
    }


@router.get(
    "/runs/{run_id}",
    summary="Get a run",
    response_description="The run with params, metrics, tags, lineage and artifacts.",
)
def get_run(state: StateDep, run_id: RunId) -> dict[str, Any]:
    return run_object(state.registry, get_run_of_kind(state.registry, run_id))
