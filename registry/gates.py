"""Promotion gates: a label (``production``) moves only to versions that passed the eval
suites its policy names.

An eval run records its verdict in its tags (``verdict``, ``gates``) and its target version
in its lineage. To move ``label`` of ``name`` to version V, each suite in the policy needs
a succeeded eval run of that suite whose lineage names ``name@V`` and whose verdict is
``pass``; otherwise the move is refused with one reason per suite. A forced move skips the
check and is recorded as forced, with its reason.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from registry._core import RegistryCore
from registry.errors import InvalidInput, NotFound
from registry.records import LATEST, SubjectType, _Record, check_label, check_name
from registry.tables import GatePolicy, Run, RunLineage, utcnow


@dataclass(frozen=True)
class GatePolicyInfo(_Record):
    subject_type: str
    name: str
    label: str
    suites: list[str]
    updated_by: str
    updated_at: datetime


def promotion_refusals(
    session: Session, subject_type: str, name: str, label: str, version: int
) -> list[str]:
    """Why ``label`` may not move to ``name@version`` (empty: it may)."""
    policy = session.scalars(
        select(GatePolicy).where(
            GatePolicy.subject_type == subject_type,
            GatePolicy.subject_name == name,
            GatePolicy.label == label,
        )
    ).first()
    if policy is None:
        return []
    ref = f"{name}@{version}"
    reasons = []
    for suite in policy.suites:
        run = session.scalars(
            select(Run)
            .join(RunLineage, RunLineage.run_id == Run.id)
            .where(
                Run.kind == "eval", Run.name == suite, Run.status == "succeeded",
                RunLineage.subject_type == subject_type, RunLineage.subject_ref == ref,
                RunLineage.role == "input",
            )
            .order_by(Run.created_at.desc())
            .limit(1)
        ).first()  # fmt: skip
        if run is None:
            reasons.append(
                f"suite {suite!r}: no eval run on {subject_type} {ref} "
                f"(run `lockgate eval run` on it first)"
            )
            continue
        verdict = run.tags.get("verdict")
        if verdict == "pass":
            continue
        failed = [
            f"{g.get('gate')}: {g.get('reason')}"
            for g in run.tags.get("gates", [])
            if isinstance(g, dict) and g.get("verdict") != "pass"
        ]
        detail = "; ".join(failed) if failed else "no gate verdict recorded"
        reasons.append(f"suite {suite!r} run {run.id}: {verdict or 'no verdict'} ({detail})")
    return reasons


class GatesMixin(RegistryCore):
    def set_gate_policy(
        self, subject_type: SubjectType, name: str, label: str, suites: Iterable[str]
    ) -> GatePolicyInfo | None:
        """Require ``suites`` to pass before ``label`` moves; no suites removes the policy."""
        check_label(label)
        if label == LATEST:
            raise InvalidInput("'latest' follows every push and cannot be gated", param="label")
        suite_list = sorted({check_name(s, "suite name") for s in suites})
        with self._write() as session:
            self._subject(session, subject_type, name)
            row = session.scalars(
                select(GatePolicy).where(
                    GatePolicy.subject_type == subject_type,
                    GatePolicy.subject_name == name,
                    GatePolicy.label == label,
                )
            ).first()
            if not suite_list:
                if row is not None:
                    session.delete(row)
                return None
            if row is None:
                row = GatePolicy(subject_type=subject_type, subject_name=name, label=label)
                session.add(row)
            row.suites, row.updated_by, row.updated_at = suite_list, self.actor, utcnow()
            session.flush()
            return _policy(row)

    def gate_policies(self, subject_type: SubjectType, name: str) -> list[GatePolicyInfo]:
        with self._read() as session:
            rows = session.scalars(
                select(GatePolicy)
                .where(GatePolicy.subject_type == subject_type, GatePolicy.subject_name == name)
                .order_by(GatePolicy.label)
            )
            return [_policy(r) for r in rows]

    def check_promotion(
        self, subject_type: SubjectType, name: str, label: str, version: int
    ) -> list[str]:
        """The reasons a move of ``label`` to ``version`` would be refused (empty: allowed)."""
        with self._read() as session:
            return promotion_refusals(session, subject_type, name, label, version)

    def tag_run(self, run_id: str, tags: dict[str, Any]) -> None:
        """Merge ``tags`` into a run's tags (e.g. an eval run's verdict)."""
        with self._write() as session:
            run = session.get(Run, run_id)
            if run is None:
                raise NotFound(f"no run with id {run_id!r}", param="run_id")
            run.tags = {**run.tags, **tags}


def _policy(row: GatePolicy) -> GatePolicyInfo:
    return GatePolicyInfo(
        row.subject_type, row.subject_name, row.label, list(row.suites), row.updated_by,
        row.updated_at,
    )  # fmt: skip
