"""Measurement: suites, datasets, scorers, the eval runner, comparison, gates and reports.

Typical use::

    from lockgate.evals import load_suite, run_suite, build_report, resolve_baseline

    suite = load_suite(Path("suite.yaml"))
    run = run_suite(suite, registry=registry)
    report = build_report(run, resolve_baseline("label:production", suite, registry))
    report.verdict  # "pass" | "fail" | "inconclusive"

Heavy modules (``datasets``, sacrebleu, scipy) load on first use, so importing ``evals``
stays cheap for the CLI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lockgate.evals.errors import (
    BaselineNotFound,
    ColumnMissing,
    EvalError,
    ResultsInvalid,
    ScorerInvalid,
    SuiteInvalid,
    TargetFailed,
    TargetUnreachable,
)
from lockgate.registry._lazy import lazy_exports

if TYPE_CHECKING:
    from lockgate.evals.baseline import Baseline, resolve_baseline
    from lockgate.evals.compare import MetricComparison, MetricSummary
    from lockgate.evals.gates import GateResult, evaluate_gates
    from lockgate.evals.records import ExampleResult, ExampleScore
    from lockgate.evals.report import EvalReport, build_report, merge_shards
    from lockgate.evals.runner import EvalRun, RunOptions, Shard, run_suite, run_suite_async
    from lockgate.evals.scorers import BaseScorer, Scorer, register
    from lockgate.evals.suite import Suite, load_suite, parse_suite

_LAZY = {
    "Baseline": "lockgate.evals.baseline",
    "resolve_baseline": "lockgate.evals.baseline",
    "MetricComparison": "lockgate.evals.compare",
    "MetricSummary": "lockgate.evals.compare",
    "GateResult": "lockgate.evals.gates",
    "evaluate_gates": "lockgate.evals.gates",
    "ExampleResult": "lockgate.evals.records",
    "ExampleScore": "lockgate.evals.records",
    "EvalReport": "lockgate.evals.report",
    "build_report": "lockgate.evals.report",
    "merge_shards": "lockgate.evals.report",
    "EvalRun": "lockgate.evals.runner",
    "RunOptions": "lockgate.evals.runner",
    "Shard": "lockgate.evals.runner",
    "run_suite": "lockgate.evals.runner",
    "run_suite_async": "lockgate.evals.runner",
    "BaseScorer": "lockgate.evals.scorers",
    "Scorer": "lockgate.evals.scorers",
    "register": "lockgate.evals.scorers",
    "Suite": "lockgate.evals.suite",
    "load_suite": "lockgate.evals.suite",
    "parse_suite": "lockgate.evals.suite",
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
