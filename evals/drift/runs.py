"""Drift checks recorded as registry runs, with stored reference profiles.

:func:`run_drift_check` resolves ``reference`` and ``current`` (:mod:`evals.drift.sources`),
checks them (:func:`~lockgate.evals.drift.check.check_drift`) and records a run of kind
``drift``:

* params: ``reference``, ``current`` (as given), ``reference_digest`` (the dataset version's
  digest, the file's sha256, or for logged inputs the profile's), ``subject``
  (``model:NAME@VERSION``, ``prompt:NAME@VERSION`` or ``""``), ``reference_profile`` (the
  digest of the stored profile) and ``reference_cached``;
* metrics: ``share_drifted``, ``drifted_columns``, ``columns``, ``dataset_drift`` (0 or 1),
  ``n_reference``, ``n_current``;
* artifacts: ``drift.json`` (:meth:`DriftReport.to_dict`), ``report.html`` (unless
  ``html=False``) and, when it was computed by this run, ``reference.profile``;
* lineage: the datasets read and the subject, as inputs.

**Stored reference profiles.** A reference whose digest is known before it is read (a
dataset version, a file) is profiled once: the profile is stored as an artifact and named in
the run's params; a later check against the same digest finds it among the latest
:data:`CACHE_SCAN` drift runs and reads only the current data. Every column is profiled, so
a check of other ``columns`` reuses it too.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lockgate.evals.drift import _frames
from lockgate.evals.drift.check import DriftOptions, check_drift
from lockgate.evals.drift.errors import DriftInputInvalid, ProfileInvalid
from lockgate.evals.drift.profile import Profile, build_profile, profile_column
from lockgate.evals.drift.results import DriftReport
from lockgate.evals.drift.sources import DriftSourceInvalid, DriftSourceNotFound, resolve_source
from lockgate.registry.errors import ArtifactCorrupted, InvalidInput, LockgateError, NotFound
from lockgate.registry.records import LineageEdge, Ref

if TYPE_CHECKING:
    from lockgate.registry.registry import Registry

CACHE_SCAN = 200  # drift runs looked through for a stored profile of the same reference
PROFILE_ARTIFACT = "reference.profile"


@dataclass(frozen=True)
class DriftRun:
    """A recorded drift check."""

    run_id: str
    report: DriftReport
    reference: str  # as given: "dataset:churn-ref@3", "file:…", "model:churn@production"
    current: str
    reference_digest: str
    subject: str = ""
    reference_cached: bool = False  # the stored reference profile was used
    html: str | None = None  # the HTML report, when one was made

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the run's identity, then the report's fields."""
        return {
            "run_id": self.run_id,
            "reference": self.reference,
            "current": self.current,
            "reference_digest": self.reference_digest,
            "reference_cached": self.reference_cached,
            "subject": self.subject,
            **self.report.to_dict(),
        }


def run_drift_check(
    registry: Registry,
    reference: str,
    current: str,
    *,
    columns: Sequence[str] | None = None,
    options: DriftOptions | None = None,
    subject: str | None = None,
    html: bool = True,
    files: bool = False,
    now: datetime | None = None,
) -> DriftRun:
    """Check ``current`` against ``reference`` and record the run (see the module docstring).

    ``columns`` (or ``options.columns``): which columns (default: the reference's).
    ``subject``: what the check is evidence about (default: the model whose logged inputs or
    recorded reference is checked); a label is recorded as the version it points to.
    ``files``: whether sources may be paths (the CLI); ``now``: the end of model windows.
    """
    options = options or DriftOptions()
    if columns is not None:
        options = replace(options, columns=list(columns))
    ref_source = resolve_source(registry, reference, files=files, now=now)
    cur_source = resolve_source(registry, current, files=files, now=now)
    chosen = (
        resolve_subject(registry, subject)
        if subject
        else (cur_source.subject or ref_source.subject)
    )
    cached: tuple[Profile, str] | None = None
    if ref_source.digest is not None:
        cached = find_stored_profile(registry, ref_source.digest)
    if cached is not None:
        ref_profile, profile_digest = cached
    else:
        ref_profile, profile_digest = build_profile(ref_source.load()), ""
    cur_data = cur_source.load()
    if html:
        cur_profile: Profile | Any = current_profile(ref_profile, cur_data, options)
    else:
        cur_profile = cur_data
    report = check_drift(ref_profile, cur_profile, options)
    return record_drift_run(
        registry, report, reference=reference, current=current,
        reference_digest=ref_source.digest, subject=chosen,
        lineage=[*ref_source.lineage, *cur_source.lineage],
        reference_profile=ref_profile, stored_profile=profile_digest or None,
        current_profile=cur_profile if isinstance(cur_profile, Profile) else None,
        names=(ref_source.canonical, cur_source.canonical),
    )  # fmt: skip


def current_profile(reference: Profile, data: Any, options: DriftOptions) -> Profile:
    """The exact profile of the checked columns of ``data``, each read as the reference's
    kind: what :func:`check_drift` profiles from a table, kept for the report's pictures."""
    names = list(options.columns) if options.columns is not None else list(reference.columns)
    present = set(_frames.column_names(data))
    missing = [name for name in names if name not in present]
    if missing:
        raise DriftInputInvalid(f"the current data lacks the columns {missing}", param="columns")
    unknown = [name for name in names if name not in reference.columns]
    if unknown:
        raise DriftInputInvalid(
            f"the reference profile has no columns {unknown} "
            f"(it has: {', '.join(reference.columns)})",
            param="columns",
        )
    columns = {
        name: profile_column(
            _frames.column(data, name), reference.columns[name].kind, exact_limit=None
        )
        for name in names
    }
    return Profile(columns, _frames.row_count(data))


def resolve_subject(registry: Registry, subject: str) -> str:
    """``model:NAME@LABEL|VERSION`` or ``prompt:…`` as ``TYPE:NAME@VERSION``."""
    kind, sep, text = subject.partition(":")
    if not sep or kind not in ("model", "prompt"):
        raise DriftSourceInvalid(
            subject, "a subject is model:NAME@LABEL|VERSION or prompt:NAME@LABEL|VERSION"
        )
    try:
        ref = Ref.parse(text)
        part = registry.models if kind == "model" else registry.prompts
        version = part.get(ref)
    except NotFound as exc:
        raise DriftSourceNotFound(subject, exc.message) from None
    except InvalidInput as exc:
        raise DriftSourceInvalid(subject, exc.message) from None
    return f"{kind}:{version.name}@{version.version}"


def find_stored_profile(registry: Registry, digest: str) -> tuple[Profile, str] | None:
    """The stored profile of the reference with content ``digest``, and the profile's own
    digest, from the latest :data:`CACHE_SCAN` drift runs; None when none is readable."""
    for run in registry.runs.list("drift", limit=CACHE_SCAN):
        stored = run.params.get("reference_profile")
        if run.status != "succeeded" or run.params.get("reference_digest") != digest:
            continue
        if not isinstance(stored, str) or not stored:
            continue
        try:
            return Profile.from_bytes(registry.artifacts.read_bytes(stored)), stored
        except (NotFound, ArtifactCorrupted, ProfileInvalid, InvalidInput):
            continue  # gone, damaged or of another format: look further, else profile again
    return None


def record_drift_run(
    registry: Registry,
    report: DriftReport,
    *,
    reference: str,
    current: str,
    reference_digest: str | None,
    subject: str,
    lineage: Iterable[LineageEdge],
    reference_profile: Profile,
    stored_profile: str | None,
    current_profile: Profile | None,
    names: tuple[str, str] | None = None,
) -> DriftRun:
    """Record ``report`` as a ``drift`` run (see the module docstring). ``stored_profile``:
    the digest of the reference profile when it came from the store (else it is stored
    here); ``current_profile``: for the HTML report (none without it)."""
    from lockgate.evals.drift.html import render_html

    profile_bytes = reference_profile.to_bytes() if stored_profile is None else b""
    profile_digest = stored_profile or _digest_of(profile_bytes)
    digest = reference_digest or profile_digest
    edges = _unique([*lineage, *_subject_edges(subject)])
    run = registry.runs.create(
        "drift",
        name=f"drift {reference} vs {current}"[:200],
        params={
            "reference": reference,
            "current": current,
            "reference_digest": digest,
            "subject": subject,
            "reference_profile": profile_digest,
            "reference_cached": stored_profile is not None,
        },
        lineage=edges,
    )
    page = None
    try:
        with tempfile.TemporaryDirectory(prefix="lockgate-drift-") as tmp:
            folder = Path(tmp)
            document = json.dumps(report.to_dict(), indent=1, ensure_ascii=False)
            _attach(registry, run.id, folder, "drift.json", document.encode())
            if current_profile is not None:
                ref_name, cur_name = names or (reference, current)
                page = render_html(
                    report, reference_profile, current_profile, run_id=run.id,
                    reference_name=ref_name, current_name=cur_name,
                )  # fmt: skip
                _attach(registry, run.id, folder, "report.html", page.encode())
            if stored_profile is None:
                _attach(registry, run.id, folder, PROFILE_ARTIFACT, profile_bytes)
    except LockgateError as exc:
        registry.runs.set_status(run.id, "failed", error=exc.message)
        raise
    registry.runs.set_status(
        run.id,
        "succeeded",
        metrics={
            "share_drifted": report.share_drifted,
            "drifted_columns": report.n_drifted,
            "columns": len(report.columns),
            "dataset_drift": 1.0 if report.drifted else 0.0,
            "n_reference": report.n_reference,
            "n_current": report.n_current,
        },
    )
    return DriftRun(run.id, report, reference, current, digest, subject,
                    stored_profile is not None, page)  # fmt: skip


def _attach(registry: Registry, run_id: str, folder: Path, name: str, data: bytes) -> None:
    path = folder / name
    path.write_bytes(data)
    registry.runs.log_artifact(run_id, name, path)


def _digest_of(data: bytes) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(data).hexdigest()


def _subject_edges(subject: str) -> list[LineageEdge]:
    kind, sep, ref = subject.partition(":")
    return [LineageEdge(kind, ref, "input")] if sep and kind in ("model", "prompt") else []


def _unique(edges: Iterable[LineageEdge]) -> list[LineageEdge]:
    return list(dict.fromkeys(edges))
