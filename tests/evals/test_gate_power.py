"""The relative gate's error rates, by simulation (issue 12, "a gate an unchanged version can
pass"): the pass/fail/inconclusive reading of :mod:`evals.gates` on the same statistics the
runner computes (paired bootstrap interval, exact McNemar) for an upstream that answers
correctly 90% of the time and a fresh baseline each run."""

from __future__ import annotations

import numpy as np

from lockgate.evals import stats
from lockgate.evals.compare import MetricComparison
from lockgate.evals.gates import evaluate_gates, parse_gate
from lockgate.evals.suite import GateSpec, StatsSpec

GATE = GateSpec(**parse_gate("exact_match: no significant regression vs baseline"))
SPEC = StatsSpec(resamples=1000)


def _verdict(candidate: np.ndarray, baseline: np.ndarray) -> str:
    iv = stats.paired_bootstrap_mean(candidate, baseline, resamples=SPEC.resamples, seed=0)
    p, worse, better = stats.mcnemar_exact(candidate, baseline)
    diffs = candidate - baseline
    comparison = MetricComparison(
        metric="exact_match", candidate=float(candidate.mean()), baseline=float(baseline.mean()),
        delta=iv.estimate, ci_low=iv.low, ci_high=iv.high, p_value=p, test="mcnemar",
        n_paired=len(candidate), binary=True, higher_is_better=True, scale=1.0,
        observed_sd=float(np.std(diffs, ddof=1)),
        score_sd=float(np.std(np.concatenate([candidate, baseline]), ddof=1)),
        worse=worse, better=better,
    )  # fmt: skip
    (result,) = evaluate_gates([GATE], {}, {"exact_match": comparison}, SPEC)
    return result.verdict


def _rates(p_candidate: float, n: int, runs: int, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    seen = {"pass": 0, "fail": 0, "inconclusive": 0}
    for _ in range(runs):
        baseline = (rng.random(n) < 0.9).astype(float)
        candidate = (rng.random(n) < p_candidate).astype(float)
        seen[_verdict(candidate, baseline)] += 1
    return {k: v / runs for k, v in seen.items()}


def _slack(rate: float, runs: int) -> float:
    """Three binomial standard errors: the simulation's own noise."""
    return 3 * (rate * (1 - rate) / runs) ** 0.5


def test_a_true_drop_equal_to_the_bound_passes_at_most_alpha_over_2() -> None:
    runs = 400
    rates = _rates(0.9 - SPEC.min_effect, 300, runs, seed=1)  # a drop of exactly the bound
    assert rates["pass"] <= SPEC.alpha / 2 + _slack(SPEC.alpha / 2, runs)


def test_no_change_fails_at_most_alpha_and_passes_more_often_as_n_grows() -> None:
    runs = 200
    small, large = _rates(0.9, 300, runs, seed=2), _rates(0.9, 1200, runs, seed=3)
    for rates in (small, large):
        assert rates["fail"] <= SPEC.alpha + _slack(SPEC.alpha, runs)
    # at 300 examples about half the unchanged runs pass (the old rule passed none of them)
    assert 0.25 <= small["pass"] <= 0.75
    assert large["pass"] > 0.9 > small["pass"]


def test_a_real_drop_to_80_percent_never_passes() -> None:
    rates = _rates(0.8, 300, 100, seed=4)
    assert rates["pass"] == 0 and rates["fail"] >= 0.8


def test_fewer_than_min_examples_is_inconclusive_however_tight_the_interval() -> None:
    ones = np.ones(SPEC.min_examples - 1)
    assert _verdict(ones, ones) == "inconclusive"  # the interval is [0, 0]: not evidence
    ones = np.ones(SPEC.min_examples)
    assert _verdict(ones, ones) == "pass"
