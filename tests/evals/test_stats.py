"""The statistics: interval coverage by simulation, tests against scipy, power, verdicts."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from lockgate.evals import stats
from lockgate.evals.compare import MetricComparison, MetricSummary
from lockgate.evals.gates import evaluate_gates, exit_code, outcome, parse_gate
from lockgate.evals.suite import GateSpec, StatsSpec


def test_bootstrap_interval_covers_the_true_difference_at_the_nominal_rate() -> None:
    rng = np.random.default_rng(12345)
    sims, n, true_delta, covered = 200, 60, 0.2, 0
    for sim in range(sims):
        x = rng.normal(0, 1, n)
        cand = x + true_delta + rng.normal(0, 0.7, n)
        base = x + rng.normal(0, 0.7, n)
        iv = stats.paired_bootstrap_mean(cand, base, resamples=1000, seed=sim)
        covered += iv.low <= true_delta <= iv.high
    assert 0.90 <= covered / sims <= 0.99


def test_bootstrap_coverage_for_binary_scores() -> None:
    rng = np.random.default_rng(7)
    sims, n, covered = 200, 120, 0
    for sim in range(sims):
        base = (rng.random(n) < 0.7).astype(float)
        cand = (rng.random(n) < 0.8).astype(float)
        iv = stats.paired_bootstrap_mean(cand, base, resamples=1000, seed=sim)
        covered += iv.low <= 0.1 <= iv.high
    assert 0.90 <= covered / sims <= 0.99


def test_mcnemar_is_the_exact_binomial_test_on_discordant_pairs() -> None:
    base = np.array([1] * 10 + [0] * 3 + [1] * 20 + [0] * 5, dtype=float)
    cand = np.array([0] * 10 + [1] * 3 + [1] * 20 + [0] * 5, dtype=float)
    p, worse, better = stats.mcnemar_exact(cand, base)
    assert (worse, better) == (10, 3)
    assert p == pytest.approx(sps.binomtest(3, 13, 0.5).pvalue)
    assert stats.mcnemar_exact(base, base)[0] == 1.0


def test_wilcoxon_matches_scipy() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(0.5, 0.1, 40), rng.normal(0.45, 0.1, 40)
    assert stats.wilcoxon_signed_rank(a, b) == pytest.approx(sps.wilcoxon(a - b).pvalue)
    assert stats.wilcoxon_signed_rank(a, a) == 1.0


def test_stats_bootstrap_matches_corpus_score_of_sums() -> None:
    cand = np.array([[2.0, 3.0], [1.0, 1.0], [4.0, 5.0]])
    base = np.array([[1.0, 3.0], [1.0, 2.0], [2.0, 5.0]])
    iv = stats.paired_bootstrap_stats(cand, base, lambda t: float(t[0] / t[1]), resamples=200)
    assert iv.estimate == pytest.approx(7 / 9 - 4 / 10)


def test_examples_needed() -> None:
    # binary, drop of 0.05, identical runs: the planning spread sqrt(0.05 * 0.95) applies
    n = stats.examples_needed(0.05, binary=True)
    z = sps.norm.ppf(0.975) + sps.norm.ppf(0.8)
    assert n == int(np.ceil((z * np.sqrt(0.05 * 0.95) / 0.05) ** 2))
    assert stats.examples_needed(0.5, binary=True) >= 12  # McNemar needs 6 discordant pairs
    assert stats.examples_needed(0.1, binary=False, score_sd=0.2) == int(np.ceil((z * 2) ** 2))


def _comparison(**kw: object) -> MetricComparison:
    base = dict(
        metric="acc",
        candidate=0.8,
        baseline=0.8,
        delta=0.0,
        ci_low=0.0,
        ci_high=0.0,
        p_value=1.0,
        test="mcnemar",
        n_paired=500,
        binary=True,
        higher_is_better=True,
        scale=1.0,
        observed_sd=0.0,
        score_sd=0.4,
    )
    base.update(kw)
    return MetricComparison(**base)  # type: ignore[arg-type]


def test_relative_gate_verdicts() -> None:
    gate = GateSpec(**parse_gate("acc: no significant regression vs baseline"))
    spec = StatsSpec()
    summaries: dict[str, MetricSummary] = {}
    (ok,) = evaluate_gates([gate], summaries, {"acc": _comparison()}, spec)
    assert ok.verdict == "pass"
    (bad,) = evaluate_gates(
        [gate],
        summaries,
        {"acc": _comparison(candidate=0.6, delta=-0.2, ci_low=-0.25, ci_high=-0.15, p_value=1e-9)},
        spec,
    )
    assert bad.verdict == "fail" and "significant regression" in bad.reason
    (small,) = evaluate_gates([gate], summaries, {"acc": _comparison(n_paired=3)}, spec)
    assert small.verdict == "inconclusive"
    assert f"about {small.needed} are needed" in small.reason and small.needed > 100
    # lower-is-better metrics: an increase is the regression
    (lat,) = evaluate_gates(
        [GateSpec(metric="acc", max_drop=5.0)],
        summaries,
        {
            "acc": _comparison(
                higher_is_better=False,
                binary=False,
                candidate=200,
                baseline=100,
                delta=100,
                ci_low=90,
                ci_high=110,
                p_value=1e-6,
                scale=None,
                score_sd=10,
            )
        },
        spec,
    )
    assert lat.verdict == "fail"
    assert outcome([ok, small]) == "inconclusive" and exit_code("inconclusive", spec) == 1
    assert exit_code("inconclusive", StatsSpec(inconclusive="warn")) == 0


def test_absolute_gate_and_skipped_without_baseline() -> None:
    s = MetricSummary("acc", 0.92, 50, 0.85, 0.97, True, True)
    gates = [
        GateSpec(**parse_gate("acc >= 0.9")),
        GateSpec(**parse_gate("acc > 0.95")),
        GateSpec(**parse_gate("acc: max_drop 0.02")),
    ]
    verdicts = [g.verdict for g in evaluate_gates(gates, {"acc": s}, None)]
    assert verdicts == ["pass", "fail", "skipped"]
    tiny = MetricSummary("acc", 1.0, 3, 1.0, 1.0, True, True)
    (v,) = evaluate_gates(gates[:1], {"acc": tiny}, None)
    assert v.verdict == "inconclusive" and "at least 20" in v.reason
