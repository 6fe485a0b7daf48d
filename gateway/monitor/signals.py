"""Measuring a policy's signal over one window: a :class:`Measurement` per decision.

Each signal kind has one function in :data:`MEASURES`. They read the registry only: drift
runs (:mod:`evals.drift.runs`, :mod:`evals.drift.traffic`), eval runs, call records and
dataset versions. Whether the measurement *fires* (persistence, cooldown) is the runner's
business, not theirs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select

from lockgate.gateway.monitor.errors import SignalUnavailable
from lockgate.gateway.monitor.policy import (
    DataVolumeSignal,
    DriftSignal,
    ErrorRateSignal,
    EvalMetricSignal,
    LatencySignal,
    Policy,
    ScheduleSignal,
    Target,
)
from lockgate.registry.errors import NotFound
from lockgate.registry.gate_limits import ServiceFigures, window_figures
from lockgate.registry.records import LineageEdge
from lockgate.registry.registry import Registry
from lockgate.registry.tables import CallRecord, Dataset, DatasetVersion

DEFAULT_TRAFFIC_REFERENCE = timedelta(days=7)


@dataclass(frozen=True)
class Measurement:
    """What one window showed: whether it breaches the signal's limit, on how many samples,
    the figures (recorded as the decision run's metrics) and why, in words."""

    breached: bool
    samples: int
    value: float | None
    reason: str
    figures: dict[str, float] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    lineage: list[LineageEdge] = field(default_factory=list)


@dataclass(frozen=True)
class SignalContext:
    registry: Registry
    policy: Policy
    now: datetime
    last_fired_at: datetime | None  # the policy's last firing decision
    since_data: datetime  # data_volume: count versions created after this

    @property
    def window_start(self) -> datetime:
        return self.now - self.policy.window


def duration_text(delta: timedelta) -> str:
    """``24h``, ``90m``, ``7d`` (the largest unit that divides it), for drift sources."""
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{max(1, seconds)}s"


def holder_version(registry: Registry, target: Target) -> int:
    """The version the target's label points at now."""
    try:
        if target.kind == "prompt":
            return registry.prompts.get(target.ref).version
        return registry.models.get(target.ref).version
    except NotFound as exc:
        raise SignalUnavailable(f"target {target}: {exc.message}", param="target") from exc


# --- drift -----------------------------------------------------------------------------


def measure_drift(ctx: SignalContext, signal: DriftSignal) -> Measurement:
    target, window = ctx.policy.target, duration_text(ctx.policy.window)
    if target.kind == "model":
        try:
            from lockgate.evals.drift.runs import run_drift_check
        except ImportError as exc:  # the drift extra (evals) is not installed
            raise SignalUnavailable(f"drift checks are unavailable here: {exc}") from exc
        version = holder_version(ctx.registry, target)
        reference = signal.reference or f"model:{target.ref}#reference"
        drift = run_drift_check(
            ctx.registry, reference, f"model:{target.ref}:{window}", columns=signal.columns,
            subject=f"model:{target.name}@{version}", html=False, now=ctx.now,
        )  # fmt: skip
    else:
        try:
            from lockgate.evals.drift.traffic import run_traffic_drift
        except ImportError as exc:
            raise SignalUnavailable(f"traffic drift is unavailable here: {exc}") from exc
        reference_window = duration_text(signal.reference_window or DEFAULT_TRAFFIC_REFERENCE)
        prompt = None
        if target.kind == "prompt":
            prompt = f"{target.name}@{holder_version(ctx.registry, target)}"
        drift = run_traffic_drift(
            ctx.registry,
            model=target.name if target.kind == "route" else None,
            prompt=prompt,
            current=window,
            reference=signal.reference or reference_window,
            html=False,
            now=ctx.now,
        )
    report = drift.report
    figures = {"share_drifted": report.share_drifted, "drifted_columns": float(report.n_drifted),
               "columns": float(len(report.columns)), "rows": float(report.n_current)}  # fmt: skip
    edge = [LineageEdge("run", drift.run_id, "input")]
    params = {"drift_run": drift.run_id, "reference": drift.reference, "current": drift.current}
    if signal.column is not None:
        try:
            column = report.column(signal.column)
        except KeyError:
            raise SignalUnavailable(
                f"signal.column {signal.column!r} was not checked; checked: "
                f"{', '.join(c.column for c in report.columns) or 'none'}",
                param="signal.column",
            ) from None
        figures.update({"column_score": column.score, "column_threshold": column.threshold})
        verdict = "drifted" if column.drifted else "did not drift"
        return Measurement(
            column.drifted, report.n_current, column.score,
            f"column {column.column!r} {verdict} ({column.test} {column.score:.4g} vs "
            f"{column.threshold:g})", figures, params, edge,
        )  # fmt: skip
    limit = signal.max_share_drifted
    assert limit is not None
    breached = bool(report.columns) and report.share_drifted >= limit
    return Measurement(
        breached, report.n_current, report.share_drifted,
        f"{report.n_drifted} of {len(report.columns)} columns drifted "
        f"(share {report.share_drifted:.2f} {'>=' if breached else '<'} {limit:g})",
        figures, params, edge,
    )  # fmt: skip


# --- eval metric -----------------------------------------------------------------------


def measure_eval_metric(ctx: SignalContext, signal: EvalMetricSignal) -> Measurement:
    runs = [
        r for r in ctx.registry.runs.list("eval", limit=500)
        if r.params.get("suite") == signal.suite and r.status == "succeeded"
        and r.created_at >= ctx.window_start
    ]  # fmt: skip
    if not runs:
        return Measurement(
            False, 0, None, f"no finished eval run of suite {signal.suite!r} in the window"
        )
    run = runs[0]  # newest first
    value = run.metrics.get(signal.metric)
    if value is None:
        raise SignalUnavailable(
            f"eval run {run.id} of suite {signal.suite!r} has no metric {signal.metric!r}; "
            f"it has: {', '.join(sorted(run.metrics)) or 'none'}",
            param="signal.metric",
        )
    samples = int(run.metrics.get("eval.examples", 0))
    if signal.below is not None:
        breached, rule = value < signal.below, f"below {signal.below:g}"
    else:
        assert signal.above is not None
        breached, rule = value > signal.above, f"above {signal.above:g}"
    return Measurement(
        breached, samples, float(value),
        f"{signal.metric} = {value:.4g} in eval run {run.id[:12]} "
        f"({'' if breached else 'not '}{rule})",
        {signal.metric: float(value), "examples": float(samples)},
        {"eval_run": run.id}, [LineageEdge("run", run.id, "input")],
    )  # fmt: skip


# --- call records ----------------------------------------------------------------------


def _call_condition(ctx: SignalContext) -> Any:
    target = ctx.policy.target
    if target.kind == "route":
        return CallRecord.route == target.name
    version = holder_version(ctx.registry, target)
    if target.kind == "prompt":
        return (CallRecord.prompt_name == target.name) & (CallRecord.prompt_version == version)
    return or_(  # a :predict call records NAME@VERSION as its model, the request as its route
        CallRecord.model == f"{target.name}@{version}",
        CallRecord.route == f"registry:{target.name}@{target.label}",
    )


def _figures(ctx: SignalContext, *, client_errors: bool = False) -> ServiceFigures:
    """The target's calls in the window, as gates count them (:func:`window_figures`)."""
    with ctx.registry.db.read() as session:
        return window_figures(
            session, _call_condition(ctx), ctx.window_start, ctx.now, client_errors=client_errors
        )


def measure_latency(ctx: SignalContext, signal: LatencySignal) -> Measurement:
    figures = _figures(ctx)
    if figures.p99_latency_ms is None:
        return Measurement(False, 0, None, "no calls in the window")
    value = figures.p99_latency_ms
    breached = value > signal.above_ms
    return Measurement(
        breached, figures.calls, value,
        f"p99 latency {value:.0f} ms over {figures.calls} calls "
        f"({'above' if breached else 'within'} {signal.above_ms:g} ms)",
        {"p99_latency_ms": value, "calls": float(figures.calls)},
    )  # fmt: skip


def measure_error_rate(ctx: SignalContext, signal: ErrorRateSignal) -> Measurement:
    figures = _figures(ctx, client_errors=signal.client_errors)
    if figures.calls == 0:
        return Measurement(False, 0, None, "no calls in the window")
    rate, errors, calls = figures.error_rate, figures.errors, figures.calls
    breached = rate > signal.above
    return Measurement(
        breached, calls, rate,
        f"error rate {rate:.3f} ({errors} of {calls} calls; "
        f"{'above' if breached else 'within'} {signal.above:g})",
        {"error_rate": rate, "errors": float(errors), "calls": float(calls)},
    )  # fmt: skip


# --- new data, schedule ----------------------------------------------------------------


def measure_data_volume(ctx: SignalContext, signal: DataVolumeSignal) -> Measurement:
    stmt = (
        select(DatasetVersion.version, DatasetVersion.num_rows)
        .join(Dataset, Dataset.id == DatasetVersion.dataset_id)
        .where(Dataset.name == signal.dataset, DatasetVersion.created_at > ctx.since_data)
        .order_by(DatasetVersion.version)
    )
    with ctx.registry.db.read() as session:
        if session.scalar(select(Dataset.id).where(Dataset.name == signal.dataset)) is None:
            raise SignalUnavailable(f"no dataset named {signal.dataset!r}", param="signal.dataset")
        versions = list(session.execute(stmt))
    rows = sum(n for _, n in versions)
    breached = rows >= signal.min_rows
    shown = ", ".join(f"@{v}" for v, _ in versions) or "none"
    return Measurement(
        breached, rows, float(rows),
        f"{rows} new rows of {signal.dataset} since {ctx.since_data:%Y-%m-%d %H:%M} UTC "
        f"(versions {shown}; {'at least' if breached else 'under'} {signal.min_rows})",
        {"new_rows": float(rows), "new_versions": float(len(versions))},
        {"dataset_versions": [v for v, _ in versions]},
        [LineageEdge("dataset", f"{signal.dataset}@{v}", "input") for v, _ in versions],
    )  # fmt: skip


def measure_schedule(ctx: SignalContext, signal: ScheduleSignal) -> Measurement:
    last = ctx.last_fired_at
    if last is None:
        return Measurement(True, 1, None, "never fired before")
    elapsed = ctx.now - last
    breached = elapsed >= signal.every
    return Measurement(
        breached, 1, elapsed.total_seconds(),
        f"{duration_text(elapsed) if elapsed.total_seconds() >= 1 else '0s'} since it last "
        f"fired ({'due' if breached else 'not due'}: every {duration_text(signal.every)})",
        {"since_last_fired_s": elapsed.total_seconds()},
    )  # fmt: skip


MEASURES: dict[str, Callable[[SignalContext, Any], Measurement]] = {
    "drift": measure_drift,
    "eval_metric": measure_eval_metric,
    "latency_p99": measure_latency,
    "error_rate": measure_error_rate,
    "data_volume": measure_data_volume,
    "schedule": measure_schedule,
}


def measure(ctx: SignalContext) -> Measurement:
    signal = ctx.policy.signal
    return MEASURES[signal.kind](ctx, signal)
