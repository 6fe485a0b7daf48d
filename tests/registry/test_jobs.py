"""Jobs as records: atomic claims, heartbeats, requeue after a lost worker, cancel."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from lockgate.registry import Conflict, InvalidInput, NotFound, Registry, RegistrySettings


def test_lifecycle_with_events(registry: Registry) -> None:
    job, created = registry.create_job("finetune", {"base_model": "tiny"}, idempotency_key="k1")
    again, created_again = registry.create_job("finetune", {"other": 1}, idempotency_key="k1")
    assert created and not created_again and again.id == job.id
    claimed = registry.claim_job("w1")
    assert claimed is not None and (claimed.id, claimed.status, claimed.attempts) == (
        job.id,
        "running",
        1,
    )
    assert registry.claim_job("w2") is None
    assert registry.heartbeat_job(job.id, "w1") is False
    registry.add_job_event(job.id, "step 1", data={"loss": 2.5})
    done = registry.set_job_status(job.id, "succeeded", worker_id="w1", result={"model": "m@1"})
    assert (
        done.status == "succeeded"
        and done.finished_at is not None
        and done.result == {"model": "m@1"}
    )
    with pytest.raises(Conflict, match="already succeeded"):
        registry.set_job_status(job.id, "failed")
    messages = [e.message for e in registry.job_events(job.id)]
    assert messages[0] == "job created (queued)" and "step 1" in messages
    assert messages[-1] == "status: succeeded"
    events = registry.job_events(job.id)
    assert registry.job_events(job.id, after=events[1].id)[0].id == events[2].id


def test_concurrent_workers_never_claim_the_same_job(
    registry: Registry, registry_settings: RegistrySettings
) -> None:
    ids = {registry.create_job("finetune", {"n": i})[0].id for i in range(6)}
    claimed: list[str] = []
    lock = threading.Lock()

    def worker(name: str) -> None:
        reg = Registry(registry_settings)
        try:
            while (job := reg.claim_job(name)) is not None:
                with lock:
                    claimed.append(job.id)
        finally:
            reg.close()

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == sorted(ids)  # each exactly once


def test_lost_worker_is_requeued_and_loses_its_claim(registry: Registry) -> None:
    job, _ = registry.create_job("finetune", {})
    registry.claim_job("dead-worker")
    time.sleep(0.05)
    assert registry.requeue_stale_jobs(timeout_s=0.01) == [job.id]
    with pytest.raises(Conflict, match="no longer claimed"):
        registry.heartbeat_job(job.id, "dead-worker")
    again = registry.claim_job("w2")
    assert again is not None and again.id == job.id and again.attempts == 2
    assert registry.requeue_stale_jobs(timeout_s=60) == []


def test_cancel_queued_and_running(registry: Registry) -> None:
    queued, _ = registry.create_job("finetune", {})
    assert registry.cancel_job(queued.id).status == "cancelled"
    running, _ = registry.create_job("finetune", {})
    registry.claim_job("w")
    assert registry.cancel_job(running.id).cancel_requested
    assert registry.heartbeat_job(running.id, "w") is True
    with pytest.raises(NotFound):
        registry.cancel_job("ftjob-missing")


def test_files(registry: Registry, tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text('{"messages": []}\n')
    info = registry.create_file(path, purpose="fine-tune")
    assert info.id.startswith("file-") and info.bytes == path.stat().st_size
    assert registry.get_file(info.id).digest == info.digest
    assert registry.fetch_file(info.id, tmp_path / "copy.jsonl").read_text() == path.read_text()
    assert [f.id for f in registry.list_files("fine-tune")] == [info.id]
    with pytest.raises(InvalidInput, match="unknown purpose"):
        registry.create_file(path, purpose="training")
