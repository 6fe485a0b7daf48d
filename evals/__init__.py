"""Measurement: suites, datasets, scorers, the eval runner, comparison, gates and reports.

Typical use::

    from evals import load_suite, run_suite, build_report, resolve_baseline

    suite = load_suite(Path("suite.yaml"))
    run = run_suite(suite, registry=registry)
    report = build_report(run, resolve_baseline("label:production", suite, registry))
    report.verdict  # "pass" | "fail" | "inconclusive"

Heavy modules (``datasets``, sacrebleu, scipy) load on first use, so importing ``evals``
stays cheap for the CLI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from evals.errors import (
    BaselineNotFound,
    ColumnMissing,
    EvalError,
    ResultsInvalid,
    ScorerInvalid,
    SuiteInvalid,
    TargetFailed,
    TargetUnreachable,
)
from registry._lazy import lazy_exports

if TYPE_CHECKING:
    from evals.baseline import Baseline, resolve_baseline
    from evals.compare import MetricComparison, MetricSummary
    from evals.gates import GateResult, evaluate_gates
    from evals.records import ExampleResult, ExampleScore
    from evals.report import EvalReport, build_report, merge_shards
    from evals.runner import EvalRun, RunOptions, Shard, run_suite, run_suite_async
    from evals.scorers import BaseScorer, Scorer, register
    from evals.suite import Suite, load_suite, parse_suite

_LAZY = {
    "Baseline": "evals.baseline",
    "resolve_baseline": "evals.baseline",
    "MetricComparison": "evals.compare",
    "MetricSummary": "evals.compare",
    "GateResult": "evals.gates",
    "evaluate_gates": "evals.gates",
    "ExampleResult": "evals.records",
    "ExampleScore": "evals.records",
    "EvalReport": "evals.report",
    "build_report": "evals.report",
    "merge_shards": "evals.report",
    "EvalRun": "evals.runner",
    "RunOptions": "evals.runner",
    "Shard": "evals.runner",
    "run_suite": "evals.runner",
    "run_suite_async": "evals.runner",
    "BaseScorer": "evals.scorers",
    "Scorer": "evals.scorers",
    "register": "evals.scorers",
    "Suite": "evals.suite",
    "load_suite": "evals.suite",
    "parse_suite": "evals.suite",
}


__getattr__ = lazy_exports(__name__, _LAZY)


__all__ = [
    "BaseScorer",
    "Baseline",
    "BaselineNotFound",
    "ColumnMissing",
    "EvalError",
    "EvalReport",
    "EvalRun",
    "ExampleResult",
    "ExampleScore",
    "GateResult",
    "MetricComparison",
    "MetricSummary",
    "ResultsInvalid",
    "RunOptions",
    "Scorer",
    "ScorerInvalid",
    "Shard",
    "Suite",
    "SuiteInvalid",
    "TargetFailed",
    "TargetUnreachable",
    "build_report",
    "evaluate_gates",
    "load_suite",
    "merge_shards",
    "parse_suite",
    "register",
    "resolve_baseline",
    "run_suite",
    "run_suite_async",
]
