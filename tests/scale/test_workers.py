"""Two ``lockgate finetune worker`` processes on one PostgreSQL queue (docs/scaling.md): they
never claim the same job, and a job whose worker is SIGKILLed is taken over by the other
once its claim is stale (``finetune.stale_after_s``) and finishes there.

The jobs are retraining (``command``) jobs, the cheapest kind that goes through the claim,
the heartbeat and the stale-claim takeover: the entry point notes when it starts and ends,
copies a fitted scikit-learn model (skops) to ``$LOCKGATE_OUTPUT``, and the worker registers it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from lockgate.finetune.command import submit_retrain
from lockgate.registry import Registry, RegistrySettings

pytest.importorskip("sklearn")
sio = pytest.importorskip("skops.io")

STALE_AFTER_S = 2.0
ENTRY = """
import os, shutil, sys, time
log, model, mode = sys.argv[1], sys.argv[2], sys.argv[3]
job = os.environ["LOCKGATE_JOB_ID"]

def note(what):
    with open(log, "a") as f:
        f.write(f"{what} {job} {os.getpid()} {time.time()}\\n")

note("start")
if mode.startswith("hang-once:"):  # the first attempt hangs (until its worker dies)
    marker = mode.split(":", 1)[1]
    if not os.path.exists(marker):
        open(marker, "w").close()
        time.sleep(300)
elif mode == "together":  # until another job has started too (or 30 s): both workers busy
    deadline = time.time() + 30
    while time.time() < deadline:
        with open(log) as f:
            if len({line.split()[1] for line in f if line.startswith("start ")}) >= 2:
                break
        time.sleep(0.05)
shutil.copy(model, os.environ["LOCKGATE_OUTPUT"])
note("end")
"""


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def worker_id(self) -> str:
        """The id it claims under, from its first line (once it polls)."""
        found = re.search(r"worker (\S+) polling", self.log.read_text(errors="replace"))
        return found.group(1) if found else ""


@dataclass
class Queue:
    registry: Registry
    folder: Path
    workers: list[Worker]
    script: Path
    model: Path

    def submit(self, name: str, log: Path, mode: str) -> str:
        entry = [sys.executable, str(self.script), str(log), str(self.model), mode]
        return submit_retrain(self.registry, name, dataset="scale-train@1", entry=entry).id

    def wait_final(self, job_ids: list[str], timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while any(self.registry.jobs.get(j).status in ("queued", "running") for j in job_ids):
            for worker in self.workers:
                assert worker.process.poll() in (None, -signal.SIGKILL), worker.log.read_text()
            assert time.monotonic() < deadline, [self.registry.jobs.get(j) for j in job_ids]
            time.sleep(0.1)

    def claims(self, job_id: str) -> list[str]:
        return [e.message for e in self.registry.jobs.events(job_id) if "claimed by" in e.message]


@pytest.fixture(scope="module")
def queue(scale_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Queue]:
    """A dataset and a fitted model file, and two workers polling one queue."""
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    folder = tmp_path_factory.mktemp("workers")
    data = folder / "data"
    registry = Registry(RegistrySettings(data_dir=data, database_url=scale_database),
                        actor="tester")  # fmt: skip
    frame = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0], "y": [0, 0, 1, 1]})
    frame.to_csv(folder / "train.csv", index=False)
    registry.datasets.add("scale-train", folder / "train.csv")
    model = folder / "model.skops"
    sio.dump(LogisticRegression().fit(frame[["x"]], frame["y"]), model)
    (folder / "entry.py").write_text(ENTRY)
    config = {
        "registry": {"database_url": scale_database, "data_dir": str(data)},
        "finetune": {
            "poll_interval_s": 0.2,
            "heartbeat_interval_s": 0.2,
            "stale_after_s": STALE_AFTER_S,
        },
    }
    (folder / "lockgate.yaml").write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCKGATE_")}
    workers = []
    for name in ("w1", "w2"):
        log = folder / f"{name}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "lockgate.gateway.cli", "finetune", "worker",
                 "--kind", "command", "--work-dir", str(folder / name)],
                cwd=folder, env=env, stdout=out, stderr=out,
            )  # fmt: skip
        workers.append(Worker(process, log))
    try:
        deadline = time.monotonic() + 90
        while not all(w.worker_id for w in workers):
            for worker in workers:
                assert worker.process.poll() is None, worker.log.read_text()
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.1)
        yield Queue(registry, folder, workers, folder / "entry.py", model)
    finally:
        for worker in workers:
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
                try:
                    worker.process.wait(10)
                except subprocess.TimeoutExpired:
                    worker.process.kill()
                    worker.process.wait(10)
        registry.close()


def _notes(log: Path) -> list[tuple[str, str, int, float]]:
    """(start|end, job id, pid, time) per line the entry points wrote."""
    rows = []
    for line in log.read_text().splitlines():
        what, job, pid, at = line.split()
        rows.append((what, job, int(pid), float(at)))
    return rows


def _alive(pid: int) -> bool:
    """A process that exists and is not a zombie (nobody may reap it in a container)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def test_two_workers_never_claim_the_same_job(queue: Queue) -> None:
    log = queue.folder / "together.log"
    log.touch()
    jobs = [queue.submit(f"scale-m{i}", log, "together") for i in range(6)]
    queue.wait_final(jobs)
    for job_id in jobs:
        job = queue.registry.jobs.get(job_id)
        assert job.status == "succeeded", (job.error, job.result)
        assert job.attempts == 1 and len(queue.claims(job_id)) == 1, queue.claims(job_id)
    notes = _notes(log)
    for job_id in jobs:  # each entry point ran once
        assert [what for what, job, _, _ in notes if job == job_id] == ["start", "end"]
    claimers = {claim.split()[2] for job_id in jobs for claim in queue.claims(job_id)}
    assert claimers == {w.worker_id for w in queue.workers}  # both took jobs, never the same
    spans = {job: [at for _, j, _, at in notes if j == job] for job in jobs}
    overlapping = any(
        a != b and spans[a][0] < spans[b][1] and spans[b][0] < spans[a][1]
        for a in jobs for b in jobs
    )  # fmt: skip
    assert overlapping  # the two ran jobs at the same time


def test_a_job_whose_worker_is_killed_resumes_on_the_other(queue: Queue) -> None:
    log = queue.folder / "takeover.log"
    marker = queue.folder / "attempted"
    job_id = queue.submit("scale-takeover", log, f"hang-once:{marker}")
    deadline = time.monotonic() + 60
    while not (log.exists() and log.read_text()):
        assert time.monotonic() < deadline, queue.registry.jobs.get(job_id)
        time.sleep(0.05)
    (claim,) = queue.claims(job_id)
    doomed = next(w for w in queue.workers if f"claimed by {w.worker_id} " in claim)
    rescuer = next(w for w in queue.workers if w is not doomed)
    doomed.process.send_signal(signal.SIGKILL)
    doomed.process.wait(10)
    killed_at = time.time()
    queue.wait_final([job_id], timeout=60)

    job = queue.registry.jobs.get(job_id)
    assert job.status == "succeeded", (job.error, job.result)
    assert job.attempts == 2 and job.result["model"] == "scale-takeover@1"
    messages = [e.message for e in queue.registry.jobs.events(job_id)]
    assert f"worker {doomed.worker_id} stopped heartbeating; requeued" in messages
    assert f"claimed by {rescuer.worker_id} (attempt 2)" in messages
    notes = _notes(log)
    assert [what for what, *_ in notes] == ["start", "start", "end"]
    first_pid, second_start = notes[0][2], notes[1][3]
    assert not _alive(first_pid)  # the dead worker's entry point died with it
    # taken over once the claim was stale, not before
    assert second_start - killed_at >= STALE_AFTER_S - 0.5
    print(f"\ntaken over {second_start - killed_at:.2f} s after the SIGKILL "
          f"(stale_after_s {STALE_AFTER_S})")  # fmt: skip
