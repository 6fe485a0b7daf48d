"""Labels: movable, compare-and-set pointers to versions, with an append-only history."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lockgate.registry._core import SUBJECTS, Part
from lockgate.registry.approvals import (
    REQUEST_STATES,
    LabelProtectionInfo,
    LabelRequestInfo,
    approvers_text,
    check_approvals,
    current_version,
    protection_info,
    protection_row,
    request_info,
    request_row,
)
from lockgate.registry.errors import (
    ApprovalPending,
    Conflict,
    GateRefused,
    InvalidInput,
    NotAllowed,
    NotFound,
)
from lockgate.registry.events import emit
from lockgate.registry.gates import promotion_checks
from lockgate.registry.records import (
    LATEST,
    GateCheck,
    LabelMove,
    SubjectSummary,
    SubjectType,
    _Record,
    check_label,
)
from lockgate.registry.tables import Label, LabelEvent, LabelProtection, LabelRequest, utcnow

if TYPE_CHECKING:
    from lockgate.registry.gates import SuitePin


@dataclass(frozen=True)
class SubjectListing(_Record):
    """A prompt or model in a list: its latest version (0: none), who made it and when."""

    name: str
    latest_version: int
    latest_author: str | None
    latest_at: datetime | None
    labels: dict[str, int]
    created_at: datetime


class Labels(Part):
    def set(
        self,
        subject_type: SubjectType,
        name: str,
        label: str,
        version: int,
        *,
        expect_version: int | None = None,
        expect_absent: bool = False,
        reason: str = "",
        actor: str | None = None,
        force: bool = False,
        require: Sequence[SuitePin] = (),
    ) -> LabelMove:
        """Point ``label`` at ``version``.

        With ``expect_version`` (or ``expect_absent``) the move is compare-and-set: it fails
        with :class:`Conflict` when the label no longer points where the caller last saw it.
        When a gate policy covers the label, the move is refused with
        :class:`GateRefused` unless the version has evidence for each of its suites
        (:mod:`registry.gates`); ``require`` adds pinned suites that must pass too (a
        fine-tuning job's own suite). ``force`` overrides a refusal and is recorded (give a
        ``reason``). The checks run either way; the move and the history keep every check's
        verdict (``LabelMove.checks``), so a forced move records what it overrode.

        A protected label (:meth:`protect`) does not move here: the move is recorded as a
        request for approval and :class:`ApprovalPending` is raised with it
        (:mod:`registry.approvals`; :meth:`approve` moves it).
        """
        check_label(label)
        if label == LATEST:
            raise InvalidInput("the label 'latest' is maintained by lockgate", param="label")
        actor = actor or self.db.actor
        pending: LabelRequestInfo | None = None
        try:
            with self.db.write() as session:
                subject = self.db.subject(session, subject_type, name, lock=True)
                self._check_version(session, subject_type, subject.id, name, version)
                if force and not reason:
                    raise InvalidInput("a forced label move needs a reason", param="reason")
                checks = self._gate(session, subject_type, name, label, version, require, force)
                protection = protection_row(session, subject_type, subject.id, label)
                if protection is None:
                    return self._move(
                        session, subject_type, subject.id, name, label, version,
                        expect_version=expect_version, expect_absent=expect_absent,
                        reason=reason, actor=actor, forced=force, checks=checks,
                    )  # fmt: skip
                current = current_version(session, subject_type, subject.id, label)
                _expect(subject_type, name, label, current, expect_version, expect_absent)
                row = LabelRequest(
                    subject_type=subject_type, subject_id=subject.id, label=label,
                    from_version=current, to_version=version, reason=reason, forced=force,
                    requested_by=actor[:200], status="pending", approvals=[],
                    checks=[c.to_dict() for c in checks] or None, created_at=utcnow(),
                )  # fmt: skip
                session.add(row)
                session.flush()
                pending = request_info(row, name, protection.approvals)
        except GateRefused as refused:  # the move rolled back; the refusal is an event
            with self.db.write() as session:
                emit(session, "gate.refused", f"{subject_type}:{name}", {
                    "label": label, "version": version, "actor": actor,
                    "reasons": refused.reasons,
                    "checks": [check.to_dict() for check in refused.checks],
                })  # fmt: skip
            raise
        except IntegrityError as exc:  # a concurrent writer created the label first
            raise Conflict(
                f"label {label!r} of {subject_type} {name!r} was set concurrently; "
                "read it again and retry",
                param="label",
            ) from exc
        assert pending is not None
        raise ApprovalPending(
            f"{label!r} of {subject_type} {name!r} is protected: moving it to version "
            f"{version} waits for {pending.approvals_needed} approver(s) (request "
            f"{pending.id}); an approver runs `lockgate {subject_type} approve {name} {label} "
            f"{pending.id}`",
            pending,
        )

    def _gate(
        self, session: Session, subject_type: SubjectType, name: str, label: str, version: int,
        require: Sequence[SuitePin], force: bool,
    ) -> list[GateCheck]:  # fmt: skip
        """Every check of the label's gate; :class:`GateRefused` unless all pass or forced."""
        checks = promotion_checks(
            session, subject_type, name, label, version, require, store=self.db.artifacts,
        )  # fmt: skip
        refusals = [c.reason for c in checks if c.verdict != "pass"]
        if refusals and not force:
            raise GateRefused(
                f"moving {label!r} of {subject_type} {name!r} to version {version} "
                "is refused by its gate policy (force it with a reason to override):",
                refusals,
                checks=checks,
            )
        return checks

    # ------------------------------------------------------------------ protected labels
    def protect(
        self, subject_type: SubjectType, name: str, label: str, approvals: int = 1,
        *, actor: str | None = None,
    ) -> LabelProtectionInfo | None:  # fmt: skip
        """Require ``approvals`` approvers (each a principal other than the requester) for
        every move of ``label``, besides its gate; 0 removes the protection (None)."""
        check_label(label)
        if label == LATEST:
            raise InvalidInput("'latest' follows every push and cannot be protected",
                               param="label")  # fmt: skip
        check_approvals(approvals)
        with self.db.write() as session:
            subject = self.db.subject(session, subject_type, name, lock=True)
            row = protection_row(session, subject_type, subject.id, label)
            if approvals == 0:
                if row is not None:
                    session.delete(row)
                return None
            if row is None:
                row = LabelProtection(subject_type=subject_type, subject_id=subject.id,
                                      label=label)  # fmt: skip
                session.add(row)
            row.approvals, row.updated_at = approvals, utcnow()
            row.updated_by = (actor or self.db.actor)[:200]
            session.flush()
            return protection_info(row, name)

    def protections(self, subject_type: SubjectType, name: str) -> list[LabelProtectionInfo]:
        with self.db.read() as session:
            subject = self.db.subject(session, subject_type, name)
            rows = session.scalars(
                select(LabelProtection)
                .where(
                    LabelProtection.subject_type == subject_type,
                    LabelProtection.subject_id == subject.id,
                )
                .order_by(LabelProtection.label)
            )
            return [protection_info(r, name) for r in rows]

    def requests(
        self, subject_type: SubjectType, name: str, label: str | None = None,
        status: str | None = "pending",
    ) -> list[LabelRequestInfo]:  # fmt: skip
        """Move requests of protected labels, newest first (``status=None``: all)."""
        if status is not None and status not in REQUEST_STATES:
            raise InvalidInput(f"status is one of {', '.join(REQUEST_STATES)}", param="status")
        with self.db.read() as session:
            subject = self.db.subject(session, subject_type, name)
            needed = {
                p.label: p.approvals
                for p in session.scalars(
                    select(LabelProtection).where(
                        LabelProtection.subject_type == subject_type,
                        LabelProtection.subject_id == subject.id,
                    )
                )
            }
            stmt = select(LabelRequest).where(
                LabelRequest.subject_type == subject_type, LabelRequest.subject_id == subject.id
            )
            if label is not None:
                stmt = stmt.where(LabelRequest.label == label)
            if status is not None:
                stmt = stmt.where(LabelRequest.status == status)
            rows = session.scalars(stmt.order_by(LabelRequest.id.desc()))
            return [request_info(r, name, needed.get(r.label, 1)) for r in rows]

    def request(
        self, subject_type: SubjectType, name: str, label: str, request_id: int
    ) -> LabelRequestInfo:
        with self.db.read() as session:
            subject = self.db.subject(session, subject_type, name)
            row = request_row(session, subject_type, subject.id, name, label, request_id)
            protection = protection_row(session, subject_type, subject.id, label)
            return request_info(row, name, protection.approvals if protection else 1)

    def approve(
        self, subject_type: SubjectType, name: str, label: str, request_id: int,
        *, actor: str | None = None,
    ) -> LabelRequestInfo:  # fmt: skip
        """Approve a pending request as ``actor`` (not its requester, nor an approver
        already counted). With enough approvals the label moves, through its gate and only
        if it still points where it did when the move was requested; the returned request
        is then ``approved``. A refused gate raises :class:`GateRefused` and the approval is
        not kept; a label moved meanwhile makes the request ``stale`` (:class:`Conflict`)."""
        actor = (actor or self.db.actor)[:200]
        try:
            with self.db.write() as session:
                subject = self.db.subject(session, subject_type, name, lock=True)
                row = request_row(
                    session, subject_type, subject.id, name, label, request_id, lock=True
                )
                if row.status != "pending":
                    raise Conflict(f"request {request_id} is {row.status}, not pending",
                                   param="request_id")  # fmt: skip
                if actor == row.requested_by:
                    raise NotAllowed(
                        f"{actor} requested this move and cannot approve it: another "
                        "approver must", param="request_id",
                    )  # fmt: skip
                approvals = list(row.approvals or [])
                if any(a.get("actor") == actor for a in approvals):
                    raise Conflict(f"{actor} has approved request {request_id} already",
                                   param="request_id")  # fmt: skip
                current = current_version(session, subject_type, subject.id, label)
                _expect(subject_type, name, label, current, row.from_version,
                        row.from_version is None)  # fmt: skip
                protection = protection_row(session, subject_type, subject.id, label)
                needed = protection.approvals if protection is not None else 1
                approvals.append({"actor": actor, "at": utcnow().isoformat()})
                row.approvals = approvals
                if len(approvals) >= needed:
                    checks = self._gate(session, subject_type, name, label, row.to_version,
                                        (), row.forced)  # fmt: skip
                    self._move(
                        session, subject_type, subject.id, name, label, row.to_version,
                        expect_version=row.from_version,
                        expect_absent=row.from_version is None,
                        reason=f"{row.reason} (request {row.id}, approved by "
                        f"{approvers_text(approvals)})".lstrip(),
                        actor=row.requested_by, forced=row.forced, checks=checks,
                    )  # fmt: skip
                    row.status, row.decided_by, row.decided_at = "approved", actor, utcnow()
                session.flush()
                return request_info(row, name, needed)
        except Conflict as exc:
            if exc.param == "label":  # the label moved since the request: it is stale now
                self._decide(subject_type, name, label, request_id, "stale", actor, exc.message)
            raise
        except IntegrityError as exc:
            self._decide(subject_type, name, label, request_id, "stale", actor, "set concurrently")
            raise Conflict(f"label {label!r} of {subject_type} {name!r} was set concurrently",
                           param="label") from exc  # fmt: skip

    def reject(
        self, subject_type: SubjectType, name: str, label: str, request_id: int,
        *, actor: str | None = None, reason: str = "",
    ) -> LabelRequestInfo:  # fmt: skip
        """Turn a pending request down (an approver, or its requester withdrawing it)."""
        return self._decide(subject_type, name, label, request_id, "rejected",
                            (actor or self.db.actor)[:200], reason)  # fmt: skip

    def _decide(
        self, subject_type: SubjectType, name: str, label: str, request_id: int, status: str,
        actor: str, decision: str,
    ) -> LabelRequestInfo:  # fmt: skip
        with self.db.write() as session:
            subject = self.db.subject(session, subject_type, name, lock=True)
            row = request_row(session, subject_type, subject.id, name, label, request_id,
                              lock=True)  # fmt: skip
            if row.status != "pending":
                raise Conflict(f"request {request_id} is {row.status}, not pending",
                               param="request_id")  # fmt: skip
            row.status, row.decided_by, row.decided_at = status, actor, utcnow()
            row.decision = decision
            protection = protection_row(session, subject_type, subject.id, label)
            session.flush()
            return request_info(row, name, protection.approvals if protection else 1)

    def _check_version(
        self, session: Session, subject_type: SubjectType, subject_id: int, name: str, version: int
    ) -> None:
        _, version_table, fk = SUBJECTS[subject_type]
        found = session.scalar(
            select(func.count()).where(fk == subject_id, version_table.version == version)
        )
        if not found:
            raise NotFound(f"{subject_type} {name!r} has no version {version}", param="version")

    def _move(
        self,
        session: Session,
        subject_type: SubjectType,
        subject_id: int,
        name: str,
        label: str,
        version: int,
        *,
        expect_version: int | None = None,
        expect_absent: bool = False,
        reason: str,
        actor: str,
        forced: bool = False,
        checks: Sequence[GateCheck] = (),
    ) -> LabelMove:
        row = session.scalars(
            select(Label)
            .where(
                Label.subject_type == subject_type,
                Label.subject_id == subject_id,
                Label.name == label,
            )
            .with_for_update()
        ).one_or_none()
        current = row.version if row is not None else None
        _expect(subject_type, name, label, current, expect_version, expect_absent)
        now_ts = utcnow()
        if row is None:
            session.add(
                Label(
                    subject_type=subject_type,
                    subject_id=subject_id,
                    name=label,
                    version=version,
                    updated_at=now_ts,
                    updated_by=actor,
                )
            )
        else:
            row.version, row.updated_at, row.updated_by = version, now_ts, actor
        event = LabelEvent(
            subject_type=subject_type,
            subject_id=subject_id,
            label=label,
            from_version=current,
            to_version=version,
            actor=actor,
            reason=reason,
            forced=forced,
            checks=[c.to_dict() for c in checks] or None,
            created_at=now_ts,
        )
        session.add(event)
        if label != LATEST:  # `latest` follows every push: not news
            emit(session, "label.moved", f"{subject_type}:{name}", {
                "label": label, "from_version": current, "to_version": version, "actor": actor,
                "reason": reason, "forced": forced,
            })  # fmt: skip
        session.flush()
        return LabelMove(
            subject_type, name, label, current, version, actor, reason, forced, now_ts,
            list(checks),
        )  # fmt: skip

    def history(
        self, subject_type: SubjectType, name: str, label: str | None = None
    ) -> list[LabelMove]:
        """Every move of the subject's labels (or of one label), oldest first."""
        with self.db.read() as session:
            subject = self.db.subject(session, subject_type, name)
            stmt = (
                select(LabelEvent)
                .where(LabelEvent.subject_type == subject_type, LabelEvent.subject_id == subject.id)
                .order_by(LabelEvent.id)
            )
            if label is not None:
                stmt = stmt.where(LabelEvent.label == label)
            return [
                LabelMove(
                    subject_type,
                    name,
                    e.label,
                    e.from_version,
                    e.to_version,
                    e.actor,
                    e.reason,
                    e.forced,
                    e.created_at,
                    _checks(e.checks),
                )
                for e in session.scalars(stmt)
            ]

    def of(self, subject_type: SubjectType, name: str) -> dict[str, int]:
        with self.db.read() as session:
            subject = self.db.subject(session, subject_type, name)
            return self.on(session, subject_type, subject.id)

    def find_version(
        self, session: Session, subject_type: SubjectType, subject_id: int, content_hash: str
    ) -> Any:
        """The version with this content, if the subject has one (pushes are idempotent)."""
        _, version_table, fk = SUBJECTS[subject_type]
        return session.scalars(
            select(version_table).where(
                fk == subject_id, version_table.content_hash == content_hash
            )
        ).one_or_none()

    def add_version(
        self, session: Session, subject_type: SubjectType, subject_id: int, name: str,
        author: str, **values: Any,
    ) -> Any:  # fmt: skip
        """Add the next numbered version (the caller holds the subject's row lock) and move
        ``latest`` to it."""
        _, version_table, fk = SUBJECTS[subject_type]
        latest = session.scalar(select(func.max(version_table.version)).where(fk == subject_id))
        row = version_table(version=(latest or 0) + 1, author=author, **values)
        session.add(row)
        session.flush()
        self._move(
            session, subject_type, subject_id, name, LATEST, row.version,
            reason=f"new version {row.version}", actor=author,
        )  # fmt: skip
        return row

    def summaries(self, subject_type: SubjectType) -> list[SubjectSummary]:
        """Every prompt (or model): its latest version and its labels."""
        table, version_table, fk = SUBJECTS[subject_type]
        with self.db.read() as session:
            latest: dict[int, int] = dict(
                session.execute(select(fk, func.max(version_table.version)).group_by(fk)).all()
            )
            return [
                SubjectSummary(
                    s.name, latest.get(s.id, 0), self.on(session, subject_type, s.id),
                    s.created_at,
                )
                for s in session.scalars(select(table).order_by(table.name))
            ]  # fmt: skip

    def listing(
        self, subject_type: SubjectType, query: str | None = None, *, offset: int = 0,
        limit: int = 50,
    ) -> tuple[list[SubjectListing], bool]:  # fmt: skip
        """One page of prompts (or models) by name, those whose name contains ``query``
        (literally, case-insensitively), each with its latest version's author and time and
        its labels; and whether more follow. Three queries whatever the page's size."""
        table, version_table, fk = SUBJECTS[subject_type]
        stmt = select(table.id, table.name, table.created_at).order_by(table.name)
        if query:
            escaped = query.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            stmt = stmt.where(func.lower(table.name).like(f"%{escaped}%", escape="\\"))
        with self.db.read() as session:
            rows = session.execute(stmt.offset(offset).limit(limit + 1)).all()
            more, rows = len(rows) > limit, rows[:limit]
            ids = [r.id for r in rows]
            latest = (
                select(fk.label("sid"), func.max(version_table.version).label("v"))
                .where(fk.in_(ids))
                .group_by(fk)
                .subquery()
            )
            heads = {
                sid: (v, author, at)
                for sid, v, author, at in session.execute(
                    select(
                        fk, version_table.version, version_table.author, version_table.created_at
                    ).join(latest, (latest.c.sid == fk) & (latest.c.v == version_table.version))
                )
            }
            labels: dict[int, dict[str, int]] = {}
            for sid, label, version in session.execute(
                select(Label.subject_id, Label.name, Label.version).where(
                    Label.subject_type == subject_type, Label.subject_id.in_(ids)
                )
            ):
                labels.setdefault(sid, {})[label] = version
        out = []
        for r in rows:
            version, author, at = heads.get(r.id, (0, None, None))
            held = dict(sorted(labels.get(r.id, {}).items()))
            out.append(SubjectListing(r.name, version, author, at, held, r.created_at))
        return out, more

    def versions_with_labels(
        self, subject_type: SubjectType, name: str
    ) -> list[tuple[Any, list[str]]]:
        """The subject's version rows, oldest first, each with the labels pointing at it."""
        _, version_table, fk = SUBJECTS[subject_type]
        with self.db.read() as session:
            subject = self.db.subject(session, subject_type, name)
            by_version: dict[int, list[str]] = {}
            for label, version in self.on(session, subject_type, subject.id).items():
                by_version.setdefault(version, []).append(label)
            rows = session.scalars(
                select(version_table).where(fk == subject.id).order_by(version_table.version)
            ).all()
            return [(r, sorted(by_version.get(r.version, []))) for r in rows]

    def on(self, session: Session, subject_type: str, subject_id: int) -> dict[str, int]:
        rows = session.execute(
            select(Label.name, Label.version).where(
                Label.subject_type == subject_type, Label.subject_id == subject_id
            )
        )
        return {label: version for label, version in rows}


def _checks(stored: Any) -> list[GateCheck]:
    """The gate checks recorded with a move (none before they were recorded)."""
    fields = GateCheck.__dataclass_fields__
    return [
        GateCheck(**{k: v for k, v in c.items() if k in fields})
        for c in stored or []
        if isinstance(c, dict)
    ]


def _expect(
    subject_type: str, name: str, label: str, current: int | None, expect_version: int | None,
    expect_absent: bool,
) -> None:  # fmt: skip
    """:class:`Conflict` unless the label is where the caller expects it (compare-and-set)."""
    if expect_absent and current is not None:
        raise Conflict(
            f"label {label!r} of {subject_type} {name!r} already points to version "
            f"{current}, expected it to be unset",
            param="label",
        )
    if expect_version is not None and current != expect_version:
        now = "is unset" if current is None else f"points to version {current}"
        raise Conflict(
            f"label {label!r} of {subject_type} {name!r} {now}, expected version "
            f"{expect_version}: someone moved it; read it again and retry",
            param="label",
        )
