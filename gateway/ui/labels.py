"""Label control on a prompt or a model (any flavor: LLM route, LoRA adapter, Hugging Face,
scikit-learn): the gate's verdict before a move, the move itself (compare-and-set, through the
gate), forced moves with a reason, approvals of protected labels, history.

- ``GET /ui/prompt-labels/NAME?label=L&version=V`` (``/ui/model-labels/NAME…`` for a model)
  shows every label of the subject, and for label L and the candidate version V every check
  of its gate (:meth:`registry.gates.Gates.promotion_checks`, as
  ``GET /api/v1/…/gates/L/checks``): ``pass``, ``fail`` or ``inconclusive``, its reason, the
  examples needed when the suite's report says so, and a link to the evidence run. Below:
  pending requests, then history.
- ``POST /ui/label-move/NAME`` (``/ui/model-label-move/NAME``) moves a label exactly as
  ``PUT /api/v1/{prompts|models}/NAME/labels/L`` does: :meth:`registry.labels.Labels.set` with
  the actor ``actor_for(principal)`` and ``expect_version`` from the version the form showed
  (the label moved meanwhile: 412, nothing changes). A refused gate shows every check (409); a
  protected label records a request and the page shows it (202). ``force`` needs a reason.
  Needs ``registry:label``.
- ``POST /ui/label-approve/NAME`` and ``/ui/label-reject/NAME`` (``/ui/model-label-approve``,
  ``/ui/model-label-reject``) decide a pending request (``registry:approve``; the registry
  refuses the requester's own approval).

The scope is checked before the form's body is read; every post carries the CSRF token.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from lockgate.gateway.api.rest.labels import actor_for, label_objects
from lockgate.gateway.state import GatewayState
from lockgate.gateway.ui.queries import prompt_versions
from lockgate.gateway.ui.routes import PREFIX, UI, UIDep, UIError, Viewer
from lockgate.registry.approvals import LabelRequestInfo
from lockgate.registry.errors import (
    ApprovalPending,
    Conflict,
    GateRefused,
    InvalidInput,
    NotAllowed,
    NotFound,
)
from lockgate.registry.records import LATEST, GateCheck, SubjectType, check_label, check_name

LABEL, APPROVE = "registry:label", "registry:approve"
MAX_REASON = 2000
HISTORY_SHOWN = 100
# "at least 40 are needed" / "about 120 examples are needed" (evals/gates.py reasons)
NEEDED = re.compile(r"(?:at least|about) (\d+) (?:examples )?are needed")

router = APIRouter(prefix=PREFIX, include_in_schema=False)


@dataclass(frozen=True)
class CheckRow:
    """A gate check as the page shows it."""

    name: str
    verdict: str
    reason: str
    run_id: str | None
    needed: int | None


@dataclass(frozen=True)
class Subject:
    """A kind of labelled subject and the UI's paths for it (under ``/ui``)."""

    kind: SubjectType
    page: str  # the label control
    move: str
    approve: str
    reject: str


PROMPT = Subject("prompt", "prompt-labels", "label-move", "label-approve", "label-reject")
MODEL = Subject(
    "model", "model-labels", "model-label-move", "model-label-approve", "model-label-reject"
)


def check_rows(checks: list[GateCheck]) -> list[CheckRow]:
    rows = []
    for c in checks:
        found = NEEDED.search(c.reason) if c.verdict == "inconclusive" else None
        needed = int(found[1]) if found else None
        rows.append(CheckRow(c.name, c.verdict, c.reason, c.run_id, needed))
    return rows


def _state(request: Request) -> GatewayState:
    state: GatewayState = request.app.state.gateway
    return state


def _int(raw: str | None) -> int | None:
    if raw is None or not raw.strip().isdigit() or len(raw.strip()) > 10:
        return None
    value = int(raw)
    return value if 1 <= value <= 2**31 - 1 else None


def _label(raw: str | None) -> str:
    label = (raw or "production").strip()[:64]
    try:
        check_label(label)
    except InvalidInput as exc:
        raise UIError(400, "Bad label", str(exc)) from None
    if label == LATEST:
        raise UIError(400, "Bad label", "'latest' follows every push; it is not moved by hand")
    return label


def _versions(state: GatewayState, subject: Subject, name: str) -> list[Any]:
    """Every version of the subject, oldest first; :class:`NotFound` (a 404) when none."""
    if subject.kind == "prompt":
        return prompt_versions(state.registry, name)
    try:
        check_name(name, "model name")
    except InvalidInput as exc:
        raise NotFound(str(exc)) from None
    versions: list[Any] = state.registry.models.versions(name)
    if not versions:
        raise NotFound(f"model {name!r} has no versions")
    return versions


def _page_data(
    state: GatewayState, subject: Subject, name: str, label: str, version: int | None,
    actor: str,
) -> dict[str, Any]:  # fmt: skip
    registry, kind = state.registry, subject.kind
    versions = _versions(state, subject, name)
    labels = [x for x in label_objects(state, kind, name) if x["label"] != LATEST]
    current = registry.labels.of(kind, name).get(label)
    numbers = [v.version for v in versions]
    if version is None or version not in numbers:
        version = numbers[-1] if numbers[-1] != current or len(numbers) == 1 else numbers[-2]
    checks = registry.gates.promotion_checks(kind, name, label, version)
    protected = [p.approvals for p in registry.labels.protections(kind, name)
                 if p.label == label]  # fmt: skip
    pending = registry.labels.requests(kind, name, label, "pending")
    decided = [r for r in registry.labels.requests(kind, name, label, None)
               if r.status != "pending"][:20]  # fmt: skip
    history = registry.labels.history(kind, name, label)[::-1][:HISTORY_SHOWN]
    return {
        "subject": subject, "name": name, "label": label, "version": version,
        "current": current,
        "versions": list(reversed(versions)), "labels": labels,
        "checks": check_rows(checks),
        "gated": any(x["label"] == label and x["gated"] for x in labels),
        "allowed": all(c.verdict == "pass" for c in checks),
        "approvals_needed": protected[0] if protected else 0, "pending": pending,
        "decided": decided, "history": history, "actor": actor,
    }  # fmt: skip


async def _render(
    request: Request, ui: UI, viewer: Viewer, subject: Subject, name: str, label: str,
    version: int | None, status: int = 200, **extra: Any,
) -> Response:  # fmt: skip
    data = await ui.call(
        _page_data, _state(request), subject, name, label, version, actor_for(viewer.principal)
    )
    params = request.query_params
    context = {
        "moved": _int(params.get("moved")), "requested": _int(params.get("requested")),
        "approved": _int(params.get("approved")), "rejected": _int(params.get("rejected")),
        "refused": None, "error": "", "field_error": "", "reason": "",
        "can_label": viewer.principal.has_scope(LABEL),
        "can_approve": viewer.principal.has_scope(APPROVE), **data, **extra,
    }  # fmt: skip
    return ui.page(request, "labels.html", status, viewer=viewer, **context)


async def label_page(request: Request, subject: Subject, name: str, ui: UI) -> Response:
    viewer = await ui.viewer(request)
    params = request.query_params
    label = _label(params.get("label"))
    return await _render(request, ui, viewer, subject, name, label, _int(params.get("version")))


def _require(viewer: Viewer, scope: str, what: str) -> None:
    if not viewer.principal.has_scope(scope):
        raise UIError(
            403, "Not allowed", f"Key {viewer.principal.name!r} lacks the {scope} scope, so it "
            f"cannot {what}; sign in with a key that has it.",
        )  # fmt: skip


def _where(label: str, version: int, **extra: int) -> str:
    more = "".join(f"&{k}={v}" for k, v in extra.items())
    return f"?label={label}&version={version}{more}"


async def move(request: Request, subject: Subject, name: str, ui: UI) -> Response:
    viewer = await ui.viewer(request)
    _require(viewer, LABEL, "move labels")  # before the body is read
    fields = await ui.form(request, viewer.session)
    label = _label(fields.get("label"))
    version = _int(fields.get("version"))
    if version is None:
        raise UIError(400, "Bad form", "Choose the version to move the label to.")
    seen = fields.get("expect", "")
    if seen != "none" and _int(seen) is None:
        raise UIError(400, "Bad form", "The form lost the version it showed: reload the page.")
    force = fields.get("force") == "1"
    reason = fields.get("reason", "").strip()
    if len(reason) > MAX_REASON:
        raise UIError(400, "Bad form", f"The reason has at most {MAX_REASON:,} characters.")
    if force and not reason:
        return await _render(
            request, ui, viewer, subject, name, label, version, 400,
            field_error="A forced move needs a reason: say why the gate is overridden.",
        )  # fmt: skip
    registry = _state(request).registry
    try:
        await ui.call(
            registry.labels.set, subject.kind, name, label, version,
            expect_version=None if seen == "none" else _int(seen), expect_absent=seen == "none",
            reason=reason, actor=actor_for(viewer.principal), force=force,
        )  # fmt: skip
    except GateRefused as refused:
        return await _render(
            request, ui, viewer, subject, name, label, version, 409,
            refused=check_rows(refused.checks), reason=reason,
        )  # fmt: skip
    except ApprovalPending as pending:
        where = _where(label, version, requested=pending.request.id)
        return ui.redirect(request, f"{PREFIX}/{subject.page}/{name}{where}")
    except Conflict as exc:
        return await _render(
            request, ui, viewer, subject, name, label, version, 412, error=exc.message
        )
    except InvalidInput as exc:
        return await _render(
            request, ui, viewer, subject, name, label, version, 400, field_error=exc.message
        )
    where = _where(label, version, moved=version)
    return ui.redirect(request, f"{PREFIX}/{subject.page}/{name}{where}")


async def decide(request: Request, subject: Subject, name: str, ui: UI, approve: bool) -> Response:
    viewer = await ui.viewer(request)
    _require(viewer, APPROVE, "approve or reject label moves")  # before the body is read
    fields = await ui.form(request, viewer.session)
    label = _label(fields.get("label"))
    request_id = _int(fields.get("request"))
    if request_id is None:
        raise UIError(400, "Bad form", "The form names no request: reload the page.")
    registry = _state(request).registry
    actor = actor_for(viewer.principal)
    try:
        done: LabelRequestInfo
        if approve:
            done = await ui.call(registry.labels.approve, subject.kind, name, label, request_id,
                                 actor=actor)  # fmt: skip
        else:
            done = await ui.call(
                registry.labels.reject, subject.kind, name, label, request_id, actor=actor,
                reason=fields.get("reason", "").strip()[:MAX_REASON],
            )  # fmt: skip
    except GateRefused as refused:
        return await _render(
            request, ui, viewer, subject, name, label, None, 409,
            refused=check_rows(refused.checks),
        )  # fmt: skip
    except (Conflict, NotAllowed) as exc:
        status = 403 if isinstance(exc, NotAllowed) else 409
        return await _render(
            request, ui, viewer, subject, name, label, None, status, error=exc.message
        )
    outcome = "approved" if approve else "rejected"
    where = _where(label, done.to_version, **{outcome: done.id})
    return ui.redirect(request, f"{PREFIX}/{subject.page}/{name}{where}")


def _add_routes(subject: Subject) -> None:
    """The label control's four routes for one kind of subject."""

    async def page(request: Request, name: str, ui: UIDep) -> Response:
        return await label_page(request, subject, name, ui)

    async def move_label(request: Request, name: str, ui: UIDep) -> Response:
        return await move(request, subject, name, ui)

    async def approve(request: Request, name: str, ui: UIDep) -> Response:
        return await decide(request, subject, name, ui, True)

    async def reject(request: Request, name: str, ui: UIDep) -> Response:
        return await decide(request, subject, name, ui, False)

    router.add_api_route(f"/{subject.page}/{{name:path}}", page, methods=["GET"])
    router.add_api_route(f"/{subject.move}/{{name:path}}", move_label, methods=["POST"])
    router.add_api_route(f"/{subject.approve}/{{name:path}}", approve, methods=["POST"])
    router.add_api_route(f"/{subject.reject}/{{name:path}}", reject, methods=["POST"])


for _subject in (PROMPT, MODEL):
    _add_routes(_subject)
