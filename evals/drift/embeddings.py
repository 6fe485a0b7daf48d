"""Embedding columns: a bounded sample of vectors in the profile, a domain classifier, MMD.

An **embedding column** holds one vector per row: a list, tuple or numpy array of numbers
(pandas object cells, a pyarrow list column, or a 2-D numpy array in a mapping). Every present
vector must have the same length (the profile's ``dim``) and finite numbers; a missing cell
(``None``, NaN, ``pd.NA``) is dropped and counted. A ragged vector, a vector holding NaN or
±inf, an empty one, or a non-numeric cell is a
:class:`~lockgate.evals.drift.errors.DriftInputInvalid` naming the column and the row. Lengths
are checked on every row; the numbers of the rows read into the sample.

**Profile** (:class:`EmbeddingProfile`): rows present and dropped, ``dim``, and a seeded
sample of at most ``sample_size`` vectors (``_sample.py``).

**Domain classifier** (Evidently 0.7's ``ModelDriftMethod``): reference vectors labelled 1,
current ones 0, concatenated in that order, split 50/50 by ``train_test_split(test_size=0.5,
random_state=seed, shuffle=True)``; ``SGDClassifier(loss="log_loss", random_state=seed)`` is
fitted on the train half; the score is the ROC AUC of ``predict_proba`` on the test half.

* ``abs_embedding_classifier``: drift when ``AUC > threshold`` (0.55).
* ``perc_embedding_classifier``: drift when ``AUC > cutoff``, the ``threshold``-th percentile
  (0.95) of the ROC AUCs of 100 random scorings of the test half (seed ``i`` scores with
  ``RandomState(i).rand(len(y_test))``, ``i = 0..99``, as Evidently's bootstrap).

The default (Evidently's ``EmbeddingsDriftMetric``: ``bootstrap = reference rows < 1000``):
``perc_embedding_classifier`` when the reference has **fewer than 1,000** present rows, else
``abs_embedding_classifier``. (Text switches at *more than* 1,000; both are Evidently's.)

**MMD** (``mmd``, chosen per column): the unbiased squared maximum mean discrepancy
``MMD²_u`` with the RBF kernel ``k(x, y) = exp(-|x - y|² / sigma²)``, ``sigma`` the median distance
between distinct rows of reference and current pooled (the median heuristic; Evidently's
``mmd`` form of the kernel; pooled so that it does not depend on the labels), and a
permutation test: the labels are shuffled ``permutations`` times (500, seeded) and
``p = (1 + #{MMD²_u(shuffled) >= MMD²_u}) / (1 + permutations)``; drift when ``p < threshold``
(0.05). At most ``max_rows`` rows per side (1,000, a seeded subsample) enter the kernel
matrix, which takes ``8 (m + n)²`` bytes. When more than half of the pairs are equal, ``sigma`` is
the median of the non-zero distances; when all vectors are equal, ``MMD²_u = 0`` and ``p = 1``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from lockgate.evals.drift import _sample
from lockgate.evals.drift._frames import Kind
from lockgate.evals.drift.errors import DriftInputInvalid
from lockgate.evals.drift.text import (
    ClassifierOutcome,
    _sklearn,
    check_sizes,
    split,
)

Floats = npt.NDArray[np.float64]

MMD_PERMUTATIONS = 500
MMD_MAX_ROWS = 1000
BOOTSTRAP_DRAWS = 100  # Evidently's random classifiers for the embedding percentile


@dataclass(frozen=True, eq=False)
class EmbeddingProfile:
    """An embedding column: rows present and dropped, the vector length, a sample of rows."""

    kind: ClassVar[Kind] = "embedding"
    n: int
    n_dropped: int
    dim: int
    sample: Floats  # (rows, dim)
    sample_size: int = _sample.DEFAULT_SAMPLE_SIZE
    seed: int = _sample.DEFAULT_SEED

    @property
    def sampled(self) -> bool:
        return int(self.sample.shape[0]) < self.n

    def merge(self, other: EmbeddingProfile, *, name: str = "?") -> EmbeddingProfile:
        if self.n and other.n and self.dim != other.dim:
            raise DriftInputInvalid(
                f"embedding column {name!r} holds vectors of {self.dim} numbers in one part "
                f"and {other.dim} in the other",
                param=name,
            )
        size = min(self.sample_size, other.sample_size)
        mine, theirs = _sample.merge_takes(
            self.n, other.n, self.sample.shape[0], other.sample.shape[0], size, self.seed
        )
        dim = self.dim if self.n else other.dim
        sample = np.concatenate(
            (self.sample.reshape(-1, dim)[mine], other.sample.reshape(-1, dim)[theirs])
        )
        return EmbeddingProfile(
            self.n + other.n, self.n_dropped + other.n_dropped, dim, sample, size, self.seed
        )


def embedding_profile(
    values: Any,
    *,
    name: str = "?",
    sample_size: int = _sample.DEFAULT_SAMPLE_SIZE,
    seed: int = _sample.DEFAULT_SEED,
) -> EmbeddingProfile:
    """The profile of one raw embedding column (see the module docstring for the checks)."""
    if isinstance(values, np.ndarray) and values.ndim == 2:
        return _from_matrix(values, name, sample_size, seed)
    series = _sample.as_series(values)
    missing = series.isna().to_numpy()
    present = np.flatnonzero(~missing)
    dim = _check_lengths(series, present, name)
    chosen = present[_sample.pick(present.size, sample_size, _sample.rng_for(seed, present.size))]
    rows = series.iloc[chosen].tolist()
    sample = np.empty((len(rows), dim), dtype=np.float64)
    for i, (row, cell) in enumerate(zip(chosen.tolist(), rows, strict=True)):
        try:
            sample[i] = np.asarray(cell, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise DriftInputInvalid(
                f"embedding column {name!r}: row {row} is not a vector of numbers ({exc})",
                param=name,
            ) from exc
    _check_finite(sample, chosen, name)
    return EmbeddingProfile(int(present.size), int(missing.sum()), dim, sample, sample_size, seed)


def _from_matrix(values: Any, name: str, size: int, seed: int) -> EmbeddingProfile:
    if values.shape[1] == 0:
        raise DriftInputInvalid(f"embedding column {name!r} holds empty vectors", param=name)
    try:
        matrix = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DriftInputInvalid(
            f"embedding column {name!r} is not numeric ({exc})", param=name
        ) from exc
    chosen = _sample.pick(matrix.shape[0], size, _sample.rng_for(seed, matrix.shape[0]))
    _check_finite(matrix, np.arange(matrix.shape[0]), name)
    return EmbeddingProfile(matrix.shape[0], 0, matrix.shape[1], matrix[chosen], size, seed)


def _check_lengths(series: Any, present: Any, name: str) -> int:
    lengths = np.empty(present.size, dtype=np.int64)
    cells = series.iloc[present].tolist() if present.size else []
    for i, cell in enumerate(cells):
        if isinstance(cell, str | bytes) or not hasattr(cell, "__len__"):
            raise DriftInputInvalid(
                f"embedding column {name!r}: row {int(present[i])} holds a "
                f"{type(cell).__name__}, not a vector of numbers",
                param=name,
            )
        lengths[i] = len(cell)
    if lengths.size == 0:
        return 0
    first = int(lengths[0])
    if first == 0:
        raise DriftInputInvalid(
            f"embedding column {name!r}: row {int(present[0])} holds an empty vector", param=name
        )
    odd = np.flatnonzero(lengths != first)
    if odd.size:
        row = int(present[odd[0]])
        raise DriftInputInvalid(
            f"embedding column {name!r} is ragged: row {row} holds {int(lengths[odd[0]])} "
            f"numbers, row {int(present[0])} holds {first}; every vector must have the same "
            "length",
            param=name,
        )
    return first


def _check_finite(sample: Floats, rows: Any, name: str) -> None:
    bad = np.flatnonzero(~np.isfinite(sample).all(axis=1)) if sample.size else np.empty(0)
    if bad.size:
        raise DriftInputInvalid(
            f"embedding column {name!r}: row {int(rows[int(bad[0])])} holds NaN or ±inf "
            f"({bad.size} such vectors read); drop or repair those rows",
            param=name,
        )


def check_dims(reference: EmbeddingProfile, current: EmbeddingProfile) -> None:
    if reference.dim != current.dim:
        raise DriftInputInvalid(
            f"the reference vectors have {reference.dim} numbers and the current ones "
            f"{current.dim}; were they made by the same embedding model?"
        )


def embedding_classifier(
    reference: Floats, current: Floats, *, seed: int = 42
) -> ClassifierOutcome:
    """Evidently's embedding domain classifier (see the module docstring)."""
    check_sizes(reference.shape[0], current.shape[0])
    data = np.concatenate((reference, current))
    # Evidently labels the reference 1 here (0 for text); split() labels it 0, so flip
    train, test, y_train, y_test = split(reference.shape[0], current.shape[0], seed)
    y_train, y_test = 1 - y_train, 1 - y_test
    linear = _sklearn("sklearn.linear_model")
    metrics = _sklearn("sklearn.metrics")
    model = linear.SGDClassifier(loss="log_loss", random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(data[train], y_train)
    proba = model.predict_proba(data[test])[:, 1]
    auc = float(metrics.roc_auc_score(y_test, proba))
    return ClassifierOutcome(auc, y_test, rows_used=(reference.shape[0], current.shape[0]))


@dataclass(frozen=True)
class MMDOutcome:
    mmd2: float
    p_value: float
    bandwidth: float
    rows_used: tuple[int, int]
    permutations: int


def mmd_test(
    reference: Floats,
    current: Floats,
    *,
    permutations: int = MMD_PERMUTATIONS,
    max_rows: int = MMD_MAX_ROWS,
    seed: int = 42,
) -> MMDOutcome:
    """``MMD²_u`` with the median-heuristic RBF kernel and its permutation p-value."""
    for side, rows in (("reference", reference.shape[0]), ("current", current.shape[0])):
        if rows < 2:
            raise DriftInputInvalid(f"MMD needs at least 2 vectors per side; {side} has {rows}")
    rng = np.random.default_rng(seed)
    x = reference[_sample.pick(reference.shape[0], max_rows, rng)]
    y = current[_sample.pick(current.shape[0], max_rows, rng)]
    m, n = x.shape[0], y.shape[0]
    z = np.concatenate((x, y))
    norms = np.einsum("ij,ij->i", z, z)
    squared = np.maximum(norms[:, None] + norms[None, :] - 2.0 * (z @ z.T), 0.0)
    np.fill_diagonal(squared, 0.0)
    upper = np.sqrt(squared[np.triu_indices(m + n, k=1)])
    sigma = float(np.median(upper))
    if sigma == 0.0:
        positive = upper[upper > 0]
        if positive.size == 0:
            return MMDOutcome(0.0, 1.0, 0.0, (m, n), permutations)
        sigma = float(np.median(positive))
    kernel = np.exp(-squared / (sigma * sigma))
    del squared
    row_sums = kernel.sum(axis=1)
    total = float(row_sums.sum())

    def statistic(within_x: Floats, x_rows: Floats) -> Floats:
        # within_x = z' K z, x_rows = z' (K 1) for the indicator z of the "reference" rows
        kxx = (within_x - m) / (m * (m - 1.0))
        kyy = (total - 2.0 * x_rows + within_x - n) / (n * (n - 1.0))
        kxy = (x_rows - within_x) / (m * n)
        return np.asarray(kxx + kyy - 2.0 * kxy, dtype=np.float64)

    observed_z = np.zeros(m + n)
    observed_z[:m] = 1.0
    observed = float(
        statistic(np.array([observed_z @ kernel @ observed_z]), np.array([observed_z @ row_sums]))[
            0
        ]
    )
    exceed = 0
    done = 0
    while done < permutations:
        chunk = min(100, permutations - done)
        picks = np.argsort(rng.random((chunk, m + n)), axis=1)[:, :m]
        indicators = np.zeros((m + n, chunk))
        np.put_along_axis(indicators, picks.T, 1.0, axis=0)
        within = np.einsum("ij,ij->j", indicators, kernel @ indicators)
        values = statistic(within, indicators.T @ row_sums)
        exceed += int(np.count_nonzero(values >= observed - 1e-12 * max(1.0, abs(observed))))
        done += chunk
    p = (1 + exceed) / (1 + permutations)
    return MMDOutcome(observed, p, sigma, (m, n), permutations)
