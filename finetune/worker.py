"""The worker: requeue stale jobs, claim one, heartbeat, train through an executor, then
register the adapter (and gate and label it when the spec names an eval suite). A worker
also takes retraining (``command``) jobs, run by :mod:`finetune.command_worker`.

A job whose worker died (no heartbeat for ``stale_after_s`` seconds) is requeued by the next
worker that polls; whoever claims it reuses its registry run and resumes from the latest
checkpoint in ``work_dir/jobs/<job id>/checkpoints`` — the same total number of steps.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lockgate.finetune.base_model import materialize_base_model, resolve_base_model
from lockgate.finetune.checkpoints import restore_checkpoint
from lockgate.finetune.command import COMMAND_KIND
from lockgate.finetune.errors import SpecInvalid
from lockgate.finetune.executors import TrainRequest, make_executor
from lockgate.finetune.inference import quiet_model_libraries
from lockgate.finetune.reporting import Heartbeat, RegistryHooks, fail_job
from lockgate.finetune.results import EvalHook, finish_job
from lockgate.finetune.settings import WorkerSettings as WorkerSettings  # also exported here
from lockgate.finetune.submit import JOB_KIND, job_spec
from lockgate.finetune.trainer import TrainingStopped, TrainInputs
from lockgate.registry.errors import Conflict
from lockgate.registry.records import LineageEdge

if TYPE_CHECKING:
    from lockgate.registry.jobs import JobInfo
    from lockgate.registry.registry import Registry

log = logging.getLogger("lockgate.finetune")
JOB_KINDS = (JOB_KIND, COMMAND_KIND)  # what a worker claims: LoRA jobs and retraining jobs


def new_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Worker:
    def __init__(
        self,
        registry: Registry,
        settings: WorkerSettings,
        *,
        worker_id: str | None = None,
        eval_hook: EvalHook | None = None,
        kinds: Sequence[str] = JOB_KINDS,
    ) -> None:
        self.registry, self.settings = registry, settings
        self.worker_id = worker_id or new_worker_id()
        self.eval_hook = eval_hook
        unknown = sorted(set(kinds) - set(JOB_KINDS))
        if unknown or not kinds:
            raise SpecInvalid(
                f"job kinds: {', '.join(unknown) or 'none given'}; use {', '.join(JOB_KINDS)}",
                param="kind",
            )
        self.kinds = tuple(dict.fromkeys(kinds))
        self._turn = 0  # the kind tried first, in turn: one kind's queue cannot starve another's

    def poll_once(self) -> JobInfo | None:
        """Requeue stale jobs, then claim and run one of the worker's kinds (each claim is
        atomic per kind; the kind tried first rotates); None when the queues were empty."""
        for kind in self.kinds:
            for job_id in self.registry.jobs.requeue_stale(self.settings.stale_after_s, kind):
                log.warning("requeued %s: its worker stopped heartbeating", job_id)
        order = self.kinds[self._turn :] + self.kinds[: self._turn]
        self._turn = (self._turn + 1) % len(self.kinds)
        for kind in order:
            job = self.registry.jobs.claim(self.worker_id, kind)
            if job is None:
                continue
            if kind == COMMAND_KIND:
                from lockgate.finetune.command_worker import execute_command_job

                return execute_command_job(self.registry, job, self.worker_id, self.settings)
            return execute_job(
                self.registry, job, self.worker_id, self.settings, eval_hook=self.eval_hook
            )
        return None

    def run(self, *, once: bool = False, max_jobs: int | None = None) -> int:
        """Loop until stopped (``once``: until the queue is empty). Returns jobs handled."""
        handled = 0
        while max_jobs is None or handled < max_jobs:
            job = self.poll_once()
            if job is not None:
                handled += 1
                continue
            if once:
                break
            time.sleep(self.settings.poll_interval_s)
        return handled


def _prepare(registry: Registry, job: JobInfo, folder: Path) -> tuple[TrainInputs, list[Any]]:
    """Fetch data and base model into ``folder``; returns the inputs and lineage edges."""
    spec = job_spec(job)
    base = resolve_base_model(spec.base_model, registry)
    base_path = materialize_base_model(base, registry, folder / "base")
    paths: dict[str, Path | None] = {}
    edges = [LineageEdge("model", base.lineage_ref, "input")]
    for role, ref in (("training", spec.training_file), ("validation", spec.validation_file)):
        if ref is None:
            paths[role] = None
            continue
        info = registry.files.get(ref)
        target = folder / "data" / f"{role}.jsonl"
        if not target.is_file():
            registry.files.fetch(ref, target)
        paths[role] = target
        dataset, _ = registry.datasets.add(f"{spec.output_model}-{role}", target, format="jsonl")
        edges.append(LineageEdge("dataset", f"{dataset.name}@{dataset.version}", "input"))
        log.debug("%s data %s (%s)", role, info.filename, ref)
    train_path = paths["training"]
    assert train_path is not None
    inputs = TrainInputs(
        spec, base_path, train_path, paths["validation"], folder / "output", folder / "checkpoints"
    )
    return inputs, edges


def _run_for(registry: Registry, job: JobInfo, worker_id: str, edges: list[Any]) -> str:
    """The job's registry run: created on the first attempt, reused when resuming."""
    if job.run_id is not None:
        registry.jobs.add_event(job.id, f"resuming run {job.run_id} (attempt {job.attempts})")
        return job.run_id
    spec = job_spec(job)
    run = registry.runs.create(
        "finetune",
        name=job.id,
        lineage=edges,
        params={"job": job.id, "base_model": spec.base_model, **spec.hyperparameters()},
        tags={"output_model": spec.output_model},
    )
    registry.jobs.set_status(
        job.id,
        "running",
        worker_id=worker_id,
        run_id=run.id,
        message=f"training run {run.id} started",
    )
    return run.id


def _restore(registry: Registry, job_id: str, run_id: str, root: Path) -> None:
    """Fetch the job's latest stored checkpoint when it is newer than any here; a store
    that cannot give it costs the steps since the local one (or a fresh start), not the job."""
    try:
        fetched = restore_checkpoint(registry, run_id, root)
    except Exception as exc:  # boundary: resume from what is here instead
        log.warning("could not fetch the checkpoint of %s", job_id, exc_info=True)
        registry.jobs.add_event(
            job_id, f"could not fetch the stored checkpoint ({type(exc).__name__}: {exc})"
        )
        return
    if fetched is not None:
        registry.jobs.add_event(
            job_id, f"fetched the checkpoint at step {fetched} from the artifact store"
        )


def execute_job(
    registry: Registry,
    job: JobInfo,
    worker_id: str,
    settings: WorkerSettings,
    *,
    eval_hook: EvalHook | None = None,
) -> JobInfo:
    """Run a job this worker has claimed, to a final state (or until handed over).

    transformers' and PEFT's warnings and progress bars are silenced first
    (:func:`~finetune.inference.quiet_model_libraries`): the job's events say what happens."""
    quiet_model_libraries()
    folder = settings.resolved_work_dir(registry.settings.data_dir) / "jobs" / job.id
    heartbeat = Heartbeat(registry, job.id, worker_id, settings.heartbeat_interval_s)
    heartbeat.start()
    run_id: str | None = job.run_id
    try:
        inputs, edges = _prepare(registry, job, folder)
        run_id = _run_for(registry, job, worker_id, edges)
        if settings.upload_checkpoints and job.run_id is not None:
            _restore(registry, job.id, run_id, inputs.checkpoint_dir)
        spec = inputs.spec
        gpus = spec.gpus if spec.gpus is not None else (settings.gpus or 0)
        name = settings.executor or spec.executor_name
        executor = make_executor(name, settings.executors)
        request = TrainRequest(
            job.id, worker_id, run_id, inputs, gpus, registry.settings.model_dump(mode="json"),
            upload_checkpoints=settings.upload_checkpoints,
        )  # fmt: skip
        hooks = RegistryHooks(
            registry, job.id, run_id, heartbeat.cancelled.is_set,
            upload_checkpoints=settings.upload_checkpoints,
        )  # fmt: skip
        result = executor.run(request, hooks)
        if result is None:
            registry.jobs.add_event(job.id, f"handed over to the {name} executor")
            return registry.jobs.get(job.id)
        return finish_job(registry, job, worker_id, run_id, inputs, result, eval_hook=eval_hook)
    except TrainingStopped as stop:
        if heartbeat.lost.is_set():
            log.warning("job %s was claimed by another worker; stopped", job.id)
            return registry.jobs.get(job.id)
        if run_id is not None:
            registry.runs.set_status(run_id, "cancelled")
        return registry.jobs.set_status(
            job.id, "cancelled", worker_id=worker_id, message=f"cancelled: {stop}"
        )
    except Conflict:
        log.warning("job %s is no longer ours", job.id)
        return registry.jobs.get(job.id)
    except Exception as exc:  # the boundary: any failure ends the job as failed, with why
        return fail_job(registry, job.id, worker_id, run_id, exc)
    finally:
        heartbeat.stop()
