"""Datasets: a JSONL, CSV or Parquet file (or a folder of them) versioned by content hash.

The registry keeps the pointer (name, version, digest, row count, columns); the artifact
store keeps the bytes. Files are checked row by row before anything is stored, and a
malformed row is reported with its line number.
"""

from __future__ import annotations

import builtins
import csv
import json
from pathlib import Path

from sqlalchemy import func, select

from lockgate.registry._core import Part
from lockgate.registry._extras import require
from lockgate.registry.errors import DatasetFormatError, InvalidInput, NotFound
from lockgate.registry.records import LATEST, DatasetVersionInfo, Ref, check_name
from lockgate.registry.tables import Artifact, Dataset, DatasetVersion

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}


def _scan_jsonl(path: Path) -> tuple[int, list[str]]:
    rows, columns = 0, dict[str, None]()
    with path.open("r", encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise DatasetFormatError(str(path), lineno, f"not valid JSON: {exc}") from exc
            if not isinstance(row, dict):
                raise DatasetFormatError(str(path), lineno, "each line must be a JSON object")
            columns.update(dict.fromkeys(row))
            rows += 1
    return rows, list(columns)


def _scan_csv(path: Path) -> tuple[int, list[str]]:
    with path.open("r", encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        try:
            header = next(reader)
        except StopIteration:
            raise DatasetFormatError(str(path), 1, "empty CSV file: no header row") from None
        except csv.Error as exc:
            raise DatasetFormatError(str(path), 1, f"unreadable CSV: {exc}") from exc
        rows = 0
        try:
            for record in reader:
                if not record:
                    continue
                if len(record) != len(header):
                    raise DatasetFormatError(
                        str(path),
                        reader.line_num,
                        f"{len(record)} fields, the header has {len(header)}",
                    )
                rows += 1
        except csv.Error as exc:
            raise DatasetFormatError(str(path), reader.line_num, f"unreadable CSV: {exc}") from exc
    return rows, header


def _scan_parquet(path: Path) -> tuple[int, list[str]]:
    pq = require("pyarrow.parquet", feature="Parquet datasets", extra="datasets")
    try:
        meta = pq.read_metadata(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid and OSError variants
        raise DatasetFormatError(str(path), None, f"not a Parquet file: {exc}") from exc
    return int(meta.num_rows), list(meta.schema.to_arrow_schema().names)


SCANNERS = {"jsonl": _scan_jsonl, "csv": _scan_csv, "parquet": _scan_parquet}


def scan_dataset(path: Path, fmt: str | None = None) -> tuple[str, int, list[str]]:
    """Validate a data file or folder; returns (format, rows, columns)."""
    if not path.exists():
        raise InvalidInput(f"no such file or folder: {path}", param="path")
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    files = [p for p in files if not p.name.startswith(".")]
    if not files:
        raise InvalidInput(f"{path} holds no data files", param="path")
    formats = {fmt or FORMATS.get(p.suffix.lower()) for p in files}
    if None in formats or len(formats) != 1:
        raise InvalidInput(
            f"{path}: data files must all be one of .jsonl, .csv or .parquet "
            f"(found: {', '.join(sorted({p.suffix or p.name for p in files}))})",
            param="path",
        )
    kind = formats.pop()
    assert kind is not None
    if kind not in SCANNERS:
        raise InvalidInput(f"unknown dataset format {kind!r}", param="format")
    total, columns = 0, dict[str, None]()
    for file in files:
        rows, cols = SCANNERS[kind](file)
        total += rows
        columns.update(dict.fromkeys(cols))
    return kind, total, list(columns)


class Datasets(Part):
    def add(
        self, name: str, path: Path, *, format: str | None = None, author: str | None = None
    ) -> tuple[DatasetVersionInfo, bool]:
        """Register ``path`` as a version of ``name``; identical bytes return the existing one."""
        check_name(name, "dataset name")
        fmt, rows, columns = scan_dataset(path, format)
        digest, kind, size = self.db.store_path(path)
        author = author or self.db.actor
        with self.db.write() as session:
            self.db.insert_ignore(session, Dataset, {"name": name})
            dataset = session.scalars(
                select(Dataset).where(Dataset.name == name).with_for_update()
            ).one()
            existing = session.scalars(
                select(DatasetVersion).where(
                    DatasetVersion.dataset_id == dataset.id, DatasetVersion.digest == digest
                )
            ).one_or_none()
            if existing is not None:
                return _info(name, existing), False
            self.db.record_artifact(session, digest, kind, size)
            latest = session.scalar(
                select(func.max(DatasetVersion.version)).where(
                    DatasetVersion.dataset_id == dataset.id
                )
            )
            row = DatasetVersion(
                dataset_id=dataset.id,
                version=(latest or 0) + 1,
                digest=digest,
                format=fmt,
                num_rows=rows,
                columns=columns,
                source=str(path),
                author=author,
            )
            session.add(row)
            session.flush()
            return _info(name, row), True

    def get(self, ref: str | Ref) -> DatasetVersionInfo:
        """A dataset version by reference: ``NAME`` (the latest), ``NAME@VERSION`` or
        ``NAME@latest``. Datasets have no other labels."""
        parsed = Ref.parse(ref) if isinstance(ref, str) else ref
        if parsed.label not in (None, LATEST):
            raise InvalidInput(
                f"datasets are named by version, not by label: {str(ref)!r}; use "
                f"{parsed.name}@VERSION or {parsed.name}",
                param="dataset",
            )
        name, version = parsed.name, parsed.version
        with self.db.read() as session:
            dataset = self.db.dataset(session, name)
            stmt = select(DatasetVersion).where(DatasetVersion.dataset_id == dataset.id)
            stmt = (
                stmt.where(DatasetVersion.version == version)
                if version is not None
                else stmt.order_by(DatasetVersion.version.desc()).limit(1)
            )
            row = session.scalars(stmt).first()
            if row is None:
                raise NotFound(f"dataset {name!r} has no version {version}", param="version")
            return _info(name, row)

    def fetch(self, ref: str | Ref, dest: Path) -> Path:
        """Materialise a version's bytes under ``dest`` (hash-verified); returns the path
        of the file, or ``dest`` itself for a folder."""
        info = self.get(ref)
        with self.db.read() as session:
            artifact = session.get(Artifact, info.digest)
            is_dir = artifact is not None and artifact.kind == "dir"
        if is_dir:
            return self.db.artifacts.fetch_dir(info.digest, dest)
        return self.db.artifacts.fetch_file(info.digest, dest / Path(info.source).name)

    def versions(self, name: str) -> builtins.list[DatasetVersionInfo]:
        """Every version of dataset ``name``, oldest first."""
        with self.db.read() as session:
            dataset = self.db.dataset(session, name)
            rows = session.scalars(
                select(DatasetVersion)
                .where(DatasetVersion.dataset_id == dataset.id)
                .order_by(DatasetVersion.version)
            )
            return [_info(name, row) for row in rows]

    def artifact_kind(self, ref: str | Ref) -> tuple[DatasetVersionInfo, str]:
        """A version and how its bytes are stored: ``file`` or ``dir`` (a folder dataset)."""
        info = self.get(ref)
        with self.db.read() as session:
            artifact = session.get(Artifact, info.digest)
        return info, "dir" if artifact is not None and artifact.kind == "dir" else "file"

    def list(self) -> builtins.list[DatasetVersionInfo]:
        """The latest version of every dataset."""
        with self.db.read() as session:
            latest = (
                select(DatasetVersion.dataset_id, func.max(DatasetVersion.version).label("v"))
                .group_by(DatasetVersion.dataset_id)
                .subquery()
            )
            rows = session.execute(
                select(Dataset.name, DatasetVersion)
                .join(DatasetVersion, DatasetVersion.dataset_id == Dataset.id)
                .join(
                    latest,
                    (latest.c.dataset_id == DatasetVersion.dataset_id)
                    & (latest.c.v == DatasetVersion.version),
                )
                .order_by(Dataset.name)
            )
            return [_info(name, row) for name, row in rows]


def _info(name: str, row: DatasetVersion) -> DatasetVersionInfo:
    return DatasetVersionInfo(
        name,
        row.version,
        row.digest,
        row.format,
        row.num_rows,
        list(row.columns),
        row.source,
        row.author,
        row.created_at,
    )
