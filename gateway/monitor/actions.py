"""What a firing policy does: one function per action kind (:data:`ACTIONS`).

Each action gets the decision's run id, so what it starts is traceable to the decision
(lineage, idempotency keys) and a decision run again after a crash does not queue a
second job: fine-tune and retrain jobs are submitted with the idempotency key
``monitor:<decision run id>:<action index>``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lockgate.gateway.monitor.policy import (
    AlertAction,
    EvalAction,
    FinetuneAction,
    Policy,
    RetrainAction,
    WebhookAction,
)
from lockgate.gateway.monitor.signals import Measurement
from lockgate.registry.registry import Registry

if TYPE_CHECKING:
    from lockgate.evals.settings import EvalsSettings


@dataclass(frozen=True)
class ActionContext:
    registry: Registry
    policy: Policy
    run_id: str  # the decision run
    measurement: Measurement
    index: int  # the action's place in the policy's list
    evals: EvalsSettings | None = None
    eval_transport_factory: Any = None  # the in-process gateway, for suites without base_url


@dataclass(frozen=True)
class ActionResult:
    kind: str
    ok: bool
    detail: str
    refs: dict[str, str] = field(default_factory=dict)  # e.g. {"job": "ftjob-…"}

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "ok": self.ok, "detail": self.detail, "refs": self.refs}


def _key(ctx: ActionContext) -> str:
    return f"monitor:{ctx.run_id}:{ctx.index}"


def do_alert(ctx: ActionContext, action: AlertAction) -> ActionResult:
    message = action.message or f"{ctx.policy.name}: {ctx.measurement.reason}"
    ctx.registry.runs.tag(ctx.run_id, {"alert": message})
    return ActionResult("alert", True, message)


def fired_payload(ctx: ActionContext) -> dict[str, Any]:
    """The ``monitor.fired`` event's data: the policy, target, figures and reason."""
    m = ctx.measurement
    return {
        "policy": ctx.policy.name, "target": str(ctx.policy.target),
        "signal": ctx.policy.signal.kind, "value": m.value, "samples": m.samples,
        "figures": m.figures, "reason": m.reason, "decision_run": ctx.run_id,
    }  # fmt: skip


def do_webhook(ctx: ActionContext, action: WebhookAction) -> ActionResult:
    event = ctx.registry.events.record(
        "monitor.fired", f"monitor:{ctx.policy.name}", fired_payload(ctx)
    )
    return ActionResult(
        "webhook", True, f"event {event.id} (monitor.fired) queued for the configured webhooks",
        {"event": str(event.id)},
    )  # fmt: skip


def do_eval(ctx: ActionContext, action: EvalAction) -> ActionResult:
    from lockgate.evals.baseline import resolve_baseline
    from lockgate.evals.report import build_report, record_verdict
    from lockgate.evals.runner import RunOptions, run_suite
    from lockgate.evals.suite import load_suite

    suite = load_suite(action.suite)
    options = RunOptions(transport_factory=ctx.eval_transport_factory)
    if ctx.evals is not None:
        from lockgate.evals.settings import with_eval_defaults

        suite = with_eval_defaults(suite, ctx.evals)
        options.cache_dir = ctx.evals.cache_dir
    base = resolve_baseline(action.baseline, suite, ctx.registry) if action.baseline else None
    run = run_suite(suite, registry=ctx.registry, options=options)
    report = build_report(run, base)
    record_verdict(ctx.registry, report)
    refs = {"eval_run": run.run_id} if run.run_id else {}
    return ActionResult(
        "eval", True, f"suite {suite.name}: {report.verdict}"
        + (f" ({report.verdict_reason})" if report.verdict_reason else ""), refs,
    )  # fmt: skip


def do_finetune(ctx: ActionContext, action: FinetuneAction) -> ActionResult:
    from lockgate.finetune.spec import load_spec
    from lockgate.finetune.submit import submit_job

    job, created = submit_job(ctx.registry, load_spec(action.spec), idempotency_key=_key(ctx))
    how = "submitted" if created else "already submitted"
    return ActionResult("finetune", True, f"fine-tune job {job.id} {how}", {"job": job.id})


def do_retrain(ctx: ActionContext, action: RetrainAction) -> ActionResult:
    from lockgate.finetune.command import submit_retrain

    job = submit_retrain(
        ctx.registry, ctx.policy.target.name, dataset=action.dataset, entry=list(action.entry),
        label=action.label, suite=action.suite, idempotency_key=_key(ctx),
    )  # fmt: skip
    return ActionResult(
        "retrain", True, f"retraining job {job.id} of {ctx.policy.target.name} queued",
        {"job": job.id},
    )  # fmt: skip


ACTIONS: dict[str, Callable[[ActionContext, Any], ActionResult]] = {
    "alert": do_alert,
    "webhook": do_webhook,
    "eval": do_eval,
    "finetune": do_finetune,
    "retrain": do_retrain,
}
