"""Jobs as records: atomic claims, heartbeats, requeue after a lost worker, cancel."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from lockgate.registry import Conflict, InvalidInput, NotFound, Registry, RegistrySettings
from lockgate.registry.jobs import FinetuneResult


def test_lifecycle_with_events(registry: Registry) -> None:
    job, created = registry.jobs.create("finetune", {"base_model": "tiny"}, idempotency_key="k1")
    again, created_again = registry.jobs.create("finetune", {"other": 1}, idempotency_key="k1")
    assert created and not created_again and again.id == job.id
    claimed = registry.jobs.claim("w1")
    assert claimed is not None and (claimed.id, claimed.status, claimed.attempts) == (
        job.id,
        "running",
        1,
    )
    assert registry.jobs.claim("w2") is None
    assert registry.jobs.heartbeat(job.id, "w1") is False
    registry.jobs.add_event(job.id, "step 1", data={"loss": 2.5})
    with pytest.raises(InvalidInput, match="a job result is a JobResult"):
        registry.jobs.set_status(job.id, "succeeded", worker_id="w1", result={"model": "m@1"})  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="tokens_seen"):  # a misnamed field is refused
        FinetuneResult(model="m@1", fine_tuned_model="registry:m@1", steps=4, total_steps=4,
                       trained_tokens=10, tokens_seen=10)  # type: ignore[call-arg]  # fmt: skip
    result = FinetuneResult(model="m@1", fine_tuned_model="registry:m@1", steps=4,
                            total_steps=4, trained_tokens=96)  # fmt: skip
    done = registry.jobs.set_status(job.id, "succeeded", worker_id="w1", result=result)
    assert done.status == "succeeded" and done.finished_at is not None
    assert FinetuneResult.model_validate(done.result) == result
    with pytest.raises(Conflict, match="already succeeded"):
        registry.jobs.set_status(job.id, "failed")
    messages = [e.message for e in registry.jobs.events(job.id)]
    assert messages[0] == "job created (queued)" and "step 1" in messages
    assert messages[-1] == "status: succeeded"
    events = registry.jobs.events(job.id)
    assert registry.jobs.events(job.id, after=events[1].id)[0].id == events[2].id


def test_concurrent_workers_never_claim_the_same_job(
    registry: Registry, registry_settings: RegistrySettings
) -> None:
    ids = {registry.jobs.create("finetune", {"n": i})[0].id for i in range(6)}
    claimed: list[str] = []
    lock = threading.Lock()

    def worker(name: str) -> None:
        reg = Registry(registry_settings)
        try:
            while (job := reg.jobs.claim(name)) is not None:
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
    job, _ = registry.jobs.create("finetune", {})
    registry.jobs.claim("dead-worker")
    time.sleep(0.05)
    assert registry.jobs.requeue_stale(timeout_s=0.01) == [job.id]
    with pytest.raises(Conflict, match="no longer claimed"):
        registry.jobs.heartbeat(job.id, "dead-worker")
    again = registry.jobs.claim("w2")
    assert again is not None and again.id == job.id and again.attempts == 2
    assert registry.jobs.requeue_stale(timeout_s=60) == []


def test_cancel_queued_and_running(registry: Registry) -> None:
    queued, _ = registry.jobs.create("finetune", {})
    assert registry.jobs.cancel(queued.id).status == "cancelled"
    running, _ = registry.jobs.create("finetune", {})
    registry.jobs.claim("w")
    assert registry.jobs.cancel(running.id).cancel_requested
    assert registry.jobs.heartbeat(running.id, "w") is True
    with pytest.raises(NotFound):
        registry.jobs.cancel("ftjob-missing")


def test_files(registry: Registry, tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text('{"messages": []}\n')
    info = registry.files.create(path, purpose="fine-tune")
    assert info.id.startswith("file-") and info.bytes == path.stat().st_size
    assert registry.files.get(info.id).digest == info.digest
    assert registry.files.fetch(info.id, tmp_path / "copy.jsonl").read_text() == path.read_text()
    assert [f.id for f in registry.files.list("fine-tune")] == [info.id]
    with pytest.raises(InvalidInput, match="unknown purpose"):
        registry.files.create(path, purpose="training")
