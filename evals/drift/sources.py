"""Where a drift check's data comes from: the ``REF``/``CUR`` strings, resolved.

================================  =========================================================
source                            what it reads
================================  =========================================================
``dataset:NAME@VERSION``          a registry dataset version (``NAME`` alone: the latest);
``NAME@VERSION``                  the same, without the prefix
``model:NAME@LABEL|VERSION[:W]``  the inputs the gateway logged for that version's
                                  ``:predict`` calls over the window ``W`` (default ``24h``;
                                  ``7d``, ``90m``, or an ISO 8601 start time); ``model:NAME``
                                  takes every version's. At most
                                  :data:`registry.predictions.MAX_PAGE` rows, the newest.
``model:NAME@LABEL|VERSION#reference``  the reference dataset recorded when that version
                                  was registered (``model register --reference``), without
                                  its ``--target`` column: the model's inputs
``PATH``, ``file:PATH``           a ``.jsonl``/``.ndjson``, ``.csv`` or ``.parquet`` file or a
                                  folder of them: **the CLI only** (``files=True``)
================================  =========================================================

A bare string is a path when it names an existing file or folder or ends in a data suffix
and files are allowed, a registry dataset otherwise. Where files are not allowed (the Python
API as services call it), anything that looks like a path (``file:``, a leading ``/``, ``.``
or ``~``, a ``..`` or ``\\`` anywhere, a data suffix) is refused as such, never opened.

Every source knows the content digest of what it reads when that is known without reading
it (a dataset version's digest, a file's sha256): :mod:`evals.drift.runs` keys stored
reference profiles by it. A model's logged inputs change with time: their digest is the
profile's, known once read.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from lockgate.evals.drift.errors import DriftError, DriftInputInvalid
from lockgate.registry._extras import require
from lockgate.registry.artifacts import dir_manifest, manifest_bytes, sha256_file
from lockgate.registry.datasets import FORMATS
from lockgate.registry.errors import DatasetFormatError, InvalidInput, NotFound
from lockgate.registry.records import LineageEdge, Ref

if TYPE_CHECKING:
    from lockgate.registry.registry import Registry

SourceKind = Literal["dataset", "file", "predictions"]
DEFAULT_WINDOW = "24h"
_PATH_STARTS = ("/", ".", "~")


class DriftSourceInvalid(DriftInputInvalid):
    """A ``REF``/``CUR`` string that does not name a source (exit 2); names the string."""

    code = "drift_source_invalid"

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"drift source {source!r}: {reason}", param="source")
        self.source = source


class DriftSourceNotFound(DriftError, NotFound):
    """A well-formed source naming nothing: no such dataset, model, version or file."""

    code = "drift_source_not_found"

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"drift source {source!r}: {reason}", param="source")
        self.source = source


@dataclass(frozen=True)
class Source:
    """A resolved source: what it is, how to read it, and what it is known to be."""

    given: str  # the string as the user wrote it
    canonical: str  # dataset:NAME@VERSION, file:PATH, model:NAME@VERSION:WINDOW
    kind: SourceKind
    digest: str | None  # content digest known before reading; None for logged inputs
    loader: Callable[[], Any] = field(repr=False)
    lineage: tuple[LineageEdge, ...] = ()
    subject: str = ""  # "model:NAME@VERSION" when the data is a model version's

    def load(self) -> Any:
        """The rows: a pyarrow Table (files, datasets) or a pandas DataFrame (logged inputs)."""
        return self.loader()


def resolve_source(
    registry: Registry, text: str, *, files: bool = False, now: datetime | None = None
) -> Source:
    """The source ``text`` names (see the module docstring); checks that it exists, reads
    nothing yet. ``files``: whether paths may be read (the CLI's own user only)."""
    given = text
    text = text.strip()
    if not text:
        raise DriftSourceInvalid(given, "empty; name a dataset, a model or a file")
    if text.startswith("dataset:"):
        return _dataset(registry, given, text.removeprefix("dataset:"))
    if text.startswith("model:"):
        return _model(registry, given, text.removeprefix("model:"), now or datetime.now(UTC))
    if text.startswith("file:"):
        if not files:
            raise _no_files(given)
        return _file(given, text.removeprefix("file:"))
    if files and (Path(text).expanduser().exists() or _has_data_suffix(text)):
        return _file(given, text)
    if not files and _looks_like_path(text):
        raise _no_files(given)
    return _dataset(registry, given, text)


def _no_files(given: str) -> DriftSourceInvalid:
    return DriftSourceInvalid(
        given,
        "looks like a file path; files are read only by the CLI (lockgate drift check): "
        "name a registry dataset (dataset:NAME@VERSION) or a model's inputs (model:NAME@LABEL)",
    )


def _has_data_suffix(text: str) -> bool:
    return Path(text).suffix.lower() in FORMATS


def _looks_like_path(text: str) -> bool:
    return text.startswith(_PATH_STARTS) or ".." in text or "\\" in text or _has_data_suffix(text)


def _parse_ref(given: str, text: str) -> Ref:
    try:
        return Ref.parse(text)
    except InvalidInput as exc:
        raise DriftSourceInvalid(given, exc.message) from None


def _dataset(
    registry: Registry,
    given: str,
    text: str,
    *,
    subject: str = "",
    via: str = "",
    drop: str | None = None,
) -> Source:
    ref = _parse_ref(given, text)
    try:
        info = registry.datasets.get(ref)
    except NotFound as exc:
        raise DriftSourceNotFound(given, f"{exc.message}{via}") from None
    except InvalidInput as exc:
        raise DriftSourceInvalid(given, exc.message) from None
    pinned = f"{info.name}@{info.version}"
    fmt = info.format

    def load() -> Any:
        with tempfile.TemporaryDirectory(prefix="lockgate-drift-") as tmp:
            path = registry.datasets.fetch(pinned, Path(tmp))
            table = read_table(path, fmt)
        if drop is not None and drop in table.column_names:
            table = table.drop_columns([drop])
        return table

    edge = LineageEdge("dataset", pinned, "input")
    return Source(given, f"dataset:{pinned}", "dataset", info.digest, load, (edge,), subject)


def _model(registry: Registry, given: str, body: str, now: datetime) -> Source:
    if "#" in body:
        head, _, fragment = body.partition("#")
        if fragment != "reference":
            raise DriftSourceInvalid(
                given, f"unknown part #{fragment}; model:NAME@LABEL#reference is the only one"
            )
        version = _model_version(registry, given, head)
        reference = version.spec.get("reference")
        where = f"model {version.name}@{version.version}"
        if not reference:
            raise DriftSourceInvalid(
                given,
                f"{where} was registered without a reference dataset "
                "(lockgate model register NAME --flavor sklearn --reference DATASET)",
            )
        return _dataset(
            registry, given, str(reference), subject=f"model:{version.name}@{version.version}",
            via=f" (the reference recorded for {where})", drop=version.spec.get("target"),
        )  # fmt: skip
    head, _, window = body.partition(":")
    window = window or DEFAULT_WINDOW
    ref = _parse_ref(given, head)
    from lockgate.registry.console import parse_moment

    try:
        since = parse_moment(window, "window", now=now, sign=-1, hint="a window like 24h or 7d")
    except InvalidInput as exc:
        raise DriftSourceInvalid(given, exc.message) from None
    if ref.label is None and ref.version is None:
        _model_version(registry, given, ref.name)  # the model exists
        samples_of, subject = ref.name, ""
    else:
        version = _model_version(registry, given, head)
        samples_of = f"{version.name}@{version.version}"
        subject = f"model:{samples_of}"

    def load() -> Any:
        from lockgate.registry.predictions import MAX_PAGE

        samples = registry.predictions.samples(samples_of, since=since, limit=MAX_PAGE)
        if not samples:
            raise DriftSourceInvalid(
                given,
                f"no logged :predict inputs of {samples_of} since {since.isoformat()} "
                "(the gateway samples them: gateway.predict.sample_rate)",
            )
        pd = require("pandas", feature="drift checks of logged inputs", extra="evals")
        return pd.DataFrame.from_records([s.inputs for s in reversed(samples)])

    edge = LineageEdge("model", samples_of, "input")
    canonical = f"model:{samples_of}:{window}"
    return Source(given, canonical, "predictions", None, load, (edge,), subject)


def _model_version(registry: Registry, given: str, text: str) -> Any:
    ref = _parse_ref(given, text)
    try:
        return registry.models.get(ref)
    except NotFound as exc:
        raise DriftSourceNotFound(given, exc.message) from None


def _file(given: str, text: str) -> Source:
    path = Path(text).expanduser()
    if not path.exists():
        raise DriftSourceNotFound(given, f"no such file or folder: {path}")
    files = _data_files(given, path)
    formats = {FORMATS.get(p.suffix.lower()) for p in files}
    if None in formats or len(formats) != 1:
        raise DriftSourceInvalid(
            given, "data files must all be one of .jsonl, .ndjson, .csv or .parquet"
        )
    fmt = formats.pop()
    assert fmt is not None
    if path.is_dir():
        entries, _ = dir_manifest(path)
        digest = "sha256:" + hashlib.sha256(manifest_bytes(entries)).hexdigest()
    else:
        digest = sha256_file(path)
    return Source(given, f"file:{path}", "file", digest, lambda: read_table(path, fmt))


def _data_files(given: str, path: Path) -> list[Path]:
    if not path.is_dir():
        return [path]
    found = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not found:
        raise DriftSourceInvalid(given, f"{path} holds no data files")
    return found


def read_table(path: Path, fmt: str) -> Any:
    """A JSONL, CSV or Parquet file, or a folder of them, as one pyarrow Table."""
    pa = require("pyarrow", feature="reading drift data", extra="datasets")
    readers: dict[str, Callable[[Path], Any]] = {
        "jsonl": lambda p: require("pyarrow.json", feature="JSONL", extra="datasets").read_json(p),
        "csv": lambda p: require("pyarrow.csv", feature="CSV", extra="datasets").read_csv(p),
        "parquet": lambda p: require(
            "pyarrow.parquet", feature="Parquet", extra="datasets"
        ).read_table(p),
    }
    tables = []
    for file in _data_files(str(path), path):
        try:
            tables.append(readers[fmt](file))
        except (pa.ArrowException, OSError, ValueError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DatasetFormatError(str(file), None, f"cannot read it as {fmt}: {reason}") from exc
    if len(tables) == 1:
        return tables[0]
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except pa.ArrowException as exc:
        raise DatasetFormatError(str(path), None, f"its files disagree: {exc}") from exc
