"""Request bodies of the REST API: read after authentication, validated by pydantic models
that refuse unknown fields, and described in ``/openapi.json``."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from lockgate.gateway.api.deps import read_json
from lockgate.gateway.state import GatewayState
from lockgate.registry.errors import InvalidInput

M = TypeVar("M", bound=BaseModel)


def parse_body(model: type[M], body: dict[str, Any]) -> M:
    """``body`` as ``model``; a 400 naming the field otherwise. Every unknown field is named
    at once (``unknown field(s): a, b``), so a caller learns them all from one answer."""
    unknown = sorted(set(body) - set(model.model_fields))
    if unknown and model.model_config.get("extra") == "forbid":
        raise InvalidInput(
            f"unknown field(s): {', '.join(unknown)} (this body takes "
            f"{', '.join(model.model_fields) or 'nothing'})",
            param=unknown[0],
        )
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or None
        raise InvalidInput(f"{field or 'body'}: {first['msg']}", param=field) from None


async def read_body(request: Request, state: GatewayState, model: type[M]) -> M:
    """The request's JSON body as ``model`` (call it after the scope check)."""
    return parse_body(model, await read_json(request, state))


async def read_optional_body(request: Request, state: GatewayState, model: type[M]) -> M:
    """As :func:`read_body`, but a request with no body at all stands for ``{}``."""
    length = request.headers.get("content-length")
    if (length is None or length == "0") and "transfer-encoding" not in request.headers:
        return parse_body(model, {})
    return await read_body(request, state, model)


def body_schema(model: type[BaseModel], *, required: bool = True) -> dict[str, Any]:
    """``openapi_extra`` describing a body the route reads itself."""
    schema = model.model_json_schema()
    return {"requestBody": {"required": required,
                            "content": {"application/json": {"schema": schema}}}}  # fmt: skip
