"""Errors raised by evals.

Hierarchy::

    registry.errors.LockgateError       base of every lockgate error (exit_code 2)
    └── EvalError                       a problem with an eval run the user can act on
        ├── SuiteInvalid       (400) *  the suite file is malformed; ``param`` names the field
        ├── ColumnMissing      (400) *  a mapping names a column the dataset lacks
        ├── ResultsInvalid     (400) *  a results, report or shard file cannot be read or merged
        ├── ScorerInvalid               unknown scorer, bad scorer parameters, failing scorer
        ├── TargetUnreachable  (502)    the target's base URL cannot be reached; names the URL
        ├── TargetFailed       (502)    the target kept failing for an example (on_error: fail)
        └── BaselineNotFound   (404)    no baseline run matches ``--baseline``

``*``: also a :class:`registry.errors.InvalidInput`, lockgate's one name for "the input is
wrong" (finetune's ``SpecInvalid`` is one too), so ``except InvalidInput`` catches bad input
from any package; each keeps its own ``code``.

A malformed dataset row raises :class:`registry.errors.DatasetFormatError`, which carries
the file and row number. Every error here exits the CLI with code 2; a failed gate is not
an error (exit 1).
"""

from __future__ import annotations

from lockgate.registry.errors import InvalidInput, LockgateError


class EvalError(LockgateError):
    code = "eval_error"


class SuiteInvalid(EvalError, InvalidInput):
    code = "suite_invalid"

    def __init__(self, message: str, *, param: str | None = None, path: str | None = None) -> None:
        where = f"{path}: " if path else ""
        field = f"{param}: " if param else ""
        super().__init__(f"{where}{field}{message}", param=param)


class ColumnMissing(EvalError, InvalidInput):
    code = "column_missing"

    def __init__(self, column: str, where: str, columns: list[str]) -> None:
        super().__init__(
            f"{where} names the column {column!r}, which the dataset does not have "
            f"(columns: {', '.join(columns) or 'none'})",
            param=where,
        )
        self.column = column


class ScorerInvalid(EvalError):
    code = "scorer_invalid"


class TargetUnreachable(EvalError):
    code = "target_unreachable"
    status_code = 502

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(
            f"cannot reach the target at {url}: {reason}; is the gateway running there?",
            param="target.base_url",
        )
        self.url = url


class TargetFailed(EvalError):
    code = "target_failed"
    status_code = 502


class BaselineNotFound(EvalError):
    code = "baseline_not_found"
    status_code = 404


class ResultsInvalid(EvalError, InvalidInput):
    code = "results_invalid"
