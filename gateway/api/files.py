"""``/v1/files``: uploads (the OpenAI Files API) kept in the registry's artifact store."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, UploadFile
from starlette.responses import Response

from gateway.api.deps import READ, WRITE, StateDep
from registry.jobs import FileInfo

router = APIRouter(tags=["files"])


def file_object(info: FileInfo) -> dict[str, Any]:
    return {
        "id": info.id, "object": "file", "bytes": info.bytes,
        "created_at": int(info.created_at.timestamp()), "filename": info.filename,
        "purpose": info.purpose, "status": "processed", "status_details": None,
    }  # fmt: skip


@router.post("/v1/files", dependencies=[WRITE])
def create_file(
    state: StateDep,
    file: Annotated[UploadFile, File(description="The file to upload.")],
    purpose: Annotated[str, Form(description="fine-tune, evals, batch or user_data.")],
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="lockgate-upload-") as tmp:
        path = Path(tmp) / "upload"
        with path.open("wb") as out:
            shutil.copyfileobj(file.file, out)
        name = Path(file.filename or "upload").name
        return file_object(state.registry.create_file(path, purpose=purpose, filename=name))


@router.get("/v1/files", dependencies=[READ])
def list_files(state: StateDep, purpose: str | None = None) -> dict[str, Any]:
    files = state.registry.list_files(purpose)
    return {"object": "list", "data": [file_object(f) for f in files], "has_more": False}


@router.get("/v1/files/{file_id}", dependencies=[READ])
def get_file(state: StateDep, file_id: str) -> dict[str, Any]:
    return file_object(state.registry.get_file(file_id))


@router.get("/v1/files/{file_id}/content", dependencies=[READ])
def get_file_content(state: StateDep, file_id: str) -> Response:
    info = state.registry.get_file(file_id)
    data = state.registry.store.read_bytes(info.digest)  # hash-verified
    return Response(data, media_type="application/octet-stream")
