"""Loading a suite's dataset with Hugging Face ``datasets``, and recording its version.

A local file or folder is checked row by row first (a malformed row is reported with its
row number, by :func:`registry.datasets.scan_dataset`), then loaded with ``datasets``; its
version is the sha256 of its bytes, the same digest the registry would give it. A
``registry:NAME[@VERSION]`` dataset is fetched, hash-verified, from the artifact store.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lockgate.evals.errors import ColumnMissing, EvalError
from lockgate.evals.suite import DatasetSpec
from lockgate.registry._extras import require
from lockgate.registry.artifacts import dir_manifest, manifest_bytes, sha256_file
from lockgate.registry.datasets import scan_dataset
from lockgate.registry.errors import DatasetFormatError, InvalidInput

if TYPE_CHECKING:
    from lockgate.registry.registry import Registry

_HF_BUILDERS = {"jsonl": "json", "csv": "csv", "parquet": "parquet"}


@dataclass(frozen=True)
class EvalDataset:
    """The rows of a dataset version, and where they came from."""

    rows: list[dict[str, Any]]
    columns: list[str]
    digest: str  # sha256 of the file (or of the folder's manifest)
    source: str  # the path, or registry:NAME@VERSION
    registry_ref: str | None = None  # NAME@VERSION when it is a registered dataset

    def require_columns(self, columns: Iterable[tuple[str, str]]) -> None:
        """Fail before any model call when a mapping names a missing column.

        ``columns`` holds (column, where-in-the-suite) pairs."""
        for column, where in columns:
            if column not in self.columns:
                raise ColumnMissing(column, where, self.columns)


def _digest(path: Path) -> str:
    if path.is_dir():
        import hashlib

        entries, _ = dir_manifest(path)
        return "sha256:" + hashlib.sha256(manifest_bytes(entries)).hexdigest()
    return sha256_file(path)


def _files(path: Path) -> list[str]:
    if not path.is_dir():
        return [str(path)]
    return [str(p) for p in sorted(path.rglob("*")) if p.is_file() and not p.name.startswith(".")]


def read_rows(path: Path, fmt: str, cache_dir: Path | None = None) -> list[dict[str, Any]]:
    """Load the (already validated) files with ``datasets``; rows as plain dicts."""
    datasets = require("datasets", feature="loading eval datasets", extra="evals")
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    with tempfile.TemporaryDirectory(prefix="lockgate-hf-") as tmp:
        try:
            loaded = datasets.load_dataset(
                _HF_BUILDERS[fmt],
                data_files=_files(path),
                split="train",
                cache_dir=str(cache_dir or tmp),
                keep_in_memory=True,
            )
        except Exception as exc:  # datasets/pyarrow raise many kinds on a bad file
            raise DatasetFormatError(
                str(path), None, f"datasets could not load it: {str(exc).splitlines()[0]}"
            ) from exc
        return [dict(row) for row in loaded]


def load_dataset(
    spec: DatasetSpec, *, base_dir: Path = Path("."), registry: Registry | None = None
) -> EvalDataset:
    """The suite's dataset: validated, loaded and versioned."""
    if spec.is_registry:
        return _load_registered(spec, registry)
    path = Path(spec.source)
    if not path.is_absolute():
        path = base_dir / path
    fmt, _, columns = scan_dataset(path)
    rows = read_rows(path, fmt)
    if spec.limit is not None:
        rows = rows[: spec.limit]
    return EvalDataset(rows, columns, _digest(path), str(path))


def _load_registered(spec: DatasetSpec, registry: Registry | None) -> EvalDataset:
    if registry is None:
        raise EvalError(f"dataset {spec.source} needs a registry", param="dataset")
    try:
        info = registry.datasets.get(spec.source.removeprefix("registry:"))
    except InvalidInput as exc:
        raise EvalError(f"dataset {spec.source}: {exc}", param="dataset") from exc
    with tempfile.TemporaryDirectory(prefix="lockgate-ds-") as tmp:
        suffix = {"jsonl": ".jsonl", "csv": ".csv", "parquet": ".parquet"}.get(info.format, "")
        dest = registry.artifacts.fetch_file(info.digest, Path(tmp) / f"data{suffix}")
        if _is_manifest(dest):  # a folder dataset: the digest names its manifest
            dest = registry.artifacts.fetch_dir(info.digest, Path(tmp) / "data")
        rows = read_rows(dest, info.format)
    if spec.limit is not None:
        rows = rows[: spec.limit]
    ref = f"{info.name}@{info.version}"
    return EvalDataset(rows, list(info.columns), info.digest, f"registry:{ref}", ref)


def _is_manifest(path: Path) -> bool:
    import json

    with path.open("rb") as f:
        if f.read(9) != b'{"files":':
            return False
    try:
        data = json.loads(path.read_bytes())
    except ValueError:
        return False
    return isinstance(data, dict) and set(data) == {"files"}
