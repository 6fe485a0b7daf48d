"""Prompts: immutable versions of text or chat templates with their model configuration."""

from __future__ import annotations

import builtins
import difflib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from lockgate.registry._core import Database, Part, content_hash
from lockgate.registry.errors import InvalidInput, NotFound
from lockgate.registry.labels import Labels
from lockgate.registry.records import (
    LATEST,
    PromptVersionInfo,
    Ref,
    RenderedPrompt,
    SubjectSummary,
    check_name,
)
from lockgate.registry.tables import Label, Prompt, PromptVersion
from lockgate.registry.templates import (
    check_variables,
    render_template,
    template_variables,
    variables_of,
)

CONFIG_KEYS = frozenset(
    {
        "model",
        "temperature",
        "max_tokens",
        "top_p",
        "stop",
        "seed",
        "response_format",
        "tools",
        "tool_choice",
        "frequency_penalty",
        "presence_penalty",
    }
)
ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})


def normalise_template(template: Any) -> tuple[str, Any, list[str]]:
    """Validate a text or chat template; returns (kind, template, variables)."""
    if isinstance(template, str):
        return "text", template, sorted(template_variables(template, where="template"))
    if not isinstance(template, list) or not template:
        raise InvalidInput(
            "a template is a string or a non-empty list of {role, content} messages",
            param="template",
        )
    messages = []
    for i, message in enumerate(template):
        if not isinstance(message, Mapping):
            raise InvalidInput(f"messages[{i}] is not a mapping", param=f"messages[{i}]")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise InvalidInput(
                f"messages[{i}].role is {role!r}; use one of {', '.join(sorted(ROLES))}",
                param=f"messages[{i}].role",
            )
        if not isinstance(content, str):
            raise InvalidInput(
                f"messages[{i}].content must be a string", param=f"messages[{i}].content"
            )
        unknown = set(message) - {"role", "content", "name"}
        if unknown:
            raise InvalidInput(
                f"messages[{i}] has unknown field(s): {', '.join(sorted(unknown))}",
                param=f"messages[{i}]",
            )
        messages.append(dict(message))
    return "chat", messages, variables_of(m["content"] for m in messages)


def normalise_config(config: Mapping[str, Any] | None) -> dict[str, Any]:
    config = dict(config or {})
    unknown = set(config) - CONFIG_KEYS
    if unknown:
        raise InvalidInput(
            f"unknown model config key(s): {', '.join(sorted(unknown))}; "
            f"allowed: {', '.join(sorted(CONFIG_KEYS))}",
            param="config",
        )
    return config


def load_prompt_file(path: Path) -> tuple[Any, dict[str, Any]]:
    """Read a prompt file: ``.txt`` is a text template; ``.yaml``/``.json`` holds
    ``messages`` (or ``template``) and an optional ``config``."""
    try:
        raw = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}", param="file") from exc
    if path.suffix in {".txt", ".md", ".j2", ".jinja"}:
        return raw, {}
    if path.suffix not in {".yaml", ".yml", ".json"}:
        raise InvalidInput(
            f"{path}: use a .txt text template or a .yaml/.json chat prompt", param="file"
        )
    try:
        data = json.loads(raw) if path.suffix == ".json" else yaml.safe_load(raw)
    except (ValueError, yaml.YAMLError) as exc:
        raise InvalidInput(f"{path} is not valid {path.suffix[1:].upper()}: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidInput(f"{path}: expected a mapping with 'messages' or 'template'")
    unknown = set(data) - {"messages", "template", "config"}
    if unknown:
        raise InvalidInput(f"{path}: unknown key(s) {', '.join(sorted(unknown))}")
    if ("messages" in data) == ("template" in data):
        raise InvalidInput(f"{path}: give exactly one of 'messages' or 'template'")
    template = data.get("messages", data.get("template"))
    return template, data.get("config") or {}


def _info(name: str, row: Any, labels: list[str] | None = None) -> PromptVersionInfo:
    return PromptVersionInfo(
        name=name,
        version=row.version,
        kind=row.kind,
        template=row.template,
        config=row.config,
        variables=row.variables,
        message=row.message,
        author=row.author,
        content_hash=row.content_hash,
        created_at=row.created_at,
        labels=labels or [],
    )


_RESOLVE_COLUMNS = (
    PromptVersion.version,
    PromptVersion.kind,
    PromptVersion.template,
    PromptVersion.config,
    PromptVersion.variables,
    PromptVersion.message,
    PromptVersion.author,
    PromptVersion.content_hash,
    PromptVersion.created_at,
)


class Prompts(Part):
    """Prompt templates: immutable, content-hashed versions resolved by reference."""

    def __init__(self, db: Database, labels: Labels) -> None:
        super().__init__(db)
        self.labels = labels

    def push(
        self,
        name: str,
        template: Any,
        config: Mapping[str, Any] | None = None,
        *,
        message: str = "",
        author: str | None = None,
    ) -> tuple[PromptVersionInfo, bool]:
        """Store a new version; identical content returns the existing version and False."""
        check_name(name, "prompt name")
        kind, template, variables = normalise_template(template)
        config = normalise_config(config)
        digest = content_hash({"kind": kind, "template": template, "config": config})
        author = author or self.db.actor
        with self.db.write() as session:
            prompt = self.db.lock_subject(session, "prompt", name)
            existing = self.labels.find_version(session, "prompt", prompt.id, digest)
            if existing is not None:
                return _info(name, existing), False
            row = self.labels.add_version(
                session, "prompt", prompt.id, name, author, prompt_id=prompt.id, kind=kind,
                template=template, config=config, variables=variables, message=message,
                content_hash=digest,
            )  # fmt: skip
            return _info(name, row), True

    def get(self, ref: str | Ref) -> PromptVersionInfo:
        """The version ``NAME@LABEL`` (or ``NAME@VERSION``, or ``NAME`` for ``@latest``)
        points to.

        One indexed query on the hit path: this sits on the gateway's request path.
        """
        ref = Ref.parse(ref) if isinstance(ref, str) else ref
        name, label, version = ref.name, ref.label, ref.version
        stmt = select(*_RESOLVE_COLUMNS).join(Prompt, Prompt.id == PromptVersion.prompt_id)
        if version is not None:
            stmt = stmt.where(Prompt.name == name, PromptVersion.version == version)
        else:
            stmt = stmt.join(
                Label,
                and_(
                    Label.subject_type == "prompt",
                    Label.subject_id == Prompt.id,
                    Label.version == PromptVersion.version,
                ),
            ).where(Prompt.name == name, Label.name == (label or LATEST))
        with self.db.read() as session:
            row = session.execute(stmt).first()
            if row is None:
                self._explain_miss(session, name, label, version)
        assert row is not None
        return _info(name, row)

    def _explain_miss(
        self, session: Session, name: str, label: str | None, version: int | None
    ) -> None:
        prompt = self.db.subject(session, "prompt", name)
        if version is not None:
            raise NotFound(f"prompt {name!r} has no version {version}", param="version")
        labels = self.labels.on(session, "prompt", prompt.id)
        raise NotFound(
            f"prompt {name!r} has no label {label!r} (labels: {', '.join(sorted(labels))})",
            param="label",
        )

    def render(
        self, prompt: PromptVersionInfo, variables: Mapping[str, Any],
        *, within_s: float | None = None,
    ) -> RenderedPrompt:  # fmt: skip
        """Render strictly: missing and unknown variables are errors naming them.
        ``within_s``: see :func:`~registry.templates.render_template` (RenderTooSlow)."""
        check_variables(prompt.variables, variables)
        if prompt.kind == "text":
            text = render_template(prompt.template, variables, within_s=within_s)
            return RenderedPrompt(prompt.name, prompt.version, "text", text, None, prompt.config)
        messages = [
            {**m, "content": render_template(m["content"], variables, within_s=within_s)}
            for m in prompt.template
        ]
        return RenderedPrompt(prompt.name, prompt.version, "chat", None, messages, prompt.config)

    def list(self) -> builtins.list[SubjectSummary]:
        return self.labels.summaries("prompt")

    def versions(self, name: str) -> builtins.list[PromptVersionInfo]:
        return [
            _info(name, r, labels) for r, labels in self.labels.versions_with_labels("prompt", name)
        ]

    def diff(self, name: str, a: str, b: str) -> str:
        """Unified diff of two versions (each a version number or a label)."""
        left, right = (self.get(f"{name}@{x}") for x in (a, b))
        return unified_diff(
            prompt_document(left),
            prompt_document(right),
            f"{name}@{left.version}",
            f"{name}@{right.version}",
        )


def prompt_document(prompt: PromptVersionInfo) -> str:
    """A stable, readable text form of a version's template and config (for diffs)."""
    body: dict[str, Any] = (
        {"template": prompt.template} if prompt.kind == "text" else {"messages": prompt.template}
    )
    body["config"] = prompt.config
    return yaml.safe_dump(body, sort_keys=False, allow_unicode=True, width=100)


def unified_diff(left: str, right: str, left_name: str, right_name: str) -> str:
    lines = difflib.unified_diff(
        left.splitlines(keepends=True), right.splitlines(keepends=True), left_name, right_name
    )
    return "".join(lines)
