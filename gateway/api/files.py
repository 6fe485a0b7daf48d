"""``/v1/files``: uploads (the OpenAI Files API) kept in the registry's artifact store.

An upload is authenticated from its headers before a byte of its body is read, and is
capped at ``gateway.requests.max_upload_bytes``: a larger declared ``Content-Length`` is a 413
at once, and a body that passes the cap while streaming (chunked) is a 413 as soon as it
does. The multipart body is parsed as it arrives, the file part spooled to disk.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import IO, Any

import anyio.to_thread
from fastapi import APIRouter
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from lockgate.gateway.api.deps import READ, WRITE, StateDep, check_declared_length, too_large
from lockgate.gateway.errors import InvalidRequest
from lockgate.registry.files import FILE_PURPOSES, FileInfo
from lockgate.registry.registry import Registry

router = APIRouter(tags=["files"])
CAP_SETTING = "max_upload_bytes"
_UPLOAD_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file", "purpose"],
                "properties": {
                    "file": {
                        "type": "string",
                        "format": "binary",
                        "description": "The file to upload (at most "
                        "gateway.requests.max_upload_bytes).",
                    },
                    "purpose": {"type": "string", "enum": sorted(FILE_PURPOSES)},
                },
            }
        }
    },
}


def file_object(info: FileInfo) -> dict[str, Any]:
    return {
        "id": info.id, "object": "file", "bytes": info.bytes,
        "created_at": int(info.created_at.timestamp()), "filename": info.filename,
        "purpose": info.purpose, "status": "processed", "status_details": None,
    }  # fmt: skip


async def _capped(request: Request, limit: int) -> AsyncGenerator[bytes, None]:
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit, CAP_SETTING)
        yield chunk


def _store(registry: Registry, data: IO[bytes], purpose: str, filename: str) -> FileInfo:
    with tempfile.TemporaryDirectory(prefix="lockgate-upload-") as tmp:
        path = Path(tmp) / "upload"
        with path.open("wb") as out:
            shutil.copyfileobj(data, out)
        return registry.files.create(path, purpose=purpose, filename=filename)


@router.post("/v1/files", dependencies=[WRITE], openapi_extra={"requestBody": _UPLOAD_BODY})
async def create_file(request: Request, state: StateDep) -> dict[str, Any]:
    """Upload a file (multipart/form-data: ``file`` and ``purpose``)."""
    kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if kind != "multipart/form-data":
        raise InvalidRequest(
            "POST /v1/files takes multipart/form-data with a file part and a purpose field",
            param="file",
        )
    limit = state.settings.gateway.requests.max_upload_bytes
    check_declared_length(request, limit, CAP_SETTING)
    parser = MultiPartParser(request.headers, _capped(request, limit), max_files=1, max_fields=8)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise InvalidRequest(
            f"the upload is not valid multipart/form-data: {exc.message}"
        ) from None
    except ClientDisconnect:
        raise InvalidRequest("the client went away before the upload was complete") from None
    try:
        upload, purpose = form.get("file"), form.get("purpose")
        if not isinstance(upload, UploadFile):
            raise InvalidRequest("the upload has no file part named 'file'", param="file")
        if not isinstance(purpose, str):
            raise InvalidRequest(
                f"the upload needs a purpose field: one of {', '.join(sorted(FILE_PURPOSES))}",
                param="purpose",
            )
        name = Path(upload.filename or "upload").name or "upload"
        info = await anyio.to_thread.run_sync(_store, state.registry, upload.file, purpose, name)
    finally:
        await form.close()
    return file_object(info)


@router.get("/v1/files", dependencies=[READ])
def list_files(state: StateDep, purpose: str | None = None) -> dict[str, Any]:
    files = state.registry.files.list(purpose)
    return {"object": "list", "data": [file_object(f) for f in files], "has_more": False}


@router.get("/v1/files/{file_id}", dependencies=[READ])
def get_file(state: StateDep, file_id: str) -> dict[str, Any]:
    return file_object(state.registry.files.get(file_id))


@router.get("/v1/files/{file_id}/content", dependencies=[READ])
def get_file_content(state: StateDep, file_id: str) -> Response:
    info = state.registry.files.get(file_id)
    data = state.registry.artifacts.read_bytes(info.digest)  # hash-verified
    return Response(data, media_type="application/octet-stream")
