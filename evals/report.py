"""The outcome of a run: summaries, comparison with the baseline, gate verdicts.

:func:`build_report` turns a finished :class:`EvalRun` (and an optional baseline) into an
:class:`EvalReport`; :func:`merge_shards` does the same for the JSON reports of shards.
The JSON form carries every example row, so it is also a baseline and a shard input.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lockgate.evals.baseline import Baseline
from lockgate.evals.compare import MetricComparison, MetricSummary, compare, summarise
from lockgate.evals.errors import ResultsInvalid
from lockgate.evals.gates import GateResult, Verdict, evaluate_gates, exit_code, judge
from lockgate.evals.records import ExampleResult, canonical_json
from lockgate.evals.scorers import BaseScorer, build_scorers
from lockgate.evals.suite import Suite

if TYPE_CHECKING:
    from lockgate.evals.runner import EvalRun
    from lockgate.registry.registry import Registry


@dataclass
class EvalReport:
    suite: str
    target: str
    dataset: str
    dataset_digest: str
    run_id: str | None
    baseline: str | None
    examples_count: int
    epochs: int
    verdict: Verdict
    exit_code: int
    summaries: dict[str, MetricSummary]
    comparisons: dict[str, MetricComparison] | None
    gates: list[GateResult]
    calls: int = 0
    cache_hits: int = 0
    resumed: int = 0
    errors: int = 0
    wall_s: float = 0.0
    shards: list[str] = field(default_factory=list)
    examples: list[ExampleResult] = field(default_factory=list)
    verdict_reason: str = ""
    suite_digest: str = ""
    baseline_run: str | None = None  # the registry run the baseline was read from

    def to_dict(self, *, with_examples: bool = True) -> dict[str, Any]:
        examples, self.examples = self.examples, []
        try:
            out: dict[str, Any] = _finite(asdict(self))
        finally:
            self.examples = examples
        del out["examples"]
        if with_examples:
            out["examples"] = [e.to_row() for e in self.examples]
        return out

    def write_json(self, path: Path) -> None:
        text = json.dumps(self.to_dict(), indent=1, ensure_ascii=False, default=str)
        path.write_text(text + "\n", encoding="utf-8")

    @property
    def exit_note(self) -> str:
        """Why a run that is not a pass exits 0 (empty otherwise)."""
        if self.verdict in ("skipped", "inconclusive") and self.exit_code == 0 and not self.shards:
            return (f"exit 0 because the suite sets stats.{self.verdict}: warn; a run that is "
                    "not a pass moves no label")  # fmt: skip
        return ""


def _finite(value: Any) -> Any:
    """NaN and infinities become None, so the JSON is standard."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


@dataclass
class Assessment:
    comparisons: dict[str, MetricComparison] | None
    gates: list[GateResult]
    verdict: Verdict
    reason: str
    exit_code: int


def assess(
    suite: Suite,
    scorers: list[BaseScorer],
    results: list[ExampleResult],
    summaries: dict[str, MetricSummary],
    baseline: Baseline | None,
) -> Assessment:
    scored = [r for r in results if r.scores]
    comparisons = None
    unset_label = baseline.unset_label if baseline is not None else None
    if baseline is not None and unset_label is None:
        comparisons = compare(scorers, scored, baseline.results, suite.stats)
    gates = evaluate_gates(
        suite.gates, summaries, comparisons, suite.stats, unset_label=unset_label
    )
    verdict, reason = judge(gates, errors=sum(1 for r in results if r.error))
    return Assessment(comparisons, gates, verdict, reason, exit_code(verdict, suite.stats))


def build_report(run: EvalRun, baseline: Baseline | None) -> EvalReport:
    suite = run.suite
    judged = assess(suite, run.scorers, run.results, run.summaries, baseline)
    comparisons, gates, verdict, code = (
        judged.comparisons,
        judged.gates,
        judged.verdict,
        judged.exit_code,
    )
    reason = judged.reason
    if run.shard:  # one shard cannot judge the suite: `lockgate eval merge` gates
        gates, verdict, code = [], "skipped", 0
        reason = "a shard does not gate: `lockgate eval merge` judges the merged run"
    return EvalReport(
        suite=suite.name, target=run.target, dataset=run.dataset_source,
        dataset_digest=run.dataset_digest, run_id=run.run_id,
        baseline=baseline.description if baseline else None,
        examples_count=len({r.key for r in run.results}), epochs=suite.epochs, verdict=verdict,
        exit_code=code, summaries=run.summaries, comparisons=comparisons, gates=gates,
        calls=run.calls, cache_hits=run.cache_hits, resumed=run.resumed, errors=run.errors,
        wall_s=run.wall_s, shards=[run.shard] if run.shard else [], examples=run.results,
        verdict_reason=reason, suite_digest=run.suite_digest,
        baseline_run=baseline.registry_run if baseline else None,
    )  # fmt: skip


def merge_shards(
    suite: Suite, paths: list[Path], baseline: Baseline | None, registry: Registry | None
) -> EvalReport:
    """One report from the JSON reports of ``--shard i/n`` runs of the same suite."""
    docs = []
    for path in paths:
        try:
            docs.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            raise ResultsInvalid(f"cannot read shard report {path}: {exc}") from exc
    for path, doc in zip(paths, docs, strict=True):
        if doc.get("suite") != suite.name or "examples" not in doc:
            raise ResultsInvalid(f"{path} is not a JSON report of suite {suite.name!r}")
    targets = {d.get("target") for d in docs}
    digests = {d.get("dataset_digest") for d in docs}
    if len(targets) > 1 or len(digests) > 1:
        raise ResultsInvalid(
            "the shards ran different targets or datasets: "
            f"{sorted(map(str, targets))} / {sorted(map(str, digests))}"
        )
    suite_digest = suite.digest(str(docs[0].get("dataset_digest")))
    for path, doc in zip(paths, docs, strict=True):
        if doc.get("suite_digest") != suite_digest:
            raise ResultsInvalid(
                f"{path} is a shard of other suite content than {suite.name!r} now "
                f"({str(doc.get('suite_digest') or 'none recorded')[:19]}, the suite file "
                f"gives {suite_digest[:19]}): merge the shards with the suite they ran"
            )
    results: dict[tuple[int, int], ExampleResult] = {}
    for doc in docs:
        for row in doc["examples"]:
            r = ExampleResult.from_row(row)
            results[(r.index, r.epoch)] = r
    merged = [results[k] for k in sorted(results)]
    scorers = build_scorers(suite.scorers, suite.reference)
    summaries = summarise(scorers, [r for r in merged if r.scores], suite.stats)
    judged = assess(suite, scorers, merged, summaries, baseline)
    shards = [s for d in docs for s in d.get("shards") or []]
    run_id = None
    if registry is not None:
        run_id = _record_merge(registry, suite, suite_digest, docs, merged, summaries)
    return EvalReport(
        suite=suite.name, target=str(docs[0].get("target")), dataset=str(docs[0].get("dataset")),
        dataset_digest=str(docs[0].get("dataset_digest")), run_id=run_id,
        baseline=baseline.description if baseline else None,
        examples_count=len({r.key for r in merged}), epochs=suite.epochs,
        verdict=judged.verdict, exit_code=judged.exit_code, summaries=summaries,
        comparisons=judged.comparisons, gates=judged.gates,
        calls=sum(int(d.get("calls") or 0) for d in docs),
        cache_hits=sum(int(d.get("cache_hits") or 0) for d in docs),
        resumed=sum(int(d.get("resumed") or 0) for d in docs),
        errors=sum(1 for r in merged if r.error), wall_s=max(d.get("wall_s") or 0 for d in docs),
        shards=shards, examples=merged, verdict_reason=judged.reason, suite_digest=suite_digest,
        baseline_run=baseline.registry_run if baseline else None,
    )  # fmt: skip


def _record_merge(
    registry: Registry, suite: Suite, suite_digest: str, docs: list[dict[str, Any]],
    merged: list[ExampleResult], summaries: dict[str, MetricSummary],
) -> str:  # fmt: skip
    import tempfile

    from lockgate.registry.records import LineageEdge

    shard_runs = [d["run_id"] for d in docs if d.get("run_id")]
    lineage = [LineageEdge("run", r, "input") for r in shard_runs]
    if shard_runs:
        lineage += [e for e in registry.runs.get(shard_runs[0]).lineage if e.subject_type != "run"]
    run = registry.runs.create(
        "eval", name=suite.name, lineage=lineage, tags={"target": docs[0].get("target")},
        params={"suite": suite.name, "suite_digest": suite_digest,
                "target": docs[0].get("target"), "dataset": docs[0].get("dataset"),
                "dataset_digest": docs[0].get("dataset_digest"), "epochs": suite.epochs,
                "merged_from": shard_runs},
    )  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="lockgate-merge-") as tmp:
        path = Path(tmp) / "examples.jsonl"
        path.write_text("".join(canonical_json(r.to_row()) + "\n" for r in merged), "utf-8")
        registry.runs.log_artifact(run.id, "examples.jsonl", path)
    metrics = {m: s.value for m, s in summaries.items() if math.isfinite(s.value)}
    metrics["eval.examples"] = float(len({r.key for r in merged}))
    metrics["eval.errors"] = float(sum(1 for r in merged if r.error))
    registry.runs.set_status(run.id, "succeeded", metrics=metrics)
    return run.id


REPORT_JSON, REPORT_HTML = "report.json", "report.html"


def record_report(registry: Registry, report: EvalReport) -> dict[str, str]:
    """Keep the report on the registry run as two content-addressed artifacts:
    :data:`REPORT_JSON` (:meth:`EvalReport.to_dict` without the example rows, which are the
    run's ``examples.jsonl``: summaries, the paired comparisons with the baseline with their
    intervals, p-values and flipped examples, the gates) and :data:`REPORT_HTML`
    (:func:`evals.formats.html_page`). The UI's evidence page reads the comparisons from the
    first rather than computing them again, and links the second. Returns name → digest
    (nothing without a registry run)."""
    if report.run_id is None:
        return {}
    import tempfile

    from lockgate.evals.formats import html_page

    doc = json.dumps(report.to_dict(with_examples=False), indent=1, ensure_ascii=False,
                     sort_keys=True, default=str)  # fmt: skip
    stored = {}
    with tempfile.TemporaryDirectory(prefix="lockgate-report-") as tmp:
        for name, text in ((REPORT_JSON, doc + "\n"), (REPORT_HTML, html_page(report))):
            path = Path(tmp) / name
            path.write_text(text, encoding="utf-8")
            stored[name] = registry.runs.log_artifact(report.run_id, name, path)
    return stored


def record_verdict(registry: Registry, report: EvalReport) -> None:
    """Keep the verdict on the registry run, where the label gate reads it, and the report
    as the run's artifacts (:func:`record_report`)."""
    if report.run_id is None:
        return
    registry.runs.tag(
        report.run_id,
        {
            "suite": report.suite,
            "suite_digest": report.suite_digest,
            "verdict": report.verdict,
            "verdict_reason": report.verdict_reason,
            "baseline": report.baseline,
            "baseline_run": report.baseline_run,
            "gates": [
                {
                    "gate": g.gate,
                    "kind": g.kind,
                    "verdict": g.verdict,
                    "reason": g.reason,
                    "waived": g.waived,
                }
                for g in report.gates
            ],
        },
    )
    record_report(registry, report)


def record_output_errors(registry: Registry, report: EvalReport, errors: list[str]) -> None:
    """Keep on the registry run the reports that could not be written."""
    if report.run_id is not None and errors:
        registry.runs.tag(report.run_id, {"output_errors": errors})
