"""The content-addressed artifact store: local and any fsspec URL, verified on read."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from lockgate.registry import ArtifactCorrupted, FsspecArtifactStore, NotFound


@pytest.fixture(params=["local", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> FsspecArtifactStore:
    if request.param == "local":
        return FsspecArtifactStore(str(tmp_path / "artifacts"))
    return FsspecArtifactStore(f"memory://lockgate-test-{uuid.uuid4().hex}")


def test_files_are_named_by_sha256_and_deduplicated(
    store: FsspecArtifactStore, tmp_path: Path
) -> None:
    import hashlib

    f = tmp_path / "a.txt"
    f.write_bytes(b"hello")
    digest = store.put_file(f)
    assert digest == "sha256:" + hashlib.sha256(b"hello").hexdigest()
    assert store.put_bytes(b"hello") == digest
    assert store.read_bytes(digest) == b"hello"
    assert store.fetch_file(digest, tmp_path / "out" / "b.txt").read_bytes() == b"hello"


def test_directories_round_trip(store: FsspecArtifactStore, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.bin").write_bytes(b"\x00\x01")
    (src / "sub" / "b.txt").write_text("b")
    digest = store.put_dir(src)
    assert store.put_dir(src) == digest
    out = store.fetch_dir(digest, tmp_path / "dst")
    assert (out / "a.bin").read_bytes() == b"\x00\x01"
    assert (out / "sub" / "b.txt").read_text() == "b"


def test_a_corrupted_blob_is_detected_on_read(tmp_path: Path) -> None:
    store = FsspecArtifactStore(str(tmp_path / "artifacts"))
    digest = store.put_bytes(b"precious weights")
    blob = next((tmp_path / "artifacts" / "blobs").rglob(digest.split(":")[1]))
    blob.write_bytes(b"tampered weights")
    with pytest.raises(ArtifactCorrupted, match="corrupted"):
        store.read_bytes(digest)
    dest = tmp_path / "out.bin"
    with pytest.raises(ArtifactCorrupted):
        store.fetch_file(digest, dest)
    assert not dest.exists()  # nothing half-written


def test_unknown_digest(store: FsspecArtifactStore) -> None:
    with pytest.raises(NotFound):
        store.read_bytes("sha256:" + "0" * 64)
