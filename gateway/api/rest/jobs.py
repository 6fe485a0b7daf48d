"""``/api/v1/jobs``: every job of the queue, whatever its kind (``finetune``, ``command``
retraining jobs…), with its events; cancelling one.

A ``command`` job (scikit-learn retraining) runs the operator's own program: its spec holds
the program's argv and its events the lines the program printed. Only the machine's own user
can queue one, and only an ``admin`` key sees or cancels one here; to any other key its id
answers 404, as an unknown id does, and the lists leave it out — as the OpenAI fine-tuning
API (``/v1/fine_tuning/jobs``) does for every key. Fine-tuning jobs are visible to
``registry:read`` and cancelled with ``registry:write``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from lockgate.gateway.api.deps import StateDep
from lockgate.gateway.api.rest.common import (
    READ,
    WRITE,
    Cursor,
    Limit,
    decode_key_cursor,
    forged_cursor,
    jsonable,
    key_page,
)
from lockgate.gateway.auth import Principal
from lockgate.registry.errors import InvalidInput, NotAllowed, NotFound
from lockgate.registry.jobs import JOB_STATES, JobEventInfo, JobInfo

router = APIRouter(tags=["jobs"])
Reader = Annotated[Principal, READ]
Canceller = Annotated[Principal, WRITE]
OPERATOR_KINDS = frozenset({"command"})  # the operator's own programs: admin keys only


def _visible(state: Any, principal: Principal, job_id: str) -> JobInfo:
    """The job, unless it is an operator's job and the caller is not an admin (404)."""
    job: JobInfo = state.registry.jobs.get(job_id)
    if job.kind in OPERATOR_KINDS and not principal.has_scope("admin"):
        raise NotFound(f"no job with id {job_id!r}", param="job_id")
    return job


JobId = Annotated[str, Path(max_length=64, description="A job's full id.")]


def job_object(job: JobInfo) -> dict[str, Any]:
    return {
        "id": job.id, "kind": job.kind, "status": job.status, "spec": jsonable(job.spec),
        "run_id": job.run_id, "worker_id": job.worker_id, "attempts": job.attempts,
        "cancel_requested": job.cancel_requested, "result": jsonable(job.result),
        "error": job.error, "created_by": job.created_by,
        "created_at": jsonable(job.created_at), "started_at": jsonable(job.started_at),
        "heartbeat_at": jsonable(job.heartbeat_at), "finished_at": jsonable(job.finished_at),
    }  # fmt: skip


def event_object(event: JobEventInfo) -> dict[str, Any]:
    return {
        "id": event.id, "level": event.level, "message": event.message,
        "data": jsonable(event.data), "created_at": jsonable(event.created_at),
    }  # fmt: skip


@router.get(
    "/jobs",
    summary="List jobs",
    response_description="A page of jobs, newest first (every kind for an admin key; "
    "fine-tuning jobs for the others).",
)
def list_jobs(
    state: StateDep,
    principal: Reader,
    kind: Annotated[str | None, Query(max_length=40, description="finetune, command…")] = None,
    status: Annotated[str | None, Query(description=", ".join(JOB_STATES))] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> dict[str, Any]:
    if status is not None and status not in JOB_STATES:
        raise InvalidInput(
            f"unknown job status {status!r}; use one of {', '.join(JOB_STATES)}", param="status"
        )
    if not principal.has_scope("admin"):
        if kind in OPERATOR_KINDS:
            raise NotAllowed(f"{kind} jobs are visible to admin keys only", param="kind")
        kind = kind or "finetune"
    after = decode_key_cursor(cursor)
    try:
        jobs = state.registry.jobs.list(kind, status=status, limit=limit + 1, after=after)
    except NotFound:
        raise forged_cursor(cursor or "") from None
    return key_page(jobs, limit, job_object)


@router.get(
    "/jobs/{job_id}",
    summary="Get a job",
    response_description="The job: spec, status, result, error.",
)
def get_job(state: StateDep, principal: Reader, job_id: JobId) -> dict[str, Any]:
    return job_object(_visible(state, principal, job_id))


@router.get(
    "/jobs/{job_id}/events",
    summary="List a job's events",
    response_description="A page of the job's events, oldest first.",
)
def list_job_events(
    state: StateDep, principal: Reader, job_id: JobId, limit: Limit = 50, cursor: Cursor = None
) -> dict[str, Any]:
    """The job's events in the order they happened (training steps with their loss,
    checkpoints, its program's output lines, status changes)."""
    after = decode_key_cursor(cursor)
    if after is not None and (not after.isdigit() or len(after) > 18):
        raise forged_cursor(cursor or "")
    _visible(state, principal, job_id)
    start = int(after) if after is not None else 0
    events = state.registry.jobs.events(job_id, after=start, limit=limit + 1)
    return key_page(events, limit, event_object)


@router.post(
    "/jobs/{job_id}/cancel",
    summary="Cancel a job",
    response_description="The job: cancelled when it was queued, cancel_requested when running.",
)
def cancel_job(state: StateDep, principal: Canceller, job_id: JobId) -> dict[str, Any]:
    """A queued job is cancelled at once; a running one when its worker next heartbeats; a
    finished one is left as it is."""
    _visible(state, principal, job_id)
    return job_object(state.registry.jobs.cancel(job_id))
