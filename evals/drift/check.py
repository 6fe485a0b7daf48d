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

**Text and embedding columns** (``text.py``, ``embeddings.py``): a column is text or an
embedding when :class:`DriftOptions` names it in ``text_columns`` / ``embedding_columns``
(Evidently's column mapping), else by detection when the reference is profiled: a string
column with more than half of its rows distinct and at least half of its sampled values
holding a blank is text; a column of equal-length numeric vectors (lists, tuples, arrays) is
an embedding. Defaults, with ``n`` the reference's present rows (all of them, not the
sample): text ``n > 1000``: ``abs_text_content_drift`` (AUC > 0.55), else
``perc_text_content_drift`` (AUC above the 95th percentile of random-classifier AUCs);
embedding ``n < 1000``: ``perc_embedding_classifier``, else ``abs_embedding_classifier``
(Evidently's ``bootstrap = n < 1000``). ``text_method``/``embedding_method`` and
``text_threshold``/``embedding_threshold`` choose by kind; the global ``method`` and
``threshold`` apply to a text or embedding column only when that method takes the kind
(``method="psi"`` leaves them on their defaults). ``seed`` (42, Evidently's
``random_state``) drives the split, the classifiers and the permutations.

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
from lockgate.evals.drift._frames import Kind
from lockgate.evals.drift._sample import DEFAULT_SAMPLE_SIZE
from lockgate.evals.drift.embeddings import EmbeddingProfile
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
from lockgate.evals.drift.stattests import DEFAULT_SEED, DriftTest, get_test
from lockgate.evals.drift.text import TextProfile

SMALL_REFERENCE = 1000  # up to this many reference rows, the defaults are p-value tests
FEW_VALUES = 5  # a numeric column of at most this many values is tested as categories
LARGE_EMBEDDING_REFERENCE = 1000  # from this many rows, embeddings: AUC > 0.55


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
    text_columns: Sequence[str] = ()
    embedding_columns: Sequence[str] = ()
    text_method: str | None = None
    embedding_method: str | None = None
    text_threshold: float | None = None
    embedding_threshold: float | None = None
    seed: int = DEFAULT_SEED

    def __post_init__(self) -> None:
        for name in (
            self.method,
            self.num_method,
            self.cat_method,
            self.text_method,
            self.embedding_method,
            *self.per_column_method.values(),
        ):
            if name is not None:
                get_test(name)  # raises UnknownDriftTest, listing the registered tests
        for names in (self.text_columns, self.embedding_columns):
            if isinstance(names, str):
                raise DriftInputInvalid(
                    f"text_columns and embedding_columns take a list of names, not {names!r}"
                )
        both = set(self.text_columns) & set(self.embedding_columns)
        if both:
            raise DriftInputInvalid(
                f"columns {sorted(both)} are named both text and embedding columns"
            )
        thresholds = (
            self.threshold,
            self.num_threshold,
            self.cat_threshold,
            self.text_threshold,
            self.embedding_threshold,
        )
        for value in (*thresholds, *self.per_column_threshold.values()):
            if value is not None and not math.isfinite(value):
                raise DriftInputInvalid(f"a threshold must be a finite number, not {value}")
        if not 0 < self.drift_share <= 1:
            raise DriftInputInvalid("drift_share must be in (0, 1]", param="drift_share")

    @property
    def kinds(self) -> dict[str, Kind]:
        """The kinds named by ``text_columns`` and ``embedding_columns``."""
        named: dict[str, Kind] = {name: "text" for name in self.text_columns}
        named.update({name: "embedding" for name in self.embedding_columns})
        return named

    def _global_applies(self, kind: str) -> bool:
        if kind in ("numeric", "categorical"):
            return True
        return self.method is not None and kind in get_test(self.method).kinds

    def chosen_method(self, column: str, kind: str) -> str | None:
        by_kind = {
            "numeric": self.num_method,
            "categorical": self.cat_method,
            "text": self.text_method,
            "embedding": self.embedding_method,
        }.get(kind)
        fallback = self.method if self._global_applies(kind) else None
        return self.per_column_method.get(column) or by_kind or fallback

    def chosen_threshold(self, column: str, kind: str) -> float | None:
        by_kind = {
            "numeric": self.num_threshold,
            "categorical": self.cat_threshold,
            "text": self.text_threshold,
            "embedding": self.embedding_threshold,
        }.get(kind)
        fallback = self.threshold if self._global_applies(kind) else None
        for value in (self.per_column_threshold.get(column), by_kind, fallback):
            if value is not None:
                return value
        return None


def default_test_name(reference: ColumnProfile, current: ColumnProfile) -> str:
    """Evidently's default for this pair of column profiles (table in the module docstring)."""
    if isinstance(reference, TextProfile):
        return (
            "abs_text_content_drift" if reference.n > SMALL_REFERENCE else "perc_text_content_drift"
        )
    if isinstance(reference, EmbeddingProfile):
        if reference.n >= LARGE_EMBEDDING_REFERENCE:
            return "abs_embedding_classifier"
        return "perc_embedding_classifier"
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
    try:
        score = test.score(reference, current, seed=options.seed)
    except DriftInputInvalid as exc:
        if repr(name) in str(exc):
            raise
        raise DriftInputInvalid(f"column {name!r}: {exc}", param=name) from exc
    if isinstance(reference, NumericProfile):
        exact = reference.exact
    elif isinstance(reference, TextProfile | EmbeddingProfile):
        exact = not reference.sampled and not current.sampled  # type: ignore[union-attr]
    else:
        exact = True
    details = dict(score.details)
    words_current = tuple(details.pop("words_current", ()))
    words_reference = tuple(details.pop("words_reference", ()))
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
        cutoff=test.cutoff(score, threshold),
        words_current=words_current,
        words_reference=words_reference,
        details=details,
    )


def check_drift(
    reference: Profile | Any,
    current: Profile | Any,
    options: DriftOptions | None = None,
    *,
    workers: int | None = None,
    exact_limit: int | None = DEFAULT_EXACT_LIMIT,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
) -> DriftReport:
    """Test every column of ``current`` against ``reference`` and decide dataset drift.

    ``reference``: a :class:`Profile` (stored by an earlier check) or a table (pandas,
    pyarrow, mapping of arrays), profiled here with ``exact_limit`` and ``sample_size``.
    ``current``: a table or a profile; its text and embedding columns are sampled to
    ``sample_size`` rows too. ``workers``: threads over columns (default: the CPU count, at
    most 4).
    """
    options = options or DriftOptions()
    named = options.kinds
    if not isinstance(reference, Profile):
        reference = build_profile(
            reference,
            columns=list(options.columns) if options.columns is not None else None,
            kinds=named,
            exact_limit=exact_limit,
            sample_size=sample_size,
        )
    for column, kind in named.items():
        held = reference.columns.get(column)
        if held is not None and held.kind != kind:
            raise DriftInputInvalid(
                f"column {column!r} is named a {kind} column, but the reference profile holds "
                f"it as {held.kind}; rebuild the profile",
                param=column,
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
            cur = _current_column(current, name, ref, sample_size)
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


def _current_column(
    current: Any, name: str, reference: ColumnProfile, sample_size: int
) -> ColumnProfile:
    """The exact profile of one current column, read as the reference's kind (text and
    embedding columns: a sample of ``sample_size`` rows, drawn with the reference's seed)."""
    seed = getattr(reference, "seed", 0)
    return profile_column(
        _frames.column(current, name),
        reference.kind,
        exact_limit=None,
        sample_size=sample_size,
        seed=seed,
        name=name,
    )
