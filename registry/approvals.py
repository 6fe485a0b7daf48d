"""Protected labels: a label that moves only when an approver approves the move.

A protection (:meth:`Labels.protect`) names how many approvers a label needs (1 or more).
From then on :meth:`Labels.set` does not move the label: it runs the gate (a refused gate
still refuses, unless forced with a reason), checks the caller's compare-and-set
expectation, and records a **request** (who, which version, why, forced or not, the gate's
verdicts) and raises :class:`~lockgate.registry.errors.ApprovalPending`. The label moves when
enough approvers, each a different principal from the requester and from each other, have
approved it (:meth:`Labels.approve`), and then only through the gate again and only if the
label still points where it did when the move was requested (else the request is ``stale``).

Because the rule lives here, in the registry, it binds every caller alike: the CLI, the REST
API (``registry:approve`` scope for approvers), the UI and a fine-tuning job's
gate-and-label step. Request states: ``pending``, ``approved`` (the label moved),
``rejected`` and ``stale``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from lockgate.registry.errors import InvalidInput, NotFound
from lockgate.registry.records import GateCheck, _Record
from lockgate.registry.tables import Label, LabelProtection, LabelRequest

MAX_APPROVERS = 10
REQUEST_STATES = ("pending", "approved", "rejected", "stale")


@dataclass(frozen=True)
class LabelProtectionInfo(_Record):
    subject_type: str
    name: str
    label: str
    approvals: int  # approvers needed, besides the requester
    updated_by: str
    updated_at: datetime


@dataclass(frozen=True)
class LabelRequestInfo(_Record):
    id: int
    subject_type: str
    name: str
    label: str
    from_version: int | None  # where the label pointed when the move was requested
    to_version: int
    reason: str
    forced: bool
    requested_by: str
    status: str  # pending | approved | rejected | stale
    approvals: list[dict[str, Any]]  # [{"actor", "at"}]
    approvals_needed: int
    created_at: datetime
    decided_by: str | None = None
    decision: str | None = None
    decided_at: datetime | None = None
    checks: list[GateCheck] = field(default_factory=list)  # the gate's, when requested


def protection_row(
    session: Session, subject_type: str, subject_id: int, label: str
) -> LabelProtection | None:
    return session.scalars(
        select(LabelProtection).where(
            LabelProtection.subject_type == subject_type,
            LabelProtection.subject_id == subject_id,
            LabelProtection.label == label,
        )
    ).one_or_none()


def protection_info(row: LabelProtection, name: str) -> LabelProtectionInfo:
    return LabelProtectionInfo(
        row.subject_type, name, row.label, row.approvals, row.updated_by, row.updated_at
    )


def check_approvals(approvals: int) -> int:
    if not isinstance(approvals, int) or not 0 <= approvals <= MAX_APPROVERS:
        raise InvalidInput(
            f"approvals is the number of approvers a move needs, 1 to {MAX_APPROVERS} "
            "(0 removes the protection)",
            param="approvals",
        )
    return approvals


def current_version(session: Session, subject_type: str, subject_id: int, label: str) -> int | None:
    return session.scalar(
        select(Label.version).where(
            Label.subject_type == subject_type, Label.subject_id == subject_id, Label.name == label
        )
    )


def request_row(
    session: Session, subject_type: str, subject_id: int, name: str, label: str, request_id: int,
    *, lock: bool = False,
) -> LabelRequest:  # fmt: skip
    stmt = select(LabelRequest).where(
        LabelRequest.id == request_id,
        LabelRequest.subject_type == subject_type,
        LabelRequest.subject_id == subject_id,
        LabelRequest.label == label,
    )
    row = session.scalars(stmt.with_for_update() if lock else stmt).one_or_none()
    if row is None:
        raise NotFound(
            f"{subject_type} {name!r} has no request {request_id} to move {label!r}",
            param="request_id",
        )
    return row


def request_info(row: LabelRequest, name: str, needed: int) -> LabelRequestInfo:
    fields = GateCheck.__dataclass_fields__
    checks = [
        GateCheck(**{k: v for k, v in c.items() if k in fields})
        for c in row.checks or []
        if isinstance(c, dict)
    ]
    return LabelRequestInfo(
        row.id, row.subject_type, name, row.label, row.from_version, row.to_version, row.reason,
        row.forced, row.requested_by, row.status, list(row.approvals or []), needed,
        row.created_at, row.decided_by, row.decision, row.decided_at, checks,
    )  # fmt: skip


def approvers_text(approvals: list[dict[str, Any]]) -> str:
    return ", ".join(str(a.get("actor")) for a in approvals)
