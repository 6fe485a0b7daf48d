"""The input schema of a scikit-learn model: which columns it takes, in which order, of which
kind, derived at registration from the estimator and a reference dataset version.

The columns are the estimator's ``feature_names_in_`` when it was fitted on a DataFrame, in
that order; otherwise every column of the reference dataset but the target, in the
dataset's order (their count must be the estimator's ``n_features_in_``). The target column
is never an input.

Each input column's *kind* comes from the reference data's values:

===========  =================================================================
kind         values (JSON; in a CSV file, the text of a cell)
===========  =================================================================
numeric      numbers (integers or floats; in CSV, text that parses as a number)
bool         ``true`` / ``false`` (in CSV, ``true``/``false`` in any case)
categorical  strings, at most half of them distinct or at most 20 distinct ones
string       strings, more than half distinct and more than 20 distinct values
===========  =================================================================

A column is ``nullable`` when the reference has missing values in it (``null``, an empty
CSV cell, a Parquet null). A column that mixes kinds (numbers and strings), holds lists or
objects, or has no values at all is refused, naming it: the gateway could not check it.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lockgate.registry._extras import require
from lockgate.registry.errors import InvalidInput

Kind = Literal["numeric", "bool", "categorical", "string"]
KINDS: tuple[Kind, ...] = ("numeric", "bool", "categorical", "string")
CATEGORICAL_DISTINCT = 20  # a string column with at most this many values is categorical
_DISTINCT_CAP = 100_000  # distinct strings counted per column; beyond, the column is "string"


@dataclass(frozen=True)
class InputColumn:
    """One column a model takes: its name, kind and whether it may be missing (null)."""

    name: str
    kind: Kind
    nullable: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "nullable": self.nullable}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InputColumn:
        kind = data.get("kind")
        if kind not in KINDS or not isinstance(data.get("name"), str):
            raise InvalidInput(f"not an input column: {data!r}", param="input_schema")
        return cls(data["name"], kind, bool(data.get("nullable", False)))


@dataclass
class _Seen:
    """What a column's values were, as far as the schema cares."""

    numbers: int = 0
    bools: int = 0
    strings: int = 0
    nested: int = 0
    nulls: int = 0
    distinct: set[str] = field(default_factory=set)

    def add(self, value: Any) -> None:
        if value is None:
            self.nulls += 1
        elif isinstance(value, bool):
            self.bools += 1
        elif isinstance(value, int | float):
            self.numbers += 1
        elif isinstance(value, str):
            self.strings += 1
            if len(self.distinct) < _DISTINCT_CAP:
                self.distinct.add(value)
        else:
            self.nested += 1

    def kind(self, column: str, where: str) -> Kind:
        found = [k for k, n in (("numbers", self.numbers), ("true/false", self.bools),
                                ("strings", self.strings)) if n]  # fmt: skip
        if self.nested:
            raise InvalidInput(
                f"column {column!r} of {where} holds lists or objects: a scikit-learn model "
                "takes columns of numbers, booleans or strings",
                param="reference",
            )
        if len(found) > 1:
            raise InvalidInput(
                f"column {column!r} of {where} mixes {' and '.join(found)}: the gateway could "
                "not check its values; clean the column (one kind of value, missing values "
                "as null or an empty cell)",
                param="reference",
            )
        if not found:
            raise InvalidInput(
                f"column {column!r} of {where} has no values, so its kind is unknown",
                param="reference",
            )
        if self.numbers:
            return "numeric"
        if self.bools:
            return "bool"
        many = len(self.distinct) > CATEGORICAL_DISTINCT
        return "string" if many and len(self.distinct) * 2 > self.strings else "categorical"


def _cell(text: str) -> Any:
    """A CSV cell as the value it stands for: None (empty), a number, a bool or the text."""
    if text == "":
        return None
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return float(text)
    except ValueError:
        return text


def _rows_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open("r", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def _rows_csv(path: Path) -> Iterator[dict[str, Any]]:
    with path.open("r", encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            yield {k: _cell(v) for k, v in row.items()}


def _rows_parquet(path: Path) -> Iterator[dict[str, Any]]:
    pq = require("pyarrow.parquet", feature="Parquet datasets", extra="datasets")
    for batch in pq.ParquetFile(path).iter_batches():
        yield from batch.to_pylist()


_READERS = {"jsonl": _rows_jsonl, "csv": _rows_csv, "parquet": _rows_parquet}


def column_kinds(
    path: Path, fmt: str, columns: Sequence[str], where: str
) -> dict[str, tuple[Kind, bool]]:
    """(kind, nullable) of each of ``columns`` over every row of the dataset at ``path`` (a
    file or a folder of files of format ``fmt``); ``where`` names the dataset in errors."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    seen = {name: _Seen() for name in columns}
    for file in files:
        if file.name.startswith("."):
            continue
        for row in _READERS[fmt](file):
            for name, stats in seen.items():
                stats.add(row.get(name))
    return {name: (stats.kind(name, where), stats.nulls > 0) for name, stats in seen.items()}


def input_columns(
    estimator: Any, dataset_columns: Sequence[str], target: str | None, where: str
) -> list[str]:
    """The names of the columns ``estimator`` takes, in order (see the module docstring)."""
    if target is not None and target not in dataset_columns:
        raise InvalidInput(
            f"target column {target!r} is not a column of {where} "
            f"(columns: {', '.join(dataset_columns)})",
            param="target",
        )
    names = getattr(estimator, "feature_names_in_", None)
    if names is not None:
        features = [str(n) for n in names]
        if target is not None and target in features:
            raise InvalidInput(
                f"target column {target!r} is one of the model's input features: the target "
                "is what the model predicts, never an input",
                param="target",
            )
        missing = [f for f in features if f not in dataset_columns]
        if missing:
            raise InvalidInput(
                f"the model takes column(s) {', '.join(map(repr, missing))}, which {where} "
                "lacks: give a reference dataset with the columns the model was fitted on",
                param="reference",
            )
        return features
    features = [c for c in dataset_columns if c != target]
    expected = getattr(estimator, "n_features_in_", None)
    if expected is not None and expected != len(features):
        besides = " besides the target" if target is not None else ""
        raise InvalidInput(
            f"the model takes {expected} features, and {where} has {len(features)} "
            f"columns{besides} ({', '.join(features)}): name the target with --target, or "
            "give a reference dataset holding only the model's features (and the target)",
            param="reference",
        )
    return features


def derive_schema(
    estimator: Any, path: Path, fmt: str, dataset_columns: Sequence[str],
    target: str | None, where: str,
) -> list[InputColumn]:  # fmt: skip
    """The input schema of ``estimator`` from the reference dataset at ``path``."""
    names = input_columns(estimator, dataset_columns, target, where)
    kinds = column_kinds(path, fmt, names, where)
    return [InputColumn(name, *kinds[name]) for name in names]
