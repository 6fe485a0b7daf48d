"""Prediction samples: input rows of the gateway's ``:predict`` calls with what the model
answered, a sampled and bounded share written in batches off the request path
(``gateway.predict``), read back for drift checks of a scikit-learn model's inputs."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, insert, select

from lockgate.registry._core import PRUNE_BATCH, Part, aware, prune_rows
from lockgate.registry.errors import InvalidInput
from lockgate.registry.records import Ref, _Record
from lockgate.registry.tables import PredictionSample, utcnow

_INSERT = insert(cast(Table, PredictionSample.__table__))
MAX_PAGE = 10_000


@dataclass(slots=True, kw_only=True)
class NewSample:
    """One sampled input row as the gateway hands it to :meth:`Predictions.record`."""

    request_id: str
    model: str
    version: int
    inputs: dict[str, Any]
    prediction: Any = None
    trace_id: str | None = None
    created_at: datetime | None = None


NEW_SAMPLE_FIELDS = tuple(NewSample.__dataclass_fields__)


@dataclass(frozen=True)
class SampleInfo(_Record):
    id: int
    created_at: datetime
    request_id: str
    trace_id: str | None
    model: str
    version: int
    inputs: dict[str, Any]
    prediction: Any


class Predictions(Part):
    def record(self, samples: Sequence[NewSample]) -> int:
        """Insert a batch of samples in one statement; returns how many."""
        if not samples:
            return 0
        now = utcnow()
        rows = []
        for sample in samples:
            if not isinstance(sample, NewSample):
                raise InvalidInput(f"a sample is a NewSample, not {type(sample).__name__}")
            row = {name: getattr(sample, name) for name in NEW_SAMPLE_FIELDS}
            row["created_at"] = row["created_at"] or now
            rows.append(row)
        with self.db.write() as session:
            session.execute(_INSERT, rows)
        return len(rows)

    def prune(self, before: datetime, *, batch: int = PRUNE_BATCH) -> int:
        """Delete the samples taken before ``before``; returns how many. One pass per
        (model, version), so each delete walks the ``(model, version, created_at)`` index."""
        cutoff = aware(before)
        with self.db.read() as session:
            pairs = session.execute(
                select(PredictionSample.model, PredictionSample.version).distinct()
            ).all()
        total = 0
        for model, version in pairs:
            where = [
                PredictionSample.model == model,
                PredictionSample.version == version,
                PredictionSample.created_at < cutoff,
            ]
            total += prune_rows(self.db, PredictionSample, where, batch)
        return total

    def samples(
        self, model: str | Ref, *, since: datetime | None = None, limit: int = 1000
    ) -> builtins.list[SampleInfo]:
        """The newest samples of ``model`` (``NAME``: every version; ``NAME@VERSION``: that
        one), newest first, at most ``limit`` (1 to :data:`MAX_PAGE`), from ``since`` on."""
        ref = Ref.parse(model) if isinstance(model, str) else model
        if ref.label is not None:
            raise InvalidInput(
                "samples keep the version that answered: name a version or no selector",
                param="model",
            )
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidInput(f"limit must be 1 to {MAX_PAGE}, not {limit}", param="limit")
        stmt = select(PredictionSample).where(PredictionSample.model == ref.name)
        if ref.version is not None:
            stmt = stmt.where(PredictionSample.version == ref.version)
        if since is not None:
            if since.tzinfo is None:
                raise InvalidInput("sample times are UTC: give an aware datetime")
            stmt = stmt.where(PredictionSample.created_at >= since)
        stmt = stmt.order_by(PredictionSample.id.desc()).limit(limit)
        with self.db.read() as session:
            return [
                SampleInfo(**{f: getattr(r, f) for f in SampleInfo.__dataclass_fields__})
                for r in session.scalars(stmt)
            ]
