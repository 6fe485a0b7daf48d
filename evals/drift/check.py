"""Checking current data against a reference: which test per column, and the verdicts.

**Default test** (Evidently 0.7's ``get_default_stattest``), with ``n`` the reference's rows
and ``u`` the distinct values of reference and current together, both after NaN/±inf are
dropped:

==========  =========================================  ====================================
            numeric column                             categorical column
==========  =========================================  ====================================
n <= 1000   ``u > 5``: ``ks``; else ``chisquare`` when  ``chisquare`` when ``u > 2``,
            ``u > 2``, else ``z``                       else ``z``
n > 1000    ``u > 5``: ``wasserstein``; else            ``jensenshannon``
            ``jensenshannon``
==========  =========================================  ====================================

**Choosing instead** (:class:`DriftOptions`, the names of Evidently's ``DataDriftPreset``):
a column's test is ``per_column_method[column]``, else ``num_method``/``cat_method`` by its
kind, else ``method``, else the default; its threshold likewise from ``per_column_threshold``,
``num_threshold``/``cat_threshold``, ``threshold``, else the test's default. A chosen test must
accept the column's kind (``ks`` is numeric only; ``chisquare`` and ``z`` categorical only).

**Dataset drift**: drifted columns / checked columns ``>= drift_share`` (0.5).

The reference is read once into a :class:`~lockgate.evals.drift.profile.Profile`; pass the
profile itself to check again without reading the reference. Current columns are profiled
one at a time in a small thread pool (numpy sorts release the GIL) and dropped once tested.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from lockgate.evals.drift import _frames, _views
from lockgate.evals.drift.errors import DriftInputInvalid
from lockgate.evals.drift.profile import (
    DEFAULT_EXACT_LIMIT,
    ColumnProfile,
    NumericProfile,
    Profile,
    build_profile,
    profile_column,
)
from lockgate.evals.drift.results import ColumnDrift, DriftReport
from lockgate.evals.drift.stattests import DriftTest, get_test

SMALL_REFERENCE = 1000  # up to this many reference rows, the defaults are p-value tests
FEW_VALUES = 5  # a numeric column of at most this many values is tested as categories


@dataclass(frozen=True)
class DriftOptions:
    """Which columns, tests and thresholds (see the module docstring for precedence)."""

    columns: Sequence[str] | None = None
    method: str | None = None
    num_method: str | None = None
    cat_method: str | None = None
    per_column_method: Mapping[str, str] = field(default_factory=dict)
    threshold: float | None = None
    num_threshold: float | None = None
    cat_threshold: float | None = None
    per_column_threshold: Mapping[str, float] = field(default_factory=dict)
    drift_share: float = 0.5

    def __post_init__(self) -> None:
        for name in (
            self.method,
            self.num_method,
            self.cat_method,
            *self.per_column_method.values(),
        ):
            if name is not None:
                get_test(name)  # raises UnknownDriftTest, listing the registered tests
        thresholds = (self.threshold, self.num_threshold, self.cat_threshold)
        for value in (*thresholds, *self.per_column_threshold.values()):
            if value is not None and not math.isfinite(value):
                raise DriftInputInvalid(f"a threshold must be a finite number, not {value}")
        if not 0 < self.drift_share <= 1:
            raise DriftInputInvalid("drift_share must be in (0, 1]", param="drift_share")

    def chosen_method(self, column: str, kind: str) -> str | None:
        by_kind = self.num_method if kind == "numeric" else self.cat_method
        return self.per_column_method.get(column) or by_kind or self.method

    def chosen_threshold(self, column: str, kind: str) -> float | None:
        by_kind = self.num_threshold if kind == "numeric" else self.cat_threshold
        for value in (self.per_column_threshold.get(column), by_kind, self.threshold):
            if value is not None:
                return value
        return None


def default_test_name(reference: ColumnProfile, current: ColumnProfile) -> str:
    """Evidently's default for this pair of column profiles (table in the module docstring)."""
    distinct = _views.union_distinct(reference, current)
    numeric = isinstance(reference, NumericProfile)
    if reference.n <= SMALL_REFERENCE:
        if numeric and distinct > FEW_VALUES:
            return "ks"
        return "chisquare" if distinct > 2 else "z"
    if numeric and distinct > FEW_VALUES:
        return "wasserstein"
    return "jensenshannon"


def test_column(
    name: str, reference: ColumnProfile, current: ColumnProfile, options: DriftOptions
) -> ColumnDrift:
    """One column's verdict from the two profiles."""
    for side, profile in (("reference", reference), ("current", current)):
        if profile.n == 0:
            raise DriftInputInvalid(
                f"column {name!r} is empty in the {side} data once NaN and ±inf are dropped",
                param=name,
            )
    chosen = options.chosen_method(name, reference.kind)
    test: DriftTest = get_test(chosen or default_test_name(reference, current))
    if chosen is not None and reference.kind not in test.kinds:
        raise DriftInputInvalid(
            f"the {test.name} test does not apply to the {reference.kind} column {name!r} "
            f"(it takes {', '.join(sorted(test.kinds))} columns)",
            param=name,
        )
    threshold = options.chosen_threshold(name, reference.kind)
    threshold = test.default_threshold if threshold is None else threshold
    score = test.compute(reference, current)
    exact = not isinstance(reference, NumericProfile) or reference.exact
    return ColumnDrift(
        column=name,
        kind=reference.kind,
        test=test.name,
        statistic=score.statistic,
        p_value=score.p_value,
        score=test.value(score),
        threshold=threshold,
        drifted=test.drifted(score, threshold),
        n_reference=reference.n,
        n_current=current.n,
        exact=exact,
    )


def check_drift(
    reference: Profile | Any,
    current: Profile | Any,
    options: DriftOptions | None = None,
    *,
    workers: int | None = None,
    exact_limit: int | None = DEFAULT_EXACT_LIMIT,
) -> DriftReport:
    """Test every column of ``current`` against ``reference`` and decide dataset drift.

    ``reference``: a :class:`Profile` (stored by an earlier check) or a table (pandas,
    pyarrow, mapping of arrays), profiled here with ``exact_limit``. ``current``: a table or a
    profile. ``workers``: threads over columns (default: the CPU count, at most 4).
    """
    options = options or DriftOptions()
    if not isinstance(reference, Profile):
        reference = build_profile(
            reference,
            columns=list(options.columns) if options.columns is not None else None,
            exact_limit=exact_limit,
        )
    names = list(options.columns) if options.columns is not None else list(reference.columns)
    unknown = [name for name in names if name not in reference.columns]
    if unknown:
        raise DriftInputInvalid(
            f"the reference profile has no columns {unknown} "
            f"(it has: {', '.join(reference.columns)})",
            param="columns",
        )
    skipped = {k: v for k, v in reference.skipped.items() if k in names or options.columns is None}
    if isinstance(current, Profile):
        current_profile: Profile | None = current
        n_current = current.n_rows
    else:
        current_profile = None
        n_current = _frames.row_count(current)
        present = set(_frames.column_names(current))
        missing = [name for name in names if name not in present]
        if missing:
            raise DriftInputInvalid(
                f"the current data lacks the columns {missing}", param="columns"
            )
    profiled_reference = reference

    def one(name: str) -> ColumnDrift:
        ref = profiled_reference.columns[name]
        if current_profile is not None:
            cur = current_profile.columns[name]
        else:
            cur = _current_column(current, name, ref)
        return test_column(name, ref, cur, options)

    count = workers or min(4, os.cpu_count() or 1)
    if count <= 1 or len(names) <= 1:
        results = [one(name) for name in names]
    else:
        with ThreadPoolExecutor(max_workers=count) as pool:
            results = list(pool.map(one, names))
    return DriftReport(
        columns=tuple(results),
        drift_share=options.drift_share,
        n_reference=reference.n_rows,
        n_current=n_current,
        skipped=skipped,
    )


def _current_column(current: Any, name: str, reference: ColumnProfile) -> ColumnProfile:
    """The exact profile of one current column, read as the reference's kind."""
    return profile_column(_frames.column(current, name), reference.kind, exact_limit=None)
