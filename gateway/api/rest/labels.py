"""``/api/v1/{prompts|models}/{name}/labels``: labels, their history, compare-and-set moves
through the gate, and approvals of protected labels.

- **ETag.** A label's state is the version it points at: ``ETag: "v3"``, or ``"none"``
  while the label is unset. ``GET`` answers with it; ``PUT`` (a move) must send it back in
  ``If-Match``: 428 without one, 412 when the label has moved since (nothing changes). This
  is the registry's compare-and-set (``Labels.set(expect_version=…)``), under the subject's
  row lock, so of two writers that saw the same state exactly one wins.
- **Gate.** A move runs the label's gate policy exactly as ``lockgate prompt label`` does. A
  refusal is a 409 ``gate_failed`` whose ``error.checks`` lists every check's verdict (pass
  ones too). ``force`` (with a ``reason``) moves past a refusal and is recorded as forced,
  with the verdicts it overrode.
- **Protected labels.** When a label needs approvers (``PUT …/protection``, or ``lockgate
  prompt protect``), a move answers 202 with a pending request; an approver (``registry:
  approve``, a different key from the requester's) approves it and only then the label
  moves, through the gate again and only if it still points where it did when the move was
  requested. The rule lives in the registry, so the CLI and the UI are bound by it alike.
- **Scopes.** Reading: ``registry:read``; moving: ``registry:label``; approving or
  rejecting a request: ``registry:approve``; protecting a label: ``admin``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

import anyio.to_thread
from fastapi import APIRouter, Header, Path, Query
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt
from starlette.requests import Request
from starlette.responses import JSONResponse

from lockgate.gateway.api.deps import StateDep
from lockgate.gateway.api.rest._bodies import body_schema, read_body, read_optional_body
from lockgate.gateway.api.rest.common import (
    ADMIN,
    APPROVE,
    LABEL,
    READ,
    Cursor,
    Limit,
    jsonable,
    page,
)
from lockgate.gateway.auth import Principal
from lockgate.gateway.state import GatewayState
from lockgate.registry.approvals import MAX_APPROVERS, LabelRequestInfo
from lockgate.registry.errors import (
    ApprovalPending,
    Conflict,
    InvalidInput,
    PreconditionFailed,
    PreconditionRequired,
)
from lockgate.registry.records import LabelMove, SubjectType, check_label, check_name

router = APIRouter(tags=["labels"])
SUBJECTS: dict[str, SubjectType] = {"prompts": "prompt", "models": "model"}
MAX_REASON = 2000
NameParam = Annotated[str, Path(description="The prompt's or model's name (may hold `/`).")]
LabelParam = Annotated[str, Path(description="A label: lower-case letters, digits, . _ -")]
RequestId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The request's number.")]
Labeller = Annotated[Principal, LABEL]
Approver = Annotated[Principal, APPROVE]
Admin = Annotated[Principal, ADMIN]


class MoveBody(BaseModel):
    """The body of ``PUT …/labels/{label}``."""

    model_config = ConfigDict(extra="forbid")

    version: StrictInt = Field(ge=1, le=2**31 - 1, description="The version to point at.")
    reason: str = Field(default="", max_length=MAX_REASON, description="Why; kept in history.")
    force: StrictBool = Field(
        default=False, description="Move past a refused gate (needs a reason; recorded)."
    )


class ProtectBody(BaseModel):
    """The body of ``PUT …/labels/{label}/protection``."""

    model_config = ConfigDict(extra="forbid")

    approvals: StrictInt = Field(
        ge=0, le=MAX_APPROVERS, description="Approvers each move needs; 0 removes it."
    )


class DecisionBody(BaseModel):
    """The (optional) body of ``POST …/requests/{id}/approve|reject``."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=MAX_REASON)


def actor_for(principal: Principal) -> str:
    """The name recorded for an HTTP caller (history, requests, approvals): its key's id,
    which no other key shares, and the key's name to read it by."""
    return f"api:{principal.key_id or principal.name} ({principal.name})"[:200]


def etag(version: int | None) -> str:
    return '"none"' if version is None else f'"v{version}"'


def parse_if_match(value: str | None) -> tuple[int | None, bool]:
    """``If-Match`` as (expect_version, expect_absent): 428 without one."""
    if value is None or not value.strip():
        raise PreconditionRequired(
            "moving a label is compare-and-set: send If-Match with the ETag you read "
            '(GET the label: "v3", or "none" while it is unset)',
            param="if-match",
        )
    text = value.strip()
    if text == '"none"':
        return None, True
    if text.startswith('"v') and text.endswith('"') and text[2:-1].isdigit() and len(text) < 16:
        return int(text[2:-1]), False
    raise InvalidInput(
        f"If-Match {text[:40]!r} is not a label ETag: send the ETag you read, "
        '"v3" or "none" (quotes included; * is not accepted)',
        param="if-match",
    )


def _names(name: str, label: str | None = None) -> None:
    check_name(name)
    if label is not None:
        check_label(label)


def move_object(move: LabelMove) -> dict[str, Any]:
    out: dict[str, Any] = jsonable(move)
    return out


def request_object(request: LabelRequestInfo) -> dict[str, Any]:
    out: dict[str, Any] = jsonable(request)
    return out


def label_objects(state: GatewayState, subject: SubjectType, name: str) -> list[dict[str, Any]]:
    """Every label of the subject that is set, protected or gated, by name."""
    registry = state.registry
    held = registry.labels.of(subject, name)
    protected = {p.label: p.approvals for p in registry.labels.protections(subject, name)}
    gated = {p.label for p in registry.gates.policies(subject, name)}
    return [
        {
            "label": label, "version": held.get(label), "etag": etag(held.get(label)),
            "approvals_needed": protected.get(label, 0), "gated": label in gated,
        }
        for label in sorted(set(held) | set(protected) | gated)
    ]  # fmt: skip


def label_object(
    state: GatewayState, subject: SubjectType, name: str, label: str
) -> dict[str, Any]:
    for item in label_objects(state, subject, name):
        if item["label"] == label:
            return item
    return {"label": label, "version": None, "etag": etag(None), "approvals_needed": 0,
            "gated": False}  # fmt: skip


def _json(body: Any, status: int = 200, tag: str | None = None) -> JSONResponse:
    headers = {"etag": tag} if tag is not None else {}
    return JSONResponse(jsonable(body), status_code=status, headers=headers)


def _routes(plural: str, subject: SubjectType) -> None:
    base = f"/{plural}/{{name:path}}"

    def add(method: str, path: str, endpoint: Callable[..., Any], summary: str,
            response: str, **kw: Any) -> None:  # fmt: skip
        router.add_api_route(
            base + path, endpoint, methods=[method], summary=f"{summary} ({subject})",
            response_description=response, operation_id=f"{endpoint.__name__}_{subject}", **kw,
        )  # fmt: skip

    def list_labels(
        state: StateDep, name: NameParam, limit: Limit = 50, cursor: Cursor = None
    ) -> dict[str, Any]:
        """Labels that are set, protected or gated, each with its ETag."""
        _names(name)
        return page(label_objects(state, subject, name), limit, cursor, lambda x: x)

    def get_label(state: StateDep, name: NameParam, label: LabelParam) -> JSONResponse:
        """Where the label points (null: unset) and its ETag, for `If-Match`."""
        _names(name, label)
        item = label_object(state, subject, name, label)
        return _json(item, tag=item["etag"])

    async def move_label(
        request: Request,
        state: StateDep,
        principal: Labeller,
        name: NameParam,
        label: LabelParam,
        if_match: Annotated[
            str | None,
            Header(alias="if-match", description='The label\'s ETag as read: "v3" or "none".'),
        ] = None,
    ) -> JSONResponse:
        """Point the label at a version: compare-and-set (`If-Match`), through its gate;
        a protected label answers 202 with a request for approval instead."""
        _names(name, label)
        expect_version, expect_absent = parse_if_match(if_match)
        body = await read_body(request, state, MoveBody)

        def move() -> LabelMove:
            try:
                return state.registry.labels.set(
                    subject, name, label, body.version, expect_version=expect_version,
                    expect_absent=expect_absent, reason=body.reason,
                    actor=actor_for(principal), force=body.force,
                )  # fmt: skip
            except Conflict as exc:
                raise PreconditionFailed(exc.message, param="if-match") from None

        try:
            done = await anyio.to_thread.run_sync(move)
        except ApprovalPending as pending:
            out = {"status": "pending_approval", "message": pending.message,
                   "request": request_object(pending.request)}  # fmt: skip
            return _json(out, 202)
        out = {**label_object(state, subject, name, label), "move": move_object(done)}
        return _json(out, tag=etag(done.to_version))

    def history(
        state: StateDep, name: NameParam, label: LabelParam, limit: Limit = 50,
        cursor: Cursor = None,
    ) -> dict[str, Any]:  # fmt: skip
        """Every move of the label, newest first: who, when, from, to, why, forced, and the
        gate's checks recorded with it."""
        _names(name, label)
        moves = state.registry.labels.history(subject, name, label)[::-1]
        return page(moves, limit, cursor, move_object)

    def all_history(
        state: StateDep, name: NameParam, limit: Limit = 50, cursor: Cursor = None
    ) -> dict[str, Any]:
        """Every move of every label of the subject, newest first."""
        _names(name)
        return page(state.registry.labels.history(subject, name)[::-1], limit, cursor,
                    move_object)  # fmt: skip

    def get_protection(state: StateDep, name: NameParam, label: LabelParam) -> dict[str, Any]:
        """How many approvers a move of the label needs (0: none)."""
        _names(name, label)
        found = [p for p in state.registry.labels.protections(subject, name) if p.label == label]
        return {"label": label, "approvals_needed": found[0].approvals if found else 0,
                "protection": jsonable(found[0]) if found else None}  # fmt: skip

    async def set_protection(
        request: Request, state: StateDep, principal: Admin, name: NameParam, label: LabelParam
    ) -> dict[str, Any]:
        """Require approvers for every move of the label (admin); 0 removes the rule."""
        _names(name, label)
        body = await read_body(request, state, ProtectBody)
        info = await anyio.to_thread.run_sync(
            lambda: state.registry.labels.protect(
                subject, name, label, body.approvals, actor=actor_for(principal)
            )
        )
        return {"label": label, "approvals_needed": body.approvals,
                "protection": jsonable(info) if info else None}  # fmt: skip

    def list_requests(
        state: StateDep, name: NameParam, label: LabelParam,
        status: Annotated[
            Literal["pending", "approved", "rejected", "stale", "all"],
            Query(description="Which requests; `all` for every state."),
        ] = "pending",
        limit: Limit = 50, cursor: Cursor = None,
    ) -> dict[str, Any]:  # fmt: skip
        """Requests to move a protected label, newest first."""
        _names(name, label)
        found = state.registry.labels.requests(
            subject, name, label, None if status == "all" else status
        )
        return page(found, limit, cursor, request_object)

    def get_request(
        state: StateDep, name: NameParam, label: LabelParam, request_id: RequestId
    ) -> dict[str, Any]:
        """One request: who asked, for which version, why, its approvals and gate checks."""
        _names(name, label)
        return request_object(state.registry.labels.request(subject, name, label, request_id))

    async def approve(
        request: Request, state: StateDep, principal: Approver, name: NameParam,
        label: LabelParam, request_id: RequestId,
    ) -> JSONResponse:  # fmt: skip
        """Approve a pending request (not your own). With enough approvals the label moves,
        through its gate; a refused gate is a 409 listing every check."""
        _names(name, label)
        await read_optional_body(request, state, DecisionBody)
        done = await anyio.to_thread.run_sync(
            lambda: state.registry.labels.approve(
                subject, name, label, request_id, actor=actor_for(principal)
            )
        )
        out = {"request": request_object(done), **label_object(state, subject, name, label)}
        return _json(out, tag=out["etag"])

    async def reject(
        request: Request, state: StateDep, principal: Approver, name: NameParam,
        label: LabelParam, request_id: RequestId,
    ) -> dict[str, Any]:  # fmt: skip
        """Turn a pending request down, with an optional reason."""
        _names(name, label)
        body = await read_optional_body(request, state, DecisionBody)
        done = await anyio.to_thread.run_sync(
            lambda: state.registry.labels.reject(
                subject, name, label, request_id, actor=actor_for(principal), reason=body.reason
            )
        )
        return request_object(done)

    # the most specific paths first: {name:path} takes slashes
    add("POST", "/labels/{label}/requests/{request_id}/approve", approve,
        "Approve a label move", "The request; the label's state after it.",
        openapi_extra=body_schema(DecisionBody, required=False))  # fmt: skip
    add("POST", "/labels/{label}/requests/{request_id}/reject", reject,
        "Reject a label move", "The rejected request.",
        openapi_extra=body_schema(DecisionBody, required=False))  # fmt: skip
    add("GET", "/labels/{label}/requests/{request_id}", get_request, "Get a move request",
        "The request.", dependencies=[READ])  # fmt: skip
    add("GET", "/labels/{label}/requests", list_requests, "List move requests",
        "A page of requests, newest first.", dependencies=[READ])  # fmt: skip
    add("GET", "/labels/{label}/history", history, "Label history",
        "A page of moves, newest first, with reasons and gate checks.",
        dependencies=[READ])  # fmt: skip
    add("GET", "/labels/{label}/protection", get_protection, "Get a label's approval rule",
        "Approvers needed (0: none).", dependencies=[READ])  # fmt: skip
    add("PUT", "/labels/{label}/protection", set_protection, "Protect a label",
        "The rule now.", openapi_extra=body_schema(ProtectBody))  # fmt: skip
    add("GET", "/labels/{label}", get_label, "Get a label",
        "The label with its ETag (also in the ETag header).", dependencies=[READ])  # fmt: skip
    add("PUT", "/labels/{label}", move_label, "Move a label",
        "200: moved (new ETag); 202: a request waiting for approval.",
        openapi_extra=body_schema(MoveBody))  # fmt: skip
    add("GET", "/labels", list_labels, "List labels", "A page of labels with their ETags.",
        dependencies=[READ])  # fmt: skip
    add("GET", "/history", all_history, "History of every label",
        "A page of moves, newest first.", dependencies=[READ])  # fmt: skip


for _plural, _subject in SUBJECTS.items():
    _routes(_plural, _subject)
