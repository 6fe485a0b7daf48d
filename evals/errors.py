"""Errors raised by evals.

Hierarchy::

    registry.errors.LockgateError       base of every lockgate error (exit_code 2)
    └── EvalError                       a problem with an eval run the user can act on
        ├── SuiteInvalid                the suite file is malformed; ``param`` names the field
        ├── ColumnMissing               a mapping names a column the dataset lacks
        ├── ScorerInvalid               unknown scorer, bad scorer parameters, failing scorer
        ├── TargetUnreachable           the target's base URL cannot be reached; names the URL
        ├── TargetFailed                the target kept failing for an example (on_error: fail)
        ├── BaselineNotFound            no baseline run matches ``--baseline``
        └── ResultsInvalid              a results, report or shard file cannot be read or merged

A malformed dataset row raises :class:`registry.errors.DatasetFormatError`, which carries
the file and row number. Every error here exits the CLI with code 2; a failed gate is not
an error (exit 1).
"""

from __future__ import annotations

from lockgate.registry.errors import LockgateError


class EvalError(LockgateError):
    code = "eval_error"


class SuiteInvalid(EvalError):
    code = "suite_invalid"

    def __init__(self, message: str, *, param: str | None = None, path: str | None = None) -> None:
        where = f"{path}: " if path else ""
        field = f"{param}: " if param else ""
        super().__init__(f"{where}{field}{message}", param=param)


class ColumnMissing(EvalError):
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


class ResultsInvalid(EvalError):
    code = "results_invalid"
