"""Plain values an eval run produces: one :class:`ExampleResult` per example and epoch,
with an :class:`ExampleScore` per metric. They round-trip through JSON rows, which is how
they are written to the resume file, the run artifact and the JSON report."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ExampleScore:
    """One metric's value for one example; ``stats`` are sufficient statistics (BLEU n-gram
    counts, ``[y_true, y_pred]`` for classic metrics) and ``detail`` keeps e.g. a judge's raw
    answer."""

    value: float | None
    stats: list[Any] | None = None
    detail: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"value": self.value}
        if self.stats is not None:
            out["stats"] = self.stats
        if self.detail:
            out["detail"] = self.detail
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExampleScore:
        return cls(data.get("value"), data.get("stats"), data.get("detail"))


@dataclass
class ExampleResult:
    """One example at one epoch: what was sent, what came back, and how it scored."""

    key: str
    index: int
    epoch: int
    input: dict[str, Any]
    reference: Any = None
    output: Any = None
    scores: dict[str, ExampleScore] = field(default_factory=dict)
    latency_ms: float | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    trace_id: str | None = None
    cached: bool = False
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_row(self) -> dict[str, Any]:
        return {
            "key": self.key, "index": self.index, "epoch": self.epoch, "input": self.input,
            "reference": self.reference, "output": self.output,
            "scores": {k: v.to_dict() for k, v in self.scores.items()},
            "latency_ms": self.latency_ms, "usage": self.usage, "trace_id": self.trace_id,
            "cached": self.cached, "error": self.error, "extra": self.extra,
        }  # fmt: skip

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ExampleResult:
        return cls(
            key=row["key"], index=int(row["index"]), epoch=int(row.get("epoch", 0)),
            input=row.get("input") or {}, reference=row.get("reference"),
            output=row.get("output"),
            scores={k: ExampleScore.from_dict(v) for k, v in (row.get("scores") or {}).items()},
            latency_ms=row.get("latency_ms"), usage=row.get("usage") or {},
            trace_id=row.get("trace_id"), cached=bool(row.get("cached")),
            error=row.get("error"), extra=row.get("extra") or {},
        )  # fmt: skip


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def digest(value: Any, length: int = 64) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()[:length]


def example_keys(rows: list[dict[str, Any]]) -> list[str]:
    """A stable key per row, from its content: runs are paired by key, so a baseline on a
    reordered copy of the dataset still pairs up. Duplicate rows get ``#2``, ``#3``…"""
    seen: dict[str, int] = {}
    keys = []
    for row in rows:
        base = digest(row, 16)
        seen[base] = seen.get(base, 0) + 1
        keys.append(base if seen[base] == 1 else f"{base}#{seen[base]}")
    return keys
