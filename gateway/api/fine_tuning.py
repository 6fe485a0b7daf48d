"""``/v1/fine_tuning/jobs``: the OpenAI fine-tuning API over lockgate's job records.

A job is validated (its files row by row) before it is queued; workers
(``lockgate finetune worker``) train it. The job object follows OpenAI's shape;
``fine_tuned_model`` is the registry model string the gateway serves
(``registry:NAME@VERSION``).

Over HTTP a job names a registry base model and uploaded file ids, never server paths;
``metadata.lockgate`` sets LoRA and training settings only, so a request cannot attach an
eval suite or move a label (:func:`finetune.spec.spec_from_openai`). The key that submitted
it is recorded in the job's ``submitted_by``, with whether it held ``registry:label``.
"""

from __future__ import annotations

from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Header, Query
from starlette.requests import Request

from lockgate.gateway.api.deps import READ, WRITE, StateDep, Writer, read_json
from lockgate.gateway.auth import Principal
from lockgate.gateway.state import GatewayState
from lockgate.registry.errors import LockgateError, NotFound
from lockgate.registry.jobs import JobEventInfo, JobInfo

router = APIRouter(tags=["fine-tuning"])
KIND = "finetune"


def _finetune_job(state: GatewayState, job_id: str) -> JobInfo:
    """The fine-tuning job ``job_id``. Other jobs of the queue (``command`` retraining jobs,
    which run the operator's own programs) are not part of this API: their id answers 404,
    exactly as an unknown id does, so their output and their existence stay private."""
    job = state.registry.jobs.get(job_id)
    if job.kind != KIND:
        raise NotFound(f"no job with id {job_id!r}", param="job_id")
    return job


def job_object(job: JobInfo) -> dict[str, Any]:
    spec, result = job.spec, job.result
    training = spec.get("training") or {}
    error = None
    if job.status == "failed":
        error = {"code": "training_failed", "message": job.error or "failed", "param": None}
    metadata = spec.get("metadata")
    return {
        "id": job.id,
        "object": "fine_tuning.job",
        "created_at": int(job.created_at.timestamp()),
        "finished_at": int(job.finished_at.timestamp()) if job.finished_at else None,
        "model": spec.get("base_model"),
        "fine_tuned_model": result.get("fine_tuned_model"),
        "organization_id": "lockgate",
        "status": job.status,
        "training_file": spec.get("training_file"),
        "validation_file": spec.get("validation_file"),
        "hyperparameters": {
            "n_epochs": training.get("epochs", "auto"),
            "batch_size": training.get("batch_size", "auto"),
            "learning_rate_multiplier": (
                training["learning_rate"] / 2e-4 if training.get("learning_rate") else "auto"
            ),
        },
        "seed": training.get("seed", 0),
        "trained_tokens": result.get("trained_tokens"),
        "result_files": [],
        "error": error,
        "estimated_finish": None,
        "integrations": [],
        "metadata": metadata if isinstance(metadata, dict) else None,
        "user_provided_suffix": spec.get("output_model"),
    }


def event_object(event: JobEventInfo) -> dict[str, Any]:
    return {
        "id": f"ftevent-{event.id}", "object": "fine_tuning.job.event",
        "created_at": int(event.created_at.timestamp()), "level": event.level,
        "message": event.message, "data": event.data,
        "type": "metrics" if "loss" in event.data else "message",
    }  # fmt: skip


def _page(items: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    return {
        "object": "list", "data": items, "has_more": has_more,
        "first_id": items[0]["id"] if items else None,
        "last_id": items[-1]["id"] if items else None,
    }  # fmt: skip


# spec fields named as the OpenAI request names them, for the error's param
_REQUEST_PARAMS = {"base_model": "model", "output_model": "suffix"}


def _request_body() -> dict[str, Any]:
    """The OpenAPI request body, from the request model (nested models inlined)."""
    from lockgate.finetune.spec import OpenAIJobRequest

    schema = OpenAIJobRequest.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                rest = {k: v for k, v in node.items() if k != "$ref"}
                return {**inline(defs[ref.removeprefix("#/$defs/")]), **inline(rest)}
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    return {"required": True, "content": {"application/json": {"schema": inline(schema)}}}


def _submit(
    state: GatewayState, body: dict[str, Any], principal: Principal, key: str | None
) -> JobInfo:
    from lockgate.finetune import spec_from_openai, submit_job
    from lockgate.finetune.spec import Submitter

    submitter = Submitter(
        via="http",
        principal=principal.key_id or principal.name,
        name=principal.name,
        holds_label_scope=principal.has_scope("registry:label"),
    )
    try:
        job, _ = submit_job(
            state.registry, spec_from_openai(body), submitter=submitter, idempotency_key=key
        )
    except LockgateError as exc:
        exc.param = _REQUEST_PARAMS.get(exc.param or "", exc.param)
        raise
    return job


@router.post("/v1/fine_tuning/jobs", openapi_extra={"requestBody": _request_body()})
async def create_job(
    request: Request,
    state: StateDep,
    principal: Writer,
    idempotency_key: Annotated[str | None, Header(alias="idempotency-key")] = None,
) -> dict[str, Any]:
    """Validate a fine-tuning job (an OpenAI request body) and queue it."""
    body = await read_json(request, state)  # after the key was checked: auth before the body
    job = await anyio.to_thread.run_sync(_submit, state, body, principal, idempotency_key)
    return job_object(job)


@router.get("/v1/fine_tuning/jobs", dependencies=[READ])
def list_jobs(
    state: StateDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: str | None = None,
) -> dict[str, Any]:
    jobs = state.registry.jobs.list(KIND, limit=1000)
    if after is not None:
        ids = [j.id for j in jobs]
        jobs = jobs[ids.index(after) + 1 :] if after in ids else []
    page = [job_object(j) for j in jobs[:limit]]
    return _page(page, len(jobs) > limit)


@router.get("/v1/fine_tuning/jobs/{job_id}", dependencies=[READ])
def get_job(state: StateDep, job_id: str) -> dict[str, Any]:
    return job_object(_finetune_job(state, job_id))


@router.post("/v1/fine_tuning/jobs/{job_id}/cancel", dependencies=[WRITE])
def cancel_job(state: StateDep, job_id: str) -> dict[str, Any]:
    _finetune_job(state, job_id)
    return job_object(state.registry.jobs.cancel(job_id))


@router.get("/v1/fine_tuning/jobs/{job_id}/events", dependencies=[READ])
def list_events(
    state: StateDep,
    job_id: str,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
    after: str | None = None,
) -> dict[str, Any]:
    """Newest first, as OpenAI lists them; ``after`` pages towards older events."""
    _finetune_job(state, job_id)
    events = list(reversed(state.registry.jobs.events(job_id, limit=100_000)))
    if after is not None:
        ids = [f"ftevent-{e.id}" for e in events]
        events = events[ids.index(after) + 1 :] if after in ids else []
    return _page([event_object(e) for e in events[:limit]], len(events) > limit)


@router.get("/v1/fine_tuning/jobs/{job_id}/checkpoints", dependencies=[READ])
def list_checkpoints(
    state: StateDep, job_id: str, limit: Annotated[int, Query(ge=1, le=100)] = 10
) -> dict[str, Any]:
    """Newest first: the checkpoints the job stored in the artifact store, each callable
    as its ``fine_tuned_model_checkpoint`` (``ft:JOB_ID:ckpt-step-N``) through
    ``/v1/chat/completions``, with the metrics of its step. Checkpoints a worker kept in its
    ``work_dir`` only (``--local-checkpoints``) are not listed: they cannot be served."""
    from lockgate.finetune.inference import checkpoint_model

    job = _finetune_job(state, job_id)
    events = state.registry.jobs.events(job_id, limit=100_000)
    metrics: dict[int, dict[str, Any]] = {}
    for event in events:
        if event.message.startswith("step ") and isinstance(event.data.get("step"), int):
            metrics[event.data["step"]] = {
                k: v for k, v in event.data.items()
                if isinstance(v, int | float) and k not in ("step", "total_steps")
            }  # fmt: skip
    checkpoints: dict[int, dict[str, Any]] = {}
    for event in reversed(events):  # newest first; a step trained again: its latest upload
        step = event.data.get("step")
        stored = isinstance(event.data.get("digest"), str)
        if not event.message.startswith("checkpoint") or not isinstance(step, int) or not stored:
            continue
        checkpoints.setdefault(step, {
            "id": f"ftckpt-{event.id}", "object": "fine_tuning.job.checkpoint",
            "created_at": int(event.created_at.timestamp()), "fine_tuning_job_id": job.id,
            "step_number": step, "metrics": {"step": step, **metrics.get(step, {})},
            "fine_tuned_model_checkpoint": checkpoint_model(job.id, step),
        })  # fmt: skip
    page = list(checkpoints.values())
    return _page(page[:limit], len(page) > limit)
