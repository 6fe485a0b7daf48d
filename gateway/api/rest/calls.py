"""``/api/v1/calls``: the gateway's call records, filtered and keyset-paged in the database.

Newest first. Filters: ``route``, ``model``, ``prompt`` (a name, or ``NAME@VERSION``) and
``prompt_version``, ``key`` (a key id or name), ``status`` (``429`` or a class ``5xx``;
repeatable, any may match), ``since`` (inclusive) and ``until`` (exclusive): an ISO 8601
time (UTC when no zone) or a time ago (``24h``, ``7d``, ``30m``). Paging walks the record
numbers downwards (:meth:`~lockgate.registry.calls.Calls.query`), so records written while a
client pages never shift a page. Records hold no prompt or completion content.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from lockgate.gateway.api.deps import StateDep
from lockgate.gateway.api.rest.common import (
    READ,
    Cursor,
    Limit,
    decode_key_cursor,
    encode_key_cursor,
    forged_cursor,
    jsonable,
)
from lockgate.gateway.calls_cli import parse_status, parse_time
from lockgate.registry.calls import CallFilter, CallInfo
from lockgate.registry.errors import InvalidInput
from lockgate.registry.records import Ref

router = APIRouter(tags=["calls"], dependencies=[READ])

_Text = Annotated[str | None, Query(max_length=300)]
_Time = Annotated[
    str | None, Query(max_length=64, description="ISO 8601 (UTC when no zone) or 24h, 7d, 30m.")
]
MAX_CALL_NUMBER = 10**18


def call_object(call: CallInfo) -> dict[str, Any]:
    return {name: jsonable(getattr(call, name)) for name in CallInfo.__dataclass_fields__}


def _prompt(prompt: str | None, version: int | None) -> tuple[str | None, int | None]:
    if prompt is None or "@" not in prompt:
        return prompt, version
    ref = Ref.parse(prompt)
    if ref.version is None:
        raise InvalidInput(
            f"prompt {prompt!r}: give a name or NAME@VERSION (call records hold versions, "
            "not labels)",
            param="prompt",
        )
    if version is not None and version != ref.version:
        raise InvalidInput("prompt and prompt_version disagree", param="prompt_version")
    return ref.name, ref.version


@router.get(
    "/calls",
    summary="List call records",
    response_description="A page of call records, newest first.",
)
def list_calls(
    state: StateDep,
    route: _Text = None,
    model: _Text = None,
    prompt: _Text = None,
    prompt_version: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    key: Annotated[str | None, Query(max_length=200, description="A key id or name.")] = None,
    status: Annotated[
        list[str] | None, Query(max_length=20, description="429 or 5xx; repeatable.")
    ] = None,
    since: _Time = None,
    until: _Time = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> dict[str, Any]:
    registry = state.registry
    now = datetime.now(UTC)
    name, version = _prompt(prompt, prompt_version)
    after = decode_key_cursor(cursor)
    if after is not None and (not after.isdigit() or int(after) > MAX_CALL_NUMBER):
        raise forged_cursor(cursor or "")
    where = CallFilter(
        route=route,
        model=model,
        key_ids=registry.calls.key_ids(key) if key is not None else None,
        prompt_name=name,
        prompt_version=version,
        statuses=tuple(parse_status(s) for s in status or []),
        since=parse_time(since, "since", now),
        until=parse_time(until, "until", now),
    )
    found = registry.calls.query(where, limit=limit, before=int(after) if after else None)
    return {
        "data": [call_object(c) for c in found.calls],
        "next_cursor": None if found.next_before is None else encode_key_cursor(found.next_before),
    }


@router.get(
    "/calls/{call_id}",
    summary="Get a call record",
    response_description="One call record, every field.",
)
def get_call(
    state: StateDep,
    call_id: Annotated[
        str, Path(max_length=128, description="Its number, request id or trace id (or prefix).")
    ],
) -> dict[str, Any]:
    return call_object(state.registry.calls.get(call_id))
