"""Training hooks that write to the registry: step metrics to the run, events to the job."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from lockgate.registry.errors import Conflict, DatabaseError, LockgateError

if TYPE_CHECKING:
    from lockgate.registry.jobs import JobInfo
    from lockgate.registry.registry import Registry

log = logging.getLogger(__name__)
T = TypeVar("T")


class RegistryHooks:
    """:class:`~finetune.trainer.TrainHooks` that report into the registry as steps happen.

    ``stop`` says when to stop (a cancel seen by the heartbeat, or a stop file written by
    the worker that launched this process)."""

    def __init__(
        self,
        registry: Registry,
        job_id: str,
        run_id: str,
        stop: Callable[[], bool],
        *,
        upload_checkpoints: bool = True,
    ) -> None:
        self.registry, self.job_id, self.run_id, self.stop = registry, job_id, run_id, stop
        self.upload_checkpoints = upload_checkpoints

    def _quietly(self, what: str, write: Callable[[], T]) -> T | None:
        """Run a registry write; while the database is unreachable, log it and go on (the
        point or event is lost, the training is not: a blip must not fail an hours-long job,
        and the heartbeat decides whether the job is still ours)."""
        try:
            return write()
        except DatabaseError:
            log.warning("could not record %s: the registry is unreachable", what, exc_info=True)
            return None

    def on_resume(self, step: int) -> None:
        dropped = self._quietly(
            "the discarded metric points",
            lambda: self.registry.runs.discard_metrics_after(self.run_id, step),
        )
        note = f"; {dropped} metric points logged after it are replaced" if dropped else ""
        self._event(
            f"resuming from the checkpoint at step {step}{note}",
            {"step": step, "discarded_points": dropped},
        )

    def on_step(self, step: int, total: int, metrics: dict[str, float]) -> None:
        self._quietly(
            f"the metrics of step {step}",
            lambda: self.registry.runs.log_metrics(self.run_id, metrics, step=step),
        )
        shown = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if k != "epoch")
        data: dict[str, object] = {"step": step, "total_steps": total, **metrics}
        self._event(f"step {step}/{total}: {shown}", data)

    def on_checkpoint(self, step: int, path: Path) -> None:
        data: dict[str, object] = {"step": step, "checkpoint": str(path)}
        message = f"checkpoint at step {step}"
        if self.upload_checkpoints:
            from lockgate.finetune.checkpoints import upload_checkpoint

            try:
                data["digest"] = upload_checkpoint(self.registry, self.run_id, path)
            except Exception as exc:  # boundary: a store blip must not end the training
                log.warning("could not upload the checkpoint at step %d", step, exc_info=True)
                message += f" (not uploaded: {type(exc).__name__}: {exc})"
        self._event(message, data)

    def _event(self, message: str, data: dict[str, object]) -> None:
        self._quietly(
            f"the job event {message!r}",
            lambda: self.registry.jobs.add_event(self.job_id, message, data=data),
        )

    def should_stop(self) -> bool:
        return self.stop()


class Heartbeat(threading.Thread):
    """Heartbeats a claimed job every ``interval`` seconds in the background.

    Sets ``cancelled`` when a cancel was requested, ``lost`` (and ``cancelled``) when the
    claim went to another worker — the training loop then stops at its next step."""

    def __init__(self, registry: Registry, job_id: str, worker_id: str, interval: float) -> None:
        super().__init__(name=f"heartbeat-{job_id}", daemon=True)
        self.registry, self.job_id, self.worker_id = registry, job_id, worker_id
        self.interval = interval
        self.cancelled = threading.Event()
        self.lost = threading.Event()
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(self.interval):
            try:
                if self.registry.jobs.heartbeat(self.job_id, self.worker_id):
                    self.cancelled.set()
            except Conflict:
                self.lost.set()
                self.cancelled.set()
                return
            except DatabaseError:  # a blip: the next beat may get through before the timeout
                continue

    def stop(self) -> None:
        self._done.set()
        if self.is_alive():
            self.join(timeout=5)


def fail_job(
    registry: Registry, job_id: str, worker_id: str, run_id: str | None, exc: Exception
) -> JobInfo:
    """End a job (and its run) as failed because of ``exc``, the one boundary every worker
    path shares: a lockgate error keeps its message, anything else is logged with its
    traceback and named by its type. A job another worker has taken meanwhile is left to it."""
    from lockgate.finetune.errors import FinetuneError

    text = exc.message if isinstance(exc, LockgateError) else f"{type(exc).__name__}: {exc}"
    if not isinstance(exc, FinetuneError | LockgateError):
        log.exception("job %s failed", job_id)
    if run_id is not None:
        registry.runs.set_status(run_id, "failed", error=text)
    try:
        return registry.jobs.set_status(job_id, "failed", worker_id=worker_id, error=text)
    except Conflict:
        return registry.jobs.get(job_id)
