"""``/api/v1/models``: registered models (LLM routes, LoRA adapters, Hugging Face and
scikit-learn models) and their immutable versions, with labels and lineage.

A model's name may hold ``/`` (``org/bot``): it is the path up to ``/versions``. A version is
named as the registry names one: a number (``3``, ``v3``) or a label (``production``).
Moving labels is :mod:`gateway.api.rest.labels`'s; here labels are read.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from lockgate.gateway.api.deps import StateDep
from lockgate.gateway.api.rest.common import READ, Cursor, Limit, jsonable, page
from lockgate.gateway.api.rest.runs import LINKED_LIMIT, run_summary
from lockgate.registry.errors import NotFound
from lockgate.registry.records import ModelVersionInfo, Ref, SubjectSummary, check_name
from lockgate.registry.registry import Registry

router = APIRouter(tags=["models"], dependencies=[READ])


def summary_object(summary: SubjectSummary) -> dict[str, Any]:
    return {
        "name": summary.name,
        "latest_version": summary.latest_version,
        "labels": dict(sorted(summary.labels.items())),
        "created_at": jsonable(summary.created_at),
    }


def version_object(version: ModelVersionInfo) -> dict[str, Any]:
    return {
        "name": version.name, "version": version.version, "flavor": version.flavor,
        "spec": jsonable(version.spec), "artifact_digest": version.artifact_digest,
        "message": version.message, "author": version.author,
        "content_hash": version.content_hash, "created_at": jsonable(version.created_at),
        "labels": list(version.labels),
    }  # fmt: skip


def lineage_of(registry: Registry, subject_type: str, ref: str) -> dict[str, Any]:
    """The runs linked to a version: ``produced_by`` (it is their output, a fine-tuning
    run) and ``used_by`` (they read it: evals, drift checks, training on it), newest first."""
    linked = registry.runs.linked(subject_type, ref, limit=LINKED_LIMIT)
    return {
        "produced_by": [run_summary(r) for r, role in linked if role == "output"],
        "used_by": [run_summary(r) for r, role in linked if role == "input"],
    }


def _model(registry: Registry, name: str) -> SubjectSummary:
    check_name(name)
    for summary in registry.models.list():
        if summary.name == name:
            return summary
    raise NotFound(f"no model named {name!r}", param="name")


@router.get("/models", summary="List models", response_description="A page of models.")
def list_models(state: StateDep, limit: Limit = 50, cursor: Cursor = None) -> dict[str, Any]:
    """Every registered model by name: its latest version and its labels."""
    return page(state.registry.models.list(), limit, cursor, summary_object)


@router.get(
    "/models/{name:path}/versions/{version}",
    summary="Get a model version",
    response_description="The version (by number or label) with its labels and lineage.",
)
def get_model_version(state: StateDep, name: str, version: str) -> dict[str, Any]:
    """One version: ``3``, ``v3`` or a label (``production``, ``latest``); with the runs that
    produced it and those that used it."""
    registry = state.registry
    info = registry.models.get(Ref.parse(f"{check_name(name)}@{version}"))
    return {
        **version_object(info),
        "lineage": lineage_of(registry, "model", f"{info.name}@{info.version}"),
    }


@router.get(
    "/models/{name:path}/versions",
    summary="List a model's versions",
    response_description="A page of versions, oldest first.",
)
def list_model_versions(
    state: StateDep, name: str, limit: Limit = 50, cursor: Cursor = None
) -> dict[str, Any]:
    versions = state.registry.models.versions(check_name(name))
    return page(versions, limit, cursor, version_object)


@router.get(
    "/models/{name:path}",
    summary="Get a model",
    response_description="The model: latest version, labels, and its latest version's flavor.",
)
def get_model(state: StateDep, name: str) -> dict[str, Any]:
    registry = state.registry
    summary = _model(registry, name)
    latest = registry.models.get(Ref(summary.name, version=summary.latest_version))
    return {**summary_object(summary), "flavor": latest.flavor}
