"""The registry's one database object (connection, transactions, artifact store), shared by
its parts, and :class:`Part`, the base of every part."""

from __future__ import annotations

import getpass
import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from lockgate.registry import db
from lockgate.registry.artifacts import ArtifactStore, FsspecArtifactStore
from lockgate.registry.errors import DatabaseError, InvalidInput, NotFound
from lockgate.registry.records import SubjectType
from lockgate.registry.settings import RegistrySettings
from lockgate.registry.tables import (
    Artifact,
    Dataset,
    ModelVersion,
    Prompt,
    PromptVersion,
    RegisteredModel,
    utcnow,
)

SUBJECTS: dict[str, tuple[Any, Any, Any]] = {
    "prompt": (Prompt, PromptVersion, PromptVersion.prompt_id),
    "model": (RegisteredModel, ModelVersion, ModelVersion.model_id),
}


def content_hash(payload: Any) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def default_actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


class Database:
    """Opens the database (migrating an embedded SQLite file) and the artifact store.

    Every part of the :class:`~lockgate.registry.Registry` works through one instance:
    ``write()`` and ``read()`` are its transactions, ``artifacts`` its content-addressed
    store, ``actor`` the name recorded on what it writes.
    """

    def __init__(
        self,
        settings: RegistrySettings | None = None,
        *,
        actor: str | None = None,
        store: ArtifactStore | None = None,
        migrate: bool | None = None,
    ) -> None:
        self.settings = settings or RegistrySettings()
        self.engine = db.make_engine(self.settings.resolved_database_url())
        self._write_engine = self.engine.execution_options(**{db.WRITE: True})
        self.artifacts: ArtifactStore = store or FsspecArtifactStore(
            self.settings.resolved_artifact_url()
        )
        self.actor = actor or default_actor()
        self._ensure_schema(migrate)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    def _ensure_schema(self, migrate: bool | None) -> None:
        current = db.current_revision(self.engine)
        head = db.HEAD_REVISION
        if current == head:
            return
        if migrate is None:
            migrate = self.is_sqlite and self.settings.auto_migrate
        if migrate:
            db.upgrade(self.engine)
            return
        shown = self.engine.url.render_as_string(hide_password=True)
        raise DatabaseError(
            f"the registry schema at {shown} is at revision {current or 'none'}, "
            f"this lockgate needs {head}: run `lockgate db upgrade`"
        )

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One write transaction; on SQLite it holds the write lock from its start."""
        try:
            with Session(self._write_engine, expire_on_commit=False) as session, session.begin():
                yield session
        except OperationalError as exc:
            raise db.unreachable(self.engine, exc) from exc

    @contextmanager
    def read(self) -> Iterator[Session]:
        try:
            with Session(self.engine, expire_on_commit=False) as session:
                yield session
        except OperationalError as exc:
            raise db.unreachable(self.engine, exc) from exc

    def store_path(self, path: Path) -> tuple[str, str, int]:
        """Put a file or directory in the artifact store: (digest, kind, size in bytes)."""
        if path.is_dir():
            size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
            return self.artifacts.put_dir(path), "dir", size
        return self.artifacts.put_file(path), "file", path.stat().st_size

    @staticmethod
    def record_artifact(session: Session, digest: str, kind: str, size: int) -> None:
        """Remember a stored artifact (once: the digest is its identity)."""
        if session.get(Artifact, digest) is None:
            session.add(Artifact(digest=digest, kind=kind, size=size))

    def insert_ignore(self, session: Session, table: Any, values: dict[str, Any]) -> None:
        """INSERT … ON CONFLICT DO NOTHING on the table's unique ``name``."""
        insert = pg_insert if session.bind is not None and not self.is_sqlite else sqlite_insert
        stmt = insert(table).values(**values).on_conflict_do_nothing(index_elements=["name"])
        session.execute(stmt)

    def lock_subject(self, session: Session, subject_type: SubjectType, name: str) -> Any:
        """Create the subject if new and lock its row so versions are numbered one at a time."""
        table = SUBJECTS[subject_type][0]
        self.insert_ignore(session, table, {"name": name, "created_at": utcnow()})
        return session.scalars(select(table).where(table.name == name).with_for_update()).one()

    def subject(
        self, session: Session, subject_type: SubjectType, name: str, *, lock: bool = False
    ) -> Any:
        table = SUBJECTS[subject_type][0]
        stmt = select(table).where(table.name == name)
        if lock:
            stmt = stmt.with_for_update()
        row = session.scalars(stmt).one_or_none()
        if row is None:
            raise NotFound(f"no {subject_type} named {name!r}", param="name")
        return row

    def dataset(self, session: Session, name: str) -> Dataset:
        row = session.scalars(select(Dataset).where(Dataset.name == name)).one_or_none()
        if row is None:
            raise NotFound(f"no dataset named {name!r}", param="name")
        return row


class Part:
    """One part of the registry (prompts, models, labels, …) over the shared database."""

    def __init__(self, db: Database) -> None:
        self.db = db


PRUNE_BATCH = 10_000  # rows per delete statement of prune_rows


def aware(moment: datetime) -> datetime:
    """``moment`` if it carries a zone; registry times are UTC and a naive one is refused."""
    if moment.tzinfo is None:
        raise InvalidInput("registry times are UTC: give an aware datetime", param="before")
    return moment


def prune_rows(db: Database, table: Any, where: list[Any], batch: int = PRUNE_BATCH) -> int:
    """Delete the rows of ``table`` matching ``where``, oldest id first, ``batch`` rows per
    transaction, so a large backlog never holds one long lock over a table that the gateway
    writes to while it is pruned. Returns the total deleted."""
    if batch < 1:
        raise InvalidInput(f"batch must be at least 1, not {batch}", param="batch")
    total = 0
    while True:
        ids = select(table.id).where(*where).order_by(table.id).limit(batch)
        with db.write() as session:
            chosen = list(session.scalars(ids))
            if chosen:
                session.execute(delete(table).where(table.id.in_(chosen)))
        total += len(chosen)
        if len(chosen) < batch:
            return total
