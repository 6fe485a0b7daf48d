"""Labels: movable, compare-and-set pointers to versions, with an append-only history."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lockgate.registry._core import SUBJECTS, Part
from lockgate.registry.errors import Conflict, GateRefused, InvalidInput, NotFound
from lockgate.registry.events import emit
from lockgate.registry.gates import promotion_checks
from lockgate.registry.records import (
    LATEST,
    GateCheck,
    LabelMove,
    SubjectSummary,
    SubjectType,
    check_label,
)
from lockgate.registry.tables import Label, LabelEvent, utcnow

if TYPE_CHECKING:
    from lockgate.registry.gates import SuitePin


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
        """
        check_label(label)
        if label == LATEST:
            raise InvalidInput("the label 'latest' is maintained by lockgate", param="label")
        try:
            with self.db.write() as session:
                subject = self.db.subject(session, subject_type, name, lock=True)
                self._check_version(session, subject_type, subject.id, name, version)
                if force and not reason:
                    raise InvalidInput("a forced label move needs a reason", param="reason")
                checks = promotion_checks(
                    session, subject_type, name, label, version, require,
                    store=self.db.artifacts,
                )  # fmt: skip
                refusals = [c.reason for c in checks if c.verdict != "pass"]
                if refusals and not force:
                    raise GateRefused(
                        f"moving {label!r} of {subject_type} {name!r} to version {version} "
                        "is refused by its gate policy (force it with a reason to override):",
                        refusals,
                        checks=checks,
                    )
                return self._move(
                    session,
                    subject_type,
                    subject.id,
                    name,
                    label,
                    version,
                    expect_version=expect_version,
                    expect_absent=expect_absent,
                    reason=reason,
                    actor=actor or self.db.actor,
                    forced=force,
                    checks=checks,
                )
        except GateRefused as refused:  # the move rolled back; the refusal is an event
            with self.db.write() as session:
                emit(session, "gate.refused", f"{subject_type}:{name}", {
                    "label": label, "version": version, "actor": actor or self.db.actor,
                    "reasons": refused.reasons,
                })  # fmt: skip
            raise
        except IntegrityError as exc:  # a concurrent writer created the label first
            raise Conflict(
                f"label {label!r} of {subject_type} {name!r} was set concurrently; "
                "read it again and retry",
                param="label",
            ) from exc

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
