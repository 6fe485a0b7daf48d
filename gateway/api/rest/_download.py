"""Serving stored bytes over HTTP: hash-verified, streamed from disk, never as a page.

The artifact store checks a blob's sha256 while copying it to a temporary file
(:meth:`~lockgate.registry.artifacts.ArtifactStore.fetch_file`); only then is the file sent,
in chunks, and the temporary folder removed after the answer. Whatever the bytes are, they
go out as ``application/octet-stream`` with ``nosniff`` and as an attachment, so a stored HTML
or SVG file never runs as a page of the gateway's origin.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from starlette.background import BackgroundTask
from starlette.responses import FileResponse

from lockgate.registry.artifacts import ArtifactStore

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def download_name(name: str, fallback: str = "download") -> str:
    """A file name for Content-Disposition: the last part of ``name``, plain characters."""
    last = name.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = _UNSAFE.sub("_", last).strip("._")[:120]
    return cleaned or fallback


def sha256_headers(digest: str) -> dict[str, str]:
    return {
        "X-Content-SHA256": digest.removeprefix("sha256:"),
        "ETag": f'"{digest}"',
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "private, max-age=0",
    }


def stream_blob(store: ArtifactStore, digest: str, filename: str) -> FileResponse:
    """The blob ``digest`` as a download named ``filename``; raises the store's
    ``NotFound``/``ArtifactCorrupted`` before anything is sent."""
    folder = tempfile.mkdtemp(prefix="lockgate-download-")
    try:
        path = store.fetch_file(digest, Path(folder) / "blob")
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return FileResponse(
        path,
        media_type="application/octet-stream",
        filename=download_name(filename),
        headers=sha256_headers(digest),
        background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True),
    )
