"""A mergeable quantile sketch for numeric columns too large to keep whole.

The sketch is a weighted empirical distribution: at most ``size`` atoms, each a value with an
integer weight (how many rows it stands for), sorted by value, plus the exact count, minimum
and maximum. It is deterministic, so the same batches give the same bytes.

* **From sorted values** (:meth:`QuantileSketch.from_sorted`): equal values collapse into one
  atom; when more than ``size`` atoms remain they are *compacted*.
* **Compaction**: atom ``i`` with cumulative weight ``C_i`` (and weight ``w_i``) goes to group
  ``floor((C_i - w_i / 2) * size / W)``; each group becomes one atom at the weighted mean of its
  values, carrying the group's weight. Groups are intervals of rank of width ``W / size``, so at
  any ``x`` the sketch's CDF differs from the data's by at most one group's share: ``1 / size``
  (an atom heavier than ``W / size`` stays its own group, exactly). The mean is preserved.
  Replacing a group by its mean moves its mass by at most the group's value range, and groups do
  not overlap in value, so the Wasserstein-1 distance between sketch and data is at most
  ``(max - min) / size`` per compaction (in practice far less: inner groups are narrow).
* **Merge** (:meth:`QuantileSketch.merge`): the atoms of both, sorted, compacted when over
  ``size``. Errors add: the CDF error of a merge is at most the weighted mean of the parts'
  errors plus ``1 / size``. :class:`SketchBuilder` merges batches as a binary counter merges
  bits (sketches of equal height pair up), so ``b`` batches cost ``log2(b) + 1`` compactions
  of error, not ``b``.

The accuracy measured against the exact statistics is in ``docs/drift.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]

DEFAULT_SKETCH_SIZE = 8192


@dataclass(frozen=True)
class QuantileSketch:
    """Sorted atoms ``values`` with integer ``weights``; ``count`` rows in all."""

    values: Floats
    weights: Ints
    minimum: float
    maximum: float
    size: int = DEFAULT_SKETCH_SIZE
    compactions: int = 0  # the longest chain of compactions behind any atom (error bound)

    @property
    def count(self) -> int:
        return int(self.weights.sum())

    @property
    def cdf_error_bound(self) -> float:
        """Largest possible ``|F_sketch(x) - F_data(x)|`` over all ``x``."""
        return self.compactions / self.size

    @classmethod
    def from_sorted(cls, values: Floats, size: int = DEFAULT_SKETCH_SIZE) -> QuantileSketch:
        """The sketch of finite ``values`` sorted ascending (not empty)."""
        if values.size == 0:
            raise ValueError("a sketch needs at least one value")
        starts = np.flatnonzero(np.concatenate(([True], values[1:] != values[:-1])))
        atoms = values[starts]
        weights = np.diff(np.append(starts, values.size)).astype(np.int64)
        sketch = cls(atoms, weights, float(values[0]), float(values[-1]), size, 0)
        return sketch.compacted()

    def compacted(self) -> QuantileSketch:
        """This sketch with at most ``size`` atoms (itself when already small enough)."""
        if self.values.size <= self.size:
            return self
        values, weights = _compact(self.values, self.weights, self.size)
        return QuantileSketch(
            values, weights, self.minimum, self.maximum, self.size, self.compactions + 1
        )

    def merge(self, other: QuantileSketch) -> QuantileSketch:
        """The sketch of both parts' rows (see the module docstring for the error)."""
        values = np.concatenate((self.values, other.values))
        weights = np.concatenate((self.weights, other.weights))
        order = np.argsort(values, kind="stable")
        values, weights = values[order], weights[order]
        starts = np.flatnonzero(np.concatenate(([True], values[1:] != values[:-1])))
        merged = QuantileSketch(
            values[starts],
            np.add.reduceat(weights, starts),
            min(self.minimum, other.minimum),
            max(self.maximum, other.maximum),
            max(self.size, other.size),
            max(self.compactions, other.compactions),
        )
        return merged.compacted()


def _compact(values: Floats, weights: Ints, size: int) -> tuple[Floats, Ints]:
    cumulative = np.cumsum(weights)
    total = float(cumulative[-1])
    group = np.floor((cumulative - weights / 2.0) * (size / total)).astype(np.int64)
    starts = np.flatnonzero(np.concatenate(([True], group[1:] != group[:-1])))
    group_weights = np.add.reduceat(weights, starts)
    group_values = np.add.reduceat(values * weights, starts) / group_weights
    # the weighted mean of a group lies within it; rounding must not break the order
    return np.maximum.accumulate(group_values), group_weights


@dataclass
class SketchBuilder:
    """Builds one sketch from many batches with ``log2(batches) + 1`` compactions of error."""

    size: int = DEFAULT_SKETCH_SIZE
    _levels: list[QuantileSketch | None] = field(default_factory=list)

    def add(self, sketch: QuantileSketch) -> None:
        carry = sketch
        for level, held in enumerate(self._levels):
            if held is None:
                self._levels[level] = carry
                return
            carry = held.merge(carry)
            self._levels[level] = None
        self._levels.append(carry)

    def build(self) -> QuantileSketch | None:
        result: QuantileSketch | None = None
        for held in self._levels:
            if held is not None:
                result = held if result is None else result.merge(held)
        return result
