"""After training: the adapter becomes a ``lora`` model version with lineage, then
(optionally) the spec's eval suite gates it and the label moves when the gates pass."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from finetune.spec import JobSpec
from finetune.trainer import TrainInputs, TrainResult
from registry.errors import LockgateError, NotFound
from registry.records import LineageEdge

if TYPE_CHECKING:
    from registry.jobs import JobInfo
    from registry.records import ModelVersionInfo
    from registry.registry import Registry

log = logging.getLogger("lockgate.finetune")
TransportFactory = Callable[[], Any]  # () -> httpx.AsyncBaseTransport (evals' seam)


class EvalHook(Protocol):
    def __call__(
        self, registry: Registry, spec: JobSpec, version: ModelVersionInfo
    ) -> dict[str, Any]: ...


def register_adapter(
    registry: Registry, job: JobInfo, run_id: str, spec: JobSpec, result: TrainResult
) -> ModelVersionInfo:
    model_spec = {
        "base_model": spec.base_model,
        "job": job.id,
        "run": run_id,
        "hyperparameters": spec.hyperparameters(),
        "metrics": result.metrics,
        "steps": result.steps,
    }
    version, _ = registry.register_model(
        spec.output_model,
        "lora",
        model_spec,
        path=result.adapter_dir,
        message=f"LoRA adapter trained by {job.id}",
    )
    ref = f"{version.name}@{version.version}"
    registry.add_lineage(run_id, [LineageEdge("model", ref, "output")])
    final = {k: v for k, v in result.metrics.items() if k != "epoch"}
    registry.set_run_status(run_id, "succeeded", metrics={**final, "steps": float(result.steps)})
    return version


def finish_job(
    registry: Registry,
    job: JobInfo,
    worker_id: str,
    run_id: str,
    inputs: TrainInputs,
    result: TrainResult,
    *,
    eval_hook: EvalHook | None = None,
) -> JobInfo:
    spec = inputs.spec
    version = register_adapter(registry, job, run_id, spec, result)
    ref = f"{version.name}@{version.version}"
    outcome: dict[str, Any] = {
        "model": ref,
        "fine_tuned_model": f"registry:{ref}",
        **{k: v for k, v in result.to_dict().items() if k != "adapter_dir"},
    }
    registry.add_job_event(job.id, f"registered {ref} (flavor lora)", data={"model": ref})
    if spec.eval is not None:
        hook = eval_hook or gate_and_label
        try:
            outcome["eval"] = hook(registry, spec, version)
        except LockgateError as exc:  # the job still succeeded; the label is refused
            outcome["eval"] = {"labelled": False, "error": exc.message}
            registry.add_job_event(
                job.id, f"eval failed, label refused: {exc.message}", level="warn"
            )
    return registry.set_job_status(
        job.id,
        "succeeded",
        worker_id=worker_id,
        result=outcome,
        message=f"succeeded: registered {ref}",
    )


def gate_and_label(
    registry: Registry,
    spec: JobSpec,
    version: ModelVersionInfo,
    *,
    transport_factory: TransportFactory | None = None,
) -> dict[str, Any]:
    """Run the spec's suite on the new version, compare with the baseline (the label's
    current holder, else the base model when it is a registry model, else none), and move
    the label only when the verdict is ``pass``. Without ``transport_factory`` the suite's
    own ``base_url`` is called (e.g. a running gateway that serves ``registry:`` models)."""
    import evals

    assert spec.eval is not None
    suite = evals.load_suite(Path(spec.eval.suite))
    candidate = f"registry:{version.name}@{version.version}"
    options = evals.RunOptions(transport_factory=transport_factory)

    def run_on(model: str) -> Any:
        target = suite.target.model_copy(update={"model": model})
        return evals.run_suite(
            suite.model_copy(update={"target": target}), registry=registry, options=options
        )

    run = run_on(candidate)
    label = spec.eval.label
    baseline = None
    if spec.eval.baseline:
        baseline = evals.resolve_baseline(spec.eval.baseline, suite, registry)
    else:
        holder = _label_holder(registry, version.name, label)
        reference = holder or (spec.base_model if spec.base_model.startswith("registry:") else None)
        if reference is not None:
            base_run = run_on(reference)
            baseline = evals.Baseline(reference, base_run.results, base_run.run_id, reference)
    report = evals.build_report(run, baseline)
    from evals.report import record_verdict

    record_verdict(registry, report)  # the label gate reads the verdict from the run
    reasons = [f"{g.gate}: {g.reason}" for g in report.gates if not g.passed]
    outcome: dict[str, Any] = {
        "suite": suite.name,
        "verdict": report.verdict,
        "baseline": report.baseline,
        "run_id": report.run_id,
        "gates": [{"gate": g.gate, "verdict": g.verdict, "reason": g.reason} for g in report.gates],
    }
    if report.verdict == "pass":
        registry.set_label(
            "model", version.name, label, version.version, reason=f"eval suite {suite.name} passed"
        )
        outcome["labelled"] = label
    else:
        outcome["labelled"] = False
        outcome["refused"] = reasons or [f"verdict {report.verdict}"]
    return outcome


def _label_holder(registry: Registry, name: str, label: str) -> str | None:
    try:
        holder = registry.get_model(f"{name}@{label}")
    except NotFound:
        return None
    return f"registry:{holder.name}@{holder.version}"
