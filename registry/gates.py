"""Promotion gates: a label (``production``) moves only on evidence.

A gate policy names, for one label of a prompt or model, the eval suites a version must pass,
each **pinned by content**: a :class:`SuitePin` holds the suite's name and
:func:`suite_digest` of its file and of its dataset version. Eval runs record the same digest
(``params.suite_digest``), so another suite under the same name, the same file edited, or the
same suite over other data does not satisfy the policy until it is pinned again
(:meth:`Gates.pin_suite` reads a suite file for it).

The evidence for moving ``label`` of ``name`` to version V, per pinned suite, is the latest
succeeded, unsharded eval run of that suite content whose lineage names ``name@V``, and

* its verdict is ``pass``, with at least one gate and every gate ``pass``: a ``skipped`` gate
  or a suite without gates is never a pass;
* none of its examples errored (``eval.errors`` is 0): a run whose calls failed is not evidence;
* while the label points at a version H, every relative gate compared V with a succeeded,
  error-free registry run of the same suite content on ``name@H`` (its ``baseline_run`` tag);
* while the label is unset (a first version), relative gates have nothing to compare with and
  may be waived; the absolute gates decide, and at least one must have passed.

Beside suites, a policy may hold drift and service limits (:mod:`registry.gate_limits`).
Every check gives a :class:`GateCheck` (``pass``, ``fail`` or ``inconclusive``, a reason and
the evidence run): :func:`promotion_checks` returns them all, :func:`promotion_refusals` the
reasons of those that are not a pass. A forced move skips the refusal, not the check: the
verdicts it overrode are recorded with the move, as forced, with its reason.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lockgate.registry._core import SUBJECTS, Part
from lockgate.registry.artifacts import ArtifactStore, dir_manifest, manifest_bytes, sha256_file
from lockgate.registry.errors import InvalidInput, NotFound
from lockgate.registry.gate_limits import (
    DriftLimit,
    GateLimits,
    ServiceLimit,
    dataset_version_digest,
    drift_check,
    parse_limits,
    service_checks,
    stored_limits,
)
from lockgate.registry.records import (
    LATEST,
    GateCheck,
    SubjectType,
    _Record,
    check_label,
    check_name,
)
from lockgate.registry.tables import (
    Dataset,
    DatasetVersion,
    GatePolicy,
    Label,
    Run,
    RunLineage,
    utcnow,
)

RUN_SCAN_LIMIT = 200  # runs of one suite name on one version looked at for a matching digest

# What a suite pin leaves out: which version is measured and where it is served (the policy
# gates many versions with one suite), how it is called, and what only sets the exit code.
_UNPINNED = frozenset({"concurrency", "timeout", "retries", "on_error"})
_UNPINNED_TARGET = frozenset({"model", "base_url", "headers", "api_key", "api_key_env"})
_UNPINNED_STATS = frozenset({"inconclusive", "skipped"})


@dataclass(frozen=True)
class SuitePin(_Record):
    """An eval suite by name and content digest (``sha256:…``; empty: not pinned)."""

    name: str
    digest: str

    def __str__(self) -> str:
        return f"{self.name} ({self.digest[:19] or 'not pinned'})"


@dataclass(frozen=True)
class GatePolicyInfo(_Record):
    subject_type: str
    name: str
    label: str
    suites: list[SuitePin]
    updated_by: str
    updated_at: datetime
    drift: dict[str, Any] | None = None  # DriftLimit's fields
    service: dict[str, Any] | None = None  # ServiceLimit's fields


def suite_content(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a suite file (as YAML loads it) that decides what a run measures and how
    it is judged: the target's version, endpoint and credentials, the dataset's path (its
    digest is pinned instead), call settings and exit-code settings are left out."""
    out = {k: v for k, v in doc.items() if k not in _UNPINNED}
    dataset = doc.get("dataset")
    out["dataset"] = {"limit": dataset.get("limit") if isinstance(dataset, Mapping) else None}
    target = doc.get("target")
    if isinstance(target, Mapping):
        out["target"] = {k: v for k, v in target.items() if k not in _UNPINNED_TARGET}
    stats = doc.get("stats")
    if isinstance(stats, Mapping):
        out["stats"] = {k: v for k, v in stats.items() if k not in _UNPINNED_STATS}
    return out


def suite_digest(doc: Mapping[str, Any], dataset_digest: str) -> str:
    """The content digest of a suite (its file as YAML loads it) over a dataset version."""
    payload = {"suite": suite_content(doc), "dataset": dataset_digest}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str)  # fmt: skip
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _policy_pins(row: GatePolicy) -> list[SuitePin]:
    pins = []
    for entry in row.suites or []:
        if isinstance(entry, Mapping):
            pins.append(SuitePin(str(entry.get("name", "")), str(entry.get("digest") or "")))
        else:  # a policy written before suites were pinned: a name only
            pins.append(SuitePin(str(entry), ""))
    return pins


def _label_holder(session: Session, subject_type: SubjectType, name: str, label: str) -> int | None:
    table = SUBJECTS[subject_type][0]
    return session.scalar(
        select(Label.version)
        .join(table, table.id == Label.subject_id)
        .where(Label.subject_type == subject_type, table.name == name, Label.name == label)
    )


def _has_input(session: Session, run_id: str, subject_type: str, ref: str) -> bool:
    found = session.scalar(
        select(func.count())
        .select_from(RunLineage)
        .where(
            RunLineage.run_id == run_id, RunLineage.subject_type == subject_type,
            RunLineage.subject_ref == ref, RunLineage.role == "input",
        )
    )  # fmt: skip
    return bool(found)


def _errored(run: Run) -> str | None:
    errors = run.metrics.get("eval.errors")
    if not isinstance(errors, int | float):
        return "it recorded no error count (eval.errors): run the suite again with this lockgate"
    if errors > 0:
        return (f"{int(errors)} of its calls errored: a run whose calls failed is not "
                "evidence; run the suite again")  # fmt: skip
    return None


def _baseline_problem(
    session: Session, run: Run, subject_type: SubjectType, name: str, label: str, holder: int
) -> str | None:
    """Why the run's relative gates are no evidence against ``name@holder`` (None: they are)."""
    base_id = run.tags.get("baseline_run")
    base = session.get(Run, base_id) if isinstance(base_id, str) and base_id else None
    ref = f"{name}@{holder}"
    if (
        base is not None
        and base.kind == "eval"
        and base.status == "succeeded"
        and base.params.get("suite_digest") == run.params.get("suite_digest")
        and _errored(base) is None
        and _has_input(session, base.id, subject_type, ref)
    ):
        return None
    compared = run.tags.get("baseline") or "no registry run"
    return (f"its relative gates compared it with {compared}, not with an error-free run of "
            f"this suite on {subject_type} {ref}, which holds {label!r} now; run the suite "
            f"again with --baseline label:{label}")  # fmt: skip


def _gate_text(gate: Mapping[str, Any]) -> str:
    return f"{gate.get('gate')}: {gate.get('reason')}"


def evidence_problems(
    session: Session, run: Run, subject_type: SubjectType, name: str, label: str,
    holder: int | None,
) -> list[str]:  # fmt: skip
    """Why an eval run is no evidence for moving ``label`` (held by ``holder``) to the
    version it measured (empty: it is)."""
    verdict = run.tags.get("verdict")
    gates = [g for g in run.tags.get("gates") or [] if isinstance(g, Mapping)]
    problems: list[str] = []
    errored = _errored(run)
    if not gates:
        problems.append(
            "the suite has no gates: a run without gates is not evidence"
            if verdict else "no verdict recorded"
        )  # fmt: skip
    elif verdict != "pass":
        failed = [
            _gate_text(g) for g in gates if g.get("verdict") != "pass" and not g.get("waived")
        ]
        reason = "" if errored else str(run.tags.get("verdict_reason") or "")
        detail = "; ".join(failed) or reason
        problems.append(f"{verdict or 'no verdict'} ({detail})" if detail else str(verdict))
    if errored is not None:
        problems.append(errored)
    if problems:
        return problems
    waived = False
    for gate in gates:
        kind, gate_verdict = gate.get("kind"), gate.get("verdict")
        if gate_verdict == "pass":
            continue
        if kind == "relative" and gate.get("waived"):
            if holder is None:
                waived = True
                continue
            problems.append(
                f"{gate.get('gate')}: waived because {label!r} was unset when the suite ran; "
                f"{name}@{holder} holds it now: run the suite again with --baseline label:{label}"
            )
            continue
        problems.append(f"{gate_verdict}: {_gate_text(gate)}")
    relative_passed = any(g.get("kind") != "absolute" and g.get("verdict") == "pass" for g in gates)
    if holder is not None and relative_passed:
        problem = _baseline_problem(session, run, subject_type, name, label, holder)
        if problem is not None:
            problems.append(problem)
    absolute_passed = any(g.get("kind") == "absolute" and g.get("verdict") == "pass" for g in gates)
    if waived and not absolute_passed:
        problems.append(
            f"{label!r} is unset, so relative gates have nothing to compare with and a first "
            "version is judged by its absolute gates: this suite has none"
        )
    return problems


def _suite_check(
    session: Session, pin: SuitePin, subject_type: SubjectType, name: str, label: str,
    version: int, holder: int | None,
) -> GateCheck:  # fmt: skip
    ref = f"{name}@{version}"
    check = f"suite {pin.name}"
    if not pin.digest:
        return GateCheck(
            check, "inconclusive",
            f"suite {pin.name!r} is named without its content; pin it with `lockgate "
            f"{subject_type} gate {name} {label} --suite path/to/suite.yaml`",
        )  # fmt: skip
    runs = session.scalars(
        select(Run)
        .join(RunLineage, RunLineage.run_id == Run.id)
        .where(
            Run.kind == "eval", Run.name == pin.name, Run.status == "succeeded",
            RunLineage.subject_type == subject_type, RunLineage.subject_ref == ref,
            RunLineage.role == "input",
        )
        .order_by(Run.created_at.desc(), Run.id.desc())
        .limit(RUN_SCAN_LIMIT)
    ).all()  # fmt: skip
    whole = [r for r in runs if not r.params.get("shard")]
    matching = [r for r in whole if r.params.get("suite_digest") == pin.digest]
    if not matching:
        shown = f"suite {pin.name!r} ({pin.digest[:19]})"
        if whole:
            other = whole[0]
            digest = str(other.params.get("suite_digest") or "none recorded")[:19]
            return GateCheck(
                check, "inconclusive",
                f"{shown}: no eval run of this suite content on {subject_type} {ref}; "
                f"run {other.id} ran a suite of that name with other content ({digest}): "
                f"run the pinned suite, or pin the changed file with `lockgate "
                f"{subject_type} gate {name} {label} --suite FILE`",
            )  # fmt: skip
        return GateCheck(check, "inconclusive", f"{shown}: no eval run on {subject_type} {ref} "
                         "(run `lockgate eval run` on it first)")  # fmt: skip
    run = matching[0]
    problems = evidence_problems(session, run, subject_type, name, label, holder)
    if problems:
        verdict = "fail" if run.tags.get("verdict") == "fail" else "inconclusive"
        return GateCheck(
            check, verdict, f"suite {pin.name!r} run {run.id}: " + "; ".join(problems), run.id
        )
    return GateCheck(check, "pass", f"suite {pin.name!r} run {run.id}: every gate passed", run.id)


def promotion_checks(
    session: Session, subject_type: SubjectType, name: str, label: str, version: int,
    required: Sequence[SuitePin] = (), *, now: datetime | None = None,
    store: ArtifactStore | None = None,
) -> list[GateCheck]:  # fmt: skip
    """Every check of moving ``label`` to ``name@version``, in order: the policy's suites and
    ``required`` ones (a fine-tuning job's own suite), drift, service. Empty when nothing
    gates the label, or when it points there already. ``now`` ends the service window;
    ``store`` reads a drift run's ``drift.json`` when the drift limit names columns."""
    policy = session.scalars(
        select(GatePolicy).where(
            GatePolicy.subject_type == subject_type,
            GatePolicy.subject_name == name,
            GatePolicy.label == label,
        )
    ).first()
    pins = _policy_pins(policy) if policy is not None else []
    pins += [p for p in required if p not in pins]
    limits = stored_limits(policy.limits) if policy is not None else GateLimits()
    if not pins and limits.drift is None and limits.service is None:
        return []
    holder = _label_holder(session, subject_type, name, label)
    if holder == version:
        return []  # it points there already
    now = now or utcnow()
    checks = [
        _suite_check(session, pin, subject_type, name, label, version, holder) for pin in pins
    ]
    if limits.drift is not None:
        checks.append(
            drift_check(session, limits.drift, subject_type, name, version, holder, now, store)
        )
    if limits.service is not None:
        checks += service_checks(session, limits.service, subject_type, name, version, now)
    return checks


def promotion_refusals(
    session: Session, subject_type: SubjectType, name: str, label: str, version: int,
    required: Sequence[SuitePin] = (), *, store: ArtifactStore | None = None,
) -> list[str]:  # fmt: skip
    """Why ``label`` may not move to ``name@version`` (empty: it may): the reason of every
    check of :func:`promotion_checks` that is not a pass."""
    checks = promotion_checks(session, subject_type, name, label, version, required, store=store)
    return [c.reason for c in checks if c.verdict != "pass"]


def _dataset_digest(session: Session, source: str, base_dir: Path, where: str) -> str:
    if source.startswith("registry:"):
        dataset, _, selector = source.removeprefix("registry:").partition("@")
        if selector and not selector.lstrip("v").isdigit():
            raise InvalidInput(f"{where}: dataset {source}: the version after @ must be a number",
                               param="dataset")  # fmt: skip
        stmt = (
            select(DatasetVersion.digest)
            .join(Dataset, Dataset.id == DatasetVersion.dataset_id)
            .where(Dataset.name == dataset)
        )
        if selector:
            stmt = stmt.where(DatasetVersion.version == int(selector.lstrip("v")))
        digest = session.scalar(stmt.order_by(DatasetVersion.version.desc()).limit(1))
        if digest is None:
            raise NotFound(f"{where}: no dataset {source.removeprefix('registry:')}",
                           param="dataset")  # fmt: skip
        return str(digest)
    path = Path(source)
    if not path.is_absolute():
        path = base_dir / path
    if path.is_dir():
        entries, _ = dir_manifest(path)
        return "sha256:" + hashlib.sha256(manifest_bytes(entries)).hexdigest()
    if path.is_file():
        return sha256_file(path)
    raise InvalidInput(f"{where}: the dataset {path} does not exist", param="dataset")


def _read_suite_file(path: Path) -> tuple[dict[str, Any], str, str]:
    """The suite file as YAML loads it, its name and its dataset source."""
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidInput(
            f"cannot read the suite file {path}: {exc.strerror}; --suite takes the suite's "
            "YAML file, whose content the policy pins", param="suite",
        ) from exc  # fmt: skip
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{path} is not valid YAML: {exc}", param="suite") from exc
    if not isinstance(doc, dict):
        raise InvalidInput(f"{path}: a suite file is a YAML mapping", param="suite")
    name = doc.get("name")
    dataset = doc.get("dataset")
    if isinstance(dataset, Mapping):
        dataset = dataset.get("path", dataset.get("source"))
    if not isinstance(name, str) or not isinstance(dataset, str):
        raise InvalidInput(f"{path}: a suite file names its `name` and `dataset`", param="suite")
    return doc, check_name(name, "suite name"), dataset


class Gates(Part):
    def pin_suite(self, path: Path) -> SuitePin:
        """The suite in the file at ``path``, pinned by its content and its dataset's."""
        doc, name, dataset = _read_suite_file(path)
        with self.db.read() as session:
            digest = _dataset_digest(session, dataset, path.resolve().parent, str(path))
        return SuitePin(name, suite_digest(doc, digest))

    def read_policy(self, path: Path) -> tuple[list[SuitePin], GateLimits]:
        """A policy file: ``suites`` (suite files, relative to it, each pinned), ``drift``
        and ``service`` limits; any other key is an error naming it."""
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise InvalidInput(f"cannot read the policy file {path}: {exc.strerror}",
                               param="policy") from exc  # fmt: skip
        except yaml.YAMLError as exc:
            raise InvalidInput(f"{path} is not valid YAML: {exc}", param="policy") from exc
        if not isinstance(doc, dict):
            raise InvalidInput(f"{path}: a gate policy is a YAML mapping", param="policy")
        for key in doc:
            if key not in POLICY_KEYS:
                raise InvalidInput(
                    f"{path}: unknown key {str(key)!r} (a gate policy takes "
                    f"{', '.join(POLICY_KEYS)})", param=str(key),
                )  # fmt: skip
        suites = doc.get("suites") or []
        if not isinstance(suites, list) or not all(isinstance(x, str) for x in suites):
            raise InvalidInput(f"{path}: suites is a list of suite files", param="suites")
        base = path.resolve().parent
        pins = [self.pin_suite(base / suite) for suite in suites]
        limits = {k: doc[k] for k in ("drift", "service") if doc.get(k) is not None}
        return pins, parse_limits(limits, str(path))

    def set_policy(
        self, subject_type: SubjectType, name: str, label: str, suites: Iterable[SuitePin],
        *, drift: DriftLimit | Mapping[str, Any] | None = None,
        service: ServiceLimit | Mapping[str, Any] | None = None,
    ) -> GatePolicyInfo | None:  # fmt: skip
        """Require the pinned ``suites`` to pass, and the ``drift`` and ``service`` limits
        (:mod:`registry.gate_limits`) to hold, before ``label`` moves; none of them removes
        the policy. Pin a suite file with :meth:`pin_suite`; ``drift.reference`` is pinned
        to its dataset version here."""
        check_label(label)
        if label == LATEST:
            raise InvalidInput("'latest' follows every push and cannot be gated", param="label")
        limits = _limits(drift, service)
        pins: dict[str, SuitePin] = {}
        for pin in suites:
            if not isinstance(pin, SuitePin) or not pin.digest.startswith("sha256:"):
                raise InvalidInput(
                    f"a gate policy pins each suite by its content, not {pin!r} "
                    "(pin a suite file with registry.gates.pin_suite / --suite path/to/suite.yaml)",
                    param="suites",
                )
            pins[check_name(pin.name, "suite name")] = pin
        stored = [{"name": p.name, "digest": p.digest} for _, p in sorted(pins.items())]
        with self.db.write() as session:
            self.db.subject(session, subject_type, name)
            stored_limits_ = _pin_reference(session, subject_type, limits).stored()
            row = session.scalars(
                select(GatePolicy).where(
                    GatePolicy.subject_type == subject_type,
                    GatePolicy.subject_name == name,
                    GatePolicy.label == label,
                )
            ).first()
            if not stored and stored_limits_ is None:
                if row is not None:
                    session.delete(row)
                return None
            if row is None:
                row = GatePolicy(subject_type=subject_type, subject_name=name, label=label)
                session.add(row)
            row.suites, row.updated_by, row.updated_at = stored, self.db.actor, utcnow()
            row.limits = stored_limits_
            session.flush()
            return _policy(row)

    def policies(self, subject_type: SubjectType, name: str) -> list[GatePolicyInfo]:
        with self.db.read() as session:
            rows = session.scalars(
                select(GatePolicy)
                .where(GatePolicy.subject_type == subject_type, GatePolicy.subject_name == name)
                .order_by(GatePolicy.label)
            )
            return [_policy(r) for r in rows]

    def check_promotion(
        self, subject_type: SubjectType, name: str, label: str, version: int,
        required: Sequence[SuitePin] = (),
    ) -> list[str]:  # fmt: skip
        """The reasons a move of ``label`` to ``version`` would be refused (empty: allowed)."""
        with self.db.read() as session:
            return promotion_refusals(
                session, subject_type, name, label, version, required, store=self.db.artifacts
            )

    def promotion_checks(
        self, subject_type: SubjectType, name: str, label: str, version: int,
        required: Sequence[SuitePin] = (), *, now: datetime | None = None,
    ) -> list[GateCheck]:  # fmt: skip
        """Every check a move of ``label`` to ``version`` would run, with its verdict, reason
        and evidence run (empty: nothing gates it); the move is allowed when all pass."""
        with self.db.read() as session:
            return promotion_checks(
                session, subject_type, name, label, version, required, now=now,
                store=self.db.artifacts,
            )  # fmt: skip


POLICY_KEYS = ("suites", "drift", "service")


def _limits(
    drift: DriftLimit | Mapping[str, Any] | None, service: ServiceLimit | Mapping[str, Any] | None
) -> GateLimits:
    doc: dict[str, Any] = {}
    for key, value in (("drift", drift), ("service", service)):
        if isinstance(value, DriftLimit | ServiceLimit):
            value = value.model_dump(exclude_none=True)
        if value is not None:
            doc[key] = value
    return parse_limits(doc)


def _pin_reference(session: Session, subject_type: SubjectType, limits: GateLimits) -> GateLimits:
    """The limits with ``drift.reference`` pinned to a dataset version (``NAME@VERSION``)."""
    drift = limits.drift
    if drift is None:
        return limits
    if drift.reference is None:
        if subject_type == "prompt":
            raise InvalidInput(
                "a prompt records no reference dataset: its drift limit names the data its "
                "drift runs compare with (drift.reference: NAME@VERSION)",
                param="drift.reference",
            )
        return limits
    found = dataset_version_digest(session, drift.reference)
    if found is None:
        raise NotFound(f"drift.reference: no dataset {drift.reference}", param="drift.reference")
    pinned = drift.model_copy(update={"reference": found[0]})
    return limits.model_copy(update={"drift": pinned})


def _policy(row: GatePolicy) -> GatePolicyInfo:
    limits = stored_limits(row.limits)
    return GatePolicyInfo(
        row.subject_type, row.subject_name, row.label, _policy_pins(row), row.updated_by,
        row.updated_at,
        limits.drift.model_dump(exclude_none=True) if limits.drift is not None else None,
        limits.service.model_dump(exclude_none=True) if limits.service is not None else None,
    )  # fmt: skip
