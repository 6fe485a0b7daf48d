"""The call-record viewer: the gateway's calls, newest first, with filters, and each call's
details with its trace id.

Filters are those of ``lockgate calls`` and ``/api/v1/calls``: route, model, prompt (a name or
``NAME@VERSION``), key (an id or a name), status (``429`` or a class ``5xx``) and a time
window (``since`` inclusive, ``until`` exclusive: ISO 8601, UTC when no zone, or a time ago
such as ``24h``). A value that does not parse is shown next to its field (``400``), never a
server error. Pages are keyset-paged on the record number
(:meth:`~lockgate.registry.calls.Calls.query`): one page of rows is read, whatever the number
of records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlencode

from fastapi import APIRouter
from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import Response

from lockgate.gateway.calls_cli import parse_status, parse_time
from lockgate.gateway.state import GatewayState
from lockgate.gateway.ui.routes import PREFIX, UIDep, UIError
from lockgate.registry.calls import CallFilter, CallPage
from lockgate.registry.errors import InvalidInput, NotFound
from lockgate.registry.records import Ref
from lockgate.registry.registry import Registry
from lockgate.registry.tables import ApiKey

router = APIRouter(prefix=PREFIX, include_in_schema=False)
PAGE_SIZE = 50
FIELDS = ("route", "model", "prompt", "key", "status", "since", "until")


@dataclass
class Filters:
    """The filter form: what was typed, and what was wrong with it."""

    values: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)
    before: int | None = None

    def query(self, **extra: str | int) -> str:
        kept = {k: v for k, v in self.values.items() if v}
        return urlencode({**kept, **{k: str(v) for k, v in extra.items()}})

    @property
    def active(self) -> bool:
        return any(self.values.values())


def _state(request: Request) -> GatewayState:
    state: GatewayState = request.app.state.gateway
    return state


def read_filters(params: dict[str, str]) -> Filters:
    values = {name: params.get(name, "").strip()[:300] for name in FIELDS}
    filters = Filters(values)
    before = params.get("before", "").strip()
    if before:
        if before.isdigit() and len(before) <= 18:
            filters.before = int(before)
        else:
            filters.errors["before"] = "the page link is broken: start from the newest calls"
    return filters


def to_call_filter(registry: Registry, filters: Filters, now: datetime) -> CallFilter | None:
    """The registry filter; None when a value is wrong (each in ``filters.errors``)."""
    values, errors = filters.values, filters.errors
    prompt_name: str | None = None
    prompt_version: int | None = None
    if values["prompt"]:
        try:
            ref = Ref.parse(values["prompt"])
            if ref.label is not None:
                raise InvalidInput(
                    "call records keep the version a label pointed at: give NAME or NAME@VERSION"
                )
            prompt_name, prompt_version = ref.name, ref.version
        except InvalidInput as exc:
            errors["prompt"] = str(exc)
    statuses: tuple[tuple[int, int], ...] = ()
    if values["status"]:
        try:
            statuses = tuple(parse_status(s) for s in values["status"].replace(",", " ").split())
        except InvalidInput:
            errors["status"] = "give an HTTP status code like 429 or a class like 5xx"
    times: dict[str, datetime | None] = {}
    for name in ("since", "until"):
        try:
            times[name] = parse_time(values[name] or None, name, now)
        except InvalidInput:
            errors[name] = "give a time ago (24h, 7d, 30m) or an ISO 8601 time (UTC when no zone)"
    key_ids: tuple[str, ...] | None = None
    if values["key"]:
        try:
            key_ids = registry.calls.key_ids(values["key"])
        except NotFound:
            errors["key"] = f"no key with id or name {values['key']!r}"
    if errors:
        return None
    return CallFilter(
        route=values["route"] or None, model=values["model"] or None, key_ids=key_ids,
        prompt_name=prompt_name, prompt_version=prompt_version, statuses=statuses,
        since=times["since"], until=times["until"],
    )  # fmt: skip


def _page(registry: Registry, filters: Filters) -> CallPage | None:
    where = to_call_filter(registry, filters, datetime.now(UTC))
    if where is None or filters.errors:
        return None
    return registry.calls.query(where, limit=PAGE_SIZE, before=filters.before)


def _key_names(registry: Registry, ids: set[str]) -> dict[str, str]:
    """The names of the keys ``ids`` (one small query; not :meth:`Keys.list`, which sums
    every key's spend over the call records)."""
    if not ids:
        return {}
    with registry.db.read() as session:
        rows = session.execute(select(ApiKey.id, ApiKey.name).where(ApiKey.id.in_(ids))).all()
    return {key_id: name for key_id, name in rows}


@router.get("/calls")
async def call_list(request: Request, ui: UIDep) -> Response:
    viewer = await ui.viewer(request)
    registry = _state(request).registry
    filters = read_filters(dict(request.query_params))
    found = await ui.call(_page, registry, filters)
    calls = found.calls if found else []
    keys = await ui.call(_key_names, registry, {c.key_id for c in calls if c.key_id})
    return ui.page(
        request, "calls.html", 400 if filters.errors else 200, viewer=viewer, filters=filters,
        calls=calls, next_before=found.next_before if found else None,
        keys=keys,
    )  # fmt: skip


@router.get("/calls/{call_id}")
async def call_details(request: Request, call_id: str, ui: UIDep) -> Response:
    viewer = await ui.viewer(request)
    if not call_id.isdigit() or len(call_id) > 18:
        raise UIError(404, "Not found", f"no call with number {call_id[:40]!r}")
    registry = _state(request).registry
    call = await ui.call(registry.calls.get, call_id)
    keys = await ui.call(_key_names, registry, {call.key_id} if call.key_id else set())
    return ui.page(request, "call.html", viewer=viewer, call=call, keys=keys)
