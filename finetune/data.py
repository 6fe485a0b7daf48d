"""Training data: the three accepted JSONL formats, validated row by row.

=================  ==============================================================
format             one line
=================  ==============================================================
chat               ``{"messages": [{"role": "system"|"user"|"assistant", "content": "…",
                   "weight": 0|1 (assistant only, optional)}, …]}`` — OpenAI's format
completion         ``{"prompt": "…", "completion": "…"}``
alpaca             ``{"instruction": "…", "input": "…" (optional), "output": "…"}``
=================  ==============================================================

The format is decided by the first row; every other row must match it. Alpaca rows become
chat rows (user: instruction + input, assistant: output) so they use the chat template.
Loss is computed only on assistant messages (weight 1) and on completions.
Validation collects *every* bad row with its 1-based line number before failing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lockgate.finetune.errors import RowProblem, TrainingDataInvalid

ROLES = frozenset({"system", "user", "assistant", "developer"})


@dataclass(frozen=True)
class Example:
    """One training example: chat ``messages``, or a ``prompt`` and its ``completion``."""

    messages: list[dict[str, Any]] | None = None
    prompt: str | None = None
    completion: str | None = None


@dataclass
class DataReport:
    file: str
    format: str | None = None
    rows: int = 0
    examples: list[Example] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "format": self.format, "rows": self.rows}


RowParser = Callable[[dict[str, Any]], tuple[Example | None, str | None]]
FORMATS: dict[str, tuple[Callable[[dict[str, Any]], bool], RowParser]] = {}


def data_format(
    name: str, detect: Callable[[dict[str, Any]], bool]
) -> Callable[[RowParser], RowParser]:
    """Register a row format: ``detect`` recognises a first row, the parser checks any row."""

    def deco(parser: RowParser) -> RowParser:
        FORMATS[name] = (detect, parser)
        return parser

    return deco


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != ""


@data_format("chat", lambda row: "messages" in row)
def _chat(row: dict[str, Any]) -> tuple[Example | None, str | None]:
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        return None, "'messages' must be a non-empty list"
    out: list[dict[str, Any]] = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            return None, f"messages[{i}] is not an object"
        role = msg.get("role")
        if role not in ROLES:
            return None, f"messages[{i}].role {role!r} is not one of {', '.join(sorted(ROLES))}"
        if not isinstance(msg.get("content"), str):
            return None, f"messages[{i}].content must be a string"
        weight = msg.get("weight", 1)
        if weight not in (0, 1) or (role != "assistant" and "weight" in msg):
            return None, f"messages[{i}].weight must be 0 or 1, on assistant messages only"
        out.append(
            {
                "role": "system" if role == "developer" else role,
                "content": msg["content"],
                "weight": weight,
            }
        )
    trained = [m for m in out if m["role"] == "assistant" and m["weight"] == 1]
    if not trained:
        return None, "no assistant message to learn from (with weight 1)"
    if not any(_is_text(m["content"]) for m in trained):
        return None, "every assistant message is empty"
    return Example(messages=out), None


@data_format("completion", lambda row: "prompt" in row or "completion" in row)
def _completion(row: dict[str, Any]) -> tuple[Example | None, str | None]:
    prompt, completion = row.get("prompt"), row.get("completion")
    if not isinstance(prompt, str):
        return None, "'prompt' must be a string"
    if not _is_text(completion):
        return None, "'completion' must be a non-empty string"
    return Example(prompt=prompt, completion=completion), None


@data_format("alpaca", lambda row: "instruction" in row)
def _alpaca(row: dict[str, Any]) -> tuple[Example | None, str | None]:
    instruction, extra, output = row.get("instruction"), row.get("input", ""), row.get("output")
    if not _is_text(instruction):
        return None, "'instruction' must be a non-empty string"
    if not isinstance(extra, str):
        return None, "'input' must be a string"
    if not _is_text(output):
        return None, "'output' must be a non-empty string"
    user = instruction if not extra.strip() else f"{instruction}\n\n{extra}"
    messages = [
        {"role": "user", "content": user, "weight": 1},
        {"role": "assistant", "content": output, "weight": 1},
    ]
    return Example(messages=messages), None


def _detect(row: dict[str, Any]) -> str | None:
    for name, (detect, _) in FORMATS.items():
        if detect(row):
            return name
    return None


def scan_file(path: Path, *, name: str | None = None) -> DataReport:
    """Parse and check every row of a JSONL file; never raises for bad rows."""
    label = name or str(path)
    report = DataReport(label)
    try:
        handle = path.open(encoding="utf-8")
    except OSError as exc:
        report.problems.append(RowProblem(label, None, f"cannot read: {exc.strerror}"))
        return report
    with handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            report.rows += 1
            try:
                row = json.loads(raw)
            except json.JSONDecodeError as exc:
                where = f"{exc.msg.removesuffix(' at')} at column {exc.colno}"  # a whole phrase
                report.problems.append(RowProblem(label, number, f"not JSON: {where}"))
                continue
            if not isinstance(row, dict):
                report.problems.append(RowProblem(label, number, "a row must be a JSON object"))
                continue
            kind = _detect(row)
            if kind is None:
                report.problems.append(RowProblem(label, number, _unknown(row)))
                continue
            if report.format is None:
                report.format = kind
            elif kind != report.format:
                report.problems.append(
                    RowProblem(
                        label,
                        number,
                        f"a {kind} row in a {report.format} file (one format per file)",
                    )
                )
                continue
            example, problem = FORMATS[kind][1](row)
            if problem is not None:
                report.problems.append(RowProblem(label, number, problem))
            elif example is not None:
                report.examples.append(example)
    if report.rows == 0 and not report.problems:
        report.problems.append(RowProblem(label, None, "the file has no rows"))
    return report


def _unknown(row: dict[str, Any]) -> str:
    keys = ", ".join(sorted(row)) or "none"
    return (
        f"unrecognised row (keys: {keys}); use 'messages' (chat), 'prompt'/'completion', "
        "or 'instruction'/'output' (Alpaca)"
    )


def load_examples(
    path: Path, *, name: str | None = None, param: str = "training_file"
) -> list[Example]:
    """The examples of a valid file, or :class:`TrainingDataInvalid` naming every bad row."""
    report = scan_file(path, name=name)
    if report.problems:
        raise TrainingDataInvalid(report.problems, param=param)
    return report.examples
