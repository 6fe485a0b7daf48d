"""Runs: a generic record of an eval, fine-tune, drift check or anything else, with
parameters, metrics (single values and step-wise series), artifacts and lineage."""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from lockgate.registry._core import Part
from lockgate.registry.errors import InvalidInput, NotFound
from lockgate.registry.records import LineageEdge, MetricPoint, RunInfo
from lockgate.registry.tables import (
    Artifact,
    Run,
    RunArtifact,
    RunLineage,
    RunMetric,
    utcnow,
)

RUN_KINDS = frozenset({"eval", "finetune", "retrain", "drift", "monitor", "other"})
RUN_STATES = frozenset({"queued", "running", "succeeded", "failed", "cancelled"})
FINAL_STATES = frozenset({"succeeded", "failed", "cancelled"})
LINEAGE_TYPES = frozenset({"dataset", "prompt", "model", "run"})
MIN_ID_PREFIX = 4
_SHOWN_CANDIDATES = 10


def resolve_id_prefix(
    session: Session,
    key: InstrumentedAttribute[Any],
    text: str,
    *,
    what: str,
    columns: Sequence[InstrumentedAttribute[Any]] = (),
) -> Any:
    """The primary key of the one row whose id is ``text`` or starts with it, as git
    resolves a shortened commit id.

    ``columns`` are the id columns to match (default: the primary key ``key`` itself). An
    exact match wins; otherwise a prefix of at least :data:`MIN_ID_PREFIX` characters must
    match exactly one row. The prefix is compared literally and with its case: ``%`` and
    ``_`` are characters, not wildcards. Raises :class:`NotFound` when nothing matches and
    :class:`InvalidInput` (exit 2) for a prefix that is too short or matches several rows,
    naming them."""
    cols = list(columns) or [key]
    param = f"{what.replace(' ', '_')}_id"
    found = _matching_keys(session, key, cols, text, exact=True)
    if not found:
        if len(text) < MIN_ID_PREFIX:
            raise InvalidInput(
                f"{what} id {text!r} is too short: give the full id or a prefix of at least "
                f"{MIN_ID_PREFIX} characters",
                param=param,
            )
        found = _matching_keys(session, key, cols, text, exact=False)
        if not found:
            raise NotFound(f"no {what} with id {text!r}", param=param)
    if len(found) == 1:
        return found[0]
    shown = ", ".join(str(k) for k in found[:_SHOWN_CANDIDATES])
    more = " and more" if len(found) > _SHOWN_CANDIDATES else ""
    raise InvalidInput(
        f"{what} id {text!r} is ambiguous: it matches {shown}{more}; give more characters",
        param=param,
    )


def _matching_keys(
    session: Session,
    key: InstrumentedAttribute[Any],
    cols: list[InstrumentedAttribute[Any]],
    text: str,
    *,
    exact: bool,
) -> list[Any]:
    """The keys (at most one more than are shown) of rows with an id equal to ``text`` or,
    unless ``exact``, starting with it."""
    if exact:
        where = or_(*(c == text for c in cols))
    else:
        where = or_(*(c.startswith(text, autoescape=True) for c in cols))
    stmt = select(key, *cols).where(where).order_by(key).limit(_SHOWN_CANDIDATES + 1)
    # SQLite's LIKE ignores ASCII case: keep only what starts with the text as written
    return [
        row[0]
        for row in session.execute(stmt)
        if any(isinstance(v, str) and v.startswith(text) for v in row[1:])
    ]


def _artifacts(session: Session, run_id: str) -> dict[str, str]:
    rows = session.scalars(select(RunArtifact).where(RunArtifact.run_id == run_id))
    return {a.name: a.digest for a in rows}


def _check_edges(edges: Iterable[LineageEdge]) -> list[LineageEdge]:
    out = list(edges)
    for edge in out:
        if edge.subject_type not in LINEAGE_TYPES or edge.role not in {"input", "output"}:
            raise InvalidInput(f"bad lineage edge {edge}", param="lineage")
    return out


def _lineage_rows(run_id: str, edges: list[LineageEdge]) -> list[RunLineage]:
    return [
        RunLineage(run_id=run_id, subject_type=e.subject_type, subject_ref=e.subject_ref,
                   role=e.role)
        for e in edges
    ]  # fmt: skip


class Runs(Part):
    def create(
        self,
        kind: str,
        *,
        name: str = "",
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        lineage: Iterable[LineageEdge] = (),
        status: str = "running",
        author: str | None = None,
    ) -> RunInfo:
        if kind not in RUN_KINDS:
            raise InvalidInput(f"unknown run kind {kind!r}; use one of {sorted(RUN_KINDS)}")
        if status not in RUN_STATES:
            raise InvalidInput(f"unknown run status {status!r}", param="status")
        edges = _check_edges(lineage)
        run_id = uuid.uuid4().hex
        with self.db.write() as session:
            session.add(
                Run(
                    id=run_id,
                    kind=kind,
                    name=name,
                    status=status,
                    params=dict(params or {}),
                    metrics={},
                    tags=dict(tags or {}),
                    author=author or self.db.actor,
                )
            )
            session.flush()
            session.add_all(_lineage_rows(run_id, edges))
        return self.get(run_id)

    def log_metrics(
        self, run_id: str, metrics: Mapping[str, float], *, step: int | None = None
    ) -> None:
        """Append metric points; without a step they also become the run's final values."""
        now = utcnow()
        with self.db.write() as session:
            run = self._run(session, run_id)
            session.add_all(
                RunMetric(run_id=run_id, key=k, step=step, value=float(v), created_at=now)
                for k, v in metrics.items()
            )
            if step is None:
                run.metrics = {**run.metrics, **{k: float(v) for k, v in metrics.items()}}

    def discard_metrics_after(self, run_id: str, step: int) -> int:
        """Delete the run's step-wise points after ``step``; returns how many.

        A training resumed from the checkpoint at ``step`` logs the later steps again: the
        points its crashed attempt logged for them belong to a timeline that did not happen."""
        with self.db.write() as session:
            self._run(session, run_id)
            result = session.execute(
                delete(RunMetric).where(RunMetric.run_id == run_id, RunMetric.step > step)
            )
            return int(getattr(result, "rowcount", 0) or 0)

    def add_lineage(self, run_id: str, edges: Iterable[LineageEdge]) -> None:
        checked = _check_edges(edges)
        with self.db.write() as session:
            self._run(session, run_id)
            session.add_all(_lineage_rows(run_id, checked))

    def log_artifact(self, run_id: str, name: str, path: Path) -> str:
        """Store a file or folder in the artifact store and attach it to the run."""
        digest, kind, size = self.db.store_path(path)
        with self.db.write() as session:
            self._run(session, run_id)
            self.db.record_artifact(session, digest, kind, size)
            session.merge(RunArtifact(run_id=run_id, name=name, digest=digest))
        return digest

    def set_status(
        self,
        run_id: str,
        status: str,
        *,
        error: str | None = None,
        metrics: Mapping[str, float] | None = None,
    ) -> RunInfo:
        if status not in RUN_STATES:
            raise InvalidInput(f"unknown run status {status!r}", param="status")
        if metrics:
            self.log_metrics(run_id, metrics)
        with self.db.write() as session:
            run = self._run(session, run_id)
            run.status, run.error = status, error
            if status in FINAL_STATES:
                run.ended_at = utcnow()
        return self.get(run_id)

    def artifacts(self, run_id: str) -> dict[str, str]:
        """The run's artifacts, name to digest, without its lineage and metric series."""
        with self.db.read() as session:
            self._run(session, run_id)
            return _artifacts(session, run_id)

    def resolve_id(self, run_id_or_prefix: str) -> str:
        """The full id of the run that ``run_id_or_prefix`` names: the id itself or a unique
        prefix of at least :data:`MIN_ID_PREFIX` characters (see :func:`resolve_id_prefix`).
        Other methods take full ids only."""
        with self.db.read() as session:
            return str(resolve_id_prefix(session, Run.id, run_id_or_prefix, what="run"))

    def get(self, run_id: str, *, series: bool = True) -> RunInfo:
        """One run with its lineage and artifacts, and (unless ``series=False``) every point
        of its step-wise metrics (:meth:`series` reads one key's)."""
        with self.db.read() as session:
            run = self._run(session, run_id)
            lineage = [
                LineageEdge(e.subject_type, e.subject_ref, e.role)
                for e in session.scalars(
                    select(RunLineage).where(RunLineage.run_id == run_id).order_by(RunLineage.id)
                )
            ]
            artifacts = _artifacts(session, run_id)
            points = [
                MetricPoint(m.key, m.step, m.value, m.created_at)
                for m in session.scalars(
                    select(RunMetric)
                    .where(RunMetric.run_id == run_id, RunMetric.step.is_not(None))
                    .order_by(RunMetric.key, RunMetric.step)
                )
            ] if series else []  # fmt: skip
            return _info(run, lineage, artifacts, points)

    def series_keys(self, run_id: str) -> builtins.list[str]:
        """The keys of the run's step-wise metrics, sorted."""
        with self.db.read() as session:
            self._run(session, run_id)
            stmt = (
                select(RunMetric.key)
                .where(RunMetric.run_id == run_id, RunMetric.step.is_not(None))
                .distinct()
                .order_by(RunMetric.key)
            )
            return list(session.scalars(stmt))

    def series(self, run_id: str, key: str) -> builtins.list[MetricPoint]:
        """The step-wise points of one metric, by step (a key the run lacks: no points)."""
        with self.db.read() as session:
            self._run(session, run_id)
            stmt = (
                select(RunMetric)
                .where(
                    RunMetric.run_id == run_id, RunMetric.key == key, RunMetric.step.is_not(None)
                )
                .order_by(RunMetric.step, RunMetric.id)
            )
            return [
                MetricPoint(m.key, m.step, m.value, m.created_at) for m in session.scalars(stmt)
            ]

    def artifact(self, run_id: str, name: str) -> tuple[str, str | None]:
        """(digest, kind) of the run's artifact ``name``: a key of its artifact map, never a
        path. ``kind`` is ``file`` or ``dir`` (None for an artifact the store never recorded).
        Raises :class:`NotFound` for a name the run does not have."""
        with self.db.read() as session:
            self._run(session, run_id)
            digest = session.scalar(
                select(RunArtifact.digest).where(
                    RunArtifact.run_id == run_id, RunArtifact.name == name
                )
            )
            if digest is None:
                raise NotFound(f"run {run_id} has no artifact named {name!r}", param="name")
            stored = session.get(Artifact, digest)
            return digest, None if stored is None else stored.kind

    def linked(
        self, subject_type: str, subject_ref: str, *, limit: int = 200
    ) -> builtins.list[tuple[RunInfo, str]]:
        """The runs with a lineage edge to ``subject_type``/``subject_ref`` (``NAME@VERSION``
        or a run id), newest first, each with the edge's role (``input``: the run read it;
        ``output``: the run produced it). Summaries: no lineage, artifacts or series."""
        with self.db.read() as session:
            rows = session.execute(
                select(Run, RunLineage.role)
                .join(RunLineage, RunLineage.run_id == Run.id)
                .where(
                    RunLineage.subject_type == subject_type,
                    RunLineage.subject_ref == subject_ref,
                )
                .order_by(Run.created_at.desc(), Run.id.desc())
                .limit(limit)
            ).all()
            return [(_info(run), role) for run, role in rows]

    def list(
        self,
        kind: str | None = None,
        *,
        limit: int = 50,
        name: str | None = None,
        after: str | None = None,
    ) -> builtins.list[RunInfo]:
        """Runs newest first (ties by id). ``after`` (a run id from the previous page)
        continues after that run: keyset paging, so runs created meanwhile do not shift it."""
        with self.db.read() as session:
            stmt = select(Run).order_by(Run.created_at.desc(), Run.id.desc()).limit(limit)
            if kind is not None:
                stmt = stmt.where(Run.kind == kind)
            if name is not None:
                stmt = stmt.where(Run.name == name)
            if after is not None:
                last = self._run(session, after)
                stmt = stmt.where(
                    or_(
                        Run.created_at < last.created_at,
                        (Run.created_at == last.created_at) & (Run.id < last.id),
                    )
                )
            return [_info(r) for r in session.scalars(stmt)]

    def _run(self, session: Any, run_id: str) -> Run:
        run = session.get(Run, run_id)
        if run is None:
            raise NotFound(f"no run with id {run_id!r}", param="run_id")
        return run  # type: ignore[no-any-return]

    def tag(self, run_id: str, tags: dict[str, Any]) -> None:
        """Merge ``tags`` into a run's tags (e.g. an eval run's verdict)."""
        with self.db.write() as session:
            run = session.get(Run, run_id)
            if run is None:
                raise NotFound(f"no run with id {run_id!r}", param="run_id")
            run.tags = {**run.tags, **tags}


def _info(
    run: Run,
    lineage: list[LineageEdge] | None = None,
    artifacts: dict[str, str] | None = None,
    series: list[MetricPoint] | None = None,
) -> RunInfo:
    return RunInfo(
        run.id,
        run.kind,
        run.name,
        run.status,
        run.params,
        run.metrics,
        run.tags,
        run.error,
        run.author,
        run.created_at,
        run.ended_at,
        lineage or [],
        artifacts or {},
        series or [],
    )
