"""``/api/v1/datasets``: versioned data files, their metadata and their bytes.

Datasets have versions, not labels: ``3``, ``v3`` or ``latest``. A version's ``source`` is
shown as its file name only (the registry keeps the path it was added from, which is the
operator's machine's business). Its bytes come from the artifact store, hash-verified,
streamed as an attachment with their sha256 in ``X-Content-SHA256``.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

from fastapi import APIRouter
from starlette.responses import Response

from lockgate.gateway.api.deps import StateDep
from lockgate.gateway.api.rest._download import stream_blob
from lockgate.gateway.api.rest.common import READ, Cursor, Limit, jsonable, page
from lockgate.gateway.api.rest.models import lineage_of
from lockgate.registry.errors import InvalidInput
from lockgate.registry.records import DatasetVersionInfo, Ref, check_name

router = APIRouter(tags=["datasets"], dependencies=[READ])


def dataset_object(info: DatasetVersionInfo) -> dict[str, Any]:
    return {
        "name": info.name, "version": info.version, "digest": info.digest,
        "format": info.format, "num_rows": info.num_rows, "columns": list(info.columns),
        "filename": PurePath(info.source.replace("\\", "/")).name,
        "author": info.author, "created_at": jsonable(info.created_at),
    }  # fmt: skip


def _ref(name: str, version: str) -> Ref:
    return Ref.parse(f"{check_name(name)}@{version}")


@router.get(
    "/datasets",
    summary="List datasets",
    response_description="A page of datasets: the latest version of each.",
)
def list_datasets(state: StateDep, limit: Limit = 50, cursor: Cursor = None) -> dict[str, Any]:
    return page(state.registry.datasets.list(), limit, cursor, dataset_object)


@router.get(
    "/datasets/{name:path}/versions/{version}/content",
    summary="Download a dataset version",
    response_description="The version's bytes (application/octet-stream), hash-verified.",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def download_dataset(state: StateDep, name: str, version: str) -> Response:
    """The file of one version, streamed, with its sha256 in ``X-Content-SHA256``. A folder
    dataset is a 400 (fetch it with ``lockgate``'s Python API)."""
    registry = state.registry
    info, kind = registry.datasets.artifact_kind(_ref(name, version))
    if kind == "dir":
        raise InvalidInput(
            f"dataset {info.name}@{info.version} is a folder; fetch it with "
            "Registry.datasets.fetch",
            param="version",
        )
    filename = PurePath(info.source.replace("\\", "/")).name or f"{info.name}.{info.format}"
    return stream_blob(registry.artifacts, info.digest, filename)


@router.get(
    "/datasets/{name:path}/versions/{version}",
    summary="Get a dataset version",
    response_description="The version's metadata and the runs that read it.",
)
def get_dataset_version(state: StateDep, name: str, version: str) -> dict[str, Any]:
    """One version (``3``, ``v3`` or ``latest``): format, rows, columns, digest, and
    ``lineage.used_by``, the runs that read it."""
    registry = state.registry
    info = registry.datasets.get(_ref(name, version))
    return {
        **dataset_object(info),
        "lineage": lineage_of(registry, "dataset", f"{info.name}@{info.version}"),
    }


@router.get(
    "/datasets/{name:path}/versions",
    summary="List a dataset's versions",
    response_description="A page of versions, oldest first.",
)
def list_dataset_versions(
    state: StateDep, name: str, limit: Limit = 50, cursor: Cursor = None
) -> dict[str, Any]:
    return page(state.registry.datasets.versions(check_name(name)), limit, cursor, dataset_object)
