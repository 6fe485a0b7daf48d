"""Checkpoints in the artifact store: a job resumed on another machine fetches the latest
one, and a machine that already holds it (or a newer one) keeps its own."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import pytest

from lockgate.finetune.checkpoints import (
    PREFIX,
    TrainState,
    latest_checkpoint,
    read_state,
    restore_checkpoint,
    stored_checkpoint,
    upload_checkpoint,
)
from lockgate.registry import Registry
from tests.conftest import set_pg_database


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
    run = registry.runs.create("finetune", name="job")
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


class _Job:
    """A registry with its own artifact store folder, one fine-tune job and its run."""

    def __init__(self, tmp_path: Path, sqlite_template: Path) -> None:
        from lockgate.registry import RegistrySettings

        shutil.copy(sqlite_template, tmp_path / "registry.db")
        self.store = tmp_path / "store"
        self.registry = Registry(RegistrySettings(data_dir=tmp_path, artifact_url=str(self.store)))
        self.job, _ = self.registry.jobs.create("finetune", {"output_model": "x"})
        self.run = self.registry.runs.create("finetune", name=self.job.id)


@pytest.fixture
def ft_job(tmp_path: Path, sqlite_template: Path) -> Iterator[_Job]:
    job = _Job(tmp_path, sqlite_template)
    yield job
    job.registry.close()


def test_a_checkpoint_the_store_refuses_does_not_end_the_training(
    ft_job: _Job, tmp_path: Path
) -> None:
    from lockgate.finetune.reporting import RegistryHooks

    registry, job, run, store = ft_job.registry, ft_job.job, ft_job.run, ft_job.store
    shutil.rmtree(store, ignore_errors=True)
    store.write_text("the store's folder is gone: every write fails")
    hooks = RegistryHooks(registry, job.id, run.id, lambda: False)
    hooks.on_checkpoint(4, _checkpoint(tmp_path / "ck", 4))  # no exception
    [event] = [e for e in registry.jobs.events(job.id) if e.message.startswith("checkpoint")]
    assert event.message.startswith("checkpoint at step 4 (not uploaded: "), event.message
    assert "digest" not in (event.data or {})
    assert stored_checkpoint(registry, run.id) is None


@pytest.mark.postgres
def test_the_registry_going_away_does_not_end_the_training(outage_db: str, tmp_path: Path) -> None:
    """Step metrics, events and checkpoint uploads written while PostgreSQL is away are
    lost and logged; the hooks raise nothing, and writing resumes once it is back."""
    from lockgate.finetune.reporting import RegistryHooks
    from lockgate.registry import RegistrySettings

    registry = Registry(RegistrySettings(database_url=outage_db, data_dir=tmp_path))
    job, _ = registry.jobs.create("finetune", {"output_model": "x"})
    run = registry.runs.create("finetune", name=job.id)
    hooks = RegistryHooks(registry, job.id, run.id, lambda: False)
    hooks.on_step(1, 6, {"loss": 2.0})
    set_pg_database(outage_db, up=False)
    try:
        hooks.on_step(2, 6, {"loss": 1.5})
        hooks.on_checkpoint(2, _checkpoint(tmp_path / "ck", 2))
        hooks.on_resume(2)
    finally:
        set_pg_database(outage_db, up=True)
    hooks.on_step(3, 6, {"loss": 1.0})
    assert [(p.step, p.value) for p in registry.runs.get(run.id).series] == [(1, 2.0), (3, 1.0)]
    messages = [e.message for e in registry.jobs.events(job.id)]
    assert [m for m in messages if m.startswith("step ")] == [
        "step 1/6: loss 2",
        "step 3/6: loss 1",
    ]
    registry.close()


def test_a_stored_checkpoint_the_store_cannot_give_back_does_not_fail_the_job(
    ft_job: _Job, tmp_path: Path
) -> None:
    from lockgate.finetune.worker import _restore

    registry, job, run, store = ft_job.registry, ft_job.job, ft_job.run, ft_job.store
    upload_checkpoint(registry, run.id, _checkpoint(tmp_path / "a", 4))
    shutil.rmtree(store)  # the bucket was emptied, the volume is gone, …
    root = tmp_path / "b" / "checkpoints"
    _restore(registry, job.id, run.id, root)  # no exception: the job starts from what is here
    assert latest_checkpoint(root) is None
    messages = [e.message for e in registry.jobs.events(job.id)]
    assert any(m.startswith("could not fetch the stored checkpoint (") for m in messages)
    assert not root.exists() or not any(root.iterdir())  # no half-fetched folder left
