"""Call records: one row per gateway call, written in batches off the request path."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import insert, select

from registry.labels import LabelsMixin
from registry.tables import CallRecord

CALL_FIELDS = frozenset(c.name for c in CallRecord.__table__.columns) - {"id"}


class CallsMixin(LabelsMixin):
    def record_calls(self, records: Sequence[Mapping[str, Any]]) -> int:
        """Insert a batch of call records in one statement; returns how many."""
        if not records:
            return 0
        rows = [{k: v for k, v in r.items() if k in CALL_FIELDS} for r in records]
        with self._write() as session:
            session.execute(insert(CallRecord), rows)
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
