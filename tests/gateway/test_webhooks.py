"""Registry events and signed webhooks: a real receiver on loopback verifies every delivery.

The dispatcher's clock is a :class:`ManualClock`, so retries are tested by moving time, not
by sleeping; the receiver is a real HTTP server that answers a scripted list of statuses.
"""

from __future__ import annotations

import http.server
import json
import logging
import random
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from lockgate.gateway.clock import ManualClock
from lockgate.gateway.limits import KeyLimits, MemoryLimiter
from lockgate.gateway.webhooks import (
    SIGNATURE_HEADER,
    WebhookDispatcher,
    WebhookSettings,
    signature,
    verify_signature,
)
from lockgate.registry import GateRefused, Registry
from lockgate.registry.errors import Conflict, InvalidInput
from lockgate.registry.gates import SuitePin, suite_digest

SECRET = "whsec-test-0123456789abcdef"


class Receiver:
    """A webhook receiver on loopback: answers ``statuses`` in turn (then 200), keeps every
    request, and checks each signature with ``secret`` (``verified``)."""

    def __init__(self, secret: str = SECRET, statuses: list[int] | None = None,
                 headers: dict[str, str] | None = None) -> None:  # fmt: skip
        self.secret = secret
        self.statuses = list(statuses or [])
        self.extra_headers = headers or {}
        self.requests: list[dict[str, Any]] = []
        self.verified: list[bool] = []
        self.clock_now: float | None = None  # the time the receiver checks against
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver.requests.append({"path": self.path, "headers": headers, "body": body})
                given = headers.get(SIGNATURE_HEADER.lower())
                ok = verify_signature(receiver.secret, given, body, now=receiver.clock_now)
                receiver.verified.append(ok)
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                for name, value in receiver.extra_headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def _settings(url: str, *, secret: str | None = SECRET, **over: Any) -> WebhookSettings:
    endpoint: dict[str, Any] = {"url": url, "secret_env": "HOOK_SECRET"}
    environ = {"HOOK_SECRET": secret} if secret else {}
    data = {"endpoints": {"ops": endpoint}, "backoff_base_s": 10, "backoff_max_s": 600, **over}
    return WebhookSettings.model_validate(data).with_secrets(environ)


def _dispatcher(registry: Registry, settings: WebhookSettings, clock: ManualClock,
                seed: int = 7) -> WebhookDispatcher:  # fmt: skip
    return WebhookDispatcher(registry.events, settings, clock=clock, rng=random.Random(seed))


def _clock(receiver: Receiver | None = None) -> ManualClock:
    clock = ManualClock(start=float(int(time.time())) + 1)  # events are written at real time
    if receiver is not None:
        receiver.clock_now = clock.time()
    return clock


def test_signature_round_trip_and_what_breaks_it() -> None:
    body = b'{"id":1}'
    header = signature(SECRET, 1_700_000_000, body)
    assert header.startswith("t=1700000000,v1=")
    assert verify_signature(SECRET, header, body, now=1_700_000_010)
    assert not verify_signature("another-secret", header, body, now=1_700_000_010)
    assert not verify_signature(SECRET, header, body + b" ", now=1_700_000_010)  # tampered
    assert not verify_signature(SECRET, header, body, now=1_700_000_000 + 301)  # replayed late
    forged = header.replace("t=1700000000", "t=1700000400")  # a fresh time on an old signature
    assert not verify_signature(SECRET, forged, body, now=1_700_000_400)
    assert not verify_signature(SECRET, None, body)
    assert not verify_signature(SECRET, "v1=abc", body)
    # a rotated secret: the sender may send two v1 values, either one verifies
    both = header + "," + signature("old", 1_700_000_000, body).split(",")[1]
    assert verify_signature("old", both, body, now=1_700_000_000)


def test_label_move_is_delivered_signed(registry: Registry, receiver: Receiver) -> None:
    registry.prompts.push("support", "Answer {{ q }}")
    registry.labels.set("prompt", "support", "production", 1, reason="first release")
    clock = _clock(receiver)
    dispatcher = _dispatcher(registry, _settings(receiver.url), clock)
    summary = dispatcher.flush()
    dispatcher.close()
    assert (summary.delivered, summary.retrying, summary.failed) == (1, 0, 0)
    assert receiver.verified == [True]
    request = receiver.requests[0]
    doc = json.loads(request["body"])
    assert doc["type"] == "label.moved" and doc["subject"] == "prompt:support"
    assert doc["data"] == {
        "label": "production", "from_version": None, "to_version": 1, "actor": "tester",
        "reason": "first release", "forced": False,
    }  # fmt: skip
    assert request["headers"]["lockgate-event-id"] == str(doc["id"])
    assert request["headers"]["lockgate-event-type"] == "label.moved"
    assert request["headers"]["lockgate-delivery-attempt"] == "1"
    [delivery] = registry.events.deliveries(webhook="ops")
    assert delivery.status == "delivered" and delivery.attempts == 1
    # the push's own `latest` move is not an event
    assert [e.type for e in registry.events.list()] == ["label.moved"]


def test_wrong_secret_fails_verification(registry: Registry) -> None:
    registry.events.record("budget.threshold", "key:k1", {"share": 0.8})
    receiver = Receiver(secret="the-receivers-own-secret")
    try:
        dispatcher = _dispatcher(registry, _settings(receiver.url), _clock(receiver))
        dispatcher.flush()
        dispatcher.close()
    finally:
        receiver.close()
    assert receiver.verified == [False]


def test_fails_twice_then_accepts_with_growing_backoff(registry: Registry) -> None:
    event = registry.events.record("monitor.fired", "monitor:churn", {"value": 0.6})
    receiver = Receiver(statuses=[500, 503])
    clock = _clock(receiver)
    dispatcher = _dispatcher(registry, _settings(receiver.url), clock)
    try:
        waits = []
        for expected in ("retrying", "retrying", "delivered"):
            receiver.clock_now = clock.time()
            summary = dispatcher.flush()
            assert getattr(summary, expected) == 1, (expected, summary)
            if expected == "retrying":
                [d] = registry.events.deliveries(event_id=event.id)
                now = datetime.fromtimestamp(clock.time(), UTC)
                wait = (d.next_attempt_at - now).total_seconds()
                waits.append(wait)
                assert dispatcher.flush().attempted == 0  # not due yet: nothing sent
                clock.advance(wait + 0.001)
    finally:
        dispatcher.close()
        receiver.close()
    # retry n waits between half and all of min(600, 10 * 2 ** (n - 1)) seconds
    assert 5 <= waits[0] <= 10 and 10 <= waits[1] <= 20
    assert [r["headers"]["lockgate-delivery-attempt"] for r in receiver.requests] == ["1", "2", "3"]
    assert len({r["headers"]["lockgate-event-id"] for r in receiver.requests}) == 1
    assert receiver.verified == [True, True, True]
    [d] = registry.events.deliveries(event_id=event.id)
    assert (d.status, d.attempts, d.last_status_code) == ("delivered", 3, 200)


def test_retry_after_is_honoured_and_attempts_are_bounded(registry: Registry) -> None:
    event = registry.events.record("monitor.fired", "monitor:m", {})
    receiver = Receiver(statuses=[429, 429, 429], headers={"retry-after": "42"})
    clock = _clock(receiver)
    dispatcher = _dispatcher(registry, _settings(receiver.url, max_attempts=2), clock)
    try:
        assert dispatcher.flush().retrying == 1
        [d] = registry.events.deliveries(event_id=event.id)
        now = datetime.fromtimestamp(clock.time(), UTC)
        assert (d.next_attempt_at - now).total_seconds() == pytest.approx(42)
        clock.advance(42)
        assert dispatcher.flush().failed == 1  # the second attempt was the last
        clock.advance(3600)
        assert dispatcher.flush().attempted == 0
    finally:
        dispatcher.close()
        receiver.close()
    [d] = registry.events.deliveries(event_id=event.id)
    assert (d.status, d.attempts, d.last_status_code) == ("failed", 2, 429)


def test_client_error_and_redirect_are_not_retried_or_followed(registry: Registry) -> None:
    elsewhere = Receiver()
    receiver = Receiver(statuses=[400, 302], headers={"location": elsewhere.url})
    registry.events.record("monitor.fired", "monitor:a", {})
    registry.events.record("monitor.fired", "monitor:b", {})
    dispatcher = _dispatcher(registry, _settings(receiver.url), _clock(receiver))
    try:
        summary = dispatcher.flush()
    finally:
        dispatcher.close()
        receiver.close()
        elsewhere.close()
    assert summary.failed == 2 and summary.delivered == 0
    assert elsewhere.requests == []  # a redirect does not choose a new destination
    assert {d.last_status_code for d in registry.events.deliveries()} == {400, 302}


def test_redelivery_after_restart_at_least_once(registry: Registry, receiver: Receiver) -> None:
    first = registry.events.record("gate.refused", "prompt:qa", {"label": "production"})
    clock = _clock(receiver)
    settings = _settings(receiver.url, lease_s=60)
    # a dispatcher claims the event, then dies before sending (nothing recorded after)
    claimed = registry.events.claim("ops", ["gate.refused"], now=datetime.fromtimestamp(
        clock.time(), UTC), lease_s=60)  # fmt: skip
    assert [e.id for e, _ in claimed] == [first.id]
    restarted = _dispatcher(registry, settings, clock)
    assert restarted.flush().attempted == 0  # still leased to the dead one
    clock.advance(61)
    receiver.clock_now = clock.time()
    assert restarted.flush().delivered == 1
    assert receiver.requests[0]["headers"]["lockgate-delivery-attempt"] == "2"
    restarted.close()
    # a second restart delivers nothing twice, and picks up what is new
    second = registry.events.record("gate.refused", "prompt:qa", {"label": "staging"})
    again = _dispatcher(registry, settings, clock)
    assert again.flush().delivered == 1
    again.close()
    ids = [json.loads(r["body"])["id"] for r in receiver.requests]
    assert ids == [first.id, second.id]


def test_endpoint_gets_only_its_event_types(registry: Registry, receiver: Receiver) -> None:
    registry.events.record("budget.threshold", "key:k", {"share": 0.5})
    registry.events.record("monitor.fired", "monitor:m", {})
    settings = _settings(receiver.url)
    only = settings.endpoints["ops"].model_copy(update={"events": ["monitor.fired"]})
    settings = settings.model_copy(update={"endpoints": {"ops": only}})
    dispatcher = _dispatcher(registry, settings, _clock(receiver))
    dispatcher.flush()
    dispatcher.close()
    assert [r["headers"]["lockgate-event-type"] for r in receiver.requests] == ["monitor.fired"]


def test_gate_refusal_is_an_event_and_a_lost_move_is_not(registry: Registry) -> None:
    registry.prompts.push("qa", "one {{ q }}")
    registry.prompts.push("qa", "two {{ q }}")
    pin = SuitePin("qa-accuracy", suite_digest({"name": "qa-accuracy"}, "sha256:data"))
    registry.gates.set_policy("prompt", "qa", "production", [pin])
    with pytest.raises(GateRefused):
        registry.labels.set("prompt", "qa", "production", 2)
    [refused] = registry.events.list(types=["gate.refused"])
    assert refused.subject == "prompt:qa"
    assert refused.payload["label"] == "production" and refused.payload["version"] == 2
    assert refused.payload["reasons"]
    [check] = refused.payload["checks"]  # every check of the gate, as the label history has
    assert check["name"].startswith("suite") and check["verdict"] in ("fail", "inconclusive")
    assert check["reason"] in refused.payload["reasons"][0]
    registry.labels.set("prompt", "qa", "production", 1, force=True, reason="hotfix")
    with pytest.raises(Conflict):  # a compare-and-set that loses writes nothing, event included
        registry.labels.set("prompt", "qa", "production", 2, expect_version=2, force=True,
                            reason="x")  # fmt: skip
    moved = registry.events.list(types=["label.moved"])
    assert [(e.payload["to_version"], e.payload["forced"]) for e in moved] == [(1, True)]


def test_unknown_event_type_is_refused(registry: Registry) -> None:
    with pytest.raises(InvalidInput, match="unknown event type"):
        registry.events.record("label.deleted", "prompt:x", {})


def test_secret_never_logged_or_recorded(
    registry: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    registry.events.record("monitor.fired", "monitor:m", {})
    receiver = Receiver(statuses=[400])
    settings = _settings(receiver.url)
    dispatcher = _dispatcher(registry, settings, _clock(receiver))
    dispatcher.flush()
    dispatcher.close()
    receiver.close()
    unset = _dispatcher(registry, _settings("http://127.0.0.1:9/x", secret=None), _clock())
    assert unset.flush().attempted == 0  # no secret: nothing is sent unsigned
    unset.close()
    recorded = json.dumps([d.to_dict() for d in registry.events.deliveries()], default=str)
    recorded += json.dumps([e.to_dict() for e in registry.events.list()], default=str)
    assert SECRET not in caplog.text and SECRET not in recorded
    assert SECRET not in repr(settings) and SECRET not in settings.model_dump_json()
    assert "no secret" in caplog.text


def test_webhooks_section_of_lockgate_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lockgate.gateway.config import ConfigError, load_settings

    config = tmp_path / "lockgate.yaml"
    config.write_text(
        "webhooks:\n  endpoints:\n    ops:\n      url: https://hooks.example.com/x\n"
        "      secret_env: OPS_HOOK_SECRET\n      events: [label.moved]\n  max_attempts: 3\n"
    )
    monkeypatch.setenv("OPS_HOOK_SECRET", SECRET)
    settings = load_settings(config).webhooks
    ops = settings.endpoints["ops"]
    assert settings.max_attempts == 3 and ops.events == ["label.moved"]
    assert ops.secret is not None and ops.secret.get_secret_value() == SECRET
    config.write_text(
        "webhooks:\n  endpoints:\n    ops:\n      url: file:///etc/passwd\n      secret_env: X\n"
    )
    with pytest.raises(ConfigError, match=r"webhooks\.endpoints\.ops\.url"):
        load_settings(config)
    config.write_text(
        "webhooks:\n  endpoints:\n    ops: {url: 'https://h/x', secret_env: X, events: [all]}\n"
    )
    with pytest.raises(ConfigError, match=r"webhooks\.endpoints\.ops\.events"):
        load_settings(config)


async def test_budget_threshold_crossings_are_reported_once() -> None:
    crossed: list[tuple[str, float, float, float]] = []

    async def load_spend(key_id: str) -> float:
        return 0.4

    async def on_budget(key_id: str, share: float, spent: float, budget: float) -> None:
        crossed.append((key_id, share, spent, budget))

    limiter = MemoryLimiter(load_spend, on_budget=on_budget, budget_thresholds=(0.5, 0.8, 1.0))
    limits = KeyLimits("k1", budget_usd=1.0)
    for cost in (0.05, 0.1, 0.3, 0.2, 0.1):  # spend: .45 .55 .85 1.05 1.15
        assert (await limiter.acquire(limits, "s")).allowed or cost == 0.1
        await limiter.release(limits, "s", tokens=1, cost_usd=cost)
    assert [(k, s) for k, s, _, _ in crossed] == [("k1", 0.5), ("k1", 0.8), ("k1", 1.0)]
    assert crossed[1][2] == pytest.approx(0.85) and crossed[1][3] == 1.0
