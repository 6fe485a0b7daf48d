"""``/api/v1/keys``: virtual API keys (``admin`` only).

A key's secret is shown once, in the answer that creates it; the registry keeps only its
sha256 and its first characters (``prefix``), so no listing can show it again. Revoking takes
effect within ``gateway.key_cache_ttl_s``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request

from lockgate.gateway.api.deps import StateDep, read_json
from lockgate.gateway.api.rest.common import ADMIN, Cursor, Limit, jsonable, page
from lockgate.gateway.auth import Principal
from lockgate.registry.errors import InvalidInput
from lockgate.registry.keys import KeyInfo

router = APIRouter(tags=["keys"])
Admin = Annotated[Principal, ADMIN]


class KeyRequest(BaseModel):
    """The body of ``POST /api/v1/keys``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    scopes: list[str] = Field(default=["inference"], min_length=1, max_length=16)
    models: list[Annotated[str, Field(min_length=1, max_length=300)]] | None = Field(
        default=None, max_length=1000
    )
    rpm: int | None = Field(default=None, ge=1, le=10**9)
    tpm: int | None = Field(default=None, ge=1, le=10**12)
    max_parallel: int | None = Field(default=None, ge=1, le=10**6)
    budget_usd: float | None = Field(default=None, gt=0, le=10**9)
    expires_at: datetime | None = Field(default=None, description="ISO 8601 with a zone.")


def key_object(key: KeyInfo) -> dict[str, Any]:
    """A key as listed: never its secret (nor its hash)."""
    return {
        "id": key.id, "name": key.name, "prefix": key.prefix, "scopes": list(key.scopes),
        "models": None if key.models is None else list(key.models), "rpm": key.rpm,
        "tpm": key.tpm, "max_parallel": key.max_parallel, "budget_usd": key.budget_usd,
        "spent_usd": key.spent_usd, "expires_at": jsonable(key.expires_at),
        "revoked_at": jsonable(key.revoked_at), "active": key.active(),
        "created_by": key.created_by, "created_at": jsonable(key.created_at),
    }  # fmt: skip


def _request_body() -> dict[str, Any]:
    schema = KeyRequest.model_json_schema()
    return {"required": True, "content": {"application/json": {"schema": schema}}}


@router.get(
    "/keys",
    dependencies=[ADMIN],
    summary="List keys",
    response_description="A page of keys, oldest first; never a secret.",
)
def list_keys(state: StateDep, limit: Limit = 50, cursor: Cursor = None) -> dict[str, Any]:
    return page(state.registry.keys.list(), limit, cursor, key_object)


@router.post(
    "/keys",
    summary="Create a key",
    response_description="The key, with its secret in `key`: the only time it is shown.",
    openapi_extra={"requestBody": _request_body()},
)
async def create_key(request: Request, state: StateDep, principal: Admin) -> dict[str, Any]:
    """Create a virtual key with its scopes, models and limits."""
    body = await read_json(request, state)  # after the admin check: auth before the body
    try:
        wanted = KeyRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or None
        raise InvalidInput(f"{field or 'body'}: {first['msg']}", param=field) from None

    def create() -> KeyInfo:
        return state.registry.keys.create(
            wanted.name, scopes=wanted.scopes, models=wanted.models, rpm=wanted.rpm,
            tpm=wanted.tpm, max_parallel=wanted.max_parallel, budget_usd=wanted.budget_usd,
            expires_at=wanted.expires_at, created_by=f"api:{principal.key_id or principal.name}",
        )  # fmt: skip

    made = await anyio.to_thread.run_sync(create)
    return {**key_object(made), "key": made.secret}


@router.post(
    "/keys/{key_id}/revoke",
    dependencies=[ADMIN],
    summary="Revoke a key",
    response_description="The revoked key (refused within gateway.key_cache_ttl_s).",
)
def revoke_key(
    state: StateDep,
    key_id: Annotated[str, Path(max_length=64, description="The key's id or its prefix.")],
) -> dict[str, Any]:
    return key_object(state.registry.keys.revoke(key_id))
