"""The typed result of a drift check, per column and for the dataset, with ``to_dict()``."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ColumnDrift:
    """One column's verdict.

    ``score`` is what was compared with ``threshold``: the p-value for ``ks``, ``chisquare``,
    ``chi2_homogeneity`` and ``z`` (drift when small), the distance for the others (drift when
    large). ``statistic`` is the test's statistic (KS ``D``, chi-square, ``z``, or the
    distance itself); ``p_value`` is ``None`` for distances.

    Text and embedding columns (``kind`` ``"text"`` or ``"embedding"``): ``score`` is the
    domain classifier's ROC AUC (drift when above ``threshold``, or above ``cutoff`` for the
    ``perc_*`` tests, whose ``threshold`` is a percentile level), or MMD's permutation
    p-value with ``statistic`` = ``MMD²_u``. ``cutoff``: the ``threshold``-th percentile of
    the random-classifier AUCs, when the score was compared with that. ``words_current`` /
    ``words_reference``: the words the text classifier weighs most towards each side.
    ``details``: method figures (``rows_used``, ``permutations``, ``bandwidth``, ``note``).
    ``exact`` is False when a side was sampled.
    """

    column: str
    kind: str
    test: str
    statistic: float
    p_value: float | None
    score: float
    threshold: float
    drifted: bool
    n_reference: int
    n_current: int
    exact: bool = True  # False when the reference was a sketch (see docs/drift.md)
    cutoff: float | None = None
    words_current: tuple[str, ...] = ()
    words_reference: tuple[str, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "kind": self.kind,
            "test": self.test,
            "statistic": _json_float(self.statistic),
            "p_value": None if self.p_value is None else _json_float(self.p_value),
            "score": _json_float(self.score),
            "threshold": self.threshold,
            "drifted": self.drifted,
            "n_reference": self.n_reference,
            "n_current": self.n_current,
            "exact": self.exact,
            "cutoff": None if self.cutoff is None else _json_float(self.cutoff),
            "words_current": list(self.words_current),
            "words_reference": list(self.words_reference),
            "details": dict(self.details),
        }


@dataclass(frozen=True)
class DriftReport:
    """All columns' verdicts; the dataset drifted when ``share_drifted >= drift_share``."""

    columns: tuple[ColumnDrift, ...]
    drift_share: float
    n_reference: int
    n_current: int
    skipped: dict[str, str] = field(default_factory=dict)  # column -> why it was not checked

    @property
    def n_drifted(self) -> int:
        return sum(column.drifted for column in self.columns)

    @property
    def share_drifted(self) -> float:
        return self.n_drifted / len(self.columns) if self.columns else 0.0

    @property
    def drifted(self) -> bool:
        return bool(self.columns) and self.share_drifted >= self.drift_share

    def column(self, name: str) -> ColumnDrift:
        for column in self.columns:
            if column.column == name:
                return column
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; non-finite numbers (an infinite chi-square) become ``None``."""
        return {
            "drifted": self.drifted,
            "share_drifted": self.share_drifted,
            "n_drifted": self.n_drifted,
            "n_columns": len(self.columns),
            "drift_share": self.drift_share,
            "n_reference": self.n_reference,
            "n_current": self.n_current,
            "columns": [column.to_dict() for column in self.columns],
            "skipped": dict(self.skipped),
        }


def _json_float(value: float) -> float | None:
    return value if math.isfinite(value) else None
