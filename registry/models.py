"""Models: LLM deployments, LoRA adapters, Hugging Face directories and scikit-learn
estimators as immutable versions of one kind of record.

Flavors and what a version holds:

========  ============================================  ===============================
flavor    spec                                          artifact
========  ============================================  ===============================
upstream  ``model`` (provider/model), ``params``        none
lora      ``base_model`` (path, hub id or registry ref)  adapter directory (PEFT)
hf        optional ``task``                             model directory (config.json)
sklearn   optional ``task``; ``untrusted_types``;       one skops file (never pickle)
          ``reference``, ``target``, ``input_schema``
========  ============================================  ===============================

A ``sklearn`` version registered with a reference dataset (``reference=``) records that
dataset's pinned version (``NAME@VERSION``), the ``target`` column, if any, and the
``input_schema`` derived from both and the estimator (:mod:`registry.input_schema`): the
columns the gateway checks a prediction request against. Without one, the gateway cannot
serve the version.

A skops file names the type of every object it holds, and loading it constructs (calls) those
types. skops itself trusts only numpy and scipy arrays, dtypes and ufuncs, and scikit-learn's
public estimators; the other types a file names are checked here, by exact name, against
:func:`trusted_types` (scikit-learn's own estimator and tree classes, and a few plain builtins)
at registration and again at every load. ``builtins.eval``, ``operator.*``, ``posix.system``,
``numpy.memmap`` and every other name are refused, naming the type.
"""

from __future__ import annotations

import builtins
import functools
import importlib
import tempfile
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from lockgate.registry._core import Database, Part, content_hash
from lockgate.registry._extras import require
from lockgate.registry.artifacts import sha256_file
from lockgate.registry.datasets import Datasets
from lockgate.registry.errors import InvalidInput, NotFound
from lockgate.registry.input_schema import derive_schema
from lockgate.registry.labels import Labels
from lockgate.registry.records import (
    LATEST,
    DatasetVersionInfo,
    ModelVersionInfo,
    Ref,
    SubjectSummary,
    check_name,
)
from lockgate.registry.tables import Label, ModelVersion, RegisteredModel

# The plain builtins and containers a model's attributes may need beyond what skops trusts
# by default: each is harmless whatever it is called with. No other ``builtins.`` name.
TRUSTED_BUILTINS = frozenset(
    {f"builtins.{name}" for name in ("bool", "complex", "dict", "float", "frozenset", "int",
                                     "list", "NoneType", "set", "slice", "str", "tuple")}
    | {"collections.OrderedDict", "collections.defaultdict"}
)  # fmt: skip
# scikit-learn classes that are not estimators but that fitted estimators hold.
SKLEARN_INTERNALS = frozenset(
    {
        "sklearn.tree._tree.Tree",  # every tree and forest
        "sklearn.neighbors._kd_tree.KDTree",
        "sklearn.neighbors._ball_tree.BallTree",
        "sklearn.calibration._CalibratedClassifier",
    }
)
# Roots of the scikit-learn class families trusted with all their (scikit-learn) subclasses.
_SKLEARN_FAMILIES = (
    ("sklearn.base", "BaseEstimator"),
    ("sklearn.metrics._dist_metrics", "DistanceMetric64"),
    ("sklearn.metrics._dist_metrics", "DistanceMetric32"),
    ("sklearn.neural_network._stochastic_optimizers", "BaseOptimizer"),
)


@functools.cache
def trusted_types() -> frozenset[str]:
    """Type names a skops file may hold beyond skops' defaults, exactly (no prefixes).

    Every estimator, distance metric and optimizer class scikit-learn defines (found as
    subclasses of their bases, among the modules ``skops.io`` imports to list scikit-learn's
    estimators), the tree classes of :data:`SKLEARN_INTERNALS`, and :data:`TRUSTED_BUILTINS`.
    Nothing named by a file is imported to decide: a type not found here is refused.
    """
    require("skops.io", feature="scikit-learn models", extra="sklearn")
    names = set(TRUSTED_BUILTINS | SKLEARN_INTERNALS)
    for module, name in _SKLEARN_FAMILIES:
        stack = [getattr(importlib.import_module(module), name)]
        while stack:
            cls = stack.pop()
            if cls.__module__.startswith("sklearn."):
                names.add(f"{cls.__module__}.{cls.__name__}")
            stack.extend(cls.__subclasses__())
    return frozenset(names)


def _skops_types(sio: Any, path: Path, what: str) -> list[str]:
    """The types ``path`` holds beyond skops' defaults, all of them allowlisted (or refused)."""
    try:
        untrusted: list[str] = sio.get_untrusted_types(file=str(path))
    except Exception as exc:  # skops raises a variety of errors on a bad file
        raise InvalidInput(f"{what} is not a readable skops file: {exc}", param="path") from exc
    allowed = trusted_types()
    refused = [t for t in untrusted if t not in allowed]
    if refused:
        raise InvalidInput(
            f"{what} holds types lockgate will not load: {', '.join(refused)}; a scikit-learn "
            "model may hold numpy, scipy and scikit-learn's own classes only (save the fitted "
            "estimator itself with skops.io.dump)",
            param="path",
        )
    return untrusted


# What registration derives into the spec (from the file's bytes, and the reference
# dataset's pinned version and target, which the spec holds too).
CHECK_SPEC_KEYS = frozenset({"untrusted_types", "input_schema"})


@dataclass(frozen=True)
class Flavor:
    artifact: str | None  # None, "file" or "dir"
    required_spec: tuple[str, ...]
    check_artifact: Callable[[Path], dict[str, Any]]


def _no_check(path: Path) -> dict[str, Any]:
    return {}


def _check_hf_dir(path: Path) -> dict[str, Any]:
    if not (path / "config.json").is_file():
        raise InvalidInput(f"{path} is not a model directory: no config.json", param="path")
    return {}


def _check_adapter_dir(path: Path) -> dict[str, Any]:
    if not (path / "adapter_config.json").is_file():
        raise InvalidInput(f"{path} is not a PEFT adapter: no adapter_config.json", param="path")
    return {}


def _check_skops(path: Path) -> dict[str, Any]:
    sio = require("skops.io", feature="scikit-learn models", extra="sklearn")
    if path.suffix != ".skops":
        raise InvalidInput(
            f"{path}: save scikit-learn models with skops (a .skops file), never pickle",
            param="path",
        )
    return {"untrusted_types": sorted(_skops_types(sio, path, str(path)))}


def _schema(
    path: Path, spec: Mapping[str, Any], dataset: DatasetVersionInfo, db: Database
) -> list[dict[str, Any]]:
    """The input schema of the checked skops file at ``path`` from its reference dataset."""
    sio = require("skops.io", feature="scikit-learn models", extra="sklearn")
    estimator = sio.load(path, trusted=list(spec["untrusted_types"]))
    where = f"dataset {dataset.name}@{dataset.version}"
    with tempfile.TemporaryDirectory() as tmp:
        data = Datasets(db).fetch(f"{dataset.name}@{dataset.version}", Path(tmp))
        columns = derive_schema(
            estimator, data, dataset.format, dataset.columns, spec.get("target"), where
        )
    return [c.to_dict() for c in columns]


FLAVORS: dict[str, Flavor] = {
    "upstream": Flavor(None, ("model",), _no_check),
    "lora": Flavor("dir", ("base_model",), _check_adapter_dir),
    "hf": Flavor("dir", (), _check_hf_dir),
    "sklearn": Flavor("file", (), _check_skops),
}


def _info(name: str, row: Any, labels: list[str] | None = None) -> ModelVersionInfo:
    return ModelVersionInfo(
        name,
        row.version,
        row.flavor,
        row.spec,
        row.artifact_digest,
        row.message,
        row.author,
        row.content_hash,
        row.created_at,
        labels or [],
    )


class Models(Part):
    """Models (LLM routes, LoRA adapters, scikit-learn models): immutable versions."""

    def __init__(self, db: Database, labels: Labels) -> None:
        super().__init__(db)
        self.labels = labels

    def register(
        self,
        name: str,
        flavor: str,
        spec: Mapping[str, Any] | None = None,
        *,
        path: Path | None = None,
        message: str = "",
        author: str | None = None,
        reference: str | None = None,
        target: str | None = None,
    ) -> tuple[ModelVersionInfo, bool]:
        """Register a version; identical content returns the existing one and False.

        ``reference`` (``sklearn`` only): a dataset ``NAME[@VERSION]`` whose columns and
        values give the version's input schema; ``target`` names its column of true values,
        never an input. Both, and the schema, are kept in the spec.
        """
        check_name(name, "model name")
        kind = FLAVORS.get(flavor)
        if kind is None:
            raise InvalidInput(
                f"unknown flavor {flavor!r}; use one of {', '.join(FLAVORS)}", param="flavor"
            )
        spec = dict(spec or {})
        derived = sorted(CHECK_SPEC_KEYS.intersection(spec))
        if derived:
            raise InvalidInput(
                f"{derived[0]} is derived at registration, not given in the spec",
                param=derived[0],
            )
        dataset = self._reference(flavor, spec, reference, target)
        missing = [k for k in kind.required_spec if not spec.get(k)]
        if missing:
            raise InvalidInput(
                f"flavor {flavor!r} needs {', '.join(missing)} in its spec", param=missing[0]
            )
        digest: str | None = None
        stored_kind, size = "file", 0
        if kind.artifact is None and path is not None:
            raise InvalidInput(f"flavor {flavor!r} takes no artifact", param="path")
        if kind.artifact is not None:
            if path is None:
                raise InvalidInput(f"flavor {flavor!r} needs an artifact path", param="path")
            is_dir = kind.artifact == "dir"
            if is_dir != path.is_dir() or not path.exists():
                what = "a directory" if is_dir else "a file"
                raise InvalidInput(f"{path} must be {what} for flavor {flavor!r}", param="path")
            if kind.artifact == "file" and (same := self._same_file(name, flavor, spec, path)):
                return same, False  # checked when registered; not loading the checker again
            spec.update(kind.check_artifact(path))
            if dataset is not None:
                spec["input_schema"] = _schema(path, spec, dataset, self.db)
            digest, stored_kind, size = self.db.store_path(path)
        chash = content_hash({"flavor": flavor, "spec": spec, "artifact": digest})
        author = author or self.db.actor
        with self.db.write() as session:
            model = self.db.lock_subject(session, "model", name)
            existing = self.labels.find_version(session, "model", model.id, chash)
            if existing is not None:
                return _info(name, existing), False
            if digest is not None:
                self.db.record_artifact(session, digest, stored_kind, size)
            row = self.labels.add_version(
                session, "model", model.id, name, author, model_id=model.id, flavor=flavor,
                spec=spec, artifact_digest=digest, message=message, content_hash=chash,
            )  # fmt: skip
            return _info(name, row), True

    def _reference(
        self, flavor: str, spec: dict[str, Any], reference: str | None, target: str | None
    ) -> DatasetVersionInfo | None:
        """The reference dataset's version, pinned into ``spec`` (with ``target``)."""
        if reference is None:
            if target is not None:
                raise InvalidInput("a target column needs a reference dataset", param="target")
            return None
        if flavor != "sklearn":
            raise InvalidInput(
                f"a reference dataset describes a scikit-learn model's inputs; flavor "
                f"{flavor!r} takes none",
                param="reference",
            )
        dataset = Datasets(self.db).get(reference)
        spec["reference"] = f"{dataset.name}@{dataset.version}"
        if target is not None:
            spec["target"] = target
        return dataset

    def _same_file(
        self, name: str, flavor: str, spec: Mapping[str, Any], path: Path
    ) -> ModelVersionInfo | None:
        """The version of ``name`` with this flavor, this file (by sha256) and this spec, if
        one exists: what :meth:`register` would find, known without checking the file again.

        The check of a file depends on its bytes only and ran when that version was
        registered, so answering "unchanged" need not load the checker (``skops.io`` imports
        scikit-learn and more: seconds). Keys the check writes into the spec
        (:data:`CHECK_SPEC_KEYS`) are left out of the comparison. A new file is checked.
        """
        digest = sha256_file(path)
        given = {k: v for k, v in spec.items() if k not in CHECK_SPEC_KEYS}
        with self.db.read() as session:
            rows = session.scalars(
                select(ModelVersion)
                .join(RegisteredModel, ModelVersion.model_id == RegisteredModel.id)
                .where(RegisteredModel.name == name, ModelVersion.flavor == flavor,
                       ModelVersion.artifact_digest == digest)
                .order_by(ModelVersion.version)
            ).all()  # fmt: skip
        for row in rows:
            if {k: v for k, v in row.spec.items() if k not in CHECK_SPEC_KEYS} == given:
                return _info(name, row)
        return None

    def register_sklearn(
        self,
        name: str,
        estimator: Any,
        *,
        spec: Mapping[str, Any] | None = None,
        message: str = "",
        author: str | None = None,
        reference: str | None = None,
        target: str | None = None,
    ) -> tuple[ModelVersionInfo, bool]:
        """Save a fitted estimator with skops and register it (``reference`` and ``target``
        as for :meth:`register`: what the gateway needs to serve it)."""
        sio = require("skops.io", feature="scikit-learn models", extra="sklearn")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.skops"
            sio.dump(estimator, path)
            return self.register(
                name, "sklearn", spec, path=path, message=message, author=author,
                reference=reference, target=target,
            )  # fmt: skip

    def get(self, ref: str | Ref) -> ModelVersionInfo:
        ref = Ref.parse(ref) if isinstance(ref, str) else ref
        with self.db.read() as session:
            model = self.db.subject(session, "model", ref.name)
            labels = self.labels.on(session, "model", model.id)
            version = ref.version
            if version is None:
                label = ref.label or LATEST
                if label not in labels:
                    raise NotFound(
                        f"model {ref.name!r} has no label {label!r} "
                        f"(labels: {', '.join(sorted(labels))})",
                        param="label",
                    )
                version = labels[label]
            row = session.scalars(
                select(ModelVersion).where(
                    ModelVersion.model_id == model.id, ModelVersion.version == version
                )
            ).one_or_none()
            if row is None:
                raise NotFound(f"model {ref.name!r} has no version {version}", param="version")
            on_version = sorted(k for k, v in labels.items() if v == version)
            return _info(ref.name, row, on_version)

    def load_sklearn(self, ref: str | Ref) -> Any:
        """Fetch (hash-verified) and load a scikit-learn version with skops.

        The file's types are checked against the allowlist again, from the file itself: the
        version's recorded ``untrusted_types`` is not what decides.
        """
        version = self.get(ref)
        if version.flavor != "sklearn" or version.artifact_digest is None:
            raise InvalidInput(f"{ref} is a {version.flavor!r} model, not 'sklearn'")
        sio = require("skops.io", feature="scikit-learn models", extra="sklearn")
        with tempfile.TemporaryDirectory() as tmp:
            path = self.db.artifacts.fetch_file(version.artifact_digest, Path(tmp) / "model.skops")
            what = f"model {version.name}@{version.version} ({version.artifact_digest})"
            return sio.load(path, trusted=_skops_types(sio, path, what))

    def fetch(self, ref: str | Ref, dest: Path) -> Path:
        """Materialise an ``hf`` or ``lora`` version's directory (hash-verified)."""
        version = self.get(ref)
        if version.artifact_digest is None or FLAVORS[version.flavor].artifact != "dir":
            raise InvalidInput(f"{ref} is a {version.flavor!r} model without a directory")
        return self.db.artifacts.fetch_dir(version.artifact_digest, dest)

    def list(self) -> builtins.list[SubjectSummary]:
        return self.labels.summaries("model")

    def served(
        self, flavors: Collection[str], *, need_schema: Collection[str] = ()
    ) -> builtins.list[tuple[str, str, datetime]]:
        """(model, label, the model's creation time) for every label whose version has one of
        ``flavors``, by model and label: what a server of those flavors can answer for. A
        version of a flavor in ``need_schema`` counts only with an ``input_schema``."""
        with self.db.read() as session:
            rows = session.execute(
                select(RegisteredModel.name, Label.name, RegisteredModel.created_at,
                       ModelVersion.flavor, ModelVersion.spec)
                .join(Label, (Label.subject_id == RegisteredModel.id)
                      & (Label.subject_type == "model"))
                .join(ModelVersion, (ModelVersion.model_id == RegisteredModel.id)
                      & (ModelVersion.version == Label.version))
                .where(ModelVersion.flavor.in_(list(flavors)))
                .order_by(RegisteredModel.name, Label.name)
            ).all()  # fmt: skip
        return [
            (name, label, created)
            for name, label, created, flavor, spec in rows
            if flavor not in need_schema or spec.get("input_schema")
        ]

    def versions(self, name: str) -> builtins.list[ModelVersionInfo]:
        return [
            _info(name, r, labels) for r, labels in self.labels.versions_with_labels("model", name)
        ]
