"""Errors raised by the gateway; each becomes an OpenAI-shaped error body with its status.

Hierarchy::

    LockgateError (registry.errors)      base of every user-facing error
    └── GatewayError
        ├── InvalidRequest      (400) malformed JSON, missing or ill-typed fields (also a
        │                       registry.errors.InvalidInput: lockgate's one name for bad input)
        ├── AuthenticationFailed (401) no key, or an unknown, revoked or expired one
        ├── PermissionDenied    (403) the key lacks the model or the scope
        │   ├── UpstreamHostNotAllowed (403) a registered model names a host its provider's
        │   │                   key may not go to
        │   ├── ModelUnpriced   (403) a key with a budget, a model without a price
        │   └── LoopbackOnly    (403) open mode (no keys): a foreign Host or Origin
        ├── ModelNotFound       (404) no route, and not a registry:/prompt: reference
        ├── RequestTimeout      (408) the client did not send its body in time
        ├── RequestTooLarge     (413) the body is over gateway.requests.max_body_bytes
        ├── UnsupportedMediaType (415) a JSON endpoint sent another content type
        ├── RateLimited         (429) a key's rpm, tpm, concurrency or budget; Retry-After
        ├── UpstreamError       (the upstream's status) an upstream answered with an error;
        │                       its OpenAI-shaped body is passed through unchanged
        ├── UpstreamUnreachable (502) connecting to or reading from the upstream failed
        │   └── StreamBroken    (502) the upstream stream ended early or sent a bad event
        ├── AllDeploymentsFailed (503) every deployment in the chain failed; lists why
        └── UpstreamTimeout     (504) the upstream did not answer in time

``retry_after_s`` (when set) becomes a ``Retry-After`` header.

Registry errors raised at request time (``NotFound`` 404 for an unknown prompt or label,
``VariablesMismatch`` 400 naming missing and unknown variables, ``DatabaseError`` 503) reach
the client the same way, through the one exception handler in ``gateway.app``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from lockgate.registry.errors import InvalidInput, LockgateError

if TYPE_CHECKING:
    from lockgate.gateway.settings import GatewaySettings

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
    retry_after_s: float | None = None


class AuthenticationFailed(GatewayError):
    status_code = 401
    code = "invalid_api_key"
    error_type = "authentication_error"


class PermissionDenied(GatewayError):
    status_code = 403
    code = "permission_denied"
    error_type = "permission_error"


class UpstreamHostNotAllowed(PermissionDenied):
    code = "upstream_host_not_allowed"


class ModelUnpriced(PermissionDenied):
    code = "model_unpriced"


class LoopbackOnly(PermissionDenied):
    """Open mode (no keys) answers loopback callers only: a page elsewhere cannot drive it.
    ``code`` is ``host_not_loopback`` or ``origin_not_loopback``."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message, param=code.partition("_")[0])
        self.code = code


class RequestTimeout(GatewayError):
    status_code = 408
    code = "request_timeout"
    error_type = "timeout_error"


class RequestTooLarge(GatewayError):
    status_code = 413
    code = "request_too_large"


class UnsupportedMediaType(GatewayError):
    status_code = 415
    code = "unsupported_media_type"


class RateLimited(GatewayError):
    status_code = 429
    error_type = "rate_limit_error"

    def __init__(self, message: str, *, code: str, retry_after_s: float | None) -> None:
        super().__init__(message)
        self.code = code
        self.retry_after_s = retry_after_s


class LimiterUnavailable(GatewayError):
    """The rate limiter could not be asked and ``gateway.limiter_failure`` is ``closed``."""

    status_code = 503
    code = "rate_limiter_unavailable"
    error_type = "server_error"
    retry_after_s = 1.0


class InvalidRequest(GatewayError, InvalidInput):
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
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message, param=param)
        self.status_code = status_code
        self.error_type = ERROR_TYPES.get(
            status_code, "server_error" if status_code >= 500 else "invalid_request_error"
        )
        if code is not None:
            self.code = code
        self.body = body
        self.retry_after_s = retry_after_s

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


class StreamBroken(UpstreamUnreachable):
    """Raised inside a relayed stream; ``code`` says how it broke."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


class AllDeploymentsFailed(GatewayError):
    status_code = 503
    code = "all_deployments_failed"
    error_type = "server_error"

    def __init__(self, route: str, reasons: list[str], retry_after_s: float | None) -> None:
        super().__init__(
            f"every deployment for {route!r} failed: " + "; ".join(reasons)
            + ". Retry later, or check the upstreams.",
        )  # fmt: skip
        self.reasons = reasons
        self.retry_after_s = retry_after_s


class SecretScrubber:
    """Removes the configured upstream keys from error bodies before they leave the gateway
    (an upstream may quote the key it was sent in its error message)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self._secrets = sorted({s.encode() for s in secrets if len(s) >= 8}, key=len, reverse=True)

    @classmethod
    def of(cls, settings: GatewaySettings) -> SecretScrubber:
        keys = [d.api_key for r in settings.routes.values() for d in r.deployments]
        keys += [c.api_key for c in settings.providers.values()]
        return cls(k.get_secret_value() for k in keys if k is not None)

    def __call__(self, content: bytes) -> bytes:
        for secret in self._secrets:
            if secret in content:
                content = content.replace(secret, b"[REDACTED]")
        return content
