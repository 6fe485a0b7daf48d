"""Bounded, seeded samples of a column's rows, for the text and embedding profiles.

A profile keeps at most ``sample_size`` rows of a text or embedding column: all of them, in
their order, while there are that few; else a uniform sample without replacement, kept in the
rows' order. Two samples merge into a uniform sample of the union: the number taken from the
first part is hypergeometric (``rng.hypergeometric(n_a, n_b, size)``), then that many rows are
taken uniformly from each part's sample. Every draw comes from ``numpy.random.default_rng`` with
a seed derived from the profile's ``seed`` and the row counts, so the same data and seed give
the same sample, batch by batch or whole.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

Ints = npt.NDArray[np.int64]

DEFAULT_SAMPLE_SIZE = 5000  # rows of a text or embedding column kept in a profile
DEFAULT_SEED = 0  # seed of the samples (the tests' own seed is DriftOptions.seed)


def rng_for(seed: int, *parts: int) -> np.random.Generator:
    """A generator for one draw, seeded by the profile's seed and the draw's row counts."""
    return np.random.default_rng([int(seed), *(int(p) for p in parts)])


def pick(n: int, size: int, rng: np.random.Generator) -> Ints:
    """Sorted positions of a uniform sample of ``min(n, size)`` of ``n`` rows."""
    if n <= size:
        return np.arange(n, dtype=np.int64)
    return np.sort(rng.choice(n, size, replace=False)).astype(np.int64)


def merge_takes(
    n_a: int, n_b: int, held_a: int, held_b: int, size: int, seed: int
) -> tuple[Ints, Ints]:
    """Which of each part's held sample rows a merged sample of ``size`` keeps.

    ``n_a``/``n_b``: the parts' row counts; ``held_a``/``held_b``: their sample lengths.
    """
    if held_a + held_b <= size and held_a == n_a and held_b == n_b:
        return np.arange(held_a, dtype=np.int64), np.arange(held_b, dtype=np.int64)
    rng = rng_for(seed, n_a, n_b, size)
    take_a = int(rng.hypergeometric(n_a, n_b, size)) if n_a + n_b > size else n_a
    take_a = min(take_a, held_a)
    take_b = min(size - take_a, held_b)
    return pick(held_a, take_a, rng), pick(held_b, take_b, rng)


def as_series(values: Any) -> Any:
    """A pandas Series of a column's cells (lists stay cells; pyarrow converts)."""
    import pandas as pd  # type: ignore[import-untyped]

    if hasattr(values, "iloc") and hasattr(values, "dtype"):
        return values
    if type(values).__module__.startswith("pyarrow"):
        return values.to_pandas()
    if isinstance(values, np.ndarray) and values.ndim == 1:
        return pd.Series(values)
    series = pd.Series(list(values), dtype=object)
    return series


def sample_cells(values: Any, size: int, seed: int) -> tuple[list[Any], int, int]:
    """Up to ``size`` present cells of a column, uniformly, in row order; the rows present;
    the rows missing (``None``, NaN, ``pd.NA``)."""
    series = as_series(values)
    present = np.flatnonzero(~series.isna().to_numpy())
    total = len(series)
    chosen = present[pick(present.size, size, rng_for(seed, present.size, total))]
    return series.iloc[chosen].tolist(), int(present.size), int(total - present.size)
