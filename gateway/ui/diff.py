"""Side-by-side diffs of prompt versions, computed on the server with :mod:`difflib`.

A version (or a draft) is compared section by section: its template, its model config and
its variables, each as lines of text. The rows are plain data; the template escapes them.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import yaml

MAX_DIFF_LINES = 5_000  # per side and section; past it the section is not diffed here

RowKind = Literal["equal", "changed", "removed", "added"]


@dataclass(frozen=True, slots=True)
class Row:
    kind: RowKind
    left_no: int | None
    left: str | None
    right_no: int | None
    right: str | None


@dataclass(frozen=True, slots=True)
class Section:
    title: str
    rows: list[Row]
    changed: bool
    too_large: bool = False


@dataclass(frozen=True, slots=True)
class Side:
    """What is compared of one version (or draft): its template, config and variables as
    text."""

    label: str
    kind: str
    template: str
    config: str
    variables: list[str]

    @classmethod
    def of(cls, label: str, kind: str, template: Any, config: dict[str, Any],
           variables: list[str]) -> Side:  # fmt: skip
        return cls(label, kind, template_text(kind, template), config_text(config), variables)


def template_text(kind: str, template: Any) -> str:
    if kind == "text":
        return str(template)
    return yaml.safe_dump(template, sort_keys=False, allow_unicode=True, width=100)


def config_text(config: dict[str, Any]) -> str:
    if not config:
        return ""
    return yaml.safe_dump(config, sort_keys=True, allow_unicode=True, width=100)


def side_by_side(left: Sequence[str], right: Sequence[str]) -> list[Row]:
    rows: list[Row] = []
    matcher = difflib.SequenceMatcher(None, left, right, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            rows += [Row("equal", i + 1, left[i], j + 1, right[j]) for i, j in
                     zip(range(i1, i2), range(j1, j2), strict=True)]  # fmt: skip
            continue
        width = max(i2 - i1, j2 - j1)
        for n in range(width):
            i, j = i1 + n, j1 + n
            has_left, has_right = i < i2, j < j2
            kind: RowKind = (
                "changed" if has_left and has_right else "removed" if has_left else "added"
            )
            rows.append(
                Row(
                    kind,
                    i + 1 if has_left else None,
                    left[i] if has_left else None,
                    j + 1 if has_right else None,
                    right[j] if has_right else None,
                )
            )
    return rows


def _section(title: str, left: str, right: str) -> Section:
    a, b = left.splitlines(), right.splitlines()
    if len(a) > MAX_DIFF_LINES or len(b) > MAX_DIFF_LINES:
        return Section(title, [], a != b, too_large=True)
    rows = side_by_side(a, b)
    return Section(title, rows, any(r.kind != "equal" for r in rows))


def compare(left: Side, right: Side) -> list[Section]:
    """The sections of a side-by-side diff: template, config, variables."""
    template_title = "Template" if left.kind == right.kind else (
        f"Template ({left.kind} → {right.kind})"
    )  # fmt: skip
    return [
        _section(template_title, left.template, right.template),
        _section("Config", left.config, right.config),
        _section("Variables", "\n".join(left.variables), "\n".join(right.variables)),
    ]
