"""Uploaded files (the OpenAI files API): bytes in the artifact store, a row per upload.

A file a user uploads stays data: it is stored by its digest and only ever read back.
"""

from __future__ import annotations

import builtins
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import select

from lockgate.registry._core import Part
from lockgate.registry.errors import InvalidInput, NotFound
from lockgate.registry.records import _Record
from lockgate.registry.tables import StoredFile, utcnow

FILE_PURPOSES = frozenset({"fine-tune", "evals", "batch", "user_data"})


@dataclass(frozen=True)
class FileInfo(_Record):
    id: str
    purpose: str
    filename: str
    bytes: int
    digest: str
    created_at: datetime


class Files(Part):
    def create(self, path: Path, *, purpose: str, filename: str | None = None) -> FileInfo:
        if purpose not in FILE_PURPOSES:
            raise InvalidInput(
                f"unknown purpose {purpose!r}; use one of {', '.join(sorted(FILE_PURPOSES))}",
                param="purpose",
            )
        digest = self.db.artifacts.put_file(path)
        row = StoredFile(
            id="file-" + uuid.uuid4().hex[:24], purpose=purpose, filename=filename or path.name,
            bytes=path.stat().st_size, digest=digest, created_by=self.db.actor, created_at=utcnow(),
        )  # fmt: skip
        with self.db.write() as session:
            session.add(row)
        return FileInfo(row.id, row.purpose, row.filename, row.bytes, row.digest, row.created_at)

    def get(self, file_id: str) -> FileInfo:
        with self.db.read() as session:
            row = session.get(StoredFile, file_id)
            if row is None:
                raise NotFound(f"no file with id {file_id!r}", param="file_id")
            return FileInfo(
                row.id, row.purpose, row.filename, row.bytes, row.digest, row.created_at
            )

    def list(self, purpose: str | None = None) -> builtins.list[FileInfo]:
        with self.db.read() as session:
            stmt = select(StoredFile).order_by(StoredFile.created_at.desc())
            if purpose is not None:
                stmt = stmt.where(StoredFile.purpose == purpose)
            return [
                FileInfo(r.id, r.purpose, r.filename, r.bytes, r.digest, r.created_at)
                for r in session.scalars(stmt)
            ]

    def fetch(self, file_id: str, dest: Path) -> Path:
        """Materialise an uploaded file (hash-verified)."""
        info = self.get(file_id)
        return self.db.artifacts.fetch_file(info.digest, dest)
