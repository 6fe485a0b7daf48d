"""Errors raised by drift checks and reference profiles.

Hierarchy::

    evals.errors.EvalError
    └── DriftError                      a drift check the user can act on
        ├── DriftInputInvalid  (400) *  a column is missing, empty after dropping NaN/±inf,
        │                               of the wrong kind for its test, or the options are wrong
        ├── UnknownDriftTest   (400) *  a test name that is not registered; lists the known ones
        ├── ProfileTooCoarse   (400) *  a test needs what a sketched profile no longer holds
        │                               (e.g. chi-square on a numeric column of many values)
        └── ProfileInvalid     (400) *  stored profile bytes or JSON cannot be read
                                        (bad magic, unknown format version, truncated)

``*``: also a :class:`registry.errors.InvalidInput`. A drifted dataset is not an error: it is
a verdict (``DriftReport.drifted``), and the CLI maps it to exit code 1.
"""

from __future__ import annotations

from lockgate.evals.errors import EvalError
from lockgate.registry.errors import InvalidInput


class DriftError(EvalError):
    code = "drift_error"


class DriftInputInvalid(DriftError, InvalidInput):
    code = "drift_input_invalid"


class UnknownDriftTest(DriftError, InvalidInput):
    code = "unknown_drift_test"

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(
            f"unknown drift test {name!r}; registered tests: {', '.join(sorted(known))}",
            param="method",
        )
        self.name = name


class ProfileTooCoarse(DriftError, InvalidInput):
    code = "profile_too_coarse"


class ProfileInvalid(DriftError, InvalidInput):
    code = "profile_invalid"
