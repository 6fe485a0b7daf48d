"""``/api/v1/events`` and ``/api/v1/deliveries``: the registry's event outbox (label moves,
gate refusals, monitors that fired, budget thresholds) and where each stands with each
webhook (``admin`` only, read-only).

Events are listed oldest first and keyset-paged on their number, so a client can follow the
outbox: keep the last ``next_cursor`` and ask again. Payloads carry no secret (see
:mod:`lockgate.registry.events`); a delivery names its webhook, never its URL or secret.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from lockgate.gateway.api.deps import StateDep
from lockgate.gateway.api.rest.common import (
    ADMIN,
    Cursor,
    Limit,
    decode_key_cursor,
    forged_cursor,
    jsonable,
    key_page,
    page,
)
from lockgate.registry.errors import InvalidInput
from lockgate.registry.events import DELIVERY_STATES, EVENT_TYPES, DeliveryInfo, EventInfo

router = APIRouter(tags=["events"], dependencies=[ADMIN])

EventId = Annotated[int, Path(ge=1, le=2**63 - 1, description="An event's number.")]


def event_object(event: EventInfo) -> dict[str, Any]:
    return {
        "id": event.id, "type": event.type, "subject": event.subject,
        "payload": jsonable(event.payload), "created_at": jsonable(event.created_at),
    }  # fmt: skip


def delivery_object(delivery: DeliveryInfo) -> dict[str, Any]:
    return {
        "event_id": delivery.event_id, "webhook": delivery.webhook, "status": delivery.status,
        "attempts": delivery.attempts, "next_attempt_at": jsonable(delivery.next_attempt_at),
        "last_status_code": delivery.last_status_code, "last_error": delivery.last_error,
        "delivered_at": jsonable(delivery.delivered_at),
    }  # fmt: skip


@router.get(
    "/events",
    summary="List registry events",
    response_description="A page of events, oldest first.",
)
def list_events(
    state: StateDep,
    type: Annotated[
        list[str] | None, Query(max_length=40, description=", ".join(sorted(EVENT_TYPES)))
    ] = None,
    subject: Annotated[
        str | None, Query(max_length=300, description="e.g. prompt:support, model:churn.")
    ] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> dict[str, Any]:
    unknown = sorted(set(type or ()) - EVENT_TYPES)
    if unknown:
        raise InvalidInput(
            f"unknown event type(s) {', '.join(unknown)}; use {', '.join(sorted(EVENT_TYPES))}",
            param="type",
        )
    after = decode_key_cursor(cursor)
    if after is not None and (not after.isdigit() or len(after) > 18):
        raise forged_cursor(cursor or "")
    events = state.registry.events.list(
        types=type or None, subject=subject, after_id=int(after) if after else None,
        limit=limit + 1,
    )  # fmt: skip
    return key_page(events, limit, event_object)


@router.get(
    "/events/{event_id}",
    summary="Get a registry event",
    response_description="The event with its deliveries to each webhook.",
)
def get_event(state: StateDep, event_id: EventId) -> dict[str, Any]:
    registry = state.registry
    event = registry.events.get(event_id)
    deliveries = registry.events.deliveries(event_id=event_id)
    return {**event_object(event), "deliveries": [delivery_object(d) for d in deliveries]}


@router.get(
    "/deliveries",
    summary="List webhook deliveries",
    response_description="A page of deliveries, by event and webhook.",
)
def list_deliveries(
    state: StateDep,
    webhook: Annotated[str | None, Query(max_length=200, description="A webhook's name.")] = None,
    status: Annotated[str | None, Query(description=", ".join(sorted(DELIVERY_STATES)))] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> dict[str, Any]:
    deliveries = state.registry.events.deliveries(webhook=webhook, status=status)
    return page(deliveries, limit, cursor, delivery_object)
