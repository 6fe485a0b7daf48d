"""Reading and checking a request body: size (413), time to arrive (408), JSON (400), fields (400).

The field check validates the parsed body against the request models of
:mod:`gateway.schemas` (types and ranges of the fields the OpenAI API defines; unknown fields
pass), and the error names the first offending field (``messages.0.role``). A field that
would choose the destination, credentials, headers or client options
(:data:`~gateway.schemas.CONTROL_FIELDS`) is a 400 naming it, whatever the route: one set
look-up per body key. The body forwarded upstream is the client's own, never a re-serialised
model.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from lockgate.gateway.errors import InvalidRequest, RequestTimeout, RequestTooLarge
from lockgate.gateway.schemas import CONTROL_FIELDS, REQUEST_MODELS
from lockgate.gateway.settings import RequestSettings


async def read_body(request: Request, settings: RequestSettings) -> bytes:
    limit = settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    parts: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(settings.body_timeout_s):
            async for part in request.stream():
                size += len(part)
                if size > limit:
                    raise _too_large(limit)
                parts.append(part)
    except TimeoutError:
        raise RequestTimeout(
            f"the request body did not arrive within {settings.body_timeout_s:g} s"
        ) from None
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _too_large(limit: int) -> RequestTooLarge:
    return RequestTooLarge(
        f"the request body is larger than {limit} bytes (gateway.requests.max_body_bytes)"
    )


def parse_body(raw: bytes, operation: str) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if "depth limit" in str(exc):
            raise InvalidRequest(TOO_DEEP) from None
        raise InvalidRequest(f"the request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    if not CONTROL_FIELDS.isdisjoint(body):
        refuse_control_fields(body, "")
    check_fields(REQUEST_MODELS[operation], body)
    return body


TOO_DEEP = (
    "the request body is nested too deeply: JSON nested deeper than 254 levels cannot be "
    "sent on; flatten it"
)


def refuse_control_fields(fields: Any, where: str) -> None:
    """A 400 naming the first field of ``fields`` that would choose the destination, a
    credential, a header or a client option (``where`` prefixes its name)."""
    found = sorted(CONTROL_FIELDS.intersection(fields))
    if found:
        name = f"{where}{found[0]}"
        raise InvalidRequest(
            f"{name}: a request may not choose the upstream's address, credentials, headers or "
            "client options; they come from the gateway's configuration (lockgate.yaml). "
            "Remove the field.",
            param=name,
        )


def check_fields(model: type[BaseModel], body: dict[str, Any]) -> None:
    try:
        model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(_field_path(first["loc"])) or None
        raise InvalidRequest(f"{where or 'body'}: {first['msg']}", param=where) from None


_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "list", "dict", "none", "PromptRef"})


def _field_path(loc: tuple[int | str, ...]) -> list[str]:
    """The field path of an error, without pydantic's union-member tags (``str``, ``list[…]``)."""
    out: list[str] = []
    for part in loc:
        if isinstance(part, str) and ("[" in part or part in _TYPE_TAGS):
            break
        out.append(str(part))
    return out
