"""Text columns: a bounded sample in the profile, and Evidently's domain classifier.

**Profile** (:class:`TextProfile`): the count of present rows, the rows dropped (``None``,
NaN, ``pd.NA``), and a seeded sample of at most ``sample_size`` texts (all of them, in order,
while there are that few; see ``_sample.py``). A text column cannot be summarised by counts or
histograms, so the sample is what a stored profile keeps. Every sampled cell must be a
``str`` of at most ``max_text_chars`` characters; anything else is a
:class:`~lockgate.evals.drift.errors.DriftInputInvalid` naming the column and the row.

**Domain classifier** (Evidently 0.7's ``calculate_text_drift_score``): reference texts are
labelled 0 and current texts 1, concatenated in that order, split 50/50 by
``sklearn.model_selection.train_test_split(test_size=0.5, random_state=seed, shuffle=True)``;
a pipeline ``TfidfVectorizer(sublinear_tf=True, max_df=0.5, stop_words="english")`` +
``SGDClassifier(alpha=1e-4, max_iter=50, penalty="l1", loss="modified_huber",
random_state=seed)`` is fitted on the train half, and the score is the ROC AUC of its
``predict_proba`` on the test half. With ``seed = 42`` (the default) and both sides within the
sample size, the split, the model and the AUC are Evidently's.

* ``abs_text_content_drift``: drift when ``AUC > threshold`` (0.55).
* ``perc_text_content_drift``: drift when ``AUC > cutoff``, the ``threshold``-th percentile
  (0.95) of 1,000 ROC AUCs of random scores on the same test labels. The random scores are
  Evidently's: ``RandomState(seed).randint(0, 10000, 1000)`` gives 1,000 seeds, and seed ``s``
  scores the test rows with ``RandomState(s).rand(len(y_test))``. Under no drift the trained
  classifier's test scores are independent of the test labels, so this is a test at level
  ``1 - threshold`` (a little conservative when scores tie).

The default (Evidently's ``get_default_stattest``): ``abs_text_content_drift`` when the
reference has **more than 1,000** present rows (the full count, not the sample), else
``perc_text_content_drift``.

Where Evidently would fail, lockgate goes on: when TF-IDF keeps no word (every word is a stop
word, or appears in more than half the training texts), it is fitted again with
``max_df=1.0``; the result's ``details["note"]`` says so. Each side needs at least
:data:`MIN_ROWS` texts, so that both halves of the split hold both labels.

The most discriminative words are the classifier's largest positive weights (typical of the
current data) and most negative ones (typical of the reference), at most :data:`TOP_WORDS`
each (Evidently's ``get_typical_words``).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from lockgate.evals.drift import _sample
from lockgate.evals.drift._frames import Kind
from lockgate.evals.drift.errors import DriftInputInvalid
from lockgate.registry._extras import require

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]

MAX_TEXT_CHARS = 100_000  # a longer text in a sample is an error (truncate it first)
MIN_ROWS = 5  # texts or vectors per side for a domain classifier
TOP_WORDS = 10
RANDOM_DRAWS = 1000  # random classifiers behind the percentile cutoff (Evidently's iter_num)
_BLANK = re.compile(r"\s")


@dataclass(frozen=True)
class TextProfile:
    """A text column: rows present and dropped, and a seeded sample of its texts."""

    kind: ClassVar[Kind] = "text"
    n: int
    n_dropped: int
    sample: tuple[str, ...]
    sample_size: int = _sample.DEFAULT_SAMPLE_SIZE
    seed: int = _sample.DEFAULT_SEED

    @property
    def sampled(self) -> bool:
        """True when the sample holds fewer rows than the column."""
        return len(self.sample) < self.n

    def merge(self, other: TextProfile, *, name: str = "?") -> TextProfile:
        size = min(self.sample_size, other.sample_size)
        mine, theirs = _sample.merge_takes(
            self.n, other.n, len(self.sample), len(other.sample), size, self.seed
        )
        sample = tuple(self.sample[i] for i in mine) + tuple(other.sample[i] for i in theirs)
        dropped = self.n_dropped + other.n_dropped
        return TextProfile(self.n + other.n, dropped, sample, size, self.seed)


@dataclass
class RawTexts:
    """A string column's sample before its kind is settled (cells not yet checked)."""

    n: int = 0
    n_dropped: int = 0
    cells: list[Any] = field(default_factory=list)
    seed: int = _sample.DEFAULT_SEED
    size: int = _sample.DEFAULT_SAMPLE_SIZE

    def add(self, values: Any) -> None:
        cells, present, dropped = _sample.sample_cells(values, self.size, self.seed)
        mine, theirs = _sample.merge_takes(
            self.n, present, len(self.cells), len(cells), self.size, self.seed
        )
        self.cells = [self.cells[i] for i in mine] + [cells[i] for i in theirs]
        self.n += present
        self.n_dropped += dropped

    def blank_share(self) -> float:
        """Share of sampled strings holding a blank (space, tab, newline)."""
        if not self.cells:
            return 0.0
        return sum(1 for c in self.cells if isinstance(c, str) and _BLANK.search(c)) / len(
            self.cells
        )

    def profile(self, name: str, max_chars: int = MAX_TEXT_CHARS) -> TextProfile:
        texts = check_texts(self.cells, name, max_chars)
        return TextProfile(self.n, self.n_dropped, texts, self.size, self.seed)


def check_texts(
    cells: Sequence[Any], name: str, max_chars: int = MAX_TEXT_CHARS
) -> tuple[str, ...]:
    """The cells as strings; a clear error for a non-string or an over-long one."""
    for i, cell in enumerate(cells):
        if not isinstance(cell, str):
            raise DriftInputInvalid(
                f"text column {name!r} holds a {type(cell).__name__} ({_short(cell)}) among its "
                f"texts (sampled row {i}); a text column holds strings only",
                param=name,
            )
        if len(cell) > max_chars:
            raise DriftInputInvalid(
                f"text column {name!r} holds a text of {len(cell):,} characters (sampled row "
                f"{i}), more than max_text_chars={max_chars:,}; truncate the texts or raise "
                "the limit",
                param=name,
            )
    return tuple(cells)


def text_profile(
    values: Any,
    *,
    name: str = "?",
    sample_size: int = _sample.DEFAULT_SAMPLE_SIZE,
    seed: int = _sample.DEFAULT_SEED,
    max_chars: int = MAX_TEXT_CHARS,
) -> TextProfile:
    """The profile of one raw text column."""
    raw = RawTexts(seed=seed, size=sample_size)
    raw.add(values)
    return raw.profile(name, max_chars)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


@dataclass(frozen=True)
class ClassifierOutcome:
    """A domain classifier's ROC AUC on the test half, and what explains it."""

    auc: float
    y_test: Ints
    words_current: tuple[str, ...] = ()
    words_reference: tuple[str, ...] = ()
    rows_used: tuple[int, int] = (0, 0)
    note: str = ""


def _sklearn(module: str) -> Any:
    return require(module, feature="text and embedding drift", extra="evals")


def check_sizes(n_reference: int, n_current: int) -> None:
    for side, count in (("reference", n_reference), ("current", n_current)):
        if count < MIN_ROWS:
            raise DriftInputInvalid(
                f"a domain classifier needs at least {MIN_ROWS} rows on each side; the {side} "
                f"data has {count}"
            )


def split(n_reference: int, n_current: int, seed: int) -> tuple[Ints, Ints, Ints, Ints]:
    """Evidently's 50/50 split of reference (label 0) then current (label 1) rows: train and
    test positions into the concatenation, and their labels."""
    selection = _sklearn("sklearn.model_selection")
    labels = np.concatenate((np.zeros(n_reference, np.int64), np.ones(n_current, np.int64)))
    positions = np.arange(labels.size)
    train, test, y_train, y_test = selection.train_test_split(
        positions, labels, test_size=0.5, random_state=seed, shuffle=True
    )
    if len(set(y_train.tolist())) < 2 or len(set(y_test.tolist())) < 2:
        raise DriftInputInvalid(
            "the 50/50 split left one label out of a half; the domain classifier needs more "
            "rows on the smaller side"
        )
    return train, test, y_train, y_test


def text_classifier(
    reference: Sequence[str], current: Sequence[str], *, seed: int = 42
) -> ClassifierOutcome:
    """Evidently's text domain classifier (see the module docstring)."""
    check_sizes(len(reference), len(current))
    texts = np.asarray(list(reference) + list(current), dtype=object)
    train, test, y_train, y_test = split(len(reference), len(current), seed)
    features = _sklearn("sklearn.feature_extraction.text")
    linear = _sklearn("sklearn.linear_model")
    metrics = _sklearn("sklearn.metrics")
    note = ""
    vectorizer = features.TfidfVectorizer(sublinear_tf=True, max_df=0.5, stop_words="english")
    try:
        x_train = vectorizer.fit_transform(texts[train])
    except ValueError:  # no term left: all stop words, or every word in over half the texts
        vectorizer = features.TfidfVectorizer(sublinear_tf=True, max_df=1.0, stop_words="english")
        note = "TF-IDF kept no word with max_df=0.5; fitted again with max_df=1.0"
        try:
            x_train = vectorizer.fit_transform(texts[train])
        except ValueError:
            return ClassifierOutcome(
                0.5, y_test, rows_used=(len(reference), len(current)),
                note="the texts hold no word TF-IDF can use (stop words only); AUC set to 0.5",
            )  # fmt: skip
    model = linear.SGDClassifier(
        alpha=0.0001, max_iter=50, penalty="l1", loss="modified_huber", random_state=seed
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning at max_iter=50, as in Evidently
        model.fit(x_train, y_train)
    proba = model.predict_proba(vectorizer.transform(texts[test]))[:, 1]
    auc = float(metrics.roc_auc_score(y_test, proba))
    words = vectorizer.get_feature_names_out()
    weights = model.coef_[0]
    order = np.argsort(-weights, kind="stable")
    current_words = tuple(str(words[i]) for i in order[:TOP_WORDS] if weights[i] > 0)
    order = np.argsort(weights, kind="stable")
    reference_words = tuple(str(words[i]) for i in order[:TOP_WORDS] if weights[i] < 0)
    return ClassifierOutcome(
        auc, y_test, current_words, reference_words, (len(reference), len(current)), note
    )


def random_aucs(y_test: Ints, seeds: Sequence[int] | Ints) -> Floats:
    """ROC AUCs of random scores: seed ``s`` scores the rows with ``RandomState(s).rand(n)``.

    Equal to ``roc_auc_score(y_test, RandomState(s).rand(n))`` (the rank-sum form; random
    scores do not tie), computed for all seeds at once.
    """
    n = y_test.size
    state = np.random.RandomState()
    rows = []
    for seed in seeds:
        state.seed(int(seed))  # reseeding one state: the same stream, 30x cheaper than a new one
        rows.append(state.random_sample(n))
    scores = np.stack(rows)
    ranks = np.empty_like(scores)
    order = np.argsort(scores, axis=1)
    np.put_along_axis(ranks, order, np.arange(1, n + 1, dtype=np.float64)[None, :], axis=1)
    positive = y_test == 1
    n_pos = int(np.count_nonzero(positive))
    n_neg = n - n_pos
    rank_sum = ranks[:, positive].sum(axis=1)
    return np.asarray((rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg), dtype=np.float64)
