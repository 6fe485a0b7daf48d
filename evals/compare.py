"""Per-metric summaries of a run, and paired comparisons of a candidate with a baseline.

Examples are paired by key (see :func:`evals.records.example_keys`); only examples that
both runs scored enter a comparison. Epochs are averaged per example before anything is
resampled or tested.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lockgate.evals import stats
from lockgate.evals.records import ExampleResult, ExampleScore
from lockgate.evals.scorers import BaseScorer
from lockgate.evals.suite import StatsSpec


@dataclass
class MetricSummary:
    metric: str
    value: float
    n: int
    ci_low: float
    ci_high: float
    binary: bool
    higher_is_better: bool


@dataclass
class Flip:
    key: str
    index: int
    input: dict[str, Any]
    reference: Any
    baseline_output: Any
    candidate_output: Any
    direction: str  # "worse" | "better"


@dataclass
class MetricComparison:
    metric: str
    candidate: float
    baseline: float
    delta: float  # candidate - baseline on the paired examples
    ci_low: float
    ci_high: float
    p_value: float
    test: str  # mcnemar | wilcoxon | bootstrap
    n_paired: int
    binary: bool
    higher_is_better: bool
    scale: float | None
    observed_sd: float  # of per-example differences
    score_sd: float  # of per-example scores, both runs pooled
    worse: int = 0
    better: int = 0
    flips: list[Flip] = field(default_factory=list)

    @property
    def improvement(self) -> float:
        """The change with "better" positive, whichever way the metric points."""
        return self.delta if self.higher_is_better else -self.delta

    @property
    def improvement_ci(self) -> tuple[float, float]:
        if self.higher_is_better:
            return self.ci_low, self.ci_high
        return -self.ci_high, -self.ci_low


Grouped = dict[str, list[ExampleResult]]


def group_by_key(results: Sequence[ExampleResult]) -> Grouped:
    grouped: Grouped = defaultdict(list)
    for r in sorted(results, key=lambda r: (r.index, r.epoch)):
        grouped[r.key].append(r)
    return dict(grouped)


def _scores(group: list[ExampleResult], metric: str) -> list[ExampleScore]:
    return [r.scores[metric] for r in group if metric in r.scores]


def _mean_value(scores: list[ExampleScore]) -> float | None:
    values = [s.value for s in scores if s.value is not None]
    return float(np.mean(values)) if values else None


def _mean_stats(scores: list[ExampleScore]) -> list[float] | None:
    rows = [s.stats for s in scores if s.stats is not None]
    return list(np.mean(np.asarray(rows, dtype=float), axis=0)) if rows else None


def aggregate(scorer: BaseScorer, grouped: Grouped) -> float:
    return scorer.aggregate([s for g in grouped.values() for s in _scores(g, scorer.metric)])


def is_binary(scorer: BaseScorer, values: Sequence[float]) -> bool:
    return scorer.binary and all(v in (0.0, 1.0) for v in values)


def summarise(
    scorers: Sequence[BaseScorer], results: Sequence[ExampleResult], spec: StatsSpec
) -> dict[str, MetricSummary]:
    """Each metric's figure with a bootstrap 95% interval over examples."""
    grouped = group_by_key(results)
    out = {}
    for scorer in scorers:
        m = scorer.metric
        per_key = {k: _scores(g, m) for k, g in grouped.items()}
        per_key = {k: v for k, v in per_key.items() if v}
        value = scorer.aggregate([s for v in per_key.values() for s in v])
        keys = list(per_key)
        if scorer.aggregation == "mean":
            vals = [_mean_value(per_key[k]) for k in keys]
            arr = np.array([v for v in vals if v is not None])
            iv = stats.paired_bootstrap_mean(arr, np.zeros_like(arr), resamples=spec.resamples,
                                             seed=spec.seed)  # fmt: skip
            binary = is_binary(scorer, list(arr))
        else:

            def one(
                idx: Any, keys: list[str] = keys, per_key: Any = per_key, sc: Any = scorer
            ) -> float:
                return float(sc.aggregate([s for i in idx for s in per_key[keys[i]]]))

            iv = stats.paired_bootstrap_generic(len(keys), one, resamples=min(spec.resamples, 500),
                                                seed=spec.seed)  # fmt: skip
            binary = scorer.binary
        out[m] = MetricSummary(m, value, len(keys), iv.low, iv.high, binary,
                               scorer.higher_is_better)  # fmt: skip
    return out


def compare(
    scorers: Sequence[BaseScorer],
    candidate: Sequence[ExampleResult],
    baseline: Sequence[ExampleResult],
    spec: StatsSpec,
) -> dict[str, MetricComparison]:
    cand_g, base_g = group_by_key(candidate), group_by_key(baseline)
    return {s.metric: _compare_metric(s, cand_g, base_g, spec) for s in scorers}


def _compare_metric(
    scorer: BaseScorer, cand_g: Grouped, base_g: Grouped, spec: StatsSpec
) -> MetricComparison:
    m = scorer.metric
    keys = [k for k in cand_g if k in base_g and _scores(cand_g[k], m) and _scores(base_g[k], m)]
    c_scores = {k: _scores(cand_g[k], m) for k in keys}
    b_scores = {k: _scores(base_g[k], m) for k in keys}
    c_vals = [_mean_value(c_scores[k]) for k in keys]
    b_vals = [_mean_value(b_scores[k]) for k in keys]
    valued = [i for i, (c, b) in enumerate(zip(c_vals, b_vals, strict=True))
              if c is not None and b is not None]  # fmt: skip
    ca = np.array([c_vals[i] for i in valued], dtype=float)
    ba = np.array([b_vals[i] for i in valued], dtype=float)
    seed, res = spec.seed, spec.resamples
    if scorer.aggregation == "mean":
        iv = stats.paired_bootstrap_mean(ca, ba, resamples=res, seed=seed)
    elif scorer.aggregation == "stats":
        cs = np.array([_mean_stats(c_scores[k]) for k in keys], dtype=float)
        bs = np.array([_mean_stats(b_scores[k]) for k in keys], dtype=float)
        iv = stats.paired_bootstrap_stats(
            cs, bs, lambda t: scorer.from_stats(list(t)), resamples=res, seed=seed
        )
    else:

        def delta(idx: Any) -> float:
            return scorer.aggregate([s for i in idx for s in c_scores[keys[i]]]) - scorer.aggregate(
                [s for i in idx for s in b_scores[keys[i]]]
            )

        iv = stats.paired_bootstrap_generic(len(keys), delta, resamples=min(res, 1000), seed=seed)
    binary = is_binary(scorer, list(ca) + list(ba)) and len(ca) > 0
    worse = better = 0
    flips: list[Flip] = []
    if binary:
        p, worse, better = stats.mcnemar_exact(ca, ba)
        test = "mcnemar"
        flips = _flips([keys[i] for i in valued], ca, ba, cand_g, base_g)
    elif len(ca) > 0:
        p, test = stats.wilcoxon_signed_rank(ca, ba), "wilcoxon"
    else:
        p, test = stats.bootstrap_p_value(iv), "bootstrap"
    diffs = ca - ba
    pooled = np.concatenate([ca, ba])
    return MetricComparison(
        metric=m,
        candidate=aggregate(scorer, {k: cand_g[k] for k in keys}),
        baseline=aggregate(scorer, {k: base_g[k] for k in keys}),
        delta=iv.estimate, ci_low=iv.low, ci_high=iv.high, p_value=p, test=test,
        n_paired=len(keys), binary=binary, higher_is_better=scorer.higher_is_better,
        scale=scorer.scale,
        observed_sd=float(np.std(diffs, ddof=1)) if diffs.size > 1 else 0.0,
        score_sd=float(np.std(pooled, ddof=1)) if pooled.size > 1 else 0.0,
        worse=worse, better=better, flips=flips,
    )  # fmt: skip


def _flips(keys: list[str], ca: Any, ba: Any, cand_g: Grouped, base_g: Grouped) -> list[Flip]:
    out = []
    for key, c, b in zip(keys, ca, ba, strict=True):
        if (c >= 0.5) == (b >= 0.5):
            continue
        cr, br = cand_g[key][0], base_g[key][0]
        out.append(Flip(key, cr.index, cr.input, cr.reference, br.output, cr.output,
                        "better" if c > b else "worse"))  # fmt: skip
    return sorted(out, key=lambda f: (f.direction != "worse", f.index))


def nan_to_none(value: float) -> float | None:
    return None if value is None or math.isnan(value) else value
