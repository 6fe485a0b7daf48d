"""Drift and service limits of a gate policy, beside its eval suites.

A policy may hold, for one label of a prompt or model:

``drift: {max_share_drifted, reference?, columns?, max_age_s?}``
    Evidence: the latest succeeded run of kind ``drift`` whose ``params.subject`` is the
    candidate (``model:NAME@VERSION`` or ``prompt:NAME@VERSION``) and whose
    ``params.reference_digest`` is the digest of the reference dataset version. The
    reference is ``reference`` when the policy names one (a dataset ``NAME@VERSION``,
    pinned when the policy is set); otherwise, for a model, the reference dataset recorded
    when the label's holder was registered (``lockgate model register --reference``), or the
    candidate's own when the label is unset. A prompt, an ``upstream`` or a ``lora`` version
    records none, so its policy names one. The run's ``share_drifted`` (over ``columns``
    only when given, from the run's ``drift.json``) must be at most ``max_share_drifted``;
    with ``max_age_s`` the run must be at most that old.

``service: {window_s, p99_latency_ms?, max_error_rate?, min_calls}``
    Evidence: the candidate's call records of the last ``window_s`` seconds (a prompt
    version's by ``prompt_name``/``prompt_version``; a model version's by its deployment
    ``NAME@VERSION`` or, for ``:predict``, its model ``NAME@VERSION``). Client errors
    (4xx: bad input, limits, keys) are the caller's and are left out. With fewer than
    ``min_calls`` calls left both checks are ``inconclusive``. The p99 latency is the
    nearest-rank percentile: with the latencies sorted ascending, the ``ceil(0.99 n)``-th
    (numpy's ``method="inverted_cdf"``), computed in SQL; the error rate is the share of
    calls answered with a 5xx.

Each check gives a :class:`GateCheck`: ``pass``, ``fail`` (the evidence breaks a limit) or
``inconclusive`` (no usable evidence, or too little); anything but ``pass`` refuses the move.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import Session

from lockgate.registry.artifacts import ArtifactStore
from lockgate.registry.errors import InvalidInput, LockgateError
from lockgate.registry.records import GateCheck, SubjectType
from lockgate.registry.tables import (
    CallRecord,
    Dataset,
    DatasetVersion,
    ModelVersion,
    RegisteredModel,
    Run,
    RunArtifact,
)

DRIFT_SCAN_LIMIT = 200  # drift runs of one subject looked at for the reference digest
PREDICT = "predict"  # the call records' operation of a scikit-learn model's :predict


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DriftLimit(_Strict):
    """Drift of the candidate against the label holder's reference, from a drift run."""

    max_share_drifted: float = Field(ge=0, le=1, description="Most drifted share of columns.")
    reference: str | None = Field(
        default=None,
        description="A dataset NAME[@VERSION] (pinned to its version when the policy is set); "
        "default: the reference the label holder was registered with (scikit-learn models).",
    )
    columns: list[str] | None = Field(
        default=None, min_length=1, description="Judge the share over these columns only."
    )
    max_age_s: float | None = Field(default=None, gt=0, description="The newest run's most age.")


class ServiceLimit(_Strict):
    """Service limits from the candidate's call records over a window."""

    window_s: float = Field(default=3600, gt=0, description="The window, up to now.")
    p99_latency_ms: float | None = Field(default=None, gt=0, description="Most p99 latency.")
    max_error_rate: float | None = Field(default=None, ge=0, le=1, description="Most 5xx share.")
    min_calls: int = Field(default=50, ge=1, description="Fewer calls: inconclusive.")

    @model_validator(mode="after")
    def _some_limit(self) -> ServiceLimit:
        if self.p99_latency_ms is None and self.max_error_rate is None:
            raise ValueError("a service limit names p99_latency_ms, max_error_rate or both")
        return self


class GateLimits(_Strict):
    drift: DriftLimit | None = None
    service: ServiceLimit | None = None

    def stored(self) -> dict[str, Any] | None:
        out = self.model_dump(exclude_none=True)
        return out or None


def parse_limits(doc: Mapping[str, Any], where: str = "gate policy") -> GateLimits:
    """``{"drift": {...}, "service": {...}}`` checked strictly: an unknown key is an
    :class:`InvalidInput` naming it."""
    try:
        return GateLimits.model_validate(dict(doc))
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            if err["type"] == "extra_forbidden":
                problems.append(f"unknown key {loc!r}")
            else:
                problems.append(f"{loc}: {err['msg']}" if loc else str(err["msg"]))
        first = str(exc.errors()[0]["loc"][0]) if exc.errors() and exc.errors()[0]["loc"] else None
        raise InvalidInput(
            f"{where}: " + "; ".join(problems)
            + " (drift takes max_share_drifted, reference, columns, max_age_s; service takes "
            "window_s, p99_latency_ms, max_error_rate, min_calls)",
            param=first,
        ) from None  # fmt: skip


def stored_limits(value: Any) -> GateLimits:
    """The limits stored on a policy row (None: none)."""
    if not isinstance(value, Mapping):
        return GateLimits()
    return GateLimits.model_validate(dict(value))


# --------------------------------------------------------------------------- drift


def dataset_version_digest(session: Session, ref: str) -> tuple[str, str] | None:
    """``(NAME@VERSION, digest)`` of a dataset ``NAME[@VERSION]`` (newest without one)."""
    name, _, selector = ref.removeprefix("dataset:").partition("@")
    stmt = (
        select(DatasetVersion.version, DatasetVersion.digest)
        .join(Dataset, Dataset.id == DatasetVersion.dataset_id)
        .where(Dataset.name == name)
    )
    if selector:
        if not selector.lstrip("v").isdigit():
            return None
        stmt = stmt.where(DatasetVersion.version == int(selector.lstrip("v")))
    row = session.execute(stmt.order_by(DatasetVersion.version.desc()).limit(1)).first()
    return None if row is None else (f"{name}@{row[0]}", str(row[1]))


def _model_reference(session: Session, name: str, version: int) -> tuple[str, str | None]:
    """The flavor and the recorded reference dataset (``NAME@VERSION``) of a model version."""
    row = session.execute(
        select(ModelVersion.flavor, ModelVersion.spec)
        .join(RegisteredModel, RegisteredModel.id == ModelVersion.model_id)
        .where(RegisteredModel.name == name, ModelVersion.version == version)
    ).first()
    if row is None:
        return "", None
    reference = (row[1] or {}).get("reference")
    return str(row[0]), reference if isinstance(reference, str) and reference else None


def _drift_reference(
    session: Session, limit: DriftLimit, subject_type: SubjectType, name: str, version: int,
    holder: int | None,
) -> tuple[str, str] | str:  # fmt: skip
    """``(NAME@VERSION, digest)`` of the reference to judge drift against, or why none."""
    if limit.reference is not None:
        source = f"the policy's drift.reference {limit.reference}"
        ref = limit.reference
    elif subject_type != "model":
        return "the policy names no drift.reference and a prompt records none"
    else:
        owner = holder if holder is not None else version
        flavor, recorded = _model_reference(session, name, owner)
        whose = f"model {name}@{owner}" + (" (the label's holder)" if holder is not None else "")
        if recorded is None:
            return (f"{whose} ({flavor or 'unknown'}) records no reference dataset (register "
                    "it with --reference) and the policy names no drift.reference")  # fmt: skip
        source = f"the reference of {whose}"
        ref = recorded
    found = dataset_version_digest(session, ref)
    if found is None:
        return f"{source}: no dataset {ref}"
    return found


def _drifted_share(
    session: Session, run: Run, columns: list[str] | None, store: ArtifactStore | None
) -> float | str:
    """The run's drifted share (over ``columns`` when given), or why it cannot tell."""
    if columns is None:
        share = run.metrics.get("share_drifted")
        if isinstance(share, int | float) and math.isfinite(share):
            return float(share)
        return f"drift run {run.id} recorded no share_drifted"
    if store is None:
        return f"drift run {run.id}: judging columns needs the artifact store (its drift.json)"
    digest = session.scalar(
        select(RunArtifact.digest).where(
            RunArtifact.run_id == run.id, RunArtifact.name == "drift.json"
        )
    )
    if digest is None:
        return f"drift run {run.id} has no drift.json to judge columns {', '.join(columns)} by"
    try:
        report = json.loads(store.read_bytes(digest))
        verdicts = {str(c["column"]): bool(c["drifted"]) for c in report.get("columns", [])}
    except (LockgateError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return f"drift run {run.id}: its drift.json cannot be read ({exc})"
    missing = [c for c in columns if c not in verdicts]
    if missing:
        return f"drift run {run.id} did not check column(s) {', '.join(missing)}"
    return sum(verdicts[c] for c in columns) / len(columns)


def drift_check(
    session: Session, limit: DriftLimit, subject_type: SubjectType, name: str, version: int,
    holder: int | None, now: datetime, store: ArtifactStore | None = None,
) -> GateCheck:  # fmt: skip
    subject = f"{subject_type}:{name}@{version}"
    reference = _drift_reference(session, limit, subject_type, name, version, holder)
    if isinstance(reference, str):
        return GateCheck("drift", "inconclusive", f"drift of {subject}: {reference}")
    ref, digest = reference
    hint = (f"run `lockgate drift check --reference dataset:{ref} --current CURRENT "
            f"--subject {subject}`")  # fmt: skip
    runs = session.scalars(
        select(Run)
        .where(
            Run.kind == "drift", Run.status == "succeeded",
            Run.params["subject"].as_string() == subject,
        )
        .order_by(Run.created_at.desc(), Run.id.desc())
        .limit(DRIFT_SCAN_LIMIT)
    ).all()  # fmt: skip
    matching = [r for r in runs if r.params.get("reference_digest") == digest]
    if not matching:
        if runs:
            other = runs[0]
            shown = str(other.params.get("reference") or other.params.get("reference_digest"))
            return GateCheck(
                "drift", "inconclusive",
                f"drift run {other.id} compared {subject} with {shown}, not with {ref} "
                f"({digest[:19]}), the reference it is judged against; {hint}",
                other.id,
            )  # fmt: skip
        return GateCheck(
            "drift", "inconclusive", f"no drift run for {subject} against {ref}; {hint}"
        )
    run = matching[0]
    if limit.max_age_s is not None:
        age = (now - run.created_at).total_seconds()
        if age > limit.max_age_s:
            return GateCheck(
                "drift", "inconclusive",
                f"drift run {run.id} of {subject} is {age:.0f} s old, older than max_age_s "
                f"{limit.max_age_s:g}; {hint}", run.id,
            )  # fmt: skip
    share = _drifted_share(session, run, limit.columns, store)
    if isinstance(share, str):
        return GateCheck("drift", "inconclusive", share, run.id)
    over = "" if limit.columns is None else f" of columns {', '.join(limit.columns)}"
    over_limit = share > limit.max_share_drifted
    figures = (f"drift run {run.id} against {ref}: share drifted{over} {share:.3g} "
               f"{'>' if over_limit else '<='} max {limit.max_share_drifted:g}")  # fmt: skip
    return GateCheck("drift", "fail" if over_limit else "pass", figures, run.id)


# --------------------------------------------------------------------------- service


@dataclass(frozen=True)
class ServiceFigures:
    """Calls in a window: how many, how many were errors, and the nearest-rank p99 latency
    (None without calls); see :func:`window_figures` for what counts."""

    calls: int
    errors: int
    p99_latency_ms: float | None

    @property
    def error_rate(self) -> float:
        return self.errors / self.calls if self.calls else 0.0


def nearest_rank(n: int, q: float = 0.99) -> int:
    """The 1-based rank of the ``q`` quantile among ``n`` sorted values: ``ceil(q n)``."""
    return max(1, min(n, math.ceil(round(q * n, 9))))


def version_calls(subject_type: SubjectType, name: str, version: int) -> Any:
    """The WHERE clause of a prompt or model version's call records."""
    if subject_type == "prompt":
        return and_(CallRecord.prompt_name == name, CallRecord.prompt_version == version)
    ref = f"{name}@{version}"
    return or_(
        CallRecord.deployment == ref,
        and_(CallRecord.operation == PREDICT, CallRecord.model == ref),
    )


def window_figures(
    session: Session, condition: Any, since: datetime, until: datetime, *,
    client_errors: bool = False,
) -> ServiceFigures:  # fmt: skip
    """The figures of the call records matching ``condition`` in ``[since, until)``: the one
    definition that gates (:func:`service_checks`) and monitoring policies' latency and error
    signals share. By default 4xx answers are the client's doing and left out altogether
    (neither calls nor errors) and an error is a 5xx; with ``client_errors`` every call
    counts and an error is any status of 400 or more. p99 is the nearest rank over the calls
    counted, computed in the database."""
    where = [condition, CallRecord.created_at >= since, CallRecord.created_at < until]
    if not client_errors:
        where.append(or_(CallRecord.status_code < 400, CallRecord.status_code >= 500))
    floor = 400 if client_errors else 500
    errors = func.sum(case((CallRecord.status_code >= floor, 1), else_=0))
    calls, failed = session.execute(select(func.count(), errors).where(*where)).one()
    calls = int(calls or 0)
    if calls == 0:
        return ServiceFigures(0, 0, None)
    p99 = session.scalar(
        select(CallRecord.latency_ms)
        .where(*where)
        .order_by(CallRecord.latency_ms)
        .offset(nearest_rank(calls) - 1)
        .limit(1)
    )
    return ServiceFigures(calls, int(failed or 0), None if p99 is None else float(p99))


def service_figures(
    session: Session, subject_type: SubjectType, name: str, version: int, since: datetime,
    until: datetime,
) -> ServiceFigures:  # fmt: skip
    """A prompt or model version's figures in a window (:func:`window_figures`)."""
    return window_figures(session, version_calls(subject_type, name, version), since, until)


def service_checks(
    session: Session, limit: ServiceLimit, subject_type: SubjectType, name: str, version: int,
    now: datetime,
) -> list[GateCheck]:  # fmt: skip
    since = now - timedelta(seconds=limit.window_s)
    figures = service_figures(session, subject_type, name, version, since, now)
    window = f"{subject_type} {name}@{version} in the last {limit.window_s:g} s"
    checks = []
    for key, cap in (("p99_latency_ms", limit.p99_latency_ms),
                     ("max_error_rate", limit.max_error_rate)):  # fmt: skip
        if cap is None:
            continue
        check = f"service {key}"
        if figures.calls < limit.min_calls:
            checks.append(GateCheck(
                check, "inconclusive",
                f"{check}: {figures.calls} calls of {window} (client errors left out), fewer "
                f"than min_calls {limit.min_calls}: send it traffic (a canary) first",
            ))  # fmt: skip
            continue
        value = figures.p99_latency_ms if key == "p99_latency_ms" else figures.error_rate
        assert value is not None
        shown = f"p99 latency {value:.1f} ms" if key == "p99_latency_ms" else (
            f"error rate {value:.4f} ({figures.errors} 5xx)")  # fmt: skip
        verdict = "fail" if value > cap else "pass"
        checks.append(GateCheck(
            check, verdict,
            f"{check}: {shown} over {figures.calls} calls of {window} "
            f"{'>' if value > cap else '<='} {cap:g}",
        ))  # fmt: skip
    return checks
