"""Conventions of the ``/api/v1`` REST API, shared by its modules.

- **Scopes** (docs/security.md): reads need ``registry:read``; creating versions, datasets,
  runs and jobs ``registry:write``; moving a label ``registry:label``; approving a move on a
  protected label ``registry:approve``; keys ``admin``. The scope dependency runs before any
  body is read (see :mod:`gateway.api.deps`), so a caller without the scope gets 401/403,
  never a 400 about its body.
- **References** are the registry's one syntax, ``NAME``, ``NAME@LABEL``, ``NAME@VERSION``, in
  the path; never a server path. Names are checked by the registry.
- **Paging**: list endpoints take ``limit`` (1 to 200, default 50) and ``cursor`` (opaque, from
  the previous page) and answer ``{"data": [...], "next_cursor": str | null}``.
- **Compare-and-set**: a resource that can change (a label) answers with an ``ETag`` naming its
  current state; a change must send ``If-Match`` with it (428 without, 412 when stale).
- **Errors** are the gateway's shape: ``{"error": {"message", "type", "param", "code"}}``,
  raised as :class:`~lockgate.registry.errors.LockgateError` subclasses (their HTTP status
  and code are on the class).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from dataclasses import asdict, is_dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Query

from lockgate.gateway.api.deps import require_scope
from lockgate.registry.console import to_jsonable
from lockgate.registry.errors import InvalidInput

T = TypeVar("T")

READ = require_scope("registry:read")
WRITE = require_scope("registry:write")
LABEL = require_scope("registry:label")
APPROVE = require_scope("registry:approve")
ADMIN = require_scope("admin")

DEFAULT_LIMIT = 50
MAX_LIMIT = 200

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page.")]
Cursor = Annotated[
    str | None, Query(max_length=200, description="From the previous page's next_cursor.")
]


def encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int:
    """The offset a cursor stands for; 0 for none. A cursor the API did not make is a 400."""
    if cursor is None:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    kind, _, value = text.partition(":")
    if kind != "o" or not value.isdigit() or len(value) > 12:
        raise InvalidInput(f"cursor {cursor!r} is not one this API gave out", param="cursor")
    return int(value)


def encode_key_cursor(key: str | int) -> str:
    """A keyset cursor: the key of the last item of a page (a run id, a record number)."""
    return base64.urlsafe_b64encode(f"k:{key}".encode()).decode().rstrip("=")


def decode_key_cursor(cursor: str | None) -> str | None:
    """The key a keyset cursor stands for; None for none. A cursor the API did not make
    (another kind, not base64, odd characters) is a 400; a key that names nothing is the
    caller's to turn into a 400 too (:func:`forged_cursor`)."""
    if cursor is None:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    kind, _, value = text.partition(":")
    if kind != "k" or not value or len(value) > 100 or not value.isascii():
        raise forged_cursor(cursor)
    if not all(c.isalnum() or c in "-_." for c in value):
        raise forged_cursor(cursor)
    return value


def key_page(fetched: Sequence[Any], limit: int, render: Callable[[Any], Any]) -> dict[str, Any]:
    """A keyset page from ``fetched`` (up to ``limit + 1`` items in order, each with an
    ``id``): the first ``limit`` rendered, and a cursor after the last when there is more."""
    chosen = fetched[:limit]
    more = len(fetched) > limit
    return {
        "data": [render(item) for item in chosen],
        "next_cursor": encode_key_cursor(chosen[-1].id) if more else None,
    }


def forged_cursor(cursor: str) -> InvalidInput:
    return InvalidInput(f"cursor {cursor!r} is not one this API gave out", param="cursor")


def page(
    items: Sequence[T], limit: int, cursor: str | None, render: Callable[[T], Any]
) -> dict[str, Any]:
    """One page of ``items`` (all of them, already ordered) as ``{"data", "next_cursor"}``.
    For lists the registry returns whole; a part with its own keyset paging (call records)
    pages in the database instead and builds the same shape."""
    start = decode_cursor(cursor)
    chosen = items[start : start + limit]
    more = start + limit < len(items)
    return {
        "data": [render(item) for item in chosen],
        "next_cursor": encode_cursor(start + limit) if more else None,
    }


def jsonable(value: Any) -> Any:
    """A registry record (dataclass, pydantic model, datetime…) as JSON-ready data."""
    if hasattr(value, "model_dump"):
        return to_jsonable(value.model_dump())
    if is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(asdict(value))
    return to_jsonable(value)
