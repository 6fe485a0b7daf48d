"""The reads behind the prompt list: one page of prompts with their latest version and
labels, in two queries whatever the number of prompts."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from lockgate.registry._core import Database
from lockgate.registry.errors import NotFound
from lockgate.registry.tables import Label, Prompt, PromptVersion


@dataclass(frozen=True, slots=True)
class PromptRow:
    name: str
    latest_version: int
    latest_at: datetime
    latest_author: str
    latest_message: str
    labels: dict[str, int] = field(default_factory=dict)


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def prompt_page(
    db: Database, *, search: str = "", label: str = "", offset: int = 0, limit: int = 50
) -> tuple[list[PromptRow], bool]:
    """Prompts by name (``search``: a part of the name, any case; ``label``: only prompts
    holding that label), from ``offset``; and whether more follow."""
    latest = (
        select(PromptVersion.prompt_id, func.max(PromptVersion.version).label("version"))
        .group_by(PromptVersion.prompt_id)
        .subquery()
    )
    stmt = (
        select(
            Prompt.id,
            Prompt.name,
            PromptVersion.version,
            PromptVersion.created_at,
            PromptVersion.author,
            PromptVersion.message,
        )
        .join(latest, latest.c.prompt_id == Prompt.id)
        .join(
            PromptVersion,
            (PromptVersion.prompt_id == Prompt.id) & (PromptVersion.version == latest.c.version),
        )
        .order_by(Prompt.name)
        .offset(offset)
        .limit(limit + 1)
    )
    if search:
        stmt = stmt.where(func.lower(Prompt.name).like(_like(search.lower()), escape="\\"))
    if label:
        stmt = stmt.where(
            select(Label.id)
            .where(
                Label.subject_type == "prompt", Label.subject_id == Prompt.id, Label.name == label
            )
            .exists()
        )
    with db.read() as session:
        found = session.execute(stmt).all()
        more = len(found) > limit
        found = found[:limit]
        labels: dict[int, dict[str, int]] = {}
        if found:
            ids = [r.id for r in found]
            for subject_id, name, version in session.execute(
                select(Label.subject_id, Label.name, Label.version)
                .where(Label.subject_type == "prompt", Label.subject_id.in_(ids))
                .order_by(Label.name)
            ):
                labels.setdefault(subject_id, {})[name] = version
    rows = [
        PromptRow(r.name, r.version, r.created_at, r.author, r.message, labels.get(r.id, {}))
        for r in found
    ]
    return rows, more


def prompt_versions(registry: Any, name: str) -> list[Any]:
    """Every version of prompt ``name``, oldest first; :class:`NotFound` (a 404 page through
    ``UI.call``) when it has none. The one lookup every prompt page starts from."""
    versions: list[Any] = registry.prompts.versions(name)
    if not versions:
        raise NotFound(f"prompt {name!r} has no versions")
    return versions
