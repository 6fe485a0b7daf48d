"""Call records: one row per gateway call, written in batches off the request path."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

from sqlalchemy import Table, insert, select

from lockgate.registry.labels import LabelsMixin
from lockgate.registry.tables import CallRecord, utcnow

CALL_FIELDS = frozenset(c.name for c in CallRecord.__table__.columns) - {"id"}
# a Core executemany: skips the ORM bulk path's per-row bookkeeping (~2 µs a row)
_INSERT = insert(cast(Table, CallRecord.__table__))


class CallsMixin(LabelsMixin):
    def record_calls(self, records: Sequence[Mapping[str, Any]]) -> int:
        """Insert a batch of call records in one statement; returns how many."""
        if not records:
            return 0
        now = utcnow()
        base = dict.fromkeys(CALL_FIELDS)
        rows = []
        for record in records:
            row = base.copy()
            row.update(record)
            for extra in record.keys() - CALL_FIELDS:
                del row[extra]
            row["created_at"] = row["created_at"] or now
            row["stream"] = bool(row["stream"])
            rows.append(row)
        with self._write() as session:
            session.execute(_INSERT, rows)
        return len(rows)

    def list_calls(
        self,
        *,
        limit: int = 100,
        prompt_name: str | None = None,
        model: str | None = None,
    ) -> list[dict[str, Any]]:
        """The newest call records first, as plain dicts."""
        stmt = select(CallRecord).order_by(CallRecord.id.desc()).limit(limit)
        if prompt_name is not None:
            stmt = stmt.where(CallRecord.prompt_name == prompt_name)
        if model is not None:
            stmt = stmt.where(CallRecord.model == model)
        with self._read() as session:
            return [
                {c: getattr(r, c) for c in ["id", *sorted(CALL_FIELDS)]}
                for r in session.scalars(stmt)
            ]
