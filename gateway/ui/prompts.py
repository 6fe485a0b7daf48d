"""The prompt pages: the list with search, a prompt's versions as a timeline, a side-by-side
diff of any two versions, and the editor that adds a version.

Prompt names may hold ``/``, so a name is always the last part of a path
(``/ui/prompts/{name}``, ``/ui/prompt-diff/{name}``, ``/ui/prompt-editor/{name}``). The
editor checks a draft with the registry's own rules (:func:`registry.prompts.normalise_template`,
which parses the template and finds its variables), shows a bad template's error at its
line, compares a draft with any version, and saves through
:meth:`registry.prompts.Prompts.push`, the same path the CLI takes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from lockgate.gateway.state import GatewayState
from lockgate.gateway.ui import diff
from lockgate.gateway.ui.queries import prompt_page, prompt_versions
from lockgate.gateway.ui.routes import PREFIX, WRITE, UIDep, UIError, Viewer
from lockgate.registry.errors import InvalidInput, NotFound, TemplateSyntaxInvalid
from lockgate.registry.prompts import normalise_config, normalise_template
from lockgate.registry.records import PromptVersionInfo, check_name
from lockgate.registry.registry import Registry

PAGE_SIZE = 50
MAX_PAGE = 100_000
EXCERPT_LINES = 2  # lines shown on either side of a template error

router = APIRouter(prefix=PREFIX, include_in_schema=False)


def _state(request: Request) -> GatewayState:
    state: GatewayState = request.app.state.gateway
    return state


@router.get("/prompts")
async def prompt_list(request: Request, ui: UIDep) -> Response:
    viewer = await ui.viewer(request)
    params = request.query_params
    search = params.get("q", "").strip()[:200]
    label = params.get("label", "").strip()[:64]
    page = _int(params.get("page"), 1, 1, MAX_PAGE)
    rows, more = await ui.call(
        prompt_page, _state(request).registry.db, search=search, label=label,
        offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE,
    )  # fmt: skip
    return ui.page(
        request, "prompts.html", viewer=viewer, rows=rows, q=search, label=label, page=page,
        more=more,
    )  # fmt: skip


@router.get("/prompts/{name:path}")
async def prompt_timeline(request: Request, name: str, ui: UIDep) -> Response:
    viewer = await ui.viewer(request)
    versions = await ui.call(prompt_versions, _state(request).registry, name)
    params = request.query_params
    return ui.page(
        request, "prompt.html", viewer=viewer, name=name, versions=list(reversed(versions)),
        latest=versions[-1].version, saved=_int(params.get("saved"), 0, 0, 2**31),
        same=_int(params.get("same"), 0, 0, 2**31),
    )  # fmt: skip


@router.get("/prompt-diff/{name:path}")
async def prompt_diff(request: Request, name: str, ui: UIDep) -> Response:
    viewer = await ui.viewer(request)
    versions = await ui.call(prompt_versions, _state(request).registry, name)
    by_number = {v.version: v for v in versions}
    latest = versions[-1].version
    b = _int(request.query_params.get("b"), latest, 1, 2**31)
    a = _int(request.query_params.get("a"), max(1, b - 1), 1, 2**31)
    for number in (a, b):
        if number not in by_number:
            raise UIError(404, "Not found", f"prompt {name!r} has no version {number}")
    left, right = _side(by_number[a]), _side(by_number[b])
    return ui.page(
        request, "diff.html", viewer=viewer, name=name, versions=versions, a=a, b=b,
        left=left, right=right, sections=diff.compare(left, right),
    )  # fmt: skip


# -- the editor -------------------------------------------------------------------------


@dataclass
class Draft:
    """What the editor's form holds, and what checking it found."""

    name: str = ""
    kind: str = "text"
    template: str = ""
    config: str = ""
    message: str = ""
    compare_with: int | None = None
    errors: dict[str, str] = field(default_factory=dict)
    error_line: int | None = None
    variables: list[str] | None = None
    parsed_template: Any = None
    parsed_config: dict[str, Any] | None = None

    @property
    def excerpt(self) -> list[tuple[int, str]]:
        """The template's lines around the error (text templates)."""
        if self.error_line is None:
            return []
        lines = self.template.splitlines()
        first = max(1, self.error_line - EXCERPT_LINES)
        last = min(len(lines), self.error_line + EXCERPT_LINES)
        return [(n, lines[n - 1]) for n in range(first, last + 1)]


def draft_from_version(version: PromptVersionInfo) -> Draft:
    return Draft(
        name=version.name,
        kind=version.kind,
        template=diff.template_text(version.kind, version.template),
        config=diff.config_text(version.config),
        compare_with=version.version,
    )


def check_draft(draft: Draft, *, new_prompt: bool) -> Draft:
    """Parse and check ``draft`` by the registry's rules; fills its errors or its parsed
    template, config and variables."""
    if new_prompt:
        try:
            check_name(draft.name, "prompt name")
        except InvalidInput as exc:
            draft.errors["name"] = str(exc)
    template: Any = draft.template
    if draft.kind == "chat":
        template = _yaml(draft, "template", "messages")
    if "template" not in draft.errors:
        try:
            _, draft.parsed_template, draft.variables = normalise_template(template)
        except TemplateSyntaxInvalid as exc:
            where = "" if exc.param in (None, "template") else f"{exc.param}: "
            draft.errors["template"] = where + str(exc)
            draft.error_line = exc.line if draft.kind == "text" else None
        except InvalidInput as exc:
            draft.errors["template"] = str(exc)
    config = _yaml(draft, "config", "config") if draft.config.strip() else {}
    if "config" not in draft.errors:
        if not isinstance(config, dict):
            draft.errors["config"] = "the config is a mapping of keys to values (YAML)"
        else:
            try:
                draft.parsed_config = normalise_config(config)
            except InvalidInput as exc:
                draft.errors["config"] = str(exc)
    if len(draft.message) > 2000:
        draft.errors["message"] = "the message has at most 2,000 characters"
    return draft


def _yaml(draft: Draft, field_name: str, what: str) -> Any:
    try:
        return yaml.safe_load(getattr(draft, field_name))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        draft.errors[field_name] = f"the {what} is not valid YAML{line}: {problem}"
        return None


def _side(version: PromptVersionInfo) -> diff.Side:
    return diff.Side.of(
        f"version {version.version}", version.kind, version.template, version.config,
        version.variables,
    )  # fmt: skip


def _draft_side(draft: Draft) -> diff.Side:
    config = (
        diff.config_text(draft.parsed_config) if draft.parsed_config is not None else draft.config
    )
    return diff.Side("draft", draft.kind, draft.template, config, draft.variables or [])


def _editor(
    request: Request, ui: UIDep, viewer: Viewer, draft: Draft,
    versions: list[PromptVersionInfo], status: int = 200, **extra: Any,
) -> Response:  # fmt: skip
    return ui.page(
        request, "editor.html", status, viewer=viewer, draft=draft, versions=versions,
        new_prompt=not versions, **{"sections": None, "compared": None, **extra},
    )  # fmt: skip


@router.get("/new-prompt")
async def new_prompt(request: Request, ui: UIDep) -> Response:
    viewer = await ui.viewer(request)
    return _editor(request, ui, viewer, Draft(), [])


@router.get("/prompt-editor/{name:path}")
async def new_version(request: Request, name: str, ui: UIDep) -> Response:
    viewer = await ui.viewer(request)
    versions = await ui.call(prompt_versions, _state(request).registry, name)
    by_number = {v.version: v for v in versions}
    start = _int(request.query_params.get("from"), versions[-1].version, 1, 2**31)
    if start not in by_number:
        raise UIError(404, "Not found", f"prompt {name!r} has no version {start}")
    return _editor(request, ui, viewer, draft_from_version(by_number[start]), versions)


@router.post("/new-prompt")
async def post_new_prompt(request: Request, ui: UIDep) -> Response:
    return await _post_editor(request, ui, None)


@router.post("/prompt-editor/{name:path}")
async def post_new_version(request: Request, name: str, ui: UIDep) -> Response:
    return await _post_editor(request, ui, name)


async def _post_editor(request: Request, ui: UIDep, name: str | None) -> Response:
    viewer = await ui.viewer(request)
    if not viewer.can_write:  # before the body is read
        raise UIError(
            403, "Read-only key", f"Key {viewer.principal.name!r} lacks the {WRITE} scope, so "
            "it cannot add versions; sign in with a key that has it.",
        )  # fmt: skip
    fields = await ui.form(request, viewer.session)
    registry = _state(request).registry
    versions = [] if name is None else await ui.call(prompt_versions, registry, name)
    draft = Draft(
        name=fields.get("name", "").strip() if name is None else name,
        kind="chat" if fields.get("kind") == "chat" else "text",
        template=fields.get("template", "").replace("\r\n", "\n"),
        config=fields.get("config", "").replace("\r\n", "\n"),
        message=fields.get("message", "").strip(),
        compare_with=_int(fields.get("compare_with"), 0, 0, 2**31) or None,
    )
    check_draft(draft, new_prompt=name is None)
    new_name = name is None and "name" not in draft.errors
    if new_name and await ui.call(_exists, registry, draft.name):
        draft.errors["name"] = f"a prompt named {draft.name!r} exists: add a version from its page"
    action = fields.get("action", "check")
    if action == "compare" and versions:
        by_number = {v.version: v for v in versions}
        chosen = by_number.get(draft.compare_with or versions[-1].version, versions[-1])
        draft.compare_with = chosen.version
        left, right = _side(chosen), _draft_side(draft)
        return _editor(
            request, ui, viewer, draft, versions, 400 if draft.errors else 200,
            sections=diff.compare(left, right), compared=chosen.version,
        )  # fmt: skip
    if action != "save" or draft.errors:
        return _editor(request, ui, viewer, draft, versions, 400 if draft.errors else 200)
    try:
        info, created = await ui.call(
            registry.prompts.push, draft.name, draft.parsed_template, draft.parsed_config,
            message=draft.message, author=viewer.principal.name,
        )  # fmt: skip
    except InvalidInput as exc:  # the registry's last word (e.g. a name taken meanwhile)
        draft.errors[exc.param if exc.param in ("name", "config") else "template"] = str(exc)
        return _editor(request, ui, viewer, draft, versions, 400)
    outcome = "saved" if created else "same"
    return ui.redirect(request, f"{PREFIX}/prompts/{info.name}?{outcome}={info.version}")


def _exists(registry: Registry, name: str) -> bool:
    try:
        registry.prompts.get(name)
    except NotFound:
        return False
    return True


def _int(raw: str | None, default: int, low: int, high: int) -> int:
    if raw is None or not raw.strip().isdigit() or len(raw) > 12:
        return default
    return min(max(int(raw), low), high)
