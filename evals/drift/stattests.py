"""Drift tests: a registry keyed by name, each test with its default threshold and direction.

Every test compares a reference and a current column profile and returns a :class:`Score`.
The formulas are Evidently 0.7's (``evidently/legacy/calculations/stattests``), so that the
verdicts match; ``n`` is the reference's rows, ``m`` the current's, both after dropping
NaN/±inf.

``ks``         two-sample Kolmogorov-Smirnov, ``scipy.stats.ks_2samp`` (exact method up to
               10,000 rows, asymptotic beyond); drift when ``p <= threshold`` (0.05). Against a
               sketched reference: ``D = sup|F - G|`` over the sketch's CDF and the asymptotic
               p-value ``kstwo.sf(D, round(n m / (n + m)))``, as ks_2samp does for large samples.
``chisquare``  goodness of fit of the current counts to the reference's *proportions*:
               ``scipy.stats.chisquare(f_obs=c_k, f_exp=r_k * m / n)`` over the union of
               categories; drift when ``p < threshold`` (0.05). This is **not**
               ``chi2_contingency`` on the 2 x k table: per category the statistics are
               ``(n c_k - m r_k)^2 / (n m r_k)`` here and ``(n c_k - m r_k)^2 / (n m (r_k + c_k))``
               for the contingency table, so with no drift this one is about ``1 + m / n`` times
               larger on the same ``k - 1`` degrees of freedom: it treats the reference's
               proportions as known. With ``m`` near ``n`` it flags unshifted data far more often
               than ``threshold`` (for 3 categories and ``m = n``, about 22% at 0.05); it is
               calibrated only when the reference is much larger than the current data.
               A category absent from the reference gives an infinite statistic, ``p = 0``.
``chi2_homogeneity``  (lockgate's, not Evidently's) the calibrated test of the same
               hypothesis: ``scipy.stats.chi2_contingency`` of the 2 x k table, no continuity
               correction; drift when ``p < threshold`` (0.05).
``z``          two-proportion Z-test on "is not the first category in sorted order", pooled:
               ``z = (p1 - p2) / sqrt(P (1 - P) (1/n + 1/m))``, ``p = 2 (1 - Phi(|z|))``; ``p = 1``
               when both sides hold the same single value; drift when ``p < threshold`` (0.05).
``wasserstein`` ``W1(reference, current) / max(std(reference), 0.001)`` (population std);
               drift when ``>= threshold`` (0.1).
``jensenshannon`` ``scipy.spatial.distance.jensenshannon`` (natural log) of the binned shares
               (below); drift when ``>= threshold`` (0.1).
``psi``        ``sum((r - c) ln(r / c))`` of the binned shares with zeros filled (below);
               drift when ``>= threshold`` (0.1).
``kl_div``     ``scipy.stats.entropy(r, c)`` of the binned shares with zeros filled (below);
               drift when ``>= threshold`` (0.1).
``hellinger``  ``sqrt(1 - sum(sqrt(r c)))``: categorical over the union of categories; numeric
               over Sturges bins of the *distinct* values of both sides; drift when
               ``>= threshold`` (0.1).

*Binned shares* (Evidently's ``get_binned_data``): a numeric column whose reference has more
than 20 distinct values is cut into Sturges bins over all ``n + m`` values of both sides
(``np.histogram_bin_edges(concat, "sturges")``) and each side's counts divided by its rows;
any other column is counted per value over the union of both sides. *Filling zeros*: a zero
share becomes ``min(nonzero) / 10^6`` when that minimum is at most ``10^-4``, else ``10^-4``.

A new test is one :func:`register_test` call; text and embedding tests will register with
their own kinds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from lockgate.evals.drift import _views
from lockgate.evals.drift._frames import Kind
from lockgate.evals.drift.errors import UnknownDriftTest
from lockgate.evals.drift.profile import CategoricalProfile, ColumnProfile, NumericProfile
from lockgate.registry._extras import require

Floats = npt.NDArray[np.float64]
Direction = Literal["p_value_at_most", "p_value_below", "distance_at_least"]


@dataclass(frozen=True)
class Score:
    statistic: float
    p_value: float | None = None


@dataclass(frozen=True)
class DriftTest:
    """A named test, the column kinds it accepts, its default threshold and direction."""

    name: str
    display_name: str
    kinds: frozenset[Kind]
    default_threshold: float
    direction: Direction
    compute: Callable[[ColumnProfile, ColumnProfile], Score]

    def value(self, score: Score) -> float:
        """What is compared with the threshold: the p-value, or the distance."""
        if self.direction == "distance_at_least":
            return score.statistic
        return math.nan if score.p_value is None else score.p_value

    def drifted(self, score: Score, threshold: float) -> bool:
        value = self.value(score)
        if math.isnan(value):
            return False
        if self.direction == "p_value_at_most":
            return value <= threshold
        if self.direction == "p_value_below":
            return value < threshold
        return value >= threshold


_TESTS: dict[str, DriftTest] = {}


def register_test(test: DriftTest, *, replace: bool = False) -> DriftTest:
    """Add ``test`` to the registry under its name (``replace`` to override one)."""
    if test.name in _TESTS and not replace:
        raise ValueError(f"a drift test named {test.name!r} is already registered")
    _TESTS[test.name] = test
    return test


def get_test(name: str) -> DriftTest:
    try:
        return _TESTS[name]
    except KeyError:
        raise UnknownDriftTest(name, list(_TESTS)) from None


def test_names() -> list[str]:
    return sorted(_TESTS)


def _stats() -> Any:
    return require("scipy.stats", feature="drift tests", extra="evals")


def _numeric(profile: ColumnProfile) -> NumericProfile:
    assert isinstance(profile, NumericProfile)
    return profile


def _ks(reference: ColumnProfile, current: ColumnProfile) -> Score:
    ref, cur = _numeric(reference), _numeric(current)
    if ref.values is not None and cur.values is not None:
        result = _stats().ks_2samp(ref.values, cur.values)
        return Score(float(result.statistic), float(result.pvalue))
    d = _views.ks_statistic(ref, cur)
    en = ref.n * cur.n / (ref.n + cur.n)
    p = float(np.clip(_stats().kstwo.sf(d, np.round(en)), 0.0, 1.0))
    return Score(d, p)


def _chisquare(reference: ColumnProfile, current: ColumnProfile) -> Score:
    _, ref_counts, cur_counts = _views.aligned_counts(reference, current)
    expected = ref_counts * (current.n / reference.n)
    with np.errstate(divide="ignore", invalid="ignore"):
        result = _stats().chisquare(cur_counts.astype(np.float64), expected)
    return Score(float(result.statistic), float(result.pvalue))


def _chi2_homogeneity(reference: ColumnProfile, current: ColumnProfile) -> Score:
    _, ref_counts, cur_counts = _views.aligned_counts(reference, current)
    if ref_counts.size < 2:
        return Score(0.0, 1.0)
    table = np.vstack((ref_counts, cur_counts))
    result = _stats().chi2_contingency(table, correction=False)
    return Score(float(result.statistic), float(result.pvalue))


def _z(reference: ColumnProfile, current: ColumnProfile) -> Score:
    keys, ref_counts, cur_counts = _views.aligned_counts(reference, current)
    if len(keys) == 1:  # both sides hold the same single value
        return Score(0.0, 1.0)
    first = keys.index(_sorted_keys(keys)[0])
    n, m = reference.n, current.n
    p1 = float(n - ref_counts[first]) / n
    p2 = float(m - cur_counts[first]) / m
    pooled = float(p1 * n + p2 * m) / (n + m)
    z = (p1 - p2) / math.sqrt(pooled * (1 - pooled) * (1.0 / n + 1.0 / m))
    return Score(z, float(2 * (1 - _stats().norm.cdf(abs(z)))))


def _sorted_keys(keys: list[Any]) -> list[Any]:
    try:
        return sorted(keys)
    except TypeError:  # mixed types (Evidently fails here): order by type, then value
        return sorted(keys, key=lambda key: (type(key).__name__, repr(key)))


def _wasserstein(reference: ColumnProfile, current: ColumnProfile) -> Score:
    ref, cur = _numeric(reference), _numeric(current)
    norm = max(ref.std, 0.001)
    return Score(_views.wasserstein(ref, cur) / norm)


def binned_shares(
    reference: ColumnProfile, current: ColumnProfile, *, fill_zeros: bool
) -> tuple[Floats, Floats]:
    """Both sides' shares per bin or value (see the module docstring)."""
    ref_n_distinct = reference.n_distinct
    if isinstance(reference, NumericProfile) and (ref_n_distinct is None or ref_n_distinct > 20):
        cur = _numeric(current)
        edges = _views.sturges_edges(
            min(reference.minimum, cur.minimum),
            max(reference.maximum, cur.maximum),
            reference.n + cur.n,
            integer=reference.integer and cur.integer,
        )
        ref_counts, cur_counts = _views.histogram(reference, edges), _views.histogram(cur, edges)
    else:
        _, ref_counts, cur_counts = _views.aligned_counts(reference, current)
    ref_shares, cur_shares = ref_counts / reference.n, cur_counts / current.n
    if fill_zeros:
        _fill_zeros(ref_shares)
        _fill_zeros(cur_shares)
    return ref_shares, cur_shares


def _fill_zeros(shares: Floats) -> None:
    nonzero = shares[shares != 0]
    if nonzero.size == 0:
        return
    smallest = float(nonzero.min())
    np.place(shares, shares == 0, smallest / 10**6 if smallest <= 0.0001 else 0.0001)


def _jensenshannon(reference: ColumnProfile, current: ColumnProfile) -> Score:
    distance: Any = require("scipy.spatial.distance", feature="drift tests", extra="evals")
    ref, cur = binned_shares(reference, current, fill_zeros=False)
    return Score(float(distance.jensenshannon(ref, cur)))


def _psi(reference: ColumnProfile, current: ColumnProfile) -> Score:
    ref, cur = binned_shares(reference, current, fill_zeros=True)
    return Score(float(np.sum((ref - cur) * np.log(ref / cur))))


def _kl_div(reference: ColumnProfile, current: ColumnProfile) -> Score:
    ref, cur = binned_shares(reference, current, fill_zeros=True)
    return Score(float(_stats().entropy(ref, cur)))


def _hellinger(reference: ColumnProfile, current: ColumnProfile) -> Score:
    if isinstance(reference, CategoricalProfile):
        _, ref_counts, cur_counts = _views.aligned_counts(reference, current)
        overlap = float(np.sum(np.sqrt((ref_counts / reference.n) * (cur_counts / current.n))))
        return Score(math.sqrt(1 - float(np.clip(overlap, 0, 1))))
    ref, cur = _numeric(reference), _numeric(current)
    edges = _views.sturges_edges(
        min(ref.minimum, cur.minimum),
        max(ref.maximum, cur.maximum),
        _union_distinct_count(ref, cur),
        integer=ref.integer and cur.integer,
    )
    widths = np.diff(edges)
    h1 = _views.histogram(ref, edges) / (ref.n * widths)
    h2 = _views.histogram(cur, edges) / (cur.n * widths)
    bin_width = (edges.max() - edges.min()) / (edges.size - 1)
    overlap = float(np.sum(np.sqrt(h1 * h2) * bin_width))
    return Score(math.sqrt(1 - float(np.clip(overlap, 0, 1))))


def _union_distinct_count(ref: NumericProfile, cur: NumericProfile) -> int:
    """Distinct values of both sides; a sketched reference counts as all distinct and new."""
    if ref.values is not None and cur.values is not None:
        merged = np.concatenate((ref.values, cur.values))
        merged.sort(kind="stable")
        return int(np.count_nonzero(merged[1:] != merged[:-1])) + 1
    if ref.distinct is not None and cur.distinct is not None:
        return int(np.union1d(ref.distinct, cur.distinct).size)
    return ref.n + (cur.n_distinct or cur.n)


_NUM: frozenset[Kind] = frozenset({"numeric"})
_CAT: frozenset[Kind] = frozenset({"categorical"})
_BOTH: frozenset[Kind] = frozenset({"numeric", "categorical"})

for _test in (
    DriftTest("ks", "K-S p_value", _NUM, 0.05, "p_value_at_most", _ks),
    DriftTest("chisquare", "chi-square p_value", _CAT, 0.05, "p_value_below", _chisquare),
    DriftTest(
        "chi2_homogeneity",
        "chi-square homogeneity p_value",
        _CAT,
        0.05,
        "p_value_below",
        _chi2_homogeneity,
    ),
    DriftTest("z", "Z-test p_value", _CAT, 0.05, "p_value_below", _z),
    DriftTest(
        "wasserstein",
        "Wasserstein distance (normed)",
        _NUM,
        0.1,
        "distance_at_least",
        _wasserstein,
    ),
    DriftTest(
        "jensenshannon",
        "Jensen-Shannon distance",
        _BOTH,
        0.1,
        "distance_at_least",
        _jensenshannon,
    ),
    DriftTest("psi", "PSI", _BOTH, 0.1, "distance_at_least", _psi),
    DriftTest("kl_div", "Kullback-Leibler divergence", _BOTH, 0.1, "distance_at_least", _kl_div),
    DriftTest("hellinger", "Hellinger distance", _BOTH, 0.1, "distance_at_least", _hellinger),
):
    register_test(_test)
