"""Errors raised by the registry, and the base of every lockgate error.

Hierarchy::

    LockgateError                  base of all user-facing errors (every package subclasses it)
    ├── MissingExtra               an optional dependency is not installed; says which extra
    └── RegistryError
        ├── NotFound               (404) prompt, model, dataset, run, version, label or artifact
        ├── InvalidInput           (400) bad name, template, variables, spec or dataset file
        │   ├── TemplateSyntaxInvalid   a template does not parse; carries the line
        │   ├── VariablesMismatch       missing or unknown template variables
        │   ├── TemplateLimitExceeded   rendering went past its output, loop or time bounds
        │   └── DatasetFormatError      a malformed data file; carries the row/line number
        ├── NotAllowed             (403) an approver approving their own label move request
        ├── Conflict               (409) a compare-and-set label move lost
        ├── GateRefused            (409, exit 1) a label move whose eval gates did not pass
        ├── ApprovalPending        (202, exit 1) a move of a protected label now waits for an
        │                          approver (not a failure over HTTP: the request was made)
        ├── PreconditionFailed     (412) an ``If-Match`` naming a state that is no longer current
        ├── PreconditionRequired   (428) a compare-and-set change sent without ``If-Match``
        ├── ArtifactCorrupted      (500) stored bytes no longer match their sha256
        └── DatabaseError          (503) database unreachable or schema behind the code

Each error carries ``status_code`` (HTTP), ``code`` (a stable machine-readable string),
``param`` (the offending field, when one is known) and ``exit_code`` (for the CLI:
2 for bad input or an unreachable service).
"""

from __future__ import annotations

from typing import Any


class LockgateError(Exception):
    """A problem the user can act on; the message says what was wrong and what to do."""

    status_code: int = 400
    code: str = "lockgate_error"
    error_type: str = "invalid_request_error"
    exit_code: int = 2

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param

    def to_dict(self) -> dict[str, object]:
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


class MissingExtra(LockgateError):
    code = "missing_extra"
    status_code = 501
    error_type = "server_error"

    def __init__(self, feature: str, extra: str) -> None:
        super().__init__(
            f"{feature} needs an optional dependency: install it with "
            f"pip install 'lockgate[{extra}]'"
        )
        self.extra = extra


class RegistryError(LockgateError):
    code = "registry_error"


class NotFound(RegistryError):
    status_code = 404
    code = "not_found"


class InvalidInput(RegistryError):
    status_code = 400
    code = "invalid_input"


class TemplateSyntaxInvalid(InvalidInput):
    code = "template_syntax_error"

    def __init__(self, message: str, *, line: int | None, param: str | None = None) -> None:
        where = f" (line {line})" if line is not None else ""
        super().__init__(f"template does not parse{where}: {message}", param=param)
        self.line = line


class VariablesMismatch(InvalidInput):
    code = "prompt_variables_mismatch"

    def __init__(self, missing: list[str], unknown: list[str], expected: list[str]) -> None:
        parts = []
        if missing:
            parts.append("missing variable(s): " + ", ".join(missing))
        if unknown:
            parts.append("unknown variable(s): " + ", ".join(unknown))
        exp = ", ".join(expected) if expected else "none"
        super().__init__("; ".join(parts) + f" (the template takes: {exp})", param="variables")
        self.missing = missing
        self.unknown = unknown


class TemplateLimitExceeded(InvalidInput):
    code = "template_limit"


class DatasetFormatError(InvalidInput):
    code = "dataset_format_error"

    def __init__(self, path: str, line: int | None, reason: str) -> None:
        where = f", line {line}" if line is not None else ""
        super().__init__(f"{path}{where}: {reason}", param="path")
        self.path = path
        self.line = line


class Conflict(RegistryError):
    status_code = 409
    code = "conflict"


class NotAllowed(RegistryError):
    status_code = 403
    code = "not_allowed"
    error_type = "permission_error"


class PreconditionFailed(RegistryError):
    status_code = 412
    code = "precondition_failed"


class PreconditionRequired(RegistryError):
    status_code = 428
    code = "precondition_required"


class ApprovalPending(RegistryError):
    """A move of a protected label was asked for: it waits for an approver. ``request`` is
    the pending request (``registry.approvals.LabelRequestInfo``); the label has not moved."""

    status_code = 202
    code = "approval_pending"
    exit_code = 1

    def __init__(self, message: str, request: Any) -> None:
        super().__init__(message, param="label")
        self.request = request


class GateRefused(RegistryError):
    """A label move refused by its gate policy; ``reasons`` lists each check that did not
    pass, ``checks`` every check (``registry.records.GateCheck``), pass ones too."""

    status_code = 409
    code = "gate_failed"
    exit_code = 1

    def __init__(self, message: str, reasons: list[str], checks: list[Any] | None = None) -> None:
        super().__init__(message + "".join(f"\n  - {r}" for r in reasons), param="label")
        self.reasons = reasons
        self.checks = list(checks or [])

    def to_dict(self) -> dict[str, object]:
        """The error shape, with every check's verdict (pass ones too) under ``checks``."""
        out = super().to_dict()
        error = out["error"]
        assert isinstance(error, dict)
        error["checks"] = [c.to_dict() if hasattr(c, "to_dict") else c for c in self.checks]
        return out


class ArtifactCorrupted(RegistryError):
    status_code = 500
    code = "artifact_corrupted"
    error_type = "server_error"


class DatabaseError(RegistryError):
    status_code = 503
    code = "database_unavailable"
    error_type = "server_error"
