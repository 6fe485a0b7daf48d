"""Signed webhooks for registry events: the ``webhooks`` section of ``lockgate.yaml`` and the
dispatcher that delivers the outbox (:mod:`registry.events`).

```yaml
webhooks:
  endpoints:
    ops:                                    # the name deliveries are recorded under
      url: https://hooks.example.com/lockgate
      secret_env: LOCKGATE_WEBHOOK_SECRET   # resolved once at start-up, never logged
      events: [label.moved, gate.refused, monitor.fired, budget.threshold]
  max_attempts: 8
  backoff_base_s: 10
  backoff_max_s: 3600
```

Destinations come only from this configuration: nothing in a request or an event chooses a
URL, a header or a secret.

**The request.** ``POST url`` with the JSON body ``{"id", "type", "subject", "created_at",
"data"}`` and the headers ``Lockgate-Event-Id``, ``Lockgate-Event-Type``,
``Lockgate-Delivery-Attempt`` and ``Lockgate-Signature: t=<unix seconds>,v1=<hex>``, where
``v1`` is HMAC-SHA256 keyed with the endpoint's secret over ``f"{t}.".encode() + body`` (the
raw bytes, as Stripe signs). A receiver recomputes it over the body it received, compares in
constant time, and refuses a ``t`` more than a few minutes from its own clock (a replay):
:func:`verify_signature` does exactly that, and docs/monitoring.md shows it in ten lines.

**Delivery.** A 2xx is delivered. 408, 425, 429 and 5xx answers, timeouts and connection
errors are retried (:func:`lockgate.evals.retry.retry_delay`: ``Retry-After`` when the
receiver sent one, else exponential backoff with jitter) until ``max_attempts``; any other
4xx is a permanent failure. The state of each (event, endpoint) pair is a registry row, so a
restarted gateway resumes without losing events; a dispatcher that dies mid-send has its
lease expire and the delivery is sent again: at least once, deduplicate on the event id.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from lockgate.evals.retry import retry_after_s, retry_delay, retryable_status
from lockgate.gateway.clock import SYSTEM_CLOCK, Clock

if TYPE_CHECKING:
    import httpx

    from lockgate.registry.events import EventInfo, Events

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "Lockgate-Signature"
EventType = Literal["label.moved", "gate.refused", "monitor.fired", "budget.threshold"]
ALL_EVENTS: list[EventType] = ["label.moved", "gate.refused", "monitor.fired", "budget.threshold"]
DEFAULT_TOLERANCE_S = 300


class WebhookEndpoint(BaseModel):
    """One receiver of events."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="Where events are POSTed (http:// or https://).")
    secret_env: str = Field(
        description="Name of the environment variable holding the signing secret."
    )
    secret: SecretStr | None = Field(
        default=None, description="Resolved at start-up from secret_env; avoid setting it."
    )
    events: list[EventType] = Field(
        default_factory=lambda: list(ALL_EVENTS), description="The event types sent here."
    )
    timeout_s: float = Field(default=10.0, gt=0, description="Per request.")

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError("a webhook url starts with http:// or https://")
        return url


class WebhookSettings(BaseModel):
    """The ``webhooks`` section: endpoints and how deliveries are retried."""

    model_config = ConfigDict(extra="forbid")

    endpoints: dict[str, WebhookEndpoint] = Field(
        default_factory=dict, description="Receivers by name (deliveries are recorded by name)."
    )
    max_attempts: int = Field(default=8, ge=1, description="Attempts before giving up.")
    backoff_base_s: float = Field(default=10.0, gt=0, description="First retry's wait (max).")
    backoff_max_s: float = Field(default=3600.0, gt=0, description="Longest wait between tries.")
    max_retry_after_s: float = Field(
        default=3600.0, ge=0, description="Longest Retry-After honoured."
    )
    poll_interval_s: float = Field(
        default=5.0, gt=0, description="How often `lockgate serve` looks for due deliveries."
    )
    lease_s: float = Field(
        default=120.0, gt=0, description="A claimed delivery is sent again after this long "
        "if its dispatcher died mid-send."
    )  # fmt: skip
    max_event_age_s: float = Field(
        default=7 * 86400.0, gt=0, description="Events older than this are not delivered."
    )
    budget_thresholds: list[float] = Field(
        default_factory=lambda: [0.5, 0.8, 1.0],
        description="Shares of a key's budget whose crossing emits budget.threshold.",
    )

    @field_validator("endpoints")
    @classmethod
    def _names(cls, endpoints: dict[str, WebhookEndpoint]) -> dict[str, WebhookEndpoint]:
        for name in endpoints:
            if not name or len(name) > 100:
                raise ValueError("an endpoint name has 1 to 100 characters")
        return endpoints

    def with_secrets(self, environ: Mapping[str, str]) -> WebhookSettings:
        """A copy with every ``secret_env`` resolved from ``environ``."""
        resolved = {
            name: e.model_copy(update={"secret": SecretStr(environ[e.secret_env])})
            if e.secret is None and environ.get(e.secret_env)
            else e
            for name, e in self.endpoints.items()
        }
        return self.model_copy(update={"endpoints": resolved})


# --- signing ---------------------------------------------------------------------------


def _secret_bytes(secret: str | bytes | SecretStr) -> bytes:
    if isinstance(secret, SecretStr):
        secret = secret.get_secret_value()
    return secret.encode() if isinstance(secret, str) else secret


def signature(secret: str | bytes | SecretStr, timestamp: int, body: bytes) -> str:
    """The ``Lockgate-Signature`` header value of ``body`` sent at ``timestamp``."""
    mac = hmac.new(_secret_bytes(secret), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify_signature(
    secret: str | bytes | SecretStr,
    header: str | None,
    body: bytes,
    *,
    now: float | None = None,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> bool:
    """Whether ``header`` signs ``body`` with ``secret`` at a time within ``tolerance_s``
    of ``now`` (for receivers; every ``v1`` given is tried, so secrets can be rotated)."""
    if not header:
        return False
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        parts.setdefault(key, []).append(value)
    try:
        timestamp = int(parts["t"][0])
    except (KeyError, ValueError):
        return False
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance_s:
        return False
    expected = signature(secret, timestamp, body).split("v1=", 1)[1]
    return any(hmac.compare_digest(expected, given) for given in parts.get("v1", []))


def event_body(event: EventInfo) -> bytes:
    """The JSON body POSTed for ``event``."""
    doc = {
        "id": event.id, "type": event.type, "subject": event.subject,
        "created_at": event.created_at.isoformat(), "data": event.payload,
    }  # fmt: skip
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


# --- delivery -----------------------------------------------------------------------------


@dataclass
class FlushSummary:
    """What one :meth:`WebhookDispatcher.flush` did."""

    delivered: int = 0
    retrying: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)  # "<endpoint> event <id>: <reason>"

    @property
    def attempted(self) -> int:
        return self.delivered + self.retrying + self.failed


@dataclass(frozen=True)
class _Outcome:
    ok: bool
    retryable: bool
    status_code: int | None
    error: str
    retry_after: float | None = None


class WebhookDispatcher:
    """Delivers due events to every configured endpoint: :meth:`flush` once (``lockgate
    monitor run``), or :meth:`start` a thread that flushes every ``poll_interval_s``
    (``lockgate serve``) until :meth:`stop`.

    ``clock`` and ``rng`` are parameters so tests move time instead of sleeping and seed
    the jitter; ``transport`` (an httpx transport) reaches a test's server through the same
    client."""

    def __init__(
        self,
        events: Events,
        settings: WebhookSettings,
        *,
        clock: Clock = SYSTEM_CLOCK,
        rng: random.Random | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        import httpx

        self._events = events
        self._settings = settings
        self._clock = clock
        self._rng = rng or random.Random()
        self._client = httpx.Client(transport=transport, follow_redirects=False)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        missing = [n for n, e in settings.endpoints.items() if e.secret is None]
        if missing:
            log.warning(
                "webhook endpoint(s) %s have no secret (secret_env unset): not delivering "
                "to them", ", ".join(missing)
            )  # fmt: skip

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock.time(), UTC)

    def flush(self, *, limit: int = 100) -> FlushSummary:
        """One pass: claim what is due for each endpoint and send it."""
        summary = FlushSummary()
        for name, endpoint in self._settings.endpoints.items():
            if endpoint.secret is None or not endpoint.events:
                continue
            claimed = self._events.claim(
                name, endpoint.events, now=self._now(), lease_s=self._settings.lease_s,
                limit=limit, max_age_s=self._settings.max_event_age_s,
            )  # fmt: skip
            for event, attempt in claimed:
                self._deliver(name, endpoint, event, attempt, summary)
        return summary

    def _deliver(
        self, name: str, endpoint: WebhookEndpoint, event: EventInfo, attempt: int,
        summary: FlushSummary,
    ) -> None:  # fmt: skip
        outcome = self._send(endpoint, event, attempt)
        if outcome.ok:
            assert outcome.status_code is not None
            self._events.delivered(name, event.id, status_code=outcome.status_code)
            summary.delivered += 1
            return
        summary.errors.append(f"{name} event {event.id}: {outcome.error}")
        if not outcome.retryable or attempt >= self._settings.max_attempts:
            why = outcome.error if not outcome.retryable else f"{outcome.error} ({attempt} tries)"
            self._events.give_up(name, event.id, status_code=outcome.status_code, error=why)
            log.warning("webhook %s: gave up on event %s: %s", name, event.id, why)
            summary.failed += 1
            return
        delay = retry_delay(self._settings, attempt, outcome.retry_after, self._rng)
        if delay is None:  # asked to wait longer than max_retry_after_s: wait the longest
            delay = self._settings.backoff_max_s
        at = self._now() + timedelta(seconds=delay)
        self._events.retry_at(
            name, event.id, at, status_code=outcome.status_code, error=outcome.error
        )
        summary.retrying += 1

    def _send(self, endpoint: WebhookEndpoint, event: EventInfo, attempt: int) -> _Outcome:
        import httpx

        assert endpoint.secret is not None
        body = event_body(event)
        headers = {
            "content-type": "application/json",
            "user-agent": "lockgate-webhooks",
            "lockgate-event-id": str(event.id),
            "lockgate-event-type": event.type,
            "lockgate-delivery-attempt": str(attempt),
            SIGNATURE_HEADER: signature(endpoint.secret, int(self._clock.time()), body),
        }
        try:
            response = self._client.post(
                endpoint.url, content=body, headers=headers, timeout=endpoint.timeout_s
            )
        except httpx.HTTPError as exc:  # never connected, timed out or cut: retried
            # the exception's text can quote the URL; the record keeps only its kind
            return _Outcome(False, True, None, type(exc).__name__)
        status = response.status_code
        if 200 <= status < 300:
            return _Outcome(True, False, status, "")
        return _Outcome(
            False, retryable_status(status, idempotent=True), status, f"HTTP {status}",
            retry_after_s(response.headers),
        )  # fmt: skip

    # --- in the background (lockgate serve) ---

    def start(self) -> WebhookDispatcher:
        self._thread = threading.Thread(target=self._run, name="lockgate-webhooks", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.flush()
            except Exception:  # boundary: a database outage must not end the thread
                log.warning("webhook delivery pass failed; retrying", exc_info=True)
            self._stop.wait(self._settings.poll_interval_s)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._client.close()

    def close(self) -> None:
        self.stop()


def describe(settings: WebhookSettings) -> dict[str, Any]:
    """The endpoints without their secrets or URLs' query strings (for ``--json`` output)."""
    return {
        name: {"url": e.url.split("?", 1)[0], "events": list(e.events),
               "secret": "set" if e.secret is not None else "missing"}
        for name, e in settings.endpoints.items()
    }  # fmt: skip
