"""After training: the adapter becomes a ``lora`` model version with lineage, then
(optionally) the spec's eval suite gates it and the label moves through the registry's
promotion check: the label's gate policy and the job's own suite, pinned by content, both
need a pass on evidence (:mod:`registry.gates`). A job never forces a label."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from lockgate.finetune.spec import JobSpec
from lockgate.finetune.trainer import TrainInputs, TrainResult
from lockgate.registry.errors import ApprovalPending, GateRefused, LockgateError, NotFound
from lockgate.registry.jobs import FinetuneResult
from lockgate.registry.records import LineageEdge

if TYPE_CHECKING:
    from lockgate.registry.jobs import JobInfo
    from lockgate.registry.records import ModelVersionInfo
    from lockgate.registry.registry import Registry

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
    version, _ = registry.models.register(
        spec.output_model,
        "lora",
        model_spec,
        path=result.adapter_dir,
        message=f"LoRA adapter trained by {job.id}",
    )
    ref = f"{version.name}@{version.version}"
    registry.runs.add_lineage(run_id, [LineageEdge("model", ref, "output")])
    final = {k: v for k, v in result.metrics.items() if k != "epoch"}
    registry.runs.set_status(run_id, "succeeded", metrics={**final, "steps": float(result.steps)})
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
    registry.jobs.add_event(job.id, f"registered {ref} (flavor lora)", data={"model": ref})
    evaluation: dict[str, Any] | None = None
    if spec.eval is not None:
        hook = eval_hook or gate_and_label
        try:
            evaluation = hook(registry, spec, version)
        except LockgateError as exc:  # the job still succeeded; the label is refused
            evaluation = {"labelled": False, "error": exc.message}
            registry.jobs.add_event(
                job.id, f"eval failed, label refused: {exc.message}", level="warn"
            )
        else:
            _report_verdict(registry, job.id, evaluation)
            _report_label(registry, job.id, spec.eval.label, evaluation)
    outcome = FinetuneResult(
        model=ref,
        fine_tuned_model=f"registry:{ref}",
        steps=result.steps,
        total_steps=result.total_steps,
        resumed_from=result.resumed_from,
        trained_tokens=result.tokens_seen,
        metrics=result.metrics,
        eval=evaluation,
    )
    return registry.jobs.set_status(
        job.id,
        "succeeded",
        worker_id=worker_id,
        result=outcome,
        message=f"succeeded: registered {ref}",
    )


def eval_lines(outcome: dict[str, Any]) -> list[str]:
    """A job's eval outcome (``result.eval``) in words: the verdict and its reason, then
    each gate that did not pass with why (e.g. how many examples it would need). For the
    job's events and ``lockgate finetune status``."""
    if "error" in outcome:
        return [f"eval could not run: {outcome['error']}"]
    head = f"eval {outcome.get('suite')!r} on {outcome.get('model')}: {outcome.get('verdict')}"
    reason = outcome.get("verdict_reason")
    lines = [f"{head} ({reason})" if reason else head]
    for gate in outcome.get("gates") or []:
        verdict, why = gate.get("verdict"), str(gate.get("reason") or "")
        if verdict == "pass" or gate.get("waived"):
            continue
        shown = why if why.startswith(f"{verdict}:") else f"{verdict}: {why}".rstrip(": ")
        lines.append(f"{gate.get('gate')}: {shown}")
    return lines


def _report_verdict(registry: Registry, job_id: str, outcome: dict[str, Any]) -> None:
    """Say the eval's verdict in the job's events: a pass, or why it is not one."""
    verdict = outcome.get("verdict")
    if verdict is None:  # a hook that judged nothing (tests, custom hooks)
        return
    registry.jobs.add_event(
        job_id, "; ".join(eval_lines(outcome)), level="info" if verdict == "pass" else "warn",
        data={k: outcome.get(k) for k in ("suite", "verdict", "verdict_reason", "run_id",
                                          "gates")},
    )  # fmt: skip


def _report_label(registry: Registry, job_id: str, label: str, outcome: dict[str, Any]) -> None:
    """Say in the job's events whether the label moved, and why not."""
    if outcome.get("labelled"):
        registry.jobs.add_event(job_id, f"label {label!r} moved to {outcome.get('model', 'it')}")
        return
    refused = outcome.get("refused") or [f"verdict {outcome.get('verdict')}"]
    registry.jobs.add_event(
        job_id, f"label {label!r} not moved: " + "; ".join(map(str, refused)), level="warn",
        data={"refused": refused},
    )  # fmt: skip


def submitter_may_label(spec: JobSpec) -> bool:
    """Whether the job's submitter held ``registry:label`` (``spec.submitted_by``, written by
    the entry point). A spec without it was queued by local code with the registry in hand,
    which may move labels itself."""
    return spec.submitted_by is None or spec.submitted_by.holds_label_scope


def gate_and_label(
    registry: Registry,
    spec: JobSpec,
    version: ModelVersionInfo,
    *,
    transport_factory: TransportFactory | None = None,
    may_label: bool | None = None,
) -> dict[str, Any]:
    """Run the spec's suite on the new version, compare it with the label's current holder
    (else the base model when it is a registry model; else nothing: a first adapter is
    judged by its absolute gates), and ask the registry to move the label: it moves only
    through the label's gate policy and a pass of this suite's content, on evidence.

    ``may_label``: whether the job's submitter may move labels; None reads it from the
    spec's ``submitted_by`` (:func:`submitter_may_label`). Without ``transport_factory`` the
    suite's own ``base_url`` is called (e.g. a running gateway that serves ``registry:``
    models)."""
    from lockgate import evals
    from lockgate.evals.report import record_verdict
    from lockgate.registry.gates import SuitePin

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
    if spec.eval.baseline:
        baseline = evals.resolve_baseline(spec.eval.baseline, suite, registry)
    else:
        holder = _label_holder(registry, version.name, label)
        reference = holder or (spec.base_model if spec.base_model.startswith("registry:") else None)
        if reference is not None:
            base_run = run_on(reference)
            baseline = evals.Baseline(
                reference, base_run.results, base_run.run_id, reference, base_run.run_id
            )
        else:
            baseline = evals.Baseline.first_version(label)
    report = evals.build_report(run, baseline)
    record_verdict(registry, report)  # the label gate reads the verdict from the run
    outcome: dict[str, Any] = {
        "suite": suite.name,
        "suite_digest": report.suite_digest,
        "verdict": report.verdict,
        "verdict_reason": report.verdict_reason,
        "baseline": report.baseline,
        "run_id": report.run_id,
        "model": f"{version.name}@{version.version}",
        "gates": [
            {"gate": g.gate, "verdict": g.verdict, "reason": g.reason, "waived": g.waived}
            for g in report.gates
        ],
        "labelled": False,
    }
    if not (submitter_may_label(spec) if may_label is None else may_label):
        who = spec.submitted_by.name if spec.submitted_by is not None else "the submitter"
        outcome["refused"] = [
            f"the job's submitter ({who}) does not hold the registry:label scope, so it may "
            f"not move labels: {label!r} stays where it is; someone who holds it can move the "
            "label through its gate policy after reviewing the eval run"
        ]
        return outcome
    try:
        registry.labels.set(
            "model", version.name, label, version.version,
            reason=f"eval suite {suite.name} passed (run {report.run_id})",
            require=[SuitePin(suite.name, report.suite_digest)],
        )  # fmt: skip
    except GateRefused as exc:
        outcome["refused"] = list(exc.reasons)
    except ApprovalPending as pending:  # a protected label: the gate passed, a human decides
        outcome["approval_request"] = pending.request.id
        outcome["refused"] = [pending.message]
    else:
        outcome["labelled"] = label
    return outcome


def _label_holder(registry: Registry, name: str, label: str) -> str | None:
    try:
        holder = registry.models.get(f"{name}@{label}")
    except NotFound:
        return None
    return f"registry:{holder.name}@{holder.version}"
