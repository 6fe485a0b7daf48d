"""Stored forms of a profile: JSON (``to_dict``) and bytes (``to_bytes``), format version 1.

Bytes::

    b"LGDRIFT\\0"                  8 bytes, the magic
    header length                  4 bytes, unsigned little-endian
    header                         UTF-8 JSON, keys sorted; the same document as ``to_dict``
                                   except that each array is ``{"offset", "length", "dtype"}``
    zero padding                   to a multiple of 8 bytes
    arrays                         little-endian ``<f8`` / ``<i8``, each 8-byte aligned;
                                   ``offset`` counts from the end of the padding

The document: ``{"format": "lockgate.drift.profile", "format_version": 1, "n_rows",
"skipped": {column: reason}, "columns": [...]}``; a column has ``name``, ``kind``, ``n``,
``n_dropped``; a categorical one ``counts`` as ``[[category, count], ...]`` (the JSON type of
a category is kept: ``1`` and ``"1"`` differ); a numeric one ``mean``, ``m2``, ``minimum``,
``maximum``, ``integer`` and the arrays ``values``, ``distinct``, ``distinct_counts``,
``sketch_values``, ``sketch_weights`` (``null`` when absent) with ``sketch_size`` and
``sketch_compactions``; a text one ``sample`` (the sampled strings), ``sample_size`` and
``seed``; an embedding one ``dim``, ``sample_size``, ``seed`` and the array ``sample``
(rows x ``dim`` numbers, row-major; ``sample_rows``). Text and embedding columns are an
addition within version 1: a reader that predates them refuses them as an unknown kind.
Non-finite numbers are written as ``null``. A reader refuses another
``format`` or a ``format_version`` it does not know (:class:`ProfileInvalid`).
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from lockgate.evals.drift.embeddings import EmbeddingProfile
from lockgate.evals.drift.errors import ProfileInvalid
from lockgate.evals.drift.profile import (
    CategoricalProfile,
    ColumnProfile,
    NumericProfile,
    Profile,
)
from lockgate.evals.drift.sketch import QuantileSketch
from lockgate.evals.drift.text import TextProfile

FORMAT = "lockgate.drift.profile"
FORMAT_VERSION = 1
MAGIC = b"LGDRIFT\0"
_ARRAYS = ("values", "distinct", "distinct_counts", "sketch_values", "sketch_weights")
_DTYPES = {"<f8": np.float64, "<i8": np.int64}

Array = npt.NDArray[Any]


def profile_to_dict(profile: Profile) -> dict[str, Any]:
    return _document(profile, lambda array: array.tolist())


def profile_from_dict(data: Mapping[str, Any]) -> Profile:
    def read(ref: Any, dtype: str) -> Array:
        return np.asarray(ref, dtype=_DTYPES[dtype])

    return _profile(data, read)


def profile_to_bytes(profile: Profile) -> bytes:
    chunks: list[bytes] = []
    offset = 0

    def put(array: Array) -> dict[str, Any]:
        nonlocal offset
        dtype = "<f8" if array.dtype.kind == "f" else "<i8"
        raw = np.ascontiguousarray(array, dtype=_DTYPES[dtype]).astype(dtype).tobytes()
        ref = {"offset": offset, "length": int(array.size), "dtype": dtype}
        chunks.append(raw)
        offset += len(raw)
        return ref

    header = json.dumps(_document(profile, put), sort_keys=True, allow_nan=False).encode()
    start = len(MAGIC) + 4 + len(header)
    padding = b"\0" * (-start % 8)
    return b"".join([MAGIC, struct.pack("<I", len(header)), header, padding, *chunks])


def profile_from_bytes(data: bytes) -> Profile:
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 4:
        raise ProfileInvalid("not a lockgate drift profile (the magic bytes are missing)")
    (length,) = struct.unpack_from("<I", data, len(MAGIC))
    start = len(MAGIC) + 4
    try:
        header = json.loads(data[start : start + length].decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProfileInvalid(f"the profile header is not JSON: {exc}") from exc
    body = start + length + (-(start + length) % 8)

    def read(ref: Any, dtype: str) -> Array:
        begin = body + int(ref["offset"])
        end = begin + int(ref["length"]) * 8
        if end > len(data) or ref["dtype"] not in _DTYPES:
            raise ProfileInvalid("the profile is truncated or names an unknown array type")
        return np.frombuffer(data[begin:end], dtype=ref["dtype"]).astype(_DTYPES[dtype])

    return _profile(header, read)


def _document(profile: Profile, put: Callable[[Array], Any]) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "n_rows": profile.n_rows,
        "skipped": dict(profile.skipped),
        "columns": [_column(name, col, put) for name, col in profile.columns.items()],
    }


def _column(name: str, column: ColumnProfile, put: Callable[[Array], Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "kind": column.kind, "n": column.n}
    out["n_dropped"] = column.n_dropped
    if isinstance(column, CategoricalProfile):
        out["counts"] = [[key, count] for key, count in column.counts.items()]
        return out
    if isinstance(column, TextProfile):
        out.update(sample=list(column.sample), sample_size=column.sample_size, seed=column.seed)
        return out
    if isinstance(column, EmbeddingProfile):
        out.update(dim=column.dim, sample_size=column.sample_size, seed=column.seed)
        out["sample_rows"] = int(column.sample.shape[0])
        out["sample"] = put(np.ascontiguousarray(column.sample, dtype=np.float64).reshape(-1))
        return out
    sketch = column.sketch
    arrays: dict[str, Array | None] = {
        "values": column.values,
        "distinct": column.distinct,
        "distinct_counts": column.distinct_counts,
        "sketch_values": None if sketch is None else sketch.values,
        "sketch_weights": None if sketch is None else sketch.weights,
    }
    out.update({key: None if a is None else put(a) for key, a in arrays.items()})
    for key in ("mean", "m2", "minimum", "maximum"):
        value = float(getattr(column, key))
        out[key] = value if math.isfinite(value) else None
    out["integer"] = column.integer
    out["sketch_size"] = None if sketch is None else sketch.size
    out["sketch_compactions"] = None if sketch is None else sketch.compactions
    out["sketch_minimum"] = None if sketch is None else sketch.minimum
    out["sketch_maximum"] = None if sketch is None else sketch.maximum
    return out


def _profile(doc: Mapping[str, Any], read: Callable[[Any, str], Array]) -> Profile:
    if doc.get("format") != FORMAT:
        raise ProfileInvalid(f"not a lockgate drift profile (format {doc.get('format')!r})")
    if doc.get("format_version") != FORMAT_VERSION:
        raise ProfileInvalid(
            f"profile format version {doc.get('format_version')!r} is not supported "
            f"(this lockgate reads version {FORMAT_VERSION}); rebuild the profile"
        )
    try:
        columns = {c["name"]: _read_column(c, read) for c in doc["columns"]}
        return Profile(columns, int(doc["n_rows"]), dict(doc.get("skipped", {})))
    except (KeyError, TypeError, ValueError) as exc:
        raise ProfileInvalid(f"the profile is malformed: {exc!r}") from exc


def _read_column(c: Mapping[str, Any], read: Callable[[Any, str], Array]) -> ColumnProfile:
    if c["kind"] == "categorical":
        counts = {_key(key): int(count) for key, count in c["counts"]}
        return CategoricalProfile(int(c["n"]), int(c["n_dropped"]), counts)
    if c["kind"] == "text":
        sample = tuple(c["sample"])
        if not all(isinstance(text, str) for text in sample):
            raise ValueError("a text sample holds a value that is not a string")
        return TextProfile(
            int(c["n"]), int(c["n_dropped"]), sample, int(c["sample_size"]), int(c["seed"])
        )
    if c["kind"] == "embedding":
        dim, rows = int(c["dim"]), int(c["sample_rows"])
        flat = read(c["sample"], "<f8")
        if flat.size != dim * rows:
            raise ValueError(f"an embedding sample of {flat.size} numbers is not {rows} x {dim}")
        return EmbeddingProfile(
            int(c["n"]),
            int(c["n_dropped"]),
            dim,
            flat.reshape(rows, dim),
            int(c["sample_size"]),
            int(c["seed"]),
        )
    if c["kind"] != "numeric":
        raise ValueError(f"unknown column kind {c['kind']!r}")
    arrays = {
        key: None
        if c[key] is None
        else read(c[key], "<i8" if "counts" in key or "weights" in key else "<f8")
        for key in _ARRAYS
    }
    sketch = None
    if arrays["sketch_values"] is not None and arrays["sketch_weights"] is not None:
        sketch = QuantileSketch(
            arrays["sketch_values"],
            arrays["sketch_weights"],
            _float(c["sketch_minimum"]),
            _float(c["sketch_maximum"]),
            int(c["sketch_size"]),
            int(c["sketch_compactions"]),
        )
    return NumericProfile(
        int(c["n"]),
        int(c["n_dropped"]),
        _float(c["mean"]),
        _float(c["m2"]),
        _float(c["minimum"]),
        _float(c["maximum"]),
        arrays["distinct"],
        arrays["distinct_counts"],
        arrays["values"],
        sketch,
        bool(c["integer"]),
    )


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)


def _key(key: Any) -> Any:
    if isinstance(key, str | bool | int | float):
        return key
    raise ValueError(f"a category must be a JSON string, number or boolean, not {key!r}")
