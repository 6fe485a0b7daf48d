"""Reading columns from the tables users hand in: pandas, pyarrow, or a mapping of arrays.

A column's *kind* follows Evidently 0.7's ``infer_column_type``: floats are ``numeric``;
integers are ``numeric`` with more than 10 distinct values, else ``categorical``; strings are
``categorical``, or ``text`` when more than half the non-missing rows are distinct; booleans
and pandas ``category`` columns are ``categorical``; an ``object`` column is a string column
when its first and last non-missing values are strings, an ``embedding`` column when they are
vectors (lists, tuples, numpy arrays; also a pyarrow list column or a 2-D numpy array), else
it is left out, as are dates and times. The *family* (:func:`family`) is what the type alone
says; the distinct counts settle the kind once the column is profiled. Where Evidently leaves
a column out as ``Unknown`` only for the spelling of its type (unsigned and nullable
``Int64``/``Float64`` integers and floats, nullable ``boolean``), lockgate checks it like its
plain counterpart.

Cleaning follows Evidently too: NaN, ±inf and missing values (``None``, ``pd.NA``) are
dropped before anything is counted, and the number dropped is kept.

Categories are kept as JSON scalars so a profile can be stored: numpy scalars become Python
ones (``np.int64(3)`` is ``3``), and anything that is not a ``str``, ``int``, ``float`` or
``bool`` (a date, a tuple) becomes its ``str()``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

Kind = Literal["numeric", "categorical", "text", "embedding"]
Family = Literal["float", "int", "string", "categorical", "embedding", "other"]
Category = str | int | float | bool
Floats = npt.NDArray[np.float64]

KINDS: tuple[Kind, ...] = ("numeric", "categorical", "text", "embedding")
INTEGER_CARDINALITY_LIMIT = 10  # integer columns with at most this many values are categorical
TEXT_DISTINCT_SHARE = 0.5  # string columns with a larger share of distinct values are text


def column_names(data: Any) -> list[str]:
    """The column names of a pandas DataFrame, a pyarrow Table/RecordBatch or a mapping."""
    if _is_pandas_frame(data):
        return [str(c) for c in data.columns]
    if _is_arrow_table(data):
        return [str(c) for c in data.schema.names]
    if isinstance(data, Mapping):
        return [str(c) for c in data]
    raise TypeError(
        "drift data must be a pandas DataFrame, a pyarrow Table or RecordBatch, or a mapping "
        f"of column name to array; got {type(data).__name__}"
    )


def row_count(data: Any) -> int:
    if _is_pandas_frame(data) or _is_arrow_table(data):
        return len(data)
    lengths = {len(values) for values in data.values()}
    return lengths.pop() if len(lengths) == 1 else max(lengths, default=0)


def column(data: Any, name: str) -> Any:
    """The raw column ``name`` (a pandas Series, a pyarrow ChunkedArray/Array, or an array)."""
    if _is_pandas_frame(data):
        return data[name]
    if _is_arrow_table(data):
        return data.column(name)
    return data[name]


def family(values: Any) -> Family:
    """What a column's type says of its kind (see the module docstring); ``other``: left out."""
    if isinstance(values, np.ndarray) and values.ndim == 2:
        return "embedding"
    if isinstance(values, list | tuple):  # numpy would read a list of vectors as a matrix
        first = next((v for v in values if v is not None and not _is_scalar_nan(v)), None)
        if isinstance(first, list | tuple | np.ndarray):
            return "embedding"
    kind_char = _dtype_kind(values)
    if kind_char == "f":
        return "float"
    if kind_char in "iu":
        return "int"
    if kind_char == "S":
        return "string"
    if kind_char == "O":
        if _ends_are_strings(values):
            return "string"
        return "embedding" if _ends_are_vectors(values) else "other"
    if kind_char == "L":
        return "embedding"
    if kind_char in "bC":
        return "categorical"
    return "other"


def kind_of(family: Family, n: int, n_distinct: int) -> Kind | None:
    """The kind of a profiled column of ``family`` with ``n`` rows and ``n_distinct`` values."""
    if family == "float":
        return "numeric"
    if family == "int":
        return "categorical" if n_distinct <= INTEGER_CARDINALITY_LIMIT else "numeric"
    if family == "string":
        return "text" if n_distinct > n * TEXT_DISTINCT_SHARE else "categorical"
    if family == "categorical":
        return "categorical"
    if family == "embedding":
        return "embedding"
    return None


def numeric_values(values: Any) -> tuple[Floats, int]:
    """The finite values of a column as float64, and how many were dropped (NaN, ±inf, null)."""
    array = _as_float_array(values)
    finite = np.isfinite(array)
    kept = int(np.count_nonzero(finite))
    if kept == array.size:
        return array, 0
    return array[finite], int(array.size - kept)


def category_counts(values: Any) -> tuple[dict[Category, int], int]:
    """Counts per category, missing values and ±inf dropped, and how many were dropped."""
    raw = _value_counts(values)
    counts: dict[Category, int] = {}
    total = 0
    for key, count in raw:
        total += count
        category = _category(key)
        if category is None:
            continue
        counts[category] = counts.get(category, 0) + count
    return counts, total - sum(counts.values())


def _category(key: Any) -> Category | None:
    if key is None:
        return None
    if hasattr(key, "item") and not isinstance(key, str | bytes):
        key = key.item()
    if isinstance(key, float) and not math.isfinite(key):
        return None
    if isinstance(key, str | bool | int | float):
        return key
    if _is_missing(key):
        return None
    return str(key)


def _is_missing(key: Any) -> bool:
    try:
        import pandas as pd  # type: ignore[import-untyped]
    except ImportError:  # pragma: no cover - pandas absent: only None/NaN are missing
        return False
    return bool(pd.isna(key)) if np.ndim(key) == 0 else False


def _value_counts(values: Any) -> Iterable[tuple[Any, int]]:
    if _is_arrow(values):
        values = values.to_pandas() if _has_pandas() else values.to_pylist()
    if hasattr(values, "value_counts") and hasattr(values, "dtype"):  # a pandas Series
        counted = values.value_counts(dropna=True, sort=False)
        return zip(counted.index.tolist(), counted.to_numpy().tolist(), strict=True)
    if _has_pandas():
        import pandas as pd

        counted = pd.Series(np.asarray(values, dtype=object)).value_counts(dropna=True)
        return zip(counted.index.tolist(), counted.to_numpy().tolist(), strict=True)
    return Counter(_as_list(values)).items()  # pragma: no cover - pandas absent


def _as_float_array(values: Any) -> Floats:
    if _is_arrow(values):
        import pyarrow as pa

        return np.asarray(values.cast(pa.float64()).to_numpy(zero_copy_only=False), np.float64)
    if hasattr(values, "to_numpy") and hasattr(values, "dtype"):  # a pandas Series
        if values.dtype == np.float64:
            return np.asarray(values.to_numpy(), dtype=np.float64)
        return np.asarray(values.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)
    return np.asarray(values, dtype=np.float64)


def _dtype_kind(values: Any) -> str:
    """``f``/``i``/``u`` numbers, ``b`` or ``C`` (pandas category) categorical, ``S`` strings,
    ``O`` objects to look into, ``M`` dates and times, ``?`` anything else."""
    if _is_arrow(values):
        import pyarrow as pa

        kind = values.type
        if pa.types.is_floating(kind):
            return "f"
        if pa.types.is_integer(kind):
            return "i"
        if pa.types.is_boolean(kind) or pa.types.is_dictionary(kind):
            return "C"
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            return "S"
        if pa.types.is_list(kind) or pa.types.is_large_list(kind):
            return "L"
        if pa.types.is_fixed_size_list(kind):
            return "L"
        return "M" if pa.types.is_temporal(kind) else "?"
    dtype = getattr(values, "dtype", None)
    if dtype is None:
        dtype = np.asarray(values).dtype
    name = str(dtype)
    if name in ("category", "boolean", "bool"):
        return "C"
    if name.startswith(("string", "str")):
        return "S"
    numpy_dtype = getattr(dtype, "numpy_dtype", None)  # pandas nullable Int64, Float64
    try:
        kind = np.dtype(numpy_dtype if numpy_dtype is not None else dtype).kind
    except TypeError:  # a pandas extension dtype numpy does not know (datetimetz, period)
        return "?"
    return {"U": "S", "b": "C"}.get(kind, kind)


def _ends_are_strings(values: Any) -> bool:
    if hasattr(values, "dropna"):  # a pandas Series
        present = values.dropna()
        return (
            len(present) > 0
            and isinstance(present.iloc[0], str)
            and isinstance(present.iloc[-1], str)
        )
    present = [v for v in _as_list(values) if v is not None and v == v]
    return bool(present) and isinstance(present[0], str) and isinstance(present[-1], str)


def _ends_are_vectors(values: Any) -> bool:
    present = values.dropna() if hasattr(values, "dropna") else None
    if present is not None:
        if len(present) == 0:
            return False
        ends = [present.iloc[0], present.iloc[-1]]
    else:
        cells = [v for v in _as_list(values) if v is not None and not _is_scalar_nan(v)]
        if not cells:
            return False
        ends = [cells[0], cells[-1]]
    return all(isinstance(end, list | tuple | np.ndarray) for end in ends)


def _is_scalar_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _as_list(values: Any) -> Sequence[Any]:
    return list(values.tolist() if hasattr(values, "tolist") else values)


def _is_pandas_frame(data: Any) -> bool:
    return hasattr(data, "columns") and hasattr(data, "dtypes") and hasattr(data, "iloc")


def _is_arrow_table(data: Any) -> bool:
    return hasattr(data, "schema") and hasattr(data, "column") and hasattr(data, "num_rows")


def _is_arrow(values: Any) -> bool:
    return type(values).__module__.startswith("pyarrow")


def _has_pandas() -> bool:
    try:
        import pandas  # noqa: F401
    except ImportError:  # pragma: no cover
        return False
    return True
