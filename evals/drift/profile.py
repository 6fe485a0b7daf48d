"""Reference profiles: per-column summaries computed once, stored, merged across partitions.

A :class:`Profile` maps column names to column profiles:

* :class:`NumericProfile`: row count, rows dropped (NaN/±inf), mean and the sum of squared
  deviations (merged exactly by Chan's formula), minimum, maximum, the distinct values with
  their counts while there are at most :data:`SMALL_DISTINCT` of them, and either the *sorted
  values* (exact: every test gives the same number as on the raw data) or a
  :class:`~lockgate.evals.drift.sketch.QuantileSketch` (when the rows exceed ``exact_limit``).
* :class:`CategoricalProfile`: row count, rows dropped, and the count of every category.
  Every category is kept, as in Evidently (chi-square needs them all); a column of unique
  identifiers therefore makes a profile as large as the column.
* :class:`~lockgate.evals.drift.text.TextProfile` and
  :class:`~lockgate.evals.drift.embeddings.EmbeddingProfile`: rows present and dropped and a
  seeded sample of at most ``sample_size`` rows (5,000; ``_sample.py``): texts and vectors
  have no histogram, so the domain classifier and MMD run on the sample.

**Kinds of string and vector columns**: a string column is ``text`` when more than half of
its present rows are distinct (Evidently's rule) *and* at least half of its sampled values
hold a blank; more than half distinct without blanks looks like identifiers and is left out
(``skipped`` says so). A column of vectors is ``embedding``. ``kinds={"c": "text"}`` or
``{"c": "embedding"}`` (``DriftOptions(text_columns=..., embedding_columns=...)`` in a check)
names the kind instead.

Merging (:meth:`Profile.merge`, :class:`ProfileBuilder` over batches) is exact for counts,
moments, extremes, small distinct sets and sorted values; when the merged rows of a numeric
column pass ``exact_limit`` its values become a sketch, and the tests that read it become
approximate, within the bounds given in ``sketch.py`` and measured in ``docs/drift.md``.
A histogram is not stored: Evidently's bins (Sturges over the span of reference *and*
current) depend on the current data, so they are counted at check time from the sorted values
or the sketch.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, TypeVar

import numpy as np
import numpy.typing as npt

from lockgate.evals.drift import _frames
from lockgate.evals.drift._frames import Category, Kind
from lockgate.evals.drift._sample import DEFAULT_SAMPLE_SIZE, DEFAULT_SEED
from lockgate.evals.drift.embeddings import EmbeddingProfile, embedding_profile
from lockgate.evals.drift.errors import DriftInputInvalid
from lockgate.evals.drift.sketch import DEFAULT_SKETCH_SIZE, QuantileSketch, SketchBuilder
from lockgate.evals.drift.text import MAX_TEXT_CHARS, RawTexts, TextProfile, text_profile

T = TypeVar("T")
R = TypeVar("R")

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]

TEXT_BLANK_SHARE = 0.5  # a mostly distinct string column is text when this share has blanks
SMALL_DISTINCT = 20  # Evidently bins a numeric column by its values up to 20 distinct ones
DEFAULT_EXACT_LIMIT = 2_000_000  # rows per numeric column kept whole in a reference profile


@dataclass(frozen=True)
class NumericProfile:
    kind: ClassVar[Kind] = "numeric"
    n: int
    n_dropped: int
    mean: float
    m2: float  # sum of squared deviations from the mean
    minimum: float
    maximum: float
    distinct: Floats | None  # sorted distinct values, when at most SMALL_DISTINCT
    distinct_counts: Ints | None
    values: Floats | None = None  # all finite values, sorted (exact profile)
    sketch: QuantileSketch | None = None  # when values were too many to keep
    integer: bool = False  # read from an integer column (numpy bins integers differently)

    @property
    def std(self) -> float:
        """Population standard deviation (``ddof=0``, as ``np.std``)."""
        return math.sqrt(self.m2 / self.n) if self.n else math.nan

    @property
    def exact(self) -> bool:
        return self.values is not None

    @property
    def n_distinct(self) -> int | None:
        """Distinct values when known: always for exact profiles, else up to SMALL_DISTINCT."""
        if self.distinct is not None:
            return int(self.distinct.size)
        if self.values is not None:
            return _count_distinct(self.values)
        return None

    @classmethod
    def from_values(
        cls,
        values: Floats,
        n_dropped: int = 0,
        *,
        exact_limit: int | None = None,
        sketch_size: int = DEFAULT_SKETCH_SIZE,
        integer: bool = False,
    ) -> NumericProfile:
        """The profile of finite ``values``; a sketch instead of values past ``exact_limit``."""
        if values.size == 0:
            nan = math.nan
            return cls(0, n_dropped, nan, nan, nan, nan, None, None, None, None, integer)
        ordered = np.sort(values)
        mean = float(np.mean(values))
        deviations = values - mean
        m2 = float(np.dot(deviations, deviations))
        del deviations
        distinct, counts = _small_distinct(ordered)
        low, high = float(ordered[0]), float(ordered[-1])
        if exact_limit is not None and ordered.size > exact_limit:
            sketch = QuantileSketch.from_sorted(ordered, sketch_size)
            return cls(ordered.size, n_dropped, mean, m2, low, high, distinct, counts,
                       None, sketch, integer)  # fmt: skip
        return cls(ordered.size, n_dropped, mean, m2, low, high, distinct, counts,
                   ordered, None, integer)  # fmt: skip

    def as_sketch(self, size: int = DEFAULT_SKETCH_SIZE) -> QuantileSketch | None:
        if self.sketch is not None:
            return self.sketch
        if self.values is not None and self.values.size:
            return QuantileSketch.from_sorted(self.values, size)
        return None

    def merge(
        self,
        other: NumericProfile,
        *,
        exact_limit: int | None = DEFAULT_EXACT_LIMIT,
        sketch_size: int = DEFAULT_SKETCH_SIZE,
    ) -> NumericProfile:
        """The profile of both parts' rows (exact while both are and the sum fits)."""
        if self.n == 0 or other.n == 0:
            kept = other if self.n == 0 else self
            return replace(kept, n_dropped=self.n_dropped + other.n_dropped)
        n = self.n + other.n
        delta = other.mean - self.mean
        mean = self.mean + delta * other.n / n
        m2 = self.m2 + other.m2 + delta * delta * self.n * other.n / n
        distinct, counts = _merge_small(self, other)
        values: Floats | None = None
        sketch: QuantileSketch | None = None
        fits = exact_limit is None or n <= exact_limit
        if self.values is not None and other.values is not None and fits:
            values = np.sort(np.concatenate((self.values, other.values)), kind="stable")
        else:
            left, right = self.as_sketch(sketch_size), other.as_sketch(sketch_size)
            if left is not None and right is not None:  # else: moments and extremes only
                sketch = left.merge(right)
        low, high = min(self.minimum, other.minimum), max(self.maximum, other.maximum)
        dropped, integer = self.n_dropped + other.n_dropped, self.integer and other.integer
        return NumericProfile(n, dropped, mean, m2, low, high, distinct, counts, values, sketch,
                              integer)  # fmt: skip


@dataclass(frozen=True)
class CategoricalProfile:
    kind: ClassVar[Kind] = "categorical"
    n: int
    n_dropped: int
    counts: Mapping[Category, int]

    @property
    def n_distinct(self) -> int:
        return len(self.counts)

    def merge(self, other: CategoricalProfile) -> CategoricalProfile:
        counts = dict(self.counts)
        for key, count in other.counts.items():
            counts[key] = counts.get(key, 0) + count
        return CategoricalProfile(self.n + other.n, self.n_dropped + other.n_dropped, counts)


ColumnProfile = NumericProfile | CategoricalProfile | TextProfile | EmbeddingProfile


@dataclass(frozen=True)
class Profile:
    """Per-column summaries of a table; see the module docstring."""

    columns: Mapping[str, ColumnProfile]
    n_rows: int
    skipped: Mapping[str, str] = field(default_factory=dict)  # column -> why it is left out

    def __getitem__(self, name: str) -> ColumnProfile:
        return self.columns[name]

    def merge(
        self,
        other: Profile,
        *,
        exact_limit: int | None = DEFAULT_EXACT_LIMIT,
        sketch_size: int = DEFAULT_SKETCH_SIZE,
    ) -> Profile:
        """The profile of both partitions; they must have the same columns of the same kinds."""
        if list(self.columns) != list(other.columns):
            raise DriftInputInvalid(
                f"cannot merge profiles of different columns: {list(self.columns)} and "
                f"{list(other.columns)}"
            )
        merged: dict[str, ColumnProfile] = {}
        for name, mine in self.columns.items():
            theirs = other.columns[name]
            if isinstance(mine, NumericProfile) and isinstance(theirs, NumericProfile):
                merged[name] = mine.merge(theirs, exact_limit=exact_limit, sketch_size=sketch_size)
            elif isinstance(mine, CategoricalProfile) and isinstance(theirs, CategoricalProfile):
                merged[name] = mine.merge(theirs)
            elif isinstance(mine, TextProfile) and isinstance(theirs, TextProfile):  # noqa: SIM114 (mypy narrows each pair)
                merged[name] = mine.merge(theirs, name=name)
            elif isinstance(mine, EmbeddingProfile) and isinstance(theirs, EmbeddingProfile):
                merged[name] = mine.merge(theirs, name=name)
            else:
                raise DriftInputInvalid(
                    f"column {name!r} is {mine.kind} in one profile and {theirs.kind} in the other"
                )
        return Profile(merged, self.n_rows + other.n_rows, {**other.skipped, **self.skipped})

    def to_bytes(self) -> bytes:
        from lockgate.evals.drift._serialize import profile_to_bytes

        return profile_to_bytes(self)

    @classmethod
    def from_bytes(cls, data: bytes) -> Profile:
        from lockgate.evals.drift._serialize import profile_from_bytes

        return profile_from_bytes(data)

    def to_dict(self) -> dict[str, Any]:
        from lockgate.evals.drift._serialize import profile_to_dict

        return profile_to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Profile:
        from lockgate.evals.drift._serialize import profile_from_dict

        return profile_from_dict(data)


def profile_column(
    values: Any,
    kind: Kind,
    *,
    exact_limit: int | None = DEFAULT_EXACT_LIMIT,
    sketch_size: int = DEFAULT_SKETCH_SIZE,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    seed: int = DEFAULT_SEED,
    max_text_chars: int = MAX_TEXT_CHARS,
    name: str = "?",
) -> ColumnProfile:
    """The profile of one raw column (a pandas Series, pyarrow array, numpy array, list).

    ``sample_size``, ``seed`` and ``max_text_chars`` apply to text and embedding columns;
    ``name`` is for error messages.
    """
    if kind == "text":
        return text_profile(
            values, name=name, sample_size=sample_size, seed=seed, max_chars=max_text_chars
        )
    if kind == "embedding":
        return embedding_profile(values, name=name, sample_size=sample_size, seed=seed)
    if kind == "numeric":
        try:
            finite, dropped = _frames.numeric_values(values)
        except (TypeError, ValueError) as exc:
            raise DriftInputInvalid(f"a numeric column holds non-numeric values: {exc}") from exc
        integer = _frames.family(values) == "int"
        return NumericProfile.from_values(
            finite, dropped, exact_limit=exact_limit, sketch_size=sketch_size, integer=integer
        )
    counts, dropped = _frames.category_counts(values)
    return CategoricalProfile(sum(counts.values()), dropped, counts)


def build_profile(
    data: Any,
    *,
    columns: list[str] | None = None,
    kinds: Mapping[str, Kind] | None = None,
    exact_limit: int | None = DEFAULT_EXACT_LIMIT,
    sketch_size: int = DEFAULT_SKETCH_SIZE,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    seed: int = DEFAULT_SEED,
    max_text_chars: int = MAX_TEXT_CHARS,
) -> Profile:
    """The profile of a table (pandas, pyarrow or a mapping of arrays).

    ``columns`` picks columns (default: all but dates and times); ``kinds`` overrides the
    kind inferred from a column's type (e.g. ``{"zip": "categorical"}`` for integer codes,
    ``{"notes": "text"}``, ``{"vec": "embedding"}``). Text and embedding columns keep a
    sample of ``sample_size`` rows drawn with ``seed``; a sampled text longer than
    ``max_text_chars`` is an error.
    """
    builder = ProfileBuilder(
        columns=columns,
        kinds=kinds,
        exact_limit=exact_limit,
        sketch_size=sketch_size,
        sample_size=sample_size,
        seed=seed,
        max_text_chars=max_text_chars,
    )
    builder.add(data)
    return builder.build()


def _map_columns(work: Callable[[T], R], items: Sequence[T], workers: int | None) -> list[R]:
    """``work`` over ``items`` in order, on up to ``workers`` threads (default: the CPU
    count, at most 4): per-column summaries are numpy sorts and counts, which release the GIL."""
    count = min(workers or min(4, os.cpu_count() or 1), len(items))
    if count <= 1:
        return [work(item) for item in items]
    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(work, items))


@dataclass
class ProfileBuilder:
    """Builds a profile from batches, for references larger than memory.

    Numeric values are kept whole (sorted chunks, merged at :meth:`build`) until a column's rows
    pass ``exact_limit``; from then on each batch is sketched and the sketches merged as a
    binary counter merges bits (:class:`~lockgate.evals.drift.sketch.SketchBuilder`). Kinds that
    depend on distinct counts (integers, strings; see ``_frames``) are settled at :meth:`build`.
    ``workers``: threads summarising a batch's columns (default: the CPU count, at most 4).
    """

    columns: list[str] | None = None
    kinds: Mapping[str, Kind] | None = None
    exact_limit: int | None = DEFAULT_EXACT_LIMIT
    sketch_size: int = DEFAULT_SKETCH_SIZE
    sample_size: int = DEFAULT_SAMPLE_SIZE
    seed: int = DEFAULT_SEED
    max_text_chars: int = MAX_TEXT_CHARS
    workers: int | None = None
    _families: dict[str, _frames.Family] = field(default_factory=dict)
    _numeric: dict[str, _NumericColumn] = field(default_factory=dict)
    _categorical: dict[str, CategoricalProfile] = field(default_factory=dict)
    _texts: dict[str, RawTexts] = field(default_factory=dict)
    _embeddings: dict[str, EmbeddingProfile] = field(default_factory=dict)
    _skipped: dict[str, str] = field(default_factory=dict)
    _rows: int = 0

    def add(self, batch: Any) -> None:
        """Add the rows of one batch (a table with at least the profile's columns)."""
        names = _frames.column_names(batch)
        if not self._families and not self._skipped:
            self._families, self._skipped = _families(batch, names, self.columns, self.kinds)
        missing = [name for name in self._families if name not in names]
        if missing:
            raise DriftInputInvalid(f"a batch lacks the columns {missing}", param="columns")
        self._rows += _frames.row_count(batch)
        forced = self.kinds or {}
        summarised: list[tuple[str, Any, Kind]] = []
        for name, family in self._families.items():
            values = _frames.column(batch, name)
            if family == "embedding":
                vectors = embedding_profile(
                    values, name=name, sample_size=self.sample_size, seed=self.seed
                )
                held_vectors = self._embeddings.get(name)
                self._embeddings[name] = (
                    vectors if held_vectors is None else held_vectors.merge(vectors, name=name)
                )
                continue
            if family == "string":  # text or categorical: settled at build()
                texts = self._texts.setdefault(
                    name, RawTexts(seed=self.seed, size=self.sample_size)
                )
                texts.add(values)
                if forced.get(name) == "text":
                    continue
            kind: Kind = "numeric" if family in ("float", "int") else "categorical"
            summarised.append((name, values, kind))
        # the columns' summaries (a sort each, which releases the GIL) on threads, merged here
        parts = _map_columns(lambda item: profile_column(item[1], item[2], exact_limit=None),
                             summarised, self.workers)  # fmt: skip
        for (name, _, _), part in zip(summarised, parts, strict=True):
            if isinstance(part, CategoricalProfile):
                held = self._categorical.get(name)
                self._categorical[name] = part if held is None else held.merge(part)
            else:
                column = self._numeric.setdefault(
                    name, _NumericColumn(self.exact_limit, self.sketch_size)
                )
                assert isinstance(part, NumericProfile)
                column.add(part)

    def build(self) -> Profile:
        if not self._families and not self._skipped:
            raise DriftInputInvalid("no batch was added to the profile", param="data")
        columns: dict[str, ColumnProfile] = {}
        skipped = dict(self._skipped)
        for name, family in self._families.items():
            forced = (self.kinds or {}).get(name)
            if family == "embedding":
                columns[name] = self._embeddings[name]
                continue
            if forced == "text":
                columns[name] = self._texts[name].profile(name, self.max_text_chars)
                continue
            profile: ColumnProfile = (
                self._numeric[name].build() if name in self._numeric else self._categorical[name]
            )
            n_distinct = getattr(profile, "n_distinct", None)
            kind = forced or _frames.kind_of(family, profile.n, n_distinct or 2**62)
            if kind == "categorical" and isinstance(profile, NumericProfile):
                profile = _as_categorical(profile)
            if kind == "text":
                texts = self._texts[name]
                if texts.blank_share() < TEXT_BLANK_SHARE:
                    skipped[name] = (
                        "more than half of its values distinct and mostly without blanks "
                        "(identifiers?); name it in text_columns to check it as text"
                    )
                    continue
                profile = texts.profile(name, self.max_text_chars)
            columns[name] = profile
        return Profile(columns, self._rows, skipped)


@dataclass
class _NumericColumn:
    limit: int | None
    sketch_size: int
    summary: NumericProfile | None = None  # moments, extremes, distinct sets; no values
    chunks: list[Floats] = field(default_factory=list)
    sketches: SketchBuilder | None = None

    def add(self, part: NumericProfile) -> None:
        bare = replace(part, values=None, sketch=None)
        self.summary = bare if self.summary is None else self.summary.merge(bare)
        if part.values is None or part.values.size == 0:
            return
        if self.sketches is not None:
            self.sketches.add(QuantileSketch.from_sorted(part.values, self.sketch_size))
            return
        self.chunks.append(part.values)
        if self.limit is not None and self.summary.n > self.limit:
            self.sketches = SketchBuilder(self.sketch_size)
            for chunk in self.chunks:
                self.sketches.add(QuantileSketch.from_sorted(chunk, self.sketch_size))
            self.chunks = []

    def build(self) -> NumericProfile:
        assert self.summary is not None
        if self.sketches is not None:
            return replace(self.summary, sketch=self.sketches.build())
        values = np.concatenate(self.chunks) if self.chunks else np.empty(0)
        if len(self.chunks) > 1:
            values.sort(kind="stable")  # runs of sorted chunks: a merge
        return replace(self.summary, values=values)


def _families(
    data: Any, names: list[str], columns: list[str] | None, kinds: Mapping[str, Kind] | None
) -> tuple[dict[str, _frames.Family], dict[str, str]]:
    overrides = dict(kinds or {})
    for name, kind in overrides.items():
        if kind not in _frames.KINDS:
            raise DriftInputInvalid(f"column {name!r}: unknown kind {kind!r}", param="kinds")
    chosen = list(columns) if columns is not None else names
    families: dict[str, _frames.Family] = {}
    skipped: dict[str, str] = {}
    for name in chosen:
        if name not in names:
            raise DriftInputInvalid(
                f"the data has no column {name!r} (columns: {', '.join(names)})", param="columns"
            )
        forced = overrides.get(name)
        family = _frames.family(_frames.column(data, name))
        if forced == "text":
            if family not in ("string", "other"):
                raise DriftInputInvalid(
                    f"column {name!r} is named a text column but holds {family} values",
                    param=name,
                )
            family = "string"
        elif forced == "embedding":
            if family not in ("embedding", "other"):
                raise DriftInputInvalid(
                    f"column {name!r} is named an embedding column but holds {family} values, "
                    "not vectors",
                    param=name,
                )
            family = "embedding"
        elif forced is not None:
            family = "float" if forced == "numeric" else "categorical"
        if family == "other":
            skipped[name] = "dates, times and objects other than strings are not checked"
            if columns is not None:
                raise DriftInputInvalid(
                    f"column {name!r}: {skipped[name]}; give it a kind or leave it out",
                    param="columns",
                )
            continue
        families[name] = family
    return families, skipped


def _as_categorical(profile: NumericProfile) -> CategoricalProfile:
    """An integer column of few values, counted per value (Evidently's categorical integers)."""
    if profile.distinct is None or profile.distinct_counts is None:
        raise DriftInputInvalid("only a column of few distinct values can be categorical")
    keys = [int(v) if float(v).is_integer() else float(v) for v in profile.distinct.tolist()]
    counts: dict[Category, int] = dict(zip(keys, profile.distinct_counts.tolist(), strict=True))
    return CategoricalProfile(profile.n, profile.n_dropped, counts)


def _count_distinct(ordered: Floats) -> int:
    return int(np.count_nonzero(ordered[1:] != ordered[:-1])) + 1 if ordered.size else 0


def _small_distinct(ordered: Floats) -> tuple[Floats | None, Ints | None]:
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    if starts.size > SMALL_DISTINCT:
        return None, None
    counts = np.diff(np.append(starts, ordered.size)).astype(np.int64)
    return ordered[starts].copy(), counts


def _merge_small(a: NumericProfile, b: NumericProfile) -> tuple[Floats | None, Ints | None]:
    if a.distinct is None or b.distinct is None:
        return None, None
    assert a.distinct_counts is not None and b.distinct_counts is not None
    values = np.concatenate((a.distinct, b.distinct))
    counts = np.concatenate((a.distinct_counts, b.distinct_counts))
    keys, inverse = np.unique(values, return_inverse=True)
    if keys.size > SMALL_DISTINCT:
        return None, None
    return keys, np.bincount(inverse, weights=counts, minlength=keys.size).astype(np.int64)
