"""``/api/v1/prompts``: prompts, their immutable versions, new versions, render previews
and template checks.

A prompt's name may hold ``/`` (``team/support``): it is the path up to ``/versions``. A
version is named as the registry names one: a number (``3``, ``v3``) or a label
(``production``, ``latest``). Pushing content a version already has answers 200 with that
version; new content answers 201. ``POST /api/v1/templates/check`` parses a draft and
returns its variables, or the error with its line, for an editor. Reading and previews need
``registry:read``; a new version ``registry:write``. Labels: :mod:`gateway.api.rest.labels`.
"""

from __future__ import annotations

from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse

from lockgate.gateway.api.deps import StateDep
from lockgate.gateway.api.rest._bodies import body_schema, read_body
from lockgate.gateway.api.rest.common import (
    READ,
    WRITE,
    Cursor,
    Limit,
    decode_cursor,
    encode_cursor,
    jsonable,
    page,
)
from lockgate.gateway.api.rest.labels import NameParam, actor_for
from lockgate.gateway.auth import Principal
from lockgate.registry.errors import InvalidInput, LockgateError, TemplateSyntaxInvalid
from lockgate.registry.labels import SubjectListing
from lockgate.registry.prompts import normalise_config, normalise_template
from lockgate.registry.records import PromptVersionInfo, Ref, check_name

router = APIRouter(tags=["prompts"])
Writer = Annotated[Principal, WRITE]
MAX_MESSAGE = 10_000
VersionParam = Annotated[str, Path(max_length=70, description="A number (3, v3) or a label.")]


class VersionBody(BaseModel):
    """The body of ``POST /api/v1/prompts/{name}/versions``."""

    model_config = ConfigDict(extra="forbid")

    template: str | list[dict[str, Any]] = Field(
        description="A text template, or chat messages [{role, content}]."
    )
    config: dict[str, Any] | None = Field(
        default=None, description="Model config: model, temperature, max_tokens, …"
    )
    message: str = Field(default="", max_length=MAX_MESSAGE, description="What changed.")


class TemplateBody(BaseModel):
    """The body of ``POST /api/v1/templates/check``."""

    model_config = ConfigDict(extra="forbid")

    template: Any = Field(description="A text template, or chat messages [{role, content}].")
    config: dict[str, Any] | None = None


class RenderBody(BaseModel):
    """The body of ``POST …/versions/{version}/render``."""

    model_config = ConfigDict(extra="forbid")

    variables: dict[str, Any] = Field(default_factory=dict)


def listing_object(item: SubjectListing) -> dict[str, Any]:
    out: dict[str, Any] = jsonable(item)
    return out


def version_summary(version: PromptVersionInfo) -> dict[str, Any]:
    """A version in a timeline: everything but its template and config."""
    return {
        "version": version.version, "kind": version.kind, "message": version.message,
        "author": version.author, "created_at": jsonable(version.created_at),
        "labels": list(version.labels), "content_hash": version.content_hash,
        "variables": list(version.variables),
    }  # fmt: skip


def version_object(version: PromptVersionInfo) -> dict[str, Any]:
    return {
        "name": version.name, **version_summary(version), "template": version.template,
        "config": jsonable(version.config),
    }  # fmt: skip


def _location(name: str, version: int) -> str:
    return f"/api/v1/prompts/{name}/versions/{version}"


@router.get("/prompts", dependencies=[READ], summary="List prompts",
            response_description="A page of prompts by name: latest version, its author and "
            "time, and the labels.")  # fmt: skip
def list_prompts(
    state: StateDep,
    q: Annotated[
        str | None, Query(max_length=200, description="Only names containing this (any case).")
    ] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """Prompts by name, paged in the database (search with `q`)."""
    offset = decode_cursor(cursor)
    items, more = state.registry.labels.listing("prompt", q, offset=offset, limit=limit)
    return {
        "data": [listing_object(i) for i in items],
        "next_cursor": encode_cursor(offset + limit) if more else None,
    }


@router.post("/templates/check", dependencies=[READ], summary="Check a template",
             response_description="`valid` with the kind and variables, or the error with "
             "its line.", openapi_extra=body_schema(TemplateBody))  # fmt: skip
async def check_template(request: Request, state: StateDep) -> dict[str, Any]:
    """Parse a draft (nothing is stored or rendered): its variables, or why it is refused."""
    body = await read_body(request, state, TemplateBody)

    def check() -> dict[str, Any]:
        try:
            kind, _, variables = normalise_template(body.template)
            normalise_config(body.config)
        except LockgateError as exc:
            line = exc.line if isinstance(exc, TemplateSyntaxInvalid) else None
            return {"valid": False, "error": {"message": exc.message, "code": exc.code,
                                              "param": exc.param, "line": line}}  # fmt: skip
        return {"valid": True, "kind": kind, "variables": variables}

    return await anyio.to_thread.run_sync(check)


@router.post("/prompts/{name:path}/versions/{version}/render", dependencies=[READ],
             summary="Render a version", response_description="The rendered text or messages.",
             openapi_extra=body_schema(RenderBody))  # fmt: skip
async def render_version(
    request: Request, state: StateDep, name: NameParam, version: VersionParam
) -> dict[str, Any]:
    """Render a version with variables, strictly (missing or unknown ones are a 400), in
    the sandbox with its bounds."""
    check_name(name)
    ref = Ref.parse(f"{name}@{version}")
    body = await read_body(request, state, RenderBody)
    prompts = state.registry.prompts
    rendered = await anyio.to_thread.run_sync(
        lambda: prompts.render(prompts.get(ref), body.variables)
    )
    out: dict[str, Any] = jsonable(rendered)
    return out


@router.get("/prompts/{name:path}/versions/{version}", dependencies=[READ],
            summary="Get a prompt version", response_description="The version with its "
            "template, config, variables and labels.")  # fmt: skip
def get_version(state: StateDep, name: NameParam, version: VersionParam) -> dict[str, Any]:
    check_name(name)
    info = state.registry.prompts.get(Ref.parse(f"{name}@{version}"))
    labels = state.registry.labels.of("prompt", name)
    held = sorted(label for label, v in labels.items() if v == info.version)
    return {**version_object(info), "labels": held}


@router.post("/prompts/{name:path}/versions", summary="Create a prompt version",
             response_description="201: the new version; 200: the version that already has "
             "this content.", openapi_extra=body_schema(VersionBody))  # fmt: skip
async def create_version(
    request: Request, state: StateDep, principal: Writer, name: NameParam
) -> JSONResponse:
    """Push a template, its config and a message (identical content: the existing version)."""
    check_name(name, "prompt name")
    body = await read_body(request, state, VersionBody)
    info, created = await anyio.to_thread.run_sync(
        lambda: state.registry.prompts.push(
            name, body.template, body.config, message=body.message, author=actor_for(principal)
        )
    )
    return JSONResponse(
        {**version_object(info), "created": created},
        status_code=201 if created else 200,
        headers={"location": _location(name, info.version)},
    )


@router.get("/prompts/{name:path}/versions", dependencies=[READ],
            summary="List a prompt's versions", response_description="A page of version "
            "summaries, newest first.")  # fmt: skip
def list_versions(
    state: StateDep, name: NameParam, limit: Limit = 50, cursor: Cursor = None
) -> dict[str, Any]:
    check_name(name)
    versions = state.registry.prompts.versions(name)[::-1]
    return page(versions, limit, cursor, version_summary)


@router.get("/prompts/{name:path}/diff", dependencies=[READ], summary="Diff two versions",
            response_description="A unified diff of template and config, and both "
            "versions.")  # fmt: skip
def diff_versions(
    state: StateDep,
    name: NameParam,
    a: Annotated[str, Query(max_length=70, description="A version number or label.")],
    b: Annotated[str, Query(max_length=70, description="A version number or label.")],
) -> dict[str, Any]:
    check_name(name)
    prompts = state.registry.prompts
    left, right = prompts.get(Ref.parse(f"{name}@{a}")), prompts.get(Ref.parse(f"{name}@{b}"))
    return {"a": version_object(left), "b": version_object(right),
            "diff": prompts.diff(name, str(left.version), str(right.version))}  # fmt: skip


@router.get("/prompts/{name:path}", dependencies=[READ], summary="Get a prompt",
            response_description="The prompt: its labels and its versions, newest first "
            "(message, author, time, labels, content hash, variables).")  # fmt: skip
def get_prompt(state: StateDep, name: NameParam) -> dict[str, Any]:
    check_name(name)
    if not name:
        raise InvalidInput("name a prompt", param="name")
    registry = state.registry
    versions = registry.prompts.versions(name)
    return {
        "name": name,
        "labels": dict(sorted(registry.labels.of("prompt", name).items())),
        "latest_version": versions[-1].version if versions else 0,
        "versions": [version_summary(v) for v in reversed(versions)],
    }
