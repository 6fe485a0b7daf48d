"""Call records: one row per gateway call, written in batches off the request path, and
read back newest first with filters (:meth:`Calls.query`), a page at a time; and call scores:
an LLM judge's score of a sampled call (``gateway.judges``, :meth:`Calls.record_scores`,
:meth:`Calls.scores`), pruned with the records."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, insert, or_, select

from lockgate.registry._core import PRUNE_BATCH, Part, aware, prune_rows
from lockgate.registry.errors import InvalidInput, NotFound
from lockgate.registry.records import _Record
from lockgate.registry.runs import MIN_ID_PREFIX, resolve_id_prefix
from lockgate.registry.tables import ApiKey, CallRecord, CallScore, utcnow

# a Core executemany: skips the ORM bulk path's per-row bookkeeping (~2 µs a row)
_INSERT = insert(cast(Table, CallRecord.__table__))
_INSERT_SCORES = insert(cast(Table, CallScore.__table__))
MAX_PAGE = 1000
MAX_SCORE_PAGE = 10_000


@dataclass(frozen=True)
class CallInfo(_Record):
    """One call record, every field."""

    id: int
    created_at: datetime
    request_id: str
    trace_id: str | None
    operation: str
    route: str | None
    model: str | None
    provider: str | None
    deployment: str | None
    prompt_name: str | None
    prompt_version: int | None
    key_id: str | None
    status_code: int
    error_type: str | None
    stream: bool
    latency_ms: float
    ttft_ms: float | None
    input_tokens: int | None
    output_tokens: int | None
    cost_usd: float | None
    finish_reason: str | None


@dataclass(slots=True, kw_only=True)
class NewCall:
    """One call as the gateway hands it to :meth:`Calls.record`: every column of a call
    record but its id. Unknown fields are a ``TypeError`` where the record is built, not a
    column silently dropped where it is written. ``created_at`` None means "now";
    ``cost_usd`` None is filled by the gateway's recorder when it has a price."""

    request_id: str
    operation: str
    status_code: int
    latency_ms: float
    created_at: datetime | None = None
    trace_id: str | None = None
    route: str | None = None
    model: str | None = None
    provider: str | None = None
    deployment: str | None = None
    prompt_name: str | None = None
    prompt_version: int | None = None
    key_id: str | None = None
    error_type: str | None = None
    stream: bool = False
    ttft_ms: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    finish_reason: str | None = None  # the upstream's; a stream's last


NEW_CALL_FIELDS = tuple(NewCall.__dataclass_fields__)


@dataclass(frozen=True, kw_only=True)
class NewScore:
    """A judge's score of one call as the gateway hands it to :meth:`Calls.record_scores`:
    the call's identity and filter columns (``created_at`` is the call's), the judge's name,
    the rubric ``NAME@VERSION``, the score mapped to 0-1 and as the judge gave it, or the
    ``error`` that left it without one."""

    created_at: datetime
    request_id: str
    judge: str
    trace_id: str | None = None
    route: str | None = None
    model: str | None = None
    prompt_name: str | None = None
    prompt_version: int | None = None
    rubric: str | None = None
    score: float | None = None
    raw_score: float | None = None
    error: str | None = None


NEW_SCORE_FIELDS = tuple(NewScore.__dataclass_fields__)


@dataclass(frozen=True)
class ScoreInfo:
    """One stored judge score, every field."""

    id: int
    created_at: datetime
    request_id: str
    trace_id: str | None
    route: str | None
    model: str | None
    prompt_name: str | None
    prompt_version: int | None
    judge: str
    rubric: str | None
    score: float | None
    raw_score: float | None
    error: str | None


@dataclass(frozen=True)
class CallFilter:
    """What :meth:`Calls.query` keeps; every given condition must hold.

    ``statuses`` are inclusive ranges of HTTP status codes (``(500, 599)`` for 5xx), any of
    which may match; ``key_ids`` likewise; ``since`` is inclusive, ``until`` exclusive."""

    route: str | None = None
    model: str | None = None
    key_ids: tuple[str, ...] | None = None
    prompt_name: str | None = None
    prompt_version: int | None = None
    statuses: tuple[tuple[int, int], ...] = ()
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class CallPage:
    """A page of call records, newest first; ``next_before`` continues after its last one
    (pass it as ``before``), None on the last page."""

    calls: list[CallInfo]
    next_before: int | None


def _call(row: CallRecord) -> CallInfo:
    return CallInfo(**{name: getattr(row, name) for name in CallInfo.__dataclass_fields__})


def _conditions(f: CallFilter, table: type[CallRecord] | type[CallScore] = CallRecord) -> list[Any]:
    """WHERE clauses on ``table`` (call records, or judge scores by their judged call's
    columns: these have no key or status, so a filter naming either is refused). Each filter
    of the records has an index ending in ``id`` (route, model, status_code, key_id,
    prompt_name + prompt_version; migration 0009), so one page newest first is one backward
    walk of one index range; the time window uses the created_at index. A single status is an
    equality, not a one-code range, for its index to give the id order; a class (``5xx``) is
    a range, which the database reads through that index and sorts, or walks the ids newest
    first, as its planner judges."""
    where: list[Any] = []
    for value, column in ((f.route, table.route), (f.model, table.model),
                          (f.prompt_name, table.prompt_name),
                          (f.prompt_version, table.prompt_version)):  # fmt: skip
        if value is not None:
            where.append(column == value)
    if table is CallScore and (f.key_ids is not None or f.statuses):
        raise InvalidInput("judge scores are of successful calls: filter them by route, "
                           "model, prompt and time only")  # fmt: skip
    if f.key_ids is not None:
        where.append(CallRecord.key_id.in_(f.key_ids))
    if f.statuses:
        where.append(or_(*(CallRecord.status_code == lo if lo == hi
                           else CallRecord.status_code.between(lo, hi)
                           for lo, hi in f.statuses)))  # fmt: skip
    for bound in (f.since, f.until):
        if bound is not None and bound.tzinfo is None:
            raise InvalidInput("call record times are UTC: give an aware datetime")
    if f.since is not None:
        where.append(table.created_at >= f.since)
    if f.until is not None:
        where.append(table.created_at < f.until)
    return where


class Calls(Part):
    def record(self, records: Sequence[NewCall]) -> int:
        """Insert a batch of call records in one statement; returns how many."""
        if not records:
            return 0
        now = utcnow()
        rows = []
        for record in records:
            if not isinstance(record, NewCall):
                raise InvalidInput(f"a call record is a NewCall, not {type(record).__name__}")
            row = {name: getattr(record, name) for name in NEW_CALL_FIELDS}
            row["created_at"] = row["created_at"] or now
            rows.append(row)
        with self.db.write() as session:
            session.execute(_INSERT, rows)
        return len(rows)

    def prune(self, before: datetime, *, batch: int = PRUNE_BATCH) -> int:
        """Delete the call records created before ``before``, and the judge scores of calls
        made before it; returns how many records. Deletes in batches of ``batch`` rows
        (oldest first, over the ``created_at`` index), each in its own transaction, so a
        large backlog never holds one long lock over the table that the gateway's exporter
        writes to."""
        before = aware(before)
        prune_rows(self.db, CallScore, [CallScore.created_at < before], batch)
        return prune_rows(self.db, CallRecord, [CallRecord.created_at < before], batch)

    def record_scores(self, scores: Sequence[NewScore]) -> int:
        """Insert a batch of judge scores in one statement; returns how many."""
        if not scores:
            return 0
        rows = []
        for score in scores:
            if not isinstance(score, NewScore):
                raise InvalidInput(f"a call score is a NewScore, not {type(score).__name__}")
            rows.append({name: getattr(score, name) for name in NEW_SCORE_FIELDS})
        with self.db.write() as session:
            session.execute(_INSERT_SCORES, rows)
        return len(rows)

    def scores(
        self, where: CallFilter | None = None, *, limit: int = 1000, before: int | None = None
    ) -> builtins.list[ScoreInfo]:
        """Judge scores of the calls matching ``where`` (its route, model, prompt and time
        window: the judged call's), newest (highest id) first, at most ``limit`` (1 to
        :data:`MAX_SCORE_PAGE`); ``before`` (the last one's id) pages on."""
        f = where or CallFilter()
        if not 1 <= limit <= MAX_SCORE_PAGE:
            raise InvalidInput(f"limit must be 1 to {MAX_SCORE_PAGE}, not {limit}", param="limit")
        stmt = select(CallScore).where(*_conditions(f, CallScore))
        if before is not None:
            stmt = stmt.where(CallScore.id < before)
        stmt = stmt.order_by(CallScore.id.desc()).limit(limit)
        with self.db.read() as session:
            return [
                ScoreInfo(**{n: getattr(r, n) for n in ScoreInfo.__dataclass_fields__})
                for r in session.scalars(stmt)
            ]

    def query(
        self, where: CallFilter | None = None, *, limit: int = 100, before: int | None = None
    ) -> CallPage:
        """Call records matching ``where``, newest (highest id) first, at most ``limit``
        (1 to :data:`MAX_PAGE`); ``before`` (a :attr:`CallPage.next_before`) pages on."""
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidInput(f"limit must be 1 to {MAX_PAGE}, not {limit}", param="limit")
        stmt = select(CallRecord).where(*_conditions(where or CallFilter()))
        if before is not None:
            stmt = stmt.where(CallRecord.id < before)
        stmt = stmt.order_by(CallRecord.id.desc()).limit(limit + 1)
        with self.db.read() as session:
            calls = [_call(r) for r in session.scalars(stmt)]
        more = len(calls) > limit
        return CallPage(calls[:limit], calls[limit - 1].id if more else None)

    def get(self, call_id_or_prefix: str) -> CallInfo:
        """One call record by its number, or by its request or trace id: the id itself or a
        unique prefix of at least four characters (see :func:`resolve_id_prefix`)."""
        text = call_id_or_prefix
        number = text.isascii() and text.isdigit() and len(text) <= 18  # fits a BIGINT
        with self.db.read() as session:
            row = session.get(CallRecord, int(text)) if number else None
            if row is None and number and len(text) < MIN_ID_PREFIX:
                raise NotFound(f"no call with id {text}", param="call_id")
            if row is None:
                key = resolve_id_prefix(
                    session, CallRecord.id, text, what="call",
                    columns=(CallRecord.request_id, CallRecord.trace_id),
                )  # fmt: skip
                row = session.get(CallRecord, key)
            assert row is not None
            return _call(row)

    def key_ids(self, key: str) -> tuple[str, ...]:
        """The ids of the API keys ``key`` names: a key id, or a name (several keys may
        share one). Raises :class:`NotFound` when none does."""
        with self.db.read() as session:
            ids = session.scalars(
                select(ApiKey.id).where(or_(ApiKey.id == key, ApiKey.name == key))
            ).all()
        if not ids:
            raise NotFound(f"no key with id or name {key!r}", param="key")
        return tuple(sorted(ids))

    def list(
        self,
        *,
        limit: int = 100,
        prompt_name: str | None = None,
        model: str | None = None,
    ) -> builtins.list[dict[str, Any]]:
        """The newest call records first, as plain dicts."""
        stmt = select(CallRecord).order_by(CallRecord.id.desc()).limit(limit)
        if prompt_name is not None:
            stmt = stmt.where(CallRecord.prompt_name == prompt_name)
        if model is not None:
            stmt = stmt.where(CallRecord.model == model)
        with self.db.read() as session:
            return [
                {c: getattr(r, c) for c in ("id", *NEW_CALL_FIELDS)} for r in session.scalars(stmt)
            ]
