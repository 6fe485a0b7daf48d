"""Statistics for comparing two runs on the same examples.

* **Paired bootstrap** (percentile interval, seeded): resample examples with replacement,
  the same indices for both runs, and take the difference of the metric on each resample.
  Epochs are averaged per example first, so the example is the unit of resampling.
* **McNemar's exact test** for binary scores: under no difference, each discordant pair
  (right in one run, wrong in the other) is equally likely to go either way, so the count
  going one way is Binomial(discordant, 1/2) (``scipy.stats.binomtest``).
* **Wilcoxon signed-rank** (``scipy.stats.wilcoxon``) for continuous scores.
* **Examples needed** (:func:`examples_needed`): a normal-approximation power calculation
  for a paired test, ``n = ((z[1-alpha/2] + z[power]) * sd / effect)^2``, where ``effect`` is
  the smallest drop worth detecting and ``sd`` the standard deviation of per-example
  differences. As two identical runs show no differences at all, ``sd`` is never taken
  below a planning value: ``sqrt(effect * (1 - effect))`` for binary scores (the spread
  when a share ``effect`` of examples flips from right to wrong), or the per-example
  standard deviation of the scores for continuous ones (differences of two runs
  correlated at 0.5 have that spread). For binary scores McNemar's exact test also needs
  at least ``k`` discordant pairs to reach ``alpha`` at all (``2 * 0.5^k < alpha``), so ``n``
  is at least ``k / effect``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from lockgate.registry._extras import require

Array = npt.NDArray[np.float64]


def resample_indices(n: int, resamples: int, seed: int) -> npt.NDArray[np.intp]:
    """``resamples`` rows of ``n`` example indices drawn with replacement."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=(resamples, n))


def percentile_interval(samples: Array, confidence: float = 0.95) -> tuple[float, float]:
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return math.nan, math.nan
    tail = (1 - confidence) / 2 * 100
    lo, hi = np.percentile(finite, [tail, 100 - tail]).tolist()
    return float(lo), float(hi)


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float
    samples: Array

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def paired_bootstrap_mean(
    candidate: Array, baseline: Array, *, resamples: int = 2000, seed: int = 0,
    confidence: float = 0.95,
) -> Interval:  # fmt: skip
    """Interval for ``mean(candidate) - mean(baseline)`` over paired examples."""
    diffs = np.asarray(candidate, dtype=float) - np.asarray(baseline, dtype=float)
    if diffs.size == 0:
        return Interval(math.nan, math.nan, math.nan, np.array([]))
    idx = resample_indices(diffs.size, resamples, seed)
    boot = diffs[idx].mean(axis=1)
    lo, hi = percentile_interval(boot, confidence)
    return Interval(float(diffs.mean()), lo, hi, boot)


def paired_bootstrap_stats(
    candidate: Array, baseline: Array, score: Callable[[Array], float], *,
    resamples: int = 2000, seed: int = 0, confidence: float = 0.95,
) -> Interval:  # fmt: skip
    """Interval for a corpus metric computed from summed sufficient statistics (BLEU)."""
    cand, base = np.asarray(candidate, dtype=float), np.asarray(baseline, dtype=float)
    n = cand.shape[0]
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, np.array([]))
    counts = np.zeros((resamples, n))
    idx = resample_indices(n, resamples, seed)
    np.add.at(counts, (np.arange(resamples)[:, None], idx), 1.0)
    cand_tot, base_tot = counts @ cand, counts @ base
    boot = np.array([score(c) - score(b) for c, b in zip(cand_tot, base_tot, strict=True)])
    lo, hi = percentile_interval(boot, confidence)
    estimate = score(cand.sum(axis=0)) - score(base.sum(axis=0))
    return Interval(float(estimate), lo, hi, boot)


def paired_bootstrap_generic(
    n: int, delta: Callable[[npt.NDArray[np.intp]], float], *, resamples: int = 1000,
    seed: int = 0, confidence: float = 0.95,
) -> Interval:  # fmt: skip
    """Interval for any paired difference ``delta(indices)`` (F1, ROC AUC, …)."""
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, np.array([]))
    idx = resample_indices(n, resamples, seed)
    boot = np.array([_safe(delta, row) for row in idx])
    lo, hi = percentile_interval(boot, confidence)
    return Interval(_safe(delta, np.arange(n)), lo, hi, boot)


def _safe(delta: Callable[[npt.NDArray[np.intp]], float], idx: npt.NDArray[np.intp]) -> float:
    try:
        return float(delta(idx))
    except ValueError:  # e.g. ROC AUC on a resample holding one class only
        return math.nan


def mcnemar_exact(candidate: Array, baseline: Array) -> tuple[float, int, int]:
    """Two-sided exact McNemar p-value for 0/1 scores; also (worse, better) counts."""
    binomtest = _scipy_stats().binomtest

    cand, base = np.asarray(candidate) >= 0.5, np.asarray(baseline) >= 0.5
    worse = int(np.sum(base & ~cand))
    better = int(np.sum(~base & cand))
    if worse + better == 0:
        return 1.0, worse, better
    return float(binomtest(better, worse + better, 0.5).pvalue), worse, better


def wilcoxon_signed_rank(candidate: Array, baseline: Array) -> float:
    """Two-sided Wilcoxon signed-rank p-value; 1.0 when every difference is zero."""
    wilcoxon = _scipy_stats().wilcoxon

    diffs = np.asarray(candidate, dtype=float) - np.asarray(baseline, dtype=float)
    diffs = diffs[np.isfinite(diffs)]
    if diffs.size == 0 or np.all(diffs == 0):
        return 1.0
    result: Any = wilcoxon(diffs, zero_method="wilcox")
    return float(result.pvalue)


def bootstrap_p_value(interval: Interval) -> float:
    """Two-sided p-value from the bootstrap distribution (how often it crosses zero)."""
    finite = interval.samples[np.isfinite(interval.samples)]
    if finite.size == 0:
        return math.nan
    side = float(np.mean(finite <= 0) if interval.estimate > 0 else np.mean(finite >= 0))
    return min(1.0, 2 * side)


def _scipy_stats() -> Any:
    return require("scipy.stats", feature="significance tests", extra="evals")


def _z(p: float) -> float:
    return float(_scipy_stats().norm.ppf(p))


def examples_needed(
    effect: float, *, binary: bool, observed_sd: float = 0.0, score_sd: float = 0.0,
    alpha: float = 0.05, power: float = 0.8,
) -> int:  # fmt: skip
    """Paired examples needed to detect a drop of ``effect`` (see the module docstring)."""
    if effect <= 0:
        raise ValueError("effect must be positive")
    planning = math.sqrt(effect * (1 - effect)) if binary and effect < 1 else score_sd
    sd = max(observed_sd, planning)
    if sd == 0:  # constant continuous scores: any change is visible at once
        sd = effect
    n = math.ceil(((_z(1 - alpha / 2) + _z(power)) * sd / effect) ** 2)
    if binary:
        k = math.ceil(math.log2(2 / alpha))
        n = max(n, math.ceil(k / effect))
    return max(n, 2)
