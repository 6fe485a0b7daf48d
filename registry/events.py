"""Events: an outbox of what happened in the registry, for webhooks to deliver.

An event is written **in the same transaction as what it reports** (:func:`emit` takes the
caller's session): a label move and its ``label.moved`` event commit together or not at
all, so a reader of the outbox never sees an event for a move that was rolled back, and
never misses one for a move that was made.

============================  ==========================================================
type                          written by
============================  ==========================================================
``label.moved``               :meth:`Labels.set` (``latest`` moves by a push are not events)
``gate.refused``              :meth:`Labels.set` when a gate policy refuses the move
``monitor.fired``             a monitoring policy whose signal fired (:mod:`gateway.monitor`)
``budget.threshold``          the gateway, when a key's spend crosses a share of its budget
============================  ==========================================================

Delivery state lives beside the outbox (``event_deliveries``: one row per event and
webhook), so a restarted dispatcher resumes where the last one stopped. :meth:`Events.claim`
hands a dispatcher the deliveries that are due and leases them for ``lease_s`` seconds; a
dispatcher that dies mid-send loses its lease and the delivery is claimed again. Delivery
is therefore at least once: receivers deduplicate on the event id.

Payloads are data for receivers: nothing secret goes in them (no key material, no webhook
secret, no URL).
"""

from __future__ import annotations

import builtins
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, literal, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from lockgate.registry._core import Part
from lockgate.registry.errors import InvalidInput, NotFound
from lockgate.registry.records import _Record
from lockgate.registry.tables import Event, EventDelivery, utcnow

EVENT_TYPES = frozenset({"label.moved", "gate.refused", "monitor.fired", "budget.threshold"})
DELIVERY_STATES = frozenset({"pending", "delivered", "failed"})
MAX_SUBJECT = 300


@dataclass(frozen=True)
class EventInfo(_Record):
    """One event of the outbox."""

    id: int
    type: str
    subject: str  # e.g. "prompt:support", "model:churn", "key:key_…", "monitor:churn-drift"
    payload: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class DeliveryInfo(_Record):
    """Where one event stands with one webhook."""

    event_id: int
    webhook: str
    status: str  # pending | delivered | failed
    attempts: int
    next_attempt_at: datetime
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None


def _check(type: str, subject: str) -> None:
    if type not in EVENT_TYPES:
        raise InvalidInput(
            f"unknown event type {type!r}; use one of {sorted(EVENT_TYPES)}", param="type"
        )
    if not subject or len(subject) > MAX_SUBJECT:
        raise InvalidInput(f"an event subject has 1 to {MAX_SUBJECT} characters", param="subject")


def emit(session: Session, type: str, subject: str, payload: Mapping[str, Any]) -> Event:
    """Add an event to the outbox inside the caller's transaction (it commits with it)."""
    _check(type, subject)
    row = Event(type=type, subject=subject, payload=dict(payload), created_at=utcnow())
    session.add(row)
    return row


def _info(row: Event) -> EventInfo:
    return EventInfo(row.id, row.type, row.subject, dict(row.payload), row.created_at)


def _delivery(row: EventDelivery) -> DeliveryInfo:
    return DeliveryInfo(
        row.event_id, row.webhook, row.status, row.attempts, row.next_attempt_at,
        row.last_status_code, row.last_error, row.delivered_at,
    )  # fmt: skip


class Events(Part):
    def record(self, type: str, subject: str, payload: Mapping[str, Any]) -> EventInfo:
        """Write one event on its own (for what has no registry transaction of its own: a
        budget crossing, a monitor's decision)."""
        with self.db.write() as session:
            row = emit(session, type, subject, payload)
            session.flush()
            return _info(row)

    def get(self, event_id: int) -> EventInfo:
        with self.db.read() as session:
            row = session.get(Event, event_id)
            if row is None:
                raise NotFound(f"no event with id {event_id}", param="event_id")
            return _info(row)

    def list(
        self,
        *,
        types: Collection[str] | None = None,
        subject: str | None = None,
        after_id: int | None = None,
        limit: int = 100,
    ) -> builtins.list[EventInfo]:
        """Events oldest first (after ``after_id`` when given), at most ``limit``."""
        stmt = select(Event).order_by(Event.id).limit(limit)
        if types is not None:
            stmt = stmt.where(Event.type.in_(list(types)))
        if subject is not None:
            stmt = stmt.where(Event.subject == subject)
        if after_id is not None:
            stmt = stmt.where(Event.id > after_id)
        with self.db.read() as session:
            return [_info(r) for r in session.scalars(stmt)]

    # --- delivery bookkeeping (the gateway's webhook dispatcher) ---

    def claim(
        self,
        webhook: str,
        types: Collection[str],
        *,
        now: datetime | None = None,
        lease_s: float = 60.0,
        limit: int = 50,
        max_age_s: float = 7 * 86400,
    ) -> builtins.list[tuple[EventInfo, int]]:
        """The events due for delivery to ``webhook`` (oldest first), each with its attempt
        number, leased to the caller for ``lease_s`` seconds.

        Events of ``types`` newer than ``max_age_s`` get a delivery row the first time they
        are seen; a row is due while ``pending``, past its ``next_attempt_at`` and not
        leased to another dispatcher."""
        now = now or utcnow()
        with self.db.write() as session:
            self._materialise(session, webhook, types, now - timedelta(seconds=max_age_s), now)
            stmt = (
                select(EventDelivery)
                .where(
                    EventDelivery.webhook == webhook,
                    EventDelivery.status == "pending",
                    EventDelivery.next_attempt_at <= now,
                    or_(EventDelivery.claimed_until.is_(None), EventDelivery.claimed_until < now),
                )
                .order_by(EventDelivery.event_id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
            rows = list(session.scalars(stmt))
            until = now + timedelta(seconds=lease_s)
            for row in rows:
                row.claimed_until = until
                row.attempts += 1
            events = {
                e.id: e
                for e in session.scalars(
                    select(Event).where(Event.id.in_([r.event_id for r in rows]))
                )
            }
            return [(_info(events[r.event_id]), r.attempts) for r in rows]

    def _materialise(
        self, session: Session, webhook: str, types: Collection[str], since: datetime,
        now: datetime,
    ) -> None:  # fmt: skip
        """A pending delivery row for every recent event of ``types`` that has none."""
        source = select(
            Event.id, literal(webhook), literal("pending"), literal(0), Event.created_at,
            literal(now, type_=EventDelivery.created_at.type),
        ).where(
            Event.type.in_(list(types)),
            Event.created_at >= since,
            ~exists().where(
                and_(EventDelivery.event_id == Event.id, EventDelivery.webhook == webhook)
            ),
        )  # fmt: skip
        insert = sqlite_insert if self.db.is_sqlite else pg_insert
        stmt = (
            insert(EventDelivery)
            .from_select(
                ["event_id", "webhook", "status", "attempts", "next_attempt_at", "created_at"],
                source,
            )
            .on_conflict_do_nothing(index_elements=["event_id", "webhook"])
        )
        session.execute(stmt)

    def _finish(self, webhook: str, event_id: int, **values: Any) -> None:
        with self.db.write() as session:
            session.execute(
                update(EventDelivery)
                .where(EventDelivery.webhook == webhook, EventDelivery.event_id == event_id)
                .values(claimed_until=None, **values)
            )

    def delivered(self, webhook: str, event_id: int, *, status_code: int) -> None:
        self._finish(
            webhook, event_id, status="delivered", last_status_code=status_code,
            last_error=None, delivered_at=utcnow(),
        )  # fmt: skip

    def retry_at(
        self, webhook: str, event_id: int, at: datetime, *, status_code: int | None, error: str
    ) -> None:
        self._finish(
            webhook, event_id, next_attempt_at=at, last_status_code=status_code,
            last_error=error[:500],
        )  # fmt: skip

    def give_up(self, webhook: str, event_id: int, *, status_code: int | None, error: str) -> None:
        self._finish(
            webhook, event_id, status="failed", last_status_code=status_code,
            last_error=error[:500],
        )  # fmt: skip

    def deliveries(
        self, *, webhook: str | None = None, event_id: int | None = None,
        status: str | None = None,
    ) -> builtins.list[DeliveryInfo]:  # fmt: skip
        stmt = select(EventDelivery).order_by(EventDelivery.event_id, EventDelivery.webhook)
        if webhook is not None:
            stmt = stmt.where(EventDelivery.webhook == webhook)
        if event_id is not None:
            stmt = stmt.where(EventDelivery.event_id == event_id)
        if status is not None:
            if status not in DELIVERY_STATES:
                raise InvalidInput(f"unknown delivery status {status!r}", param="status")
            stmt = stmt.where(EventDelivery.status == status)
        with self.db.read() as session:
            return [_delivery(r) for r in session.scalars(stmt)]
