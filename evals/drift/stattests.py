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

**Text and embedding tests** (formulas in ``text.py`` and ``embeddings.py``; each draws its
randomness from ``DriftOptions.seed``, 42 by default, as Evidently's ``random_state``):

``abs_text_content_drift``   ROC AUC of the TF-IDF domain classifier; drift when
               ``AUC > threshold`` (0.55).
``perc_text_content_drift``  the same AUC; drift when it exceeds the ``threshold``-th
               percentile (0.95) of 1,000 random-classifier AUCs (``ColumnDrift.cutoff``).
``abs_embedding_classifier`` / ``perc_embedding_classifier``  the same two rules for a linear
               classifier on the vectors (100 random classifiers for the percentile).
``mmd``        ``MMD²_u`` with an RBF kernel (median heuristic) and its permutation p-value;
               drift when ``p < threshold`` (0.05). :func:`mmd_variant` registers another
               number of permutations or rows.

A new test is one :func:`register_test` call.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from lockgate.evals.drift import _views
from lockgate.evals.drift import embeddings as _emb
from lockgate.evals.drift import text as _text
from lockgate.evals.drift._frames import Kind
from lockgate.evals.drift.errors import DriftInputInvalid, UnknownDriftTest
from lockgate.evals.drift.profile import CategoricalProfile, ColumnProfile, NumericProfile
from lockgate.registry._extras import require

Floats = npt.NDArray[np.float64]
Direction = Literal[
    "p_value_at_most", "p_value_below", "distance_at_least", "above", "above_null_percentile"
]
DEFAULT_SEED = 42  # Evidently's random_state for the domain classifiers


@dataclass(frozen=True)
class Score:
    """A test's outcome. ``null``: the statistic's draws under no drift, for tests whose
    threshold is a percentile of them; ``details``: JSON-ready figures for the report
    (``words_current``/``words_reference`` fill the ColumnDrift fields of those names)."""

    statistic: float
    p_value: float | None = None
    null: Floats | None = field(default=None, compare=False)
    details: Mapping[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class DriftTest:
    """A named test, the column kinds it accepts, its default threshold and direction."""

    name: str
    display_name: str
    kinds: frozenset[Kind]
    default_threshold: float
    direction: Direction
    compute: Callable[[ColumnProfile, ColumnProfile], Score]
    # tests that draw random numbers take the check's seed (DriftOptions.seed) through this
    randomized: Callable[[ColumnProfile, ColumnProfile, int], Score] | None = None

    def score(self, reference: ColumnProfile, current: ColumnProfile, *, seed: int) -> Score:
        if self.randomized is not None:
            return self.randomized(reference, current, seed)
        return self.compute(reference, current)

    def value(self, score: Score) -> float:
        """What is compared with the threshold: the p-value, or the distance (or AUC)."""
        if self.direction in ("distance_at_least", "above", "above_null_percentile"):
            return score.statistic
        return math.nan if score.p_value is None else score.p_value

    def cutoff(self, score: Score, threshold: float) -> float | None:
        """What the value is compared with when it is not the threshold itself: the
        ``threshold``-th percentile of ``score.null``."""
        if self.direction != "above_null_percentile" or score.null is None:
            return None
        return float(np.percentile(score.null, 100 * threshold))

    def drifted(self, score: Score, threshold: float) -> bool:
        value = self.value(score)
        if math.isnan(value):
            return False
        if self.direction == "p_value_at_most":
            return value <= threshold
        if self.direction == "p_value_below":
            return value < threshold
        if self.direction == "above":
            return value > threshold
        if self.direction == "above_null_percentile":
            cutoff = self.cutoff(score, threshold)
            return cutoff is not None and value > cutoff
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
    assert isinstance(reference, NumericProfile | CategoricalProfile)
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


def _texts(profile: ColumnProfile) -> tuple[str, ...]:
    assert isinstance(profile, _text.TextProfile)
    return profile.sample


def _vectors(reference: ColumnProfile, current: ColumnProfile) -> tuple[Floats, Floats]:
    assert isinstance(reference, _emb.EmbeddingProfile)
    assert isinstance(current, _emb.EmbeddingProfile)
    _emb.check_dims(reference, current)
    return reference.sample, current.sample


def _classifier_details(outcome: _text.ClassifierOutcome) -> dict[str, Any]:
    details: dict[str, Any] = {"rows_used": list(outcome.rows_used)}
    if outcome.words_current or outcome.words_reference:
        details["words_current"] = list(outcome.words_current)
        details["words_reference"] = list(outcome.words_reference)
    if outcome.note:
        details["note"] = outcome.note
    return details


def _text_drift(percentile: bool) -> Callable[[ColumnProfile, ColumnProfile, int], Score]:
    def run(reference: ColumnProfile, current: ColumnProfile, seed: int) -> Score:
        outcome = _text.text_classifier(_texts(reference), _texts(current), seed=seed)
        null = None
        if percentile:
            seeds = np.random.RandomState(seed).randint(
                0, _text.RANDOM_DRAWS * 10, size=_text.RANDOM_DRAWS
            )
            null = _text.random_aucs(outcome.y_test, seeds)
        return Score(outcome.auc, None, null, _classifier_details(outcome))

    return run


def _embedding_drift(percentile: bool) -> Callable[[ColumnProfile, ColumnProfile, int], Score]:
    def run(reference: ColumnProfile, current: ColumnProfile, seed: int) -> Score:
        ref, cur = _vectors(reference, current)
        outcome = _emb.embedding_classifier(ref, cur, seed=seed)
        null = None
        if percentile:
            null = _text.random_aucs(outcome.y_test, range(_emb.BOOTSTRAP_DRAWS))
        return Score(outcome.auc, None, null, _classifier_details(outcome))

    return run


def mmd_variant(
    name: str = "mmd",
    *,
    permutations: int = _emb.MMD_PERMUTATIONS,
    max_rows: int = _emb.MMD_MAX_ROWS,
    threshold: float = 0.05,
) -> DriftTest:
    """An MMD test with its own permutations and rows per side; ``register_test`` it under a
    new name (e.g. ``register_test(mmd_variant("mmd_quick", permutations=100))``)."""
    if permutations < 1 or max_rows < 2:
        raise DriftInputInvalid("an MMD test needs permutations >= 1 and max_rows >= 2")

    def run(reference: ColumnProfile, current: ColumnProfile, seed: int) -> Score:
        ref, cur = _vectors(reference, current)
        outcome = _emb.mmd_test(ref, cur, permutations=permutations, max_rows=max_rows, seed=seed)
        details = {
            "rows_used": list(outcome.rows_used),
            "permutations": outcome.permutations,
            "bandwidth": outcome.bandwidth,
        }
        return Score(outcome.mmd2, outcome.p_value, None, details)

    return DriftTest(
        name, "MMD p_value", _EMB, threshold, "p_value_below",
        lambda r, c: run(r, c, DEFAULT_SEED), run,
    )  # fmt: skip


def _seeded(
    name: str,
    display: str,
    kinds: frozenset[Kind],
    threshold: float,
    direction: Direction,
    run: Callable[[ColumnProfile, ColumnProfile, int], Score],
) -> DriftTest:
    return DriftTest(
        name, display, kinds, threshold, direction, lambda r, c: run(r, c, DEFAULT_SEED), run
    )


_NUM: frozenset[Kind] = frozenset({"numeric"})
_CAT: frozenset[Kind] = frozenset({"categorical"})
_BOTH: frozenset[Kind] = frozenset({"numeric", "categorical"})
_TEXT: frozenset[Kind] = frozenset({"text"})
_EMB: frozenset[Kind] = frozenset({"embedding"})

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
    _seeded("abs_text_content_drift", "Absolute text content drift", _TEXT, 0.55, "above",
            _text_drift(percentile=False)),
    _seeded("perc_text_content_drift", "Percentile text content drift", _TEXT, 0.95,
            "above_null_percentile", _text_drift(percentile=True)),
    _seeded("abs_embedding_classifier", "Embedding classifier ROC AUC", _EMB, 0.55, "above",
            _embedding_drift(percentile=False)),
    _seeded("perc_embedding_classifier", "Percentile embedding classifier", _EMB, 0.95,
            "above_null_percentile", _embedding_drift(percentile=True)),
    mmd_variant(),
):  # fmt: skip
    register_test(_test)
