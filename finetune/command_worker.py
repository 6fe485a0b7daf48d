"""Running a claimed ``command`` job (:mod:`finetune.command`): materialise the dataset
version, run the entry point, register its skops file as a new ``sklearn`` version with
lineage, then gate it and move the label only on a pass.

What the entry point sees (documented in docs/retraining.md):

========================  ==========================================================
``LOCKGATE_DATASET``      path of the dataset version's file (or folder), read-only use
``LOCKGATE_DATASET_REF``  ``NAME@VERSION`` of that dataset version
``LOCKGATE_OUTPUT``       where to write the fitted estimator: ``…/model.skops``
``LOCKGATE_META``         optional JSON file to write: ``reference``, ``target``,
                          ``task``, ``message``, ``metrics`` (see :class:`OutputMeta`)
``LOCKGATE_JOB_ID``       the job's id; ``LOCKGATE_RUN_ID`` its registry run
``LOCKGATE_MODEL``        the model's name; ``LOCKGATE_PARENT`` ``NAME@VERSION`` or empty
========================  ==========================================================

It runs in an empty working directory of its own, with the worker's environment minus every
``LOCKGATE_*`` variable (the registry's credentials stay with the worker). A non-zero exit, a
timeout (``finetune.command_timeout_s``) or a missing or refused output fails the job with the
reason. The skops file is checked against the allowlist of :mod:`registry.models` before
anything is registered: a file holding other types, or a pickle, is refused.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lockgate.finetune.command import CommandResult, CommandSpec, command_spec
from lockgate.finetune.command_process import child_environment, run_entry_point
from lockgate.finetune.errors import TrainingFailed
from lockgate.finetune.reporting import Heartbeat, fail_job
from lockgate.registry.errors import (
    ApprovalPending,
    Conflict,
    GateRefused,
    LockgateError,
    NotFound,
)
from lockgate.registry.records import LineageEdge

if TYPE_CHECKING:
    from lockgate.finetune.settings import WorkerSettings
    from lockgate.registry.jobs import JobInfo
    from lockgate.registry.records import ModelVersionInfo
    from lockgate.registry.registry import Registry

log = logging.getLogger("lockgate.finetune")
RUN_KIND = "retrain"


class OutputMeta(BaseModel):
    """What the entry point may say about its model (``$LOCKGATE_META``, optional)."""

    model_config = ConfigDict(extra="forbid")

    reference: str | None = Field(None, description="Reference dataset NAME[@VERSION].")
    target: str | None = Field(None, description="The reference's column of true values.")
    task: str | None = None
    message: str | None = Field(None, max_length=500)
    metrics: dict[str, float] = Field(default_factory=dict)


class _Stopped(Exception):
    """The job was cancelled, or claimed by another worker, while its entry point ran."""


def _read_meta(path: Path) -> OutputMeta:
    if not path.is_file():
        return OutputMeta()
    try:
        return OutputMeta.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, ValidationError) as exc:
        raise TrainingFailed(f"$LOCKGATE_META ({path.name}) is not valid: {exc}") from None


def _run_for(registry: Registry, job: JobInfo, spec: CommandSpec, worker_id: str) -> str:
    if job.run_id is not None:
        registry.jobs.add_event(job.id, f"resuming run {job.run_id} (attempt {job.attempts})")
        return job.run_id
    lineage = [LineageEdge("dataset", spec.dataset, "input")]
    if spec.parent:
        lineage.append(LineageEdge("model", spec.parent, "input"))
    run = registry.runs.create(
        RUN_KIND, name=job.id, lineage=lineage,
        params={"job": job.id, "model": spec.model, "dataset": spec.dataset,
                "parent": spec.parent or "", "entry": spec.entry, "suite": spec.suite_name or ""},
        tags={"output_model": spec.model},
    )  # fmt: skip
    registry.jobs.set_status(
        job.id, "running", worker_id=worker_id, run_id=run.id,
        message=f"retraining run {run.id} started",
    )  # fmt: skip
    return run.id


def _register(
    registry: Registry, job: JobInfo, spec: CommandSpec, run_id: str, output: Path,
    meta: OutputMeta,
) -> tuple[ModelVersionInfo, bool]:  # fmt: skip
    parent = registry.models.get(spec.parent) if spec.parent else None
    kept = parent.spec if parent is not None else {}
    reference = meta.reference or kept.get("reference")
    target = meta.target if meta.target is not None else kept.get("target")
    model_spec: dict[str, Any] = {"job": job.id, "run": run_id, "dataset": spec.dataset,
                                  "parent": spec.parent}  # fmt: skip
    task = meta.task or kept.get("task")
    if task:
        model_spec["task"] = task
    return registry.models.register(
        spec.model, "sklearn", model_spec, path=output,
        message=meta.message or f"retrained by {job.id} on {spec.dataset}",
        reference=reference, target=target if reference else None,
    )  # fmt: skip


def _holder(registry: Registry, name: str, label: str) -> ModelVersionInfo | None:
    try:
        return registry.models.get(f"{name}@{label}")
    except NotFound:
        return None


def gate_retrained(
    registry: Registry, spec: CommandSpec, version: ModelVersionInfo
) -> dict[str, Any]:
    """Run the job's suite (if any) on the new version against the label's holder, then ask
    the registry to move the label through its gate policy plus that suite (pinned by the
    content recorded at submit). Returns the outcome in a fine-tuning job's ``eval`` shape."""
    from lockgate import evals
    from lockgate.evals.report import record_verdict
    from lockgate.registry.gates import SuitePin

    label = spec.label
    ref = f"{version.name}@{version.version}"
    outcome: dict[str, Any] = {"model": ref, "label": label, "labelled": False}
    required: list[SuitePin] = []
    if spec.suite is not None:
        assert spec.suite_name is not None and spec.suite_digest is not None
        now = registry.gates.pin_suite(Path(spec.suite))
        if now.digest != spec.suite_digest:
            outcome["refused"] = [
                f"suite {spec.suite_name!r}: the file or its dataset changed since the job was "
                f"submitted ({spec.suite_digest[:19]} then, {now.digest[:19]} now); submit "
                "the job again to gate with the new content"
            ]
            return outcome
        suite = evals.load_suite(Path(spec.suite))
        if suite.target.kind != "sklearn":
            raise TrainingFailed(f"suite {suite.name!r} does not measure a scikit-learn model")

        def run_on(model: str) -> Any:
            target = suite.target.model_copy(update={"model": model})
            return evals.run_suite(suite.model_copy(update={"target": target}), registry=registry)

        run = run_on(f"registry:{ref}")
        holder = _holder(registry, version.name, label) if label else None
        if holder is not None and holder.version != version.version:
            base = run_on(f"registry:{holder.name}@{holder.version}")
            held = f"{holder.name}@{holder.version}"
            baseline = evals.Baseline(held, base.results, base.run_id, held, base.run_id)
        else:
            baseline = evals.Baseline.first_version(label or "none")
        report = evals.build_report(run, baseline)
        record_verdict(registry, report)
        outcome.update(
            suite=suite.name, suite_digest=report.suite_digest, verdict=report.verdict,
            verdict_reason=report.verdict_reason, baseline=report.baseline,
            run_id=report.run_id,
            gates=[{"gate": g.gate, "verdict": g.verdict, "reason": g.reason, "waived": g.waived}
                   for g in report.gates],
        )  # fmt: skip
        required.append(SuitePin(suite.name, spec.suite_digest))
    if label is None:
        return outcome
    if not required and not any(
        p.label == label for p in registry.gates.policies("model", version.name)
    ):
        outcome["refused"] = [
            f"no gate: {version.name}@{label} has no gate policy and the job no suite"
        ]
        return outcome
    try:
        registry.labels.set(
            "model", version.name, label, version.version,
            reason=f"retraining job gate passed ({spec.suite_name or 'gate policy'})",
            require=required,
        )  # fmt: skip
    except GateRefused as exc:
        outcome["refused"] = list(exc.reasons)
        checks = [c.to_dict() if hasattr(c, "to_dict") else str(c) for c in exc.checks]
        if checks:  # every check's verdict, the passing ones too
            outcome["checks"] = checks
    except ApprovalPending as pending:  # a protected label: the gate passed, a human decides
        outcome["approval_request"] = pending.request.id
        outcome["refused"] = [pending.message]
    else:
        outcome["labelled"] = label
    return outcome


def _report_gate(registry: Registry, job_id: str, outcome: dict[str, Any]) -> None:
    from lockgate.finetune.results import eval_lines

    if outcome.get("verdict") is not None:
        level = "info" if outcome["verdict"] == "pass" else "warn"
        data = {k: outcome.get(k) for k in ("suite", "verdict", "run_id")}
        registry.jobs.add_event(job_id, "; ".join(eval_lines(outcome)), level=level, data=data)
    label = outcome.get("label")
    if label is None:
        return
    if outcome.get("labelled"):
        registry.jobs.add_event(job_id, f"label {label!r} moved to {outcome['model']}")
    else:
        refused = outcome.get("refused") or [outcome.get("error") or "not a pass"]
        text = f"label {label!r} not moved: " + "; ".join(map(str, refused))
        registry.jobs.add_event(job_id, text, level="warn", data={"refused": refused})


def _fresh(folder: Path) -> tuple[Path, Path, Path]:
    """Empty ``data``, ``out`` and ``work`` folders under ``folder`` (a retry starts clean)."""
    if folder.exists():
        shutil.rmtree(folder)
    parts = tuple(folder / n for n in ("data", "out", "work"))
    for part in parts:
        part.mkdir(parents=True)
    return parts  # type: ignore[return-value]


def _run_and_register(
    registry: Registry, job: JobInfo, spec: CommandSpec, worker_id: str, settings: WorkerSettings,
    heartbeat: Heartbeat, run_id: str, folder: Path,
) -> JobInfo:  # fmt: skip
    data_dir, out_dir, work_dir = _fresh(folder)
    data = registry.datasets.fetch(spec.dataset, data_dir)
    output, meta_path = out_dir / "model.skops", out_dir / "meta.json"
    env = child_environment({
        "LOCKGATE_DATASET": str(data), "LOCKGATE_DATASET_REF": spec.dataset,
        "LOCKGATE_OUTPUT": str(output), "LOCKGATE_META": str(meta_path),
        "LOCKGATE_JOB_ID": job.id, "LOCKGATE_RUN_ID": run_id, "LOCKGATE_MODEL": spec.model,
        "LOCKGATE_PARENT": spec.parent or "",
    })  # fmt: skip

    def on_lines(lines: list[tuple[str, str]]) -> None:
        for stream, text in lines:
            registry.jobs.add_event(job.id, text, level="warn" if stream == "stderr" else "info",
                                    data={"stream": stream})  # fmt: skip

    registry.jobs.add_event(job.id, f"running {' '.join(spec.entry)} on {spec.dataset}",
                            data={"entry": spec.entry, "dataset": spec.dataset})  # fmt: skip
    started = time.monotonic()
    outcome = run_entry_point(
        spec.entry, cwd=work_dir, env=env, timeout_s=settings.command_timeout_s,
        max_lines=settings.command_log_lines, on_lines=on_lines,
        should_stop=heartbeat.cancelled.is_set,
    )  # fmt: skip
    if outcome.stopped:
        raise _Stopped()
    if outcome.reason is not None:
        raise TrainingFailed(outcome.reason)
    if not output.is_file():
        raise TrainingFailed(
            "the entry point exited 0 but wrote no model: save the fitted estimator with "
            "skops.io.dump(model, os.environ['LOCKGATE_OUTPUT'])"
        )
    meta = _read_meta(meta_path)
    version, created = _register(registry, job, spec, run_id, output, meta)
    ref = f"{version.name}@{version.version}"
    registry.runs.add_lineage(run_id, [LineageEdge("model", ref, "output")])
    metrics = {**meta.metrics, "duration_s": round(time.monotonic() - started, 3)}
    registry.runs.set_status(run_id, "succeeded", metrics=metrics)
    verb = "registered" if created else "unchanged: the output equals"
    registry.jobs.add_event(
        job.id, f"{verb} {ref} (flavor sklearn)", data={"model": ref, "created": created}
    )
    evaluation: dict[str, Any] | None = None
    if spec.label is not None or spec.suite is not None:
        try:
            evaluation = gate_retrained(registry, spec, version)
        except LockgateError as exc:  # the version stays registered; the label is refused
            evaluation = {
                "model": ref,
                "label": spec.label,
                "labelled": False,
                "error": exc.message,
            }
        _report_gate(registry, job.id, evaluation)
    promoted = bool(evaluation and evaluation.get("labelled"))
    result = CommandResult(
        model=ref, created=created, parent=spec.parent, dataset=spec.dataset, run_id=run_id,
        exit_code=outcome.exit_code or 0, metrics=metrics, label=spec.label, promoted=promoted,
        eval=evaluation,
    )  # fmt: skip
    verdict = (
        "" if spec.label is None
        else f"; label {spec.label!r} moved" if promoted
        else f"; not promoted: label {spec.label!r} stays"
    )  # fmt: skip
    return registry.jobs.set_status(job.id, "succeeded", worker_id=worker_id, result=result,
                                    message=f"succeeded: registered {ref}{verdict}")  # fmt: skip


def execute_command_job(
    registry: Registry, job: JobInfo, worker_id: str, settings: WorkerSettings
) -> JobInfo:
    """Run a ``command`` job this worker has claimed, to a final state."""
    folder = settings.resolved_work_dir(registry.settings.data_dir) / "jobs" / job.id
    heartbeat = Heartbeat(registry, job.id, worker_id, settings.heartbeat_interval_s)
    heartbeat.start()
    run_id: str | None = job.run_id
    try:
        spec = command_spec(job)
        if spec.submitted_by.via != "cli":
            raise TrainingFailed(
                "a command job runs only when the machine's own user queued it (CLI, Python "
                f"API or a monitor policy), not one submitted via {spec.submitted_by.via}"
            )
        run_id = _run_for(registry, job, spec, worker_id)
        return _run_and_register(registry, job, spec, worker_id, settings, heartbeat, run_id,
                                 folder)  # fmt: skip
    except _Stopped:
        if heartbeat.lost.is_set():
            log.warning("job %s was claimed by another worker; stopped", job.id)
            return registry.jobs.get(job.id)
        if run_id is not None:
            registry.runs.set_status(run_id, "cancelled")
        return registry.jobs.set_status(
            job.id, "cancelled", worker_id=worker_id, message="cancelled: its entry point stopped"
        )
    except Conflict:
        log.warning("job %s is no longer ours", job.id)
        return registry.jobs.get(job.id)
    except Exception as exc:  # the boundary: any failure ends the job as failed, with why
        return fail_job(registry, job.id, worker_id, run_id, exc)
    finally:
        heartbeat.stop()
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
