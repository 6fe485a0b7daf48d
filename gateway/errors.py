"""Errors raised by the gateway; each becomes an OpenAI-shaped error body with its status.

Hierarchy::

    LockgateError (registry.errors)      base of every user-facing error
    └── GatewayError
        ├── InvalidRequest      (400) malformed JSON, missing or ill-typed fields
        ├── ModelNotFound       (404) no route, and not a registry:/prompt: reference
        ├── UpstreamError       (the upstream's status) an upstream answered with an error;
        │                       its OpenAI-shaped body is passed through unchanged
        ├── UpstreamUnreachable (502) connecting to or reading from the upstream failed
        └── UpstreamTimeout     (504) the upstream did not answer in time

Registry errors raised at request time (``NotFound`` 404 for an unknown prompt or label,
``VariablesMismatch`` 400 naming missing and unknown variables, ``DatabaseError`` 503) reach
the client the same way, through the one exception handler in ``gateway.app``.
"""

from __future__ import annotations

from typing import Any

from registry.errors import LockgateError

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    409: "conflict_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


class GatewayError(LockgateError):
    code = "gateway_error"


class InvalidRequest(GatewayError):
    status_code = 400
    code = "invalid_request"


class ModelNotFound(GatewayError):
    status_code = 404
    code = "model_not_found"
    error_type = "not_found_error"


class UpstreamError(GatewayError):
    """An error response from the upstream, kept as it came when it is OpenAI-shaped."""

    code = "upstream_error"

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        body: dict[str, Any] | None = None,
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message, param=param)
        self.status_code = status_code
        self.error_type = ERROR_TYPES.get(
            status_code, "server_error" if status_code >= 500 else "invalid_request_error"
        )
        if code is not None:
            self.code = code
        self.body = body

    def to_dict(self) -> dict[str, object]:
        if self.body is not None:
            return self.body
        return super().to_dict()


class UpstreamUnreachable(GatewayError):
    status_code = 502
    code = "upstream_unreachable"
    error_type = "server_error"


class UpstreamTimeout(GatewayError):
    status_code = 504
    code = "upstream_timeout"
    error_type = "server_error"
