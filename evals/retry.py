"""The one retry policy of lockgate's HTTP calls: the gateway's dispatch
(:mod:`gateway.dispatch`) and the eval runner's client (:mod:`evals.client`) both follow it.
It lives here, below the gateway, because evals may not import the gateway.

What is retried:

* **A connection that could not be made** (nothing was sent): always.
* **A timeout, or a connection lost after the request was sent**: only when the request is
  idempotent. A POST to an inference endpoint (``/chat/completions``, ``/completions``,
  ``/embeddings``; :data:`IDEMPOTENT_PATHS`) is: the server keeps nothing from it, so asking
  again changes nothing but the bill. Every call the gateway dispatches and every call of an
  eval run is inference. Any other POST (one that creates a file, a job, a key) is not
  retried once it may have arrived.
* **An answer with HTTP 408, 425, 429 or 503**: the server says it did not do it; retried.
  **Another 5xx**: the server failed while doing it; retried when the request is idempotent.
  **Any other 4xx**, 409 included, is never retried: the request itself is wrong, or
  conflicts with the server's state, and sending it again cannot change that.

How long to wait before asking the same destination again (:func:`retry_delay`): its
``Retry-After`` (``retry-after-ms``, or ``retry-after`` in seconds; an HTTP date is ignored)
when it sent one, up to ``max_retry_after_s``; a longer one means "do not wait": the gateway
moves on to its next deployment, the eval client gives up on the call. Without one,
exponential backoff with jitter: retry *n* waits a random time between half and all of
``min(backoff_max_s, backoff_base_s * 2 ** (n - 1))``, so clients that failed together do
not come back together. The random source is a parameter, so tests can seed it.

The timing settings are anything with the three attributes of :class:`RetryTiming`:
the gateway passes its ``RetrySettings`` as they are (nothing is built per request).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

IDEMPOTENT_PATHS = frozenset({"/chat/completions", "/completions", "/embeddings"})
"""Paths (after the API base, e.g. ``/v1``) whose POST may be sent again after a timeout."""

_ALWAYS_RETRIED = frozenset({408, 425, 429, 503})
RETRY_AFTER_STATUSES = frozenset({429, 503})
"""The answers whose ``Retry-After`` is honoured."""


class Backoff(Protocol):
    """The timing of retries (the gateway's ``RetrySettings`` is one)."""

    @property
    def backoff_base_s(self) -> float: ...
    @property
    def backoff_max_s(self) -> float: ...
    @property
    def max_retry_after_s(self) -> float: ...


@dataclass(frozen=True, slots=True)
class RetryTiming:
    """A :class:`Backoff` of plain values (the eval client's)."""

    backoff_base_s: float = 0.2
    backoff_max_s: float = 5.0
    max_retry_after_s: float = 10.0


def retryable_status(status: int, *, idempotent: bool) -> bool:
    """Whether an answer with HTTP ``status`` (an error) may be retried."""
    if status in _ALWAYS_RETRIED:
        return True
    return idempotent and status >= 500


def retryable_after_sending(*, idempotent: bool) -> bool:
    """Whether a request that timed out or lost its connection after it was sent may be
    retried (one that never connected always may)."""
    return idempotent


def retry_after_s(headers: Mapping[str, str] | None) -> float | None:
    """Seconds from ``retry-after-ms`` or ``retry-after`` (seconds; an HTTP date is ignored)."""
    if not headers:
        return None
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value:
            try:
                return max(0.0, float(value) * scale)
            except ValueError:
                continue
    return None


def retry_delay(
    policy: Backoff, retry: int, after: float | None, rng: random.Random
) -> float | None:
    """Seconds to wait before retry number ``retry`` (1 for the first) of one destination,
    whose last answer asked for ``after`` seconds (None: it did not say); None when that
    is longer than ``policy.max_retry_after_s``: do not wait for it."""
    if after is not None:
        return after if after <= policy.max_retry_after_s else None
    ceiling = min(policy.backoff_max_s, policy.backoff_base_s * 2.0 ** (retry - 1))
    return ceiling / 2 + rng.random() * ceiling / 2
