"""What the tests read from two column profiles: aligned counts, histograms, distributions.

Each view is exact when both profiles hold their values (or counts), and reads the quantile
sketch otherwise (the error bounds are in ``sketch.py``).

* **Aligned counts** (:func:`aligned_counts`): the count of every value or category of the
  union of both sides, zero where one side lacks it (Evidently's ``value_counts`` over
  ``set(reference) | set(current)``). Numeric columns have counts while they have at most
  20 distinct values, or always when exact.
* **Histogram** (:func:`histogram`): counts per bin with ``np.histogram``'s rule (bins are
  half-open ``[e_i, e_i+1)``, the last one closed), read off the sorted values by
  ``searchsorted``, or off the sketch's cumulative weights.
* **Sturges edges** (:func:`sturges_edges`): ``np.histogram_bin_edges(x, bins="sturges")``
  depends on ``x`` only through its size, minimum, maximum and whether it holds integers, so
  it is computed from them with numpy's own arithmetic (bin width
  ``(max - min) / (log2(size) + 1)``, at least 1 for integers, then
  ``ceil((max - min) / width)`` bins; a span of zero widens to ``±0.5``).
* **Distribution** (:func:`distribution`): sorted values and cumulative weights, for the CDF
  ``F(x) = cumulative[searchsorted(values, x, "right")] / n`` with ``cumulative[0] = 0``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

from lockgate.evals.drift._frames import Category
from lockgate.evals.drift.errors import ProfileTooCoarse
from lockgate.evals.drift.profile import CategoricalProfile, ColumnProfile, NumericProfile

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
Key = Category


def counts_of(profile: ColumnProfile) -> dict[Key, int]:
    """Count per value (numeric) or category; raises when a sketch no longer has them."""
    if isinstance(profile, CategoricalProfile):
        return dict(profile.counts)
    if not isinstance(profile, NumericProfile):
        raise ProfileTooCoarse(f"a {profile.kind} column has no counts per value")
    if profile.distinct is not None and profile.distinct_counts is not None:
        return dict(zip(profile.distinct.tolist(), profile.distinct_counts.tolist(), strict=True))
    if profile.values is not None:
        keys, counts = np.unique(profile.values, return_counts=True)
        return dict(zip(keys.tolist(), counts.tolist(), strict=True))
    raise ProfileTooCoarse(
        "this test counts every value, but the reference profile of this numeric column is a "
        "sketch of more than 20 distinct values; build the profile with a larger exact_limit"
    )


def aligned_counts(
    reference: ColumnProfile, current: ColumnProfile
) -> tuple[list[Key], Ints, Ints]:
    """Keys of the union (reference's first) and both sides' counts over them."""
    ref, cur = counts_of(reference), counts_of(current)
    keys = list(ref) + [key for key in cur if key not in ref]
    ref_counts = np.array([ref.get(key, 0) for key in keys], dtype=np.int64)
    cur_counts = np.array([cur.get(key, 0) for key in keys], dtype=np.int64)
    return keys, ref_counts, cur_counts


def union_distinct(reference: ColumnProfile, current: ColumnProfile) -> int:
    """Distinct values of both sides together; capped at 21 when either side has over 20."""
    if isinstance(reference, CategoricalProfile) and isinstance(current, CategoricalProfile):
        return len(set(reference.counts) | set(current.counts))
    assert isinstance(reference, NumericProfile) and isinstance(current, NumericProfile)
    if reference.distinct is None or current.distinct is None:
        return 21
    return int(np.union1d(reference.distinct, current.distinct).size)


def sturges_edges(low: float, high: float, size: int, *, integer: bool = False) -> Floats:
    """``np.histogram_bin_edges(x, bins="sturges")`` for ``size`` values in [low, high];
    ``integer``: ``x`` has an integer type, for which numpy widens bins to at least 1."""
    first, last = float(low), float(high)
    if first == last:
        first, last = first - 0.5, last + 0.5
    span = float(high) - float(low)
    width = span / (np.log2(size) + 1.0)
    if width and integer and width < 1:
        width = 1.0
    bins = int(np.ceil((last - first) / width)) if width else 1
    return np.linspace(first, last, bins + 1, endpoint=True)


def histogram(profile: NumericProfile, edges: Floats) -> Ints:
    """Counts per bin by ``np.histogram``'s rule (see the module docstring)."""
    below = count_below(profile, edges[:-1], strict=True)
    through_last = count_below(profile, edges[-1:], strict=False)
    upper = np.concatenate((below[1:], through_last))
    return (upper - below).astype(np.int64)


def count_below(profile: NumericProfile, points: Floats, *, strict: bool) -> Ints:
    """Rows ``< point`` (``strict``) or ``<= point`` for each point."""
    side: Literal["left", "right"] = "left" if strict else "right"
    if profile.values is not None:
        return np.searchsorted(profile.values, points, side=side).astype(np.int64)
    values, cumulative = distribution(profile)
    return cumulative[np.searchsorted(values, points, side=side)].astype(np.int64)


def distribution(profile: NumericProfile) -> tuple[Floats, Ints]:
    """Sorted support and cumulative weights with a leading 0 (see the module docstring)."""
    if profile.values is not None:
        return profile.values, np.arange(profile.values.size + 1, dtype=np.int64)
    if profile.sketch is None:
        raise ProfileTooCoarse("this numeric column's profile holds neither values nor a sketch")
    weights = profile.sketch.weights
    return profile.sketch.values, np.concatenate(([0], np.cumsum(weights))).astype(np.int64)


def wasserstein(reference: NumericProfile, current: NumericProfile) -> float:
    """First Wasserstein distance between the two empirical distributions, from sorted sides.

    ``W1 = ∫|F - G| dx = ∫_0^1 |Q_a(u) - Q_b(u)| du`` (the quantile form, equal to the CDF form
    ``scipy.stats.wasserstein_distance`` sums). The quantile functions are steps at the
    cumulative weights; in integers, side A steps at ``C_a * W_b`` and side B at ``C_b * W_a``
    on a scale of ``W_a * W_b``. The merged steps ``g_k`` (a timsort merge of two sorted runs)
    cut ``(0, 1]`` into pieces on which both quantiles are constant:
    ``W1 = Σ |a[i_k] - b[j_k]| (g_k - g_k-1) / (W_a W_b)``, where ``i_k`` is the first step of
    A at or past ``g_k``; for unit weights that is ``ceil(g_k / W_b) - 1``, no search needed.
    """
    a, a_cum = distribution(reference)
    b, b_cum = distribution(current)
    total_a, total_b = int(a_cum[-1]), int(b_cum[-1])
    steps_a, steps_b = a_cum[1:] * total_b, b_cum[1:] * total_a
    grid = np.concatenate((steps_a, steps_b))
    grid.sort(kind="stable")
    i = _first_step_at(grid, steps_a, total_b, unit=reference.values is not None)
    j = _first_step_at(grid, steps_b, total_a, unit=current.values is not None)
    lengths = np.diff(grid, prepend=0)
    return float(np.dot(np.abs(a[i] - b[j]), lengths) / (total_a * total_b))


def _first_step_at(grid: Ints, steps: Ints, scale: int, *, unit: bool) -> Ints:
    if unit:  # steps are scale, 2 scale, 3 scale, ...
        return (grid + scale - 1) // scale - 1
    return np.searchsorted(steps, grid, side="left").astype(np.int64)


def ks_statistic(reference: NumericProfile, current: NumericProfile) -> float:
    """``sup |F - G|`` over the merged support (the two-sided Kolmogorov-Smirnov ``D``)."""
    a, a_cum = distribution(reference)
    b, b_cum = distribution(current)
    points = np.concatenate((a, b))
    f = a_cum[np.searchsorted(a, points, side="right")] / a_cum[-1]
    g = b_cum[np.searchsorted(b, points, side="right")] / b_cum[-1]
    return float(np.max(np.abs(f - g)))
