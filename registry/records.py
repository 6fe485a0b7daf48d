"""Plain, immutable values the registry API returns (the tables stay internal)."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

from lockgate.registry.errors import InvalidInput

SubjectType = Literal["prompt", "model"]

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-/]{0,199}$")
LABEL_RE = re.compile(r"^[a-z][a-z0-9_.\-]{0,63}$")
LATEST = "latest"


def check_name(name: str, what: str = "name") -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidInput(
            f"invalid {what} {name!r}: use letters, digits and . _ - / (at most 200, "
            "starting with a letter or digit)",
            param=what,
        )
    return name


def check_label(label: str) -> str:
    if not isinstance(label, str) or not LABEL_RE.match(label):
        raise InvalidInput(
            f"invalid label {label!r}: use lower-case letters, digits and . _ - "
            "(at most 64, starting with a letter)",
            param="label",
        )
    return label


@dataclass(frozen=True)
class Ref:
    """``NAME``, ``NAME@LABEL`` or ``NAME@VERSION``; a bare name means ``@latest``."""

    name: str
    label: str | None = None
    version: int | None = None

    @classmethod
    def parse(cls, text: str) -> Ref:
        name, sep, selector = text.partition("@")
        check_name(name)
        if not sep:
            return cls(name)
        if selector.isdigit():
            return cls(name, version=int(selector))
        if selector.startswith("v") and selector[1:].isdigit():
            return cls(name, version=int(selector[1:]))
        return cls(name, label=check_label(selector))

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}@{self.version}"
        return f"{self.name}@{self.label or LATEST}"


class _Record:
    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)  # type: ignore[call-overload]
        return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in out.items()}


@dataclass(frozen=True)
class PromptVersionInfo(_Record):
    name: str
    version: int
    kind: str  # "text" | "chat"
    template: Any  # str for text, list of {"role", "content"} for chat
    config: dict[str, Any]
    variables: list[str]
    message: str
    author: str
    content_hash: str
    created_at: datetime
    labels: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RenderedPrompt(_Record):
    name: str
    version: int
    kind: str
    text: str | None
    messages: list[dict[str, Any]] | None
    config: dict[str, Any]


@dataclass(frozen=True)
class ModelVersionInfo(_Record):
    name: str
    version: int
    flavor: str
    spec: dict[str, Any]
    artifact_digest: str | None
    message: str
    author: str
    content_hash: str
    created_at: datetime
    labels: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SubjectSummary(_Record):
    name: str
    latest_version: int
    labels: dict[str, int]
    created_at: datetime


@dataclass(frozen=True)
class GateCheck(_Record):
    """One check of a label's gate (:mod:`registry.gates`): a suite, drift or a service
    limit; ``verdict`` is ``pass``, ``fail`` or ``inconclusive``; ``run_id`` the evidence."""

    name: str
    verdict: str
    reason: str
    run_id: str | None = None


@dataclass(frozen=True)
class LabelMove(_Record):
    subject_type: str
    name: str
    label: str
    from_version: int | None
    to_version: int | None
    actor: str
    reason: str
    forced: bool
    created_at: datetime
    checks: list[GateCheck] = field(default_factory=list)  # the gate's, when one ran


@dataclass(frozen=True)
class DatasetVersionInfo(_Record):
    name: str
    version: int
    digest: str
    format: str
    num_rows: int
    columns: list[str]
    source: str
    author: str
    created_at: datetime


@dataclass(frozen=True)
class LineageEdge(_Record):
    subject_type: str  # dataset | prompt | model | run
    subject_ref: str
    role: str  # input | output


@dataclass(frozen=True)
class MetricPoint(_Record):
    key: str
    step: int | None
    value: float
    created_at: datetime


@dataclass(frozen=True)
class RunInfo(_Record):
    id: str
    kind: str
    name: str
    status: str
    params: dict[str, Any]
    metrics: dict[str, Any]
    tags: dict[str, Any]
    error: str | None
    author: str
    created_at: datetime
    ended_at: datetime | None
    lineage: list[LineageEdge] = field(default_factory=list)
    artifacts: dict[str, str] = field(default_factory=dict)
    series: list[MetricPoint] = field(default_factory=list)
