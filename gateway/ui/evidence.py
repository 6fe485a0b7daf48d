"""Evidence per prompt version: its eval runs and its live traffic.

- **Eval runs** whose lineage names ``NAME@V`` as input (newest first, at most
  :data:`RUNS_SHOWN`): metrics, verdict and each gate with its reason. The paired deltas
  against the baseline come from the run's ``report.json`` artifact when it has one (the eval
  report's ``comparisons``: delta, 95% interval, p-value, test, n, flips); otherwise they are
  computed from the ``examples.jsonl`` artifacts of the run and of its ``baseline_run``
  (paired by example key: the mean difference, a paired bootstrap interval
  (:func:`evals.stats.paired_bootstrap_mean`) and McNemar's exact test for 0/1 scores,
  Wilcoxon's signed-rank test otherwise, as :mod:`evals.compare` does for mean metrics), with
  the examples whose 0/1 score flipped. An HTML artifact (the report) opens at
  ``/ui/run-artifact/RUN/NAME``, sandboxed, as ``/api/v1/runs/RUN/artifacts/NAME`` serves it
  to keys.
- **Live traffic** from call records of ``NAME`` version V over the last
  :data:`TRAFFIC_DAYS` days (at most :data:`TRAFFIC_ROWS` calls, newest): calls, p50/p99
  latency, error rate, tokens and cost per time bucket, drawn with
  :func:`gateway.ui.charts.line_chart` (inline SVG) with the figures as a table too.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter
from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import Response

from lockgate.gateway.api.rest.drift import REPORT_HEADERS
from lockgate.gateway.state import GatewayState
from lockgate.gateway.ui.charts import Series, line_chart
from lockgate.gateway.ui.labels import check_rows
from lockgate.gateway.ui.queries import prompt_versions
from lockgate.gateway.ui.routes import PREFIX, UIDep, UIError
from lockgate.registry.errors import LockgateError, NotFound
from lockgate.registry.records import GateCheck, SubjectType
from lockgate.registry.registry import Registry
from lockgate.registry.tables import CallRecord, Run, RunLineage

router = APIRouter(prefix=PREFIX, include_in_schema=False)
RUNS_SHOWN = 20
FLIPS_SHOWN = 20
TRAFFIC_DAYS = 7
TRAFFIC_ROWS = 50_000
BUCKETS = 24
MAX_ARTIFACT_BYTES = 20 * 1024 * 1024


@dataclass
class Delta:
    metric: str
    baseline: float | None
    candidate: float | None
    delta: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    test: str
    n: int


@dataclass
class Flip:
    key: str
    metric: str
    direction: str  # worse | better
    baseline: Any
    candidate: Any


@dataclass
class EvalEvidence:
    id: str
    name: str
    created_at: datetime
    verdict: str
    verdict_reason: str
    metrics: dict[str, Any]
    gates: list[dict[str, Any]]
    baseline: str | None
    baseline_run: str | None
    deltas: list[Delta] = field(default_factory=list)
    deltas_from: str = ""
    flips: list[Flip] = field(default_factory=list)
    artifacts: dict[str, str] = field(default_factory=dict)
    note: str = ""


def _state(request: Request) -> GatewayState:
    state: GatewayState = request.app.state.gateway
    return state


def _finite(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and math.isfinite(x) else None


def _rows(registry: Registry, digest: str) -> dict[str, dict[str, list[float]]]:
    """key → metric → score values (every epoch) of an ``examples.jsonl`` artifact."""
    out: dict[str, dict[str, list[float]]] = {}
    for line in registry.artifacts.read_bytes(digest).decode("utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        if row.get("error"):
            continue
        for metric, score in (row.get("scores") or {}).items():
            value = _finite(score.get("value") if isinstance(score, dict) else score)
            if value is not None:
                out.setdefault(str(row.get("key")), {}).setdefault(metric, []).append(value)
    return out


def _paired(registry: Registry, run: Run, base: Run) -> tuple[list[Delta], list[Flip]]:
    import numpy as np

    from lockgate.evals import stats

    cand = _rows(registry, run_artifacts(registry, run.id)["examples.jsonl"])
    basis = _rows(registry, run_artifacts(registry, base.id)["examples.jsonl"])
    metrics = sorted({m for v in cand.values() for m in v} & {m for v in basis.values() for m in v})
    deltas: list[Delta] = []
    flips: list[Flip] = []
    for metric in metrics:
        keys = sorted(k for k in cand if metric in cand[k] and metric in basis.get(k, {}))
        c = np.array([np.mean(cand[k][metric]) for k in keys], dtype=float)
        b = np.array([np.mean(basis[k][metric]) for k in keys], dtype=float)
        if not len(keys):
            continue
        interval = stats.paired_bootstrap_mean(c, b, resamples=1000, seed=0)
        binary = bool(np.isin(np.concatenate([c, b]), (0.0, 1.0)).all())
        try:
            if binary:
                p_value, _, _ = stats.mcnemar_exact(c, b)
                test = "mcnemar"
            else:
                p_value, test = stats.wilcoxon_signed_rank(c, b), "wilcoxon"
        except LockgateError:  # scipy is not installed: the interval still shows
            p_value, test = math.nan, "none (scipy missing)"
        deltas.append(Delta(metric, float(b.mean()), float(c.mean()), interval.estimate,
                            _finite(interval.low), _finite(interval.high), _finite(p_value),
                            test, len(keys)))  # fmt: skip
        if binary:
            for k, cv, bv in zip(keys, c, b, strict=True):
                if cv != bv and len(flips) < FLIPS_SHOWN:
                    flips.append(
                        Flip(k, metric, "better" if cv > bv else "worse", float(bv), float(cv))
                    )
    return deltas, flips


def run_artifacts(registry: Registry, run_id: str) -> dict[str, str]:
    return registry.runs.artifacts(run_id)


def _dicts(value: Any) -> list[tuple[str, dict[str, Any]]]:
    """The ``name → object`` entries of a mapping read from a stored report; anything else
    (a list, a number, entries that are not objects) reads as nothing."""
    if not isinstance(value, dict):
        return []
    return [(str(k)[:200], v) for k, v in sorted(value.items()) if isinstance(v, dict)]


def _short(value: Any, limit: int = 300) -> str:
    """A model output as one short line of text."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _from_report(registry: Registry, digest: str) -> tuple[list[Delta], list[Flip]]:
    """The paired comparisons of a run's ``report.json`` (:func:`evals.report.record_report`).
    The file is data anyone with ``registry:write`` could have attached: it must be a JSON
    object of at most :data:`MAX_ARTIFACT_BYTES`; fields of the wrong type read as absent."""
    data = registry.artifacts.read_bytes(digest)
    if len(data) > MAX_ARTIFACT_BYTES:
        raise ValueError(f"report.json has {len(data):,} bytes, more than can be shown")
    report = json.loads(data)
    if not isinstance(report, dict):
        raise ValueError("report.json is not a JSON object")
    deltas, flips = [], []
    for metric, c in _dicts(report.get("comparisons")):
        deltas.append(Delta(
            metric, _finite(c.get("baseline")), _finite(c.get("candidate")),
            _finite(c.get("delta")), _finite(c.get("ci_low")), _finite(c.get("ci_high")),
            _finite(c.get("p_value")), str(c.get("test") or "")[:40], _count(c.get("n_paired")),
        ))  # fmt: skip
        listed = c.get("flips")
        shown = [f for f in listed if isinstance(f, dict)] if isinstance(listed, list) else []
        for f in shown[:FLIPS_SHOWN]:
            direction = "better" if f.get("direction") == "better" else "worse"
            flips.append(Flip(str(f.get("key"))[:200], metric, direction,
                              _short(f.get("baseline_output")),
                              _short(f.get("candidate_output"))))  # fmt: skip
    return deltas, flips


def eval_evidence(
    registry: Registry, name: str, version: int, subject: SubjectType = "prompt"
) -> list[EvalEvidence]:
    """The eval runs of ``name@version`` (a prompt's or a model's), newest first."""
    ref = f"{name}@{version}"
    with registry.db.read() as session:
        runs = session.scalars(
            select(Run)
            .join(RunLineage, RunLineage.run_id == Run.id)
            .where(Run.kind == "eval", RunLineage.subject_type == subject,
                   RunLineage.subject_ref == ref, RunLineage.role == "input")
            .order_by(Run.created_at.desc(), Run.id.desc())
            .limit(RUNS_SHOWN)
        ).all()  # fmt: skip
        bases = {
            r.tags.get("baseline_run"): session.get(Run, r.tags["baseline_run"])
            for r in runs if isinstance(r.tags.get("baseline_run"), str)
        }  # fmt: skip
        session.expunge_all()
    out = []
    for run in runs:
        tags = run.tags or {}
        item = EvalEvidence(
            run.id, run.name, run.created_at, str(tags.get("verdict") or run.status),
            str(tags.get("verdict_reason") or ""),
            {k: v for k, v in sorted((run.metrics or {}).items()) if _finite(v) is not None},
            [g for g in tags.get("gates") or [] if isinstance(g, dict)],
            tags.get("baseline"), tags.get("baseline_run"),
            artifacts=run_artifacts(registry, run.id),
        )  # fmt: skip
        base = bases.get(item.baseline_run)
        try:
            if "report.json" in item.artifacts:
                item.deltas, item.flips = _from_report(registry, item.artifacts["report.json"])
                item.deltas_from = "the run's report.json"
            elif (
                base is not None
                and "examples.jsonl" in item.artifacts
                and "examples.jsonl" in run_artifacts(registry, base.id)
            ):
                item.deltas, item.flips = _paired(registry, run, base)
                item.deltas_from = f"the examples of this run and of run {base.id}"
        except (LockgateError, ValueError, KeyError, TypeError, RecursionError) as exc:
            item.note = f"the paired comparison could not be read: {exc}"
        out.append(item)
    return out


@dataclass
class Bucket:
    start: datetime
    calls: int
    errors: int
    p50: float | None
    p99: float | None
    tokens: int
    cost: float


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def traffic(registry: Registry, name: str, version: int, now: datetime) -> dict[str, Any]:
    since = now - timedelta(days=TRAFFIC_DAYS)
    with registry.db.read() as session:
        rows = session.execute(
            select(CallRecord.created_at, CallRecord.status_code, CallRecord.latency_ms,
                   CallRecord.input_tokens, CallRecord.output_tokens, CallRecord.cost_usd)
            .where(CallRecord.prompt_name == name, CallRecord.prompt_version == version,
                   CallRecord.created_at >= since)
            .order_by(CallRecord.created_at.desc())
            .limit(TRAFFIC_ROWS)
        ).all()  # fmt: skip
    if not rows:
        return {"total": None, "buckets": [], "charts": []}
    times = [r[0].replace(tzinfo=UTC) if r[0].tzinfo is None else r[0] for r in rows]
    first, last = min(times), max(times)
    width = max((last - first).total_seconds() / BUCKETS, 60.0)
    grouped: dict[int, list[Any]] = {}
    for when, row in zip(times, rows, strict=True):
        grouped.setdefault(int((when - first).total_seconds() // width), []).append(row)

    def bucket(start: datetime, group: list[Any]) -> Bucket:
        latencies = [float(r[2]) for r in group if r[2] is not None]
        return Bucket(
            start, len(group), sum(1 for r in group if r[1] >= 400),
            _quantile(latencies, 0.5), _quantile(latencies, 0.99),
            sum((r[3] or 0) + (r[4] or 0) for r in group), sum(r[5] or 0.0 for r in group),
        )  # fmt: skip

    buckets = [bucket(first + timedelta(seconds=i * width), grouped[i]) for i in sorted(grouped)]
    total = bucket(first, list(rows))
    hours = [(b.start - first).total_seconds() / 3600 for b in buckets]

    def chart(title: str, y: str, ident: str, *series: tuple[str, list[float | None]]) -> Any:
        drawn = [Series(label, [(x, v) for x, v in zip(hours, values, strict=True)
                                if v is not None]) for label, values in series]  # fmt: skip
        return line_chart(drawn, title=title, x_label=f"hours since {first:%Y-%m-%d %H:%M} UTC",
                          y_label=y, chart_id=ident, height=260)  # fmt: skip

    charts = [
        chart("Calls per bucket", "calls", "chart-calls", ("calls", [b.calls for b in buckets])),
        chart(
            "Latency",
            "ms",
            "chart-latency",
            ("p50", [b.p50 for b in buckets]),
            ("p99", [b.p99 for b in buckets]),
        ),
        chart(
            "Error rate",
            "share of calls",
            "chart-errors",
            ("error rate", [b.errors / b.calls for b in buckets]),
        ),
        chart("Tokens", "tokens", "chart-tokens", ("tokens", [b.tokens for b in buckets])),
        chart("Cost", "USD", "chart-cost", ("cost", [b.cost for b in buckets])),
    ]
    capped = len(rows) == TRAFFIC_ROWS
    return {"total": total, "buckets": buckets, "charts": charts, "capped": capped}


def _evidence(state: GatewayState, name: str, version: int, now: datetime) -> dict[str, Any]:
    registry = state.registry
    versions = prompt_versions(registry, name)
    numbers = [v.version for v in versions]
    if version not in numbers:
        raise NotFound(f"prompt {name!r} has no version {version}")
    chosen = versions[numbers.index(version)]
    return {
        "name": name, "version": version, "chosen": chosen, "versions": list(reversed(versions)),
        "runs": eval_evidence(registry, name, version),
        "traffic": traffic(registry, name, version, now), "days": TRAFFIC_DAYS,
    }  # fmt: skip


def gate_rows(gates: list[dict[str, Any]]) -> list[Any]:
    return check_rows([GateCheck(str(g.get("gate")), str(g.get("verdict")),
                                 str(g.get("reason") or "")) for g in gates])  # fmt: skip


@router.get("/prompt-evidence/{name:path}")
async def evidence(request: Request, name: str, ui: UIDep) -> Response:
    viewer = await ui.viewer(request)
    raw = request.query_params.get("version", "")
    version = int(raw) if raw.isdigit() and len(raw) <= 10 else 0
    if version < 1:
        raise UIError(400, "Bad version", "Give the version: ?version=N.")
    now = datetime.fromtimestamp(ui.clock.time(), UTC)
    data = await ui.call(_evidence, _state(request), name, version, now)
    return ui.page(request, "evidence.html", viewer=viewer, gate_rows=gate_rows, **data)


@router.get("/run-artifact/{run_id}/{artifact:path}")
async def artifact(request: Request, run_id: str, artifact: str, ui: UIDep) -> Response:
    """A run's file artifact: an HTML report opens sandboxed (no script, no same-origin
    access), anything else downloads."""
    await ui.viewer(request)
    registry = _state(request).registry
    digest, kind = await ui.call(registry.runs.artifact, run_id[:64], artifact[:300])
    if kind == "dir":
        raise UIError(400, "A folder", f"artifact {artifact!r} is a folder: fetch it in Python")
    body = await ui.call(registry.artifacts.read_bytes, digest)  # hash-verified
    if len(body) > MAX_ARTIFACT_BYTES:
        raise UIError(413, "Too large", "This artifact is too large to open here.")
    if artifact.endswith((".html", ".htm")):
        return Response(body, media_type="text/html; charset=utf-8", headers=REPORT_HEADERS)
    safe = "".join(ch for ch in artifact.rsplit("/", 1)[-1] if ch.isalnum() or ch in "._-")
    headers = {**REPORT_HEADERS, "content-disposition": f'attachment; filename="{safe or "file"}"'}
    return Response(body, media_type="application/octet-stream", headers=headers)
