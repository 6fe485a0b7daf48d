"""Checkpoints in the artifact store: a job resumed on another machine fetches the latest
one, and a machine that already holds it (or a newer one) keeps its own."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from finetune.checkpoints import (
    PREFIX,
    TrainState,
    latest_checkpoint,
    read_state,
    restore_checkpoint,
    stored_checkpoint,
    upload_checkpoint,
)
from registry import Registry


def _checkpoint(root: Path, step: int) -> Path:
    path = root / f"{PREFIX}{step:07d}"
    (path / "adapter").mkdir(parents=True)
    (path / "adapter" / "weights.bin").write_bytes(bytes([step]) * 1000)
    state = TrainState(step, 12, step // 2, 0, step * 100, "spec-fingerprint")
    (path / "state.json").write_text(json.dumps(asdict(state)))
    return path


def test_another_machine_fetches_the_latest_stored_checkpoint(
    registry: Registry, tmp_path: Path
) -> None:
    run = registry.create_run("finetune", name="job")
    machine_a = tmp_path / "a" / "checkpoints"
    assert stored_checkpoint(registry, run.id) is None
    assert restore_checkpoint(registry, run.id, tmp_path / "empty") is None  # nothing stored
    for step in (4, 8):
        upload_checkpoint(registry, run.id, _checkpoint(machine_a, step))
    stored = stored_checkpoint(registry, run.id)
    assert stored is not None and stored[0] == 8

    machine_b = tmp_path / "b" / "checkpoints"
    assert restore_checkpoint(registry, run.id, machine_b) == 8
    fetched = latest_checkpoint(machine_b)
    assert fetched is not None and fetched.name == f"{PREFIX}0000008"
    assert read_state(fetched).tokens_seen == 800
    assert (fetched / "adapter" / "weights.bin").read_bytes() == bytes([8]) * 1000
    assert [p.name for p in machine_b.iterdir()] == [fetched.name]  # no temporary left over

    assert restore_checkpoint(registry, run.id, machine_b) is None  # already there
    older = tmp_path / "c" / "checkpoints"
    _checkpoint(older, 4)
    assert restore_checkpoint(registry, run.id, older) == 8  # newer in the store
    assert latest_checkpoint(older) == older / f"{PREFIX}0000008"
    newer = tmp_path / "d" / "checkpoints"
    _checkpoint(newer, 10)
    assert restore_checkpoint(registry, run.id, newer) is None  # its own is newer
