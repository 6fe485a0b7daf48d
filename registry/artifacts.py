"""Content-addressed artifact store on any fsspec filesystem.

Layout under the root URL::

    blobs/sha256/ab/abcdef…   file bytes, named by their sha256

A directory is stored as its files' blobs plus a manifest blob (canonical JSON listing
each relative path with its digest and size); the directory's digest is the manifest's.
Every read recomputes the sha256 and raises :class:`ArtifactCorrupted` on a mismatch.

Links are not followed out of a stored directory: a symbolic link is stored as the file it
points to only when that file lies inside the directory; a link out of it (to a system file,
another directory, nothing at all) refuses the whole directory before anything is stored.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any, Protocol

import fsspec

from lockgate.registry._extras import require
from lockgate.registry.errors import ArtifactCorrupted, InvalidInput, NotFound

_CHUNK = 1 << 20
_PROTOCOL_EXTRAS = {"s3": "s3", "s3a": "s3"}


class ArtifactStore(Protocol):
    url: str

    def put_bytes(self, data: bytes) -> str: ...
    def put_file(self, path: Path) -> str: ...
    def put_dir(self, path: Path) -> str: ...
    def read_bytes(self, digest: str) -> bytes: ...
    def fetch_file(self, digest: str, dest: Path) -> Path: ...
    def fetch_dir(self, digest: str, dest: Path) -> Path: ...
    def exists(self, digest: str) -> bool: ...


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def _hex(digest: str) -> str:
    algo, _, hexdigest = digest.partition(":")
    if (
        algo != "sha256"
        or len(hexdigest) != 64
        or not all(c in "0123456789abcdef" for c in hexdigest)
    ):
        raise InvalidInput(f"not a sha256 digest: {digest!r}", param="digest")
    return hexdigest


def dir_files(path: Path) -> list[Path]:
    """The regular files under ``path``, sorted; a link must resolve to a file inside it."""
    if not path.is_dir():
        raise InvalidInput(f"not a directory: {path}", param="path")
    root = path.resolve()
    files: list[Path] = []
    for parent, dirs, names in os.walk(path):  # never descends into a linked directory
        here = Path(parent)
        for name in [*dirs, *names]:
            entry = here / name
            if entry.is_symlink():
                target = entry.resolve()
                inside = target.is_relative_to(root)
                if not (inside and target.is_file()):
                    where = "not a file" if inside else f"outside {path}"
                    raise InvalidInput(
                        f"{entry} is a link to {os.readlink(entry)} ({where}): lockgate stores "
                        "a directory's own files and follows no link out of it; copy the "
                        "directory with its links resolved (cp -rL) and store the copy",
                        param="path",
                    )
                files.append(entry)
            elif name in names and entry.is_file():
                files.append(entry)
    return sorted(files)


def dir_manifest(path: Path) -> tuple[list[dict[str, Any]], list[Path]]:
    files = dir_files(path)
    entries = [
        {"path": p.relative_to(path).as_posix(), "digest": sha256_file(p), "size": p.stat().st_size}
        for p in files
    ]
    return entries, files


def manifest_bytes(entries: list[dict[str, Any]]) -> bytes:
    return json.dumps({"files": entries}, sort_keys=True, separators=(",", ":")).encode()


class FsspecArtifactStore:
    """The default :class:`ArtifactStore`: a local directory, ``s3://``, ``gs://``, ``memory://``…"""

    def __init__(self, url: str) -> None:
        protocol = url.split("://", 1)[0] if "://" in url else "file"
        if protocol in _PROTOCOL_EXTRAS:
            require("s3fs", feature=f"the artifact store {url}", extra=_PROTOCOL_EXTRAS[protocol])
        self.url = url
        self._fs, root = fsspec.core.url_to_fs(url)
        self._root = root.rstrip("/")

    def _blob(self, digest: str) -> str:
        hexdigest = _hex(digest)
        return f"{self._root}/blobs/sha256/{hexdigest[:2]}/{hexdigest}"

    def exists(self, digest: str) -> bool:
        return bool(self._fs.exists(self._blob(digest)))

    def _commit(self, digest: str, upload: Any) -> str:
        final = self._blob(digest)
        if self._fs.exists(final):
            return digest
        parent = final.rsplit("/", 1)[0]
        self._fs.makedirs(parent, exist_ok=True)
        tmp = f"{parent}/.tmp-{uuid.uuid4().hex}"
        upload(tmp)
        self._fs.mv(tmp, final)
        return digest

    def put_bytes(self, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        return self._commit(digest, lambda tmp: self._fs.pipe_file(tmp, data))

    def put_file(self, path: Path) -> str:
        if not path.is_file():
            raise InvalidInput(f"no such file: {path}", param="path")
        digest = sha256_file(path)
        return self._commit(digest, lambda tmp: self._fs.put_file(str(path), tmp))

    def put_dir(self, path: Path) -> str:
        entries, files = dir_manifest(path)
        for file in files:
            self.put_file(file)
        return self.put_bytes(manifest_bytes(entries))

    def read_bytes(self, digest: str) -> bytes:
        blob = self._blob(digest)
        try:
            data = bytes(self._fs.cat_file(blob))
        except FileNotFoundError as exc:
            raise NotFound(f"artifact {digest} is not in the store {self.url}") from exc
        actual = "sha256:" + hashlib.sha256(data).hexdigest()
        if actual != digest:
            raise ArtifactCorrupted(
                f"artifact {digest} is corrupted in {self.url}: its bytes hash to {actual}"
            )
        return data

    def fetch_file(self, digest: str, dest: Path) -> Path:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}")
        try:
            self._fs.get_file(self._blob(digest), str(tmp))
        except FileNotFoundError as exc:
            raise NotFound(f"artifact {digest} is not in the store {self.url}") from exc
        actual = sha256_file(tmp)
        if actual != digest:
            tmp.unlink()
            raise ArtifactCorrupted(
                f"artifact {digest} is corrupted in {self.url}: its bytes hash to {actual}"
            )
        os.replace(tmp, dest)
        return dest

    def fetch_dir(self, digest: str, dest: Path) -> Path:
        try:
            manifest = json.loads(self.read_bytes(digest))
            entries = manifest["files"]
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidInput(f"artifact {digest} is not a directory manifest") from exc
        for entry in entries:
            target = (dest / entry["path"]).resolve()
            if not target.is_relative_to(dest.resolve()):
                raise ArtifactCorrupted(f"manifest {digest} names a path outside its directory")
            self.fetch_file(entry["digest"], target)
        return dest
