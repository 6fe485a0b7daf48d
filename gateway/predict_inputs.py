"""The body of ``POST /v1/models/{NAME@LABEL}:predict``, checked against the model's input
schema and turned into columns.

A body holds exactly one of

==========================  ==========================================================
``instances``               KServe v1 / TF-Serving: a list of rows, each an object
                            (column name to value) or a list (values in schema order)
``dataframe_records``       MLflow: a list of objects
``dataframe_split``         MLflow: ``{"columns": [...], "data": [[...], ...]}`` (an
                            ``index`` is accepted and ignored)
``inputs``                  MLflow: an object of columns (name to a list of values), or
                            a list of rows as ``instances``
==========================  ==========================================================

and optionally ``parameters``: ``{"probabilities": true}`` asks for ``predict_proba`` too.
Any other top-level field, a missing or extra column, a row of the wrong length, a value of
the wrong kind, no rows, or more than ``gateway.predict.max_rows`` rows is refused, naming
the field, the row and the column (``param`` is the path, e.g. ``instances[3].age``).

Values by column kind: ``numeric`` takes JSON numbers, ``bool`` takes ``true``/``false``,
``categorical`` and ``string`` take strings; ``null`` only where the column is nullable.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat
from operator import itemgetter
from typing import Any

from lockgate.gateway.errors import InvalidRequest, RequestTooLarge
from lockgate.registry.input_schema import InputColumn

INPUT_FIELDS = ("instances", "dataframe_records", "dataframe_split", "inputs")
FIELDS = frozenset({*INPUT_FIELDS, "parameters"})
PARAMETERS = frozenset({"probabilities"})
SPLIT_FIELDS = frozenset({"columns", "data", "index"})
_KIND_TYPES: dict[str, frozenset[type]] = {
    "numeric": frozenset({int, float}),
    "bool": frozenset({bool}),
    "categorical": frozenset({str}),
    "string": frozenset({str}),
}
_KIND_WORDS = {"numeric": "a number", "bool": "true or false", "categorical": "a string",
               "string": "a string"}  # fmt: skip


@dataclass(frozen=True)
class Schema:
    """A model's input columns, ready for checking requests."""

    columns: tuple[InputColumn, ...]
    names: tuple[str, ...]
    name_set: frozenset[str]

    @classmethod
    def of(cls, columns: Sequence[InputColumn]) -> Schema:
        names = tuple(c.name for c in columns)
        return cls(tuple(columns), names, frozenset(names))

    def describe(self) -> str:
        return ", ".join(self.names)


@dataclass(frozen=True)
class PredictRequest:
    """The rows of a request as columns (schema order), and what it asked for."""

    columns: dict[str, list[Any]]
    rows: int
    field: str  # the input field the rows came in
    probabilities: bool


def parse_request(body: dict[str, Any], schema: Schema, max_rows: int) -> PredictRequest:
    """Check ``body`` (a parsed JSON object) against ``schema``; 400/413 naming what is wrong."""
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        raise InvalidRequest(
            f"unknown field(s) {', '.join(map(repr, unknown))}: a :predict body holds one of "
            f"{', '.join(INPUT_FIELDS)}, and optionally parameters",
            param=unknown[0],
        )
    given = [f for f in INPUT_FIELDS if f in body]
    if len(given) != 1:
        what = "both " + " and ".join(given) if given else "none of them"
        raise InvalidRequest(
            f"give the rows in exactly one of {', '.join(INPUT_FIELDS)} (found {what})",
            param=given[1] if len(given) > 1 else "instances",
        )
    field = given[0]
    probabilities = _parameters(body.get("parameters"))
    value = body[field]
    if field == "dataframe_split":
        columns, rows = _split(value, schema, max_rows)
    elif field == "inputs" and isinstance(value, dict):
        columns, rows = _column_object(value, schema, max_rows)
    else:
        columns, rows = _rows(field, value, schema, max_rows)
    by_column = field == "inputs" and isinstance(value, dict)
    _check_kinds(columns, schema, field, by_column)
    return PredictRequest(columns, rows, field, probabilities)


def _parameters(value: Any) -> bool:
    if value is None:
        return False
    if not isinstance(value, dict):
        raise InvalidRequest("parameters must be an object", param="parameters")
    unknown = sorted(set(value) - PARAMETERS)
    if unknown:
        raise InvalidRequest(
            f"unknown parameter(s) {', '.join(map(repr, unknown))}: parameters takes "
            "probabilities (true or false)",
            param=f"parameters.{unknown[0]}",
        )
    wanted = value.get("probabilities", False)
    if not isinstance(wanted, bool):
        raise InvalidRequest(
            "parameters.probabilities must be true or false", param="parameters.probabilities"
        )
    return wanted


def _count(field: str, rows: int, max_rows: int) -> None:
    if rows == 0:
        raise InvalidRequest(f"{field} holds no rows: send at least one", param=field)
    if rows > max_rows:
        raise RequestTooLarge(
            f"{field} holds {rows} rows; a request may carry at most {max_rows} "
            "(gateway.predict.max_rows): split it",
        )


def _columns_match(given: Any, schema: Schema, where: str) -> None:
    """400 naming the first missing, then the first extra column of ``given`` (names)."""
    missing = [n for n in schema.names if n not in given]
    if missing:
        raise InvalidRequest(
            f"{where}: missing column {missing[0]!r} (the model takes {schema.describe()})",
            param=f"{where}.{missing[0]}",
        )
    extra = sorted(str(n) for n in given if n not in schema.name_set)
    raise InvalidRequest(
        f"{where}: unknown column {extra[0]!r} (the model takes {schema.describe()})",
        param=f"{where}.{extra[0]}",
    )


def _rows(
    field: str, value: Any, schema: Schema, max_rows: int
) -> tuple[dict[str, list[Any]], int]:
    """A list of rows: all objects (named columns) or all lists (schema order)."""
    if not isinstance(value, list):
        raise InvalidRequest(f"{field} must be a list of rows", param=field)
    _count(field, len(value), max_rows)
    names = schema.names
    if isinstance(value[0], dict):
        name_set = schema.name_set
        # the usual case checked at C speed (a parsed body holds dicts, not subclasses)
        usual = set(map(type, value)) == {dict} and all(
            map(operator.eq, map(dict.keys, value), repeat(name_set))
        )
        for i, row in enumerate(() if usual else value):  # else: find the first bad row
            if not isinstance(row, dict):
                raise InvalidRequest(
                    f"{field}[{i}] is not an object: the rows of {field} are all objects "
                    "(named columns) or all lists (values in schema order)",
                    param=f"{field}[{i}]",
                )
            if row.keys() != name_set:
                _columns_match(row, schema, f"{field}[{i}]")
        return {n: list(map(itemgetter(n), value)) for n in names}, len(value)
    width = len(names)
    usual = set(map(type, value)) == {list} and set(map(len, value)) == {width}
    for i, row in enumerate(() if usual else value):  # else: find the first bad row
        if not isinstance(row, list):
            raise InvalidRequest(
                f"{field}[{i}] is neither an object nor a list: each row is an object (named "
                "columns) or a list of values in schema order, all of one form",
                param=f"{field}[{i}]",
            )
        if len(row) != width:
            raise InvalidRequest(
                f"{field}[{i}] has {len(row)} values; the model takes {width} columns, in this "
                f"order: {schema.describe()}",
                param=f"{field}[{i}]",
            )
    return {n: list(map(itemgetter(j), value)) for j, n in enumerate(names)}, len(value)


def _split(value: Any, schema: Schema, max_rows: int) -> tuple[dict[str, list[Any]], int]:
    field = "dataframe_split"
    if not isinstance(value, dict):
        raise InvalidRequest(f"{field} must be an object with columns and data", param=field)
    unknown = sorted(str(k) for k in set(value) - SPLIT_FIELDS)
    if unknown:
        raise InvalidRequest(
            f"{field}: unknown field {unknown[0]!r} (it takes columns, data and index)",
            param=f"{field}.{unknown[0]}",
        )
    columns, data = value.get("columns"), value.get("data")
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise InvalidRequest(f"{field}.columns must be a list of column names", param=field)
    if not isinstance(data, list):
        raise InvalidRequest(f"{field}.data must be a list of rows", param=f"{field}.data")
    if len(set(columns)) != len(columns):
        raise InvalidRequest(f"{field}.columns names a column twice", param=f"{field}.columns")
    if set(columns) != schema.name_set:
        _columns_match(columns, schema, f"{field}.columns")
    _count(f"{field}.data", len(data), max_rows)
    width = len(columns)
    usual = set(map(type, data)) == {list} and set(map(len, data)) == {width}
    for i, row in enumerate(() if usual else data):  # else: find the first bad row
        if not isinstance(row, list) or len(row) != width:
            got = f"{len(row)} values" if isinstance(row, list) else "not a list"
            raise InvalidRequest(
                f"{field}.data[{i}] has {got}; each row is a list of {width} values, one per "
                f"column of {field}.columns",
                param=f"{field}.data[{i}]",
            )
    position = {c: j for j, c in enumerate(columns)}
    return {n: list(map(itemgetter(position[n]), data)) for n in schema.names}, len(data)


def _column_object(
    value: dict[str, Any], schema: Schema, max_rows: int
) -> tuple[dict[str, list[Any]], int]:
    field = "inputs"
    if value.keys() != schema.name_set:
        _columns_match(value, schema, field)
    lengths = set()
    for name in schema.names:
        values = value[name]
        if not isinstance(values, list):
            raise InvalidRequest(
                f"{field}.{name} must be a list of values (inputs as an object maps each column "
                "to its values)",
                param=f"{field}.{name}",
            )
        lengths.add(len(values))
    if len(lengths) != 1:
        raise InvalidRequest(
            f"the columns of {field} have different lengths "
            f"({', '.join(map(str, sorted(lengths)))})",
            param=field,
        )
    _count(field, lengths.pop(), max_rows)
    return {n: value[n] for n in schema.names}, len(value[schema.names[0]])


def _check_kinds(
    columns: dict[str, list[Any]], schema: Schema, field: str, by_column: bool
) -> None:
    for column in schema.columns:
        values = columns[column.name]
        allowed = _KIND_TYPES[column.kind]
        if column.nullable:
            allowed = allowed | {type(None)}
        if set(map(type, values)) <= allowed:  # one pass at C speed
            continue
        i = next(i for i, v in enumerate(values) if type(v) not in allowed)
        value = values[i]
        shown = "null" if value is None else f"{type(value).__name__} {_short(value)}"
        where = _where(field, i, column.name, by_column)
        raise InvalidRequest(
            f"{where}: column {column.name!r} is {column.kind} and takes "
            f"{_KIND_WORDS[column.kind]}{' or null' if column.nullable else ''}, not {shown}",
            param=where,
        )


def _where(field: str, row: int, column: str, by_column: bool) -> str:
    """Where a value is in the body: its field, row and column."""
    if field == "dataframe_split":
        return f"{field}.data[{row}].{column}"
    if by_column:
        return f"{field}.{column}[{row}]"
    return f"{field}[{row}].{column}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
