"""Jobs: background work as records. Workers claim them atomically, heartbeat while they
run, and a job whose worker stopped heartbeating is requeued to resume from its checkpoint.

States: ``validating_files`` → ``queued`` → ``running`` → ``succeeded`` | ``failed`` |
``cancelled``. Claiming uses ``SELECT … FOR UPDATE SKIP LOCKED`` on PostgreSQL, and on
SQLite a conditional update inside a write transaction (which holds the database lock).
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError

from lockgate.registry._core import Part
from lockgate.registry.errors import Conflict, InvalidInput, NotFound
from lockgate.registry.records import _Record
from lockgate.registry.runs import resolve_id_prefix
from lockgate.registry.tables import Job, JobEvent, utcnow

JOB_STATES = ("validating_files", "queued", "running", "succeeded", "failed", "cancelled")
FINAL = frozenset({"succeeded", "failed", "cancelled"})


@dataclass(frozen=True)
class JobInfo(_Record):
    id: str
    kind: str
    status: str
    spec: dict[str, Any]
    idempotency_key: str | None
    run_id: str | None
    worker_id: str | None
    attempts: int
    cancel_requested: bool
    result: dict[str, Any]
    error: str | None
    created_by: str
    created_at: datetime
    started_at: datetime | None
    heartbeat_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True)
class JobEventInfo(_Record):
    id: int
    job_id: str
    level: str
    message: str
    data: dict[str, Any]
    created_at: datetime


class JobResult(BaseModel):
    """What a finished job hands back, typed by the registry that stores it: a field the
    job's code misspells or invents is a validation error where the result is built, not a
    key that readers silently miss."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class FinetuneResult(JobResult):
    """A fine-tuning job's result; the OpenAI job object is read from it."""

    model: str  # NAME@VERSION of the registered adapter
    fine_tuned_model: str  # registry:NAME@VERSION, what a client calls
    steps: int
    total_steps: int
    resumed_from: int | None = None
    trained_tokens: int  # input tokens read in training, every epoch (OpenAI's name)
    metrics: dict[str, float] = {}
    eval: dict[str, Any] | None = None


def _job(row: Job) -> JobInfo:
    return JobInfo(
        row.id, row.kind, row.status, row.spec, row.idempotency_key, row.run_id, row.worker_id,
        row.attempts, row.cancel_requested, row.result, row.error, row.created_by,
        row.created_at, row.started_at, row.heartbeat_at, row.finished_at,
    )  # fmt: skip


class Jobs(Part):
    def create(
        self,
        kind: str,
        spec: Mapping[str, Any],
        *,
        status: str = "queued",
        idempotency_key: str | None = None,
        job_id: str | None = None,
        created_by: str | None = None,
    ) -> tuple[JobInfo, bool]:
        """Create a job; with an idempotency key already used, return that job and False.
        ``created_by`` (default: this registry's actor) names who asked, e.g. an API key."""
        if status not in ("validating_files", "queued"):
            raise InvalidInput(f"a new job starts validating_files or queued, not {status!r}")
        if idempotency_key is not None:
            existing = self._job_by_idempotency(idempotency_key)
            if existing is not None:
                return existing, False
        row = Job(
            id=job_id or "ftjob-" + uuid.uuid4().hex[:24], kind=kind, status=status,
            spec=dict(spec), idempotency_key=idempotency_key, result={}, attempts=0,
            cancel_requested=False, created_by=created_by or self.db.actor, created_at=utcnow(),
        )  # fmt: skip
        try:
            with self.db.write() as session:
                session.add(row)
                session.flush()
                session.add(_event(row.id, "info", f"job created ({status})"))
        except IntegrityError:
            if idempotency_key is None:
                raise
            existing = self._job_by_idempotency(idempotency_key)
            assert existing is not None
            return existing, False
        return _job(row), True

    def _job_by_idempotency(self, key: str) -> JobInfo | None:
        with self.db.read() as session:
            row = session.scalars(select(Job).where(Job.idempotency_key == key)).first()
            return None if row is None else _job(row)

    def resolve_id(self, job_id_or_prefix: str) -> str:
        """The full id of the job that ``job_id_or_prefix`` names: the id itself or a unique
        prefix of at least four characters (``ftjob-`` counts), as the CLI accepts them. The
        other methods, and the HTTP API with them, take full ids only, as OpenAI's does."""
        with self.db.read() as session:
            return str(resolve_id_prefix(session, Job.id, job_id_or_prefix, what="job"))

    def get(self, job_id: str) -> JobInfo:
        with self.db.read() as session:
            row = session.get(Job, job_id)
            if row is None:
                raise NotFound(f"no job with id {job_id!r}", param="job_id")
            return _job(row)

    def list(
        self,
        kind: str | None = None,
        *,
        limit: int = 50,
        status: str | None = None,
        after: str | None = None,
    ) -> builtins.list[JobInfo]:
        """Jobs newest first (ties by id). ``after`` (a job id from the previous page)
        continues after that job: keyset paging, so jobs created meanwhile do not shift it."""
        with self.db.read() as session:
            stmt = select(Job).order_by(Job.created_at.desc(), Job.id).limit(limit)
            if kind is not None:
                stmt = stmt.where(Job.kind == kind)
            if status is not None:
                stmt = stmt.where(Job.status == status)
            if after is not None:
                last = session.get(Job, after)
                if last is None:
                    raise NotFound(f"no job with id {after!r}", param="job_id")
                stmt = stmt.where(
                    or_(
                        Job.created_at < last.created_at,
                        (Job.created_at == last.created_at) & (Job.id > last.id),
                    )
                )
            return [_job(r) for r in session.scalars(stmt)]

    def set_status(
        self,
        job_id: str,
        status: str,
        *,
        worker_id: str | None = None,
        error: str | None = None,
        result: JobResult | None = None,
        run_id: str | None = None,
        message: str | None = None,
    ) -> JobInfo:
        """Move a job on. A finished job does not move again; a worker that lost its claim
        (``worker_id`` no longer matches) gets :class:`Conflict`."""
        if status not in JOB_STATES:
            raise InvalidInput(f"unknown job status {status!r}", param="status")
        with self.db.write() as session:
            row = session.scalars(select(Job).where(Job.id == job_id).with_for_update()).first()
            if row is None:
                raise NotFound(f"no job with id {job_id!r}", param="job_id")
            if row.status in FINAL:
                raise Conflict(f"job {job_id} already {row.status}")
            if worker_id is not None and row.worker_id != worker_id:
                raise Conflict(f"job {job_id} is no longer claimed by {worker_id}")
            row.status = status
            if error is not None:
                row.error = error
            if result is not None:
                if not isinstance(result, JobResult):
                    raise InvalidInput("a job result is a JobResult", param="result")
                row.result = {**row.result, **result.model_dump(mode="json")}
            if run_id is not None:
                row.run_id = run_id
            if status in FINAL:
                row.finished_at = utcnow()
            text = message or f"status: {status}" + (f" ({error})" if error else "")
            session.add(_event(job_id, "error" if status == "failed" else "info", text))
            session.flush()
            return _job(row)

    def claim(self, worker_id: str, kind: str = "finetune") -> JobInfo | None:
        """Atomically take the oldest queued job of ``kind``, or None."""
        now = utcnow()
        with self.db.write() as session:
            stmt = (
                select(Job)
                .where(Job.status == "queued", Job.kind == kind)
                .order_by(Job.created_at, Job.id)
                .limit(1)
            )
            if not self.db.is_sqlite:
                stmt = stmt.with_for_update(skip_locked=True)
            row = session.scalars(stmt).first()
            if row is None:
                return None
            row.status, row.worker_id = "running", worker_id
            row.attempts += 1
            row.started_at = row.started_at or now
            row.heartbeat_at = now
            session.add(_event(row.id, "info", f"claimed by {worker_id} (attempt {row.attempts})"))
            session.flush()
            return _job(row)

    def heartbeat(self, job_id: str, worker_id: str) -> bool:
        """Record that the worker is alive; returns True when a cancel was requested.
        Raises :class:`Conflict` when the job is no longer this worker's."""
        with self.db.write() as session:
            done = session.execute(
                update(Job)
                .where(Job.id == job_id, Job.worker_id == worker_id, Job.status == "running")
                .values(heartbeat_at=utcnow())
            )
            if done.rowcount != 1:  # type: ignore[attr-defined]
                raise Conflict(f"job {job_id} is no longer claimed by {worker_id}")
            return bool(session.scalar(select(Job.cancel_requested).where(Job.id == job_id)))

    def requeue_stale(self, timeout_s: float, kind: str = "finetune") -> builtins.list[str]:
        """Requeue running jobs whose worker has not heartbeated for ``timeout_s``."""
        cutoff = utcnow() - timedelta(seconds=timeout_s)
        with self.db.write() as session:
            rows = session.scalars(
                select(Job)
                .where(Job.status == "running", Job.kind == kind, Job.heartbeat_at < cutoff)
                .with_for_update()
            ).all()
            for row in rows:
                lost = row.worker_id
                row.status, row.worker_id = (
                    ("cancelled" if row.cancel_requested else "queued"),
                    None,
                )
                if row.status == "cancelled":
                    row.finished_at = utcnow()
                outcome = "cancelled" if row.status == "cancelled" else "requeued"
                session.add(
                    _event(row.id, "warn", f"worker {lost} stopped heartbeating; {outcome}")
                )
            return [r.id for r in rows]

    def cancel(self, job_id: str) -> JobInfo:
        """A queued job is cancelled at once; a running one when its worker next heartbeats."""
        with self.db.write() as session:
            row = session.scalars(select(Job).where(Job.id == job_id).with_for_update()).first()
            if row is None:
                raise NotFound(f"no job with id {job_id!r}", param="job_id")
            if row.status in FINAL:
                return _job(row)
            if row.status == "running":
                row.cancel_requested = True
                session.add(_event(job_id, "info", "cancellation requested"))
            else:
                row.status, row.finished_at = "cancelled", utcnow()
                session.add(_event(job_id, "info", "status: cancelled"))
            session.flush()
            return _job(row)

    def add_event(
        self,
        job_id: str,
        message: str,
        *,
        level: str = "info",
        data: Mapping[str, Any] | None = None,
    ) -> None:
        with self.db.write() as session:
            session.add(_event(job_id, level, message, data))

    def events(
        self, job_id: str, *, after: int = 0, limit: int = 1000
    ) -> builtins.list[JobEventInfo]:
        self.get(job_id)
        with self.db.read() as session:
            rows = session.scalars(
                select(JobEvent)
                .where(JobEvent.job_id == job_id, JobEvent.id > after)
                .order_by(JobEvent.id)
                .limit(limit)
            )
            return [
                JobEventInfo(e.id, e.job_id, e.level, e.message, e.data, e.created_at) for e in rows
            ]


def _event(
    job_id: str, level: str, message: str, data: Mapping[str, Any] | None = None
) -> JobEvent:
    return JobEvent(job_id=job_id, level=level, message=message, data=dict(data or {}),
                    created_at=utcnow())  # fmt: skip
