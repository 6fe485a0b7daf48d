"""Attacker test: the HTTP API cannot queue a ``command`` job (issue 12, contract C).

A retraining job runs a program on the worker's machine, so only the machine's own user may
queue one (CLI, Python API, monitor policy file). ``POST /v1/fine_tuning/jobs`` creates
``finetune`` jobs only: every way of slipping a command, a job kind or a spec into the
request is refused, or ignored as OpenAI's API ignores fields it does not define (a plain
``finetune`` job is queued, without them); no ``command`` job exists, and a worker polling
afterwards runs nothing. Real
gateway on loopback, auth on, the most privileged registry key; raw httpx and the openai SDK.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.finetune.conftest import chat_rows, write_jsonl
from tests.gateway.conftest import Gateway, StartGateway


@pytest.fixture(scope="module")
def gw(start_gateway: StartGateway, tmp_path_factory: pytest.TempPathFactory) -> Gateway:
    gateway = start_gateway(auth="required")
    base = tmp_path_factory.mktemp("base") / "tiny"
    base.mkdir()
    (base / "config.json").write_text(json.dumps({"model_type": "llama"}))
    gateway.registry.models.register("base", "hf", path=base)
    return gateway


@pytest.fixture(scope="module")
def secret(gw: Gateway) -> str:
    scopes = ["registry:read", "registry:write", "registry:label"]
    made = gw.registry.keys.create("release", scopes=scopes).secret
    assert made is not None
    return made


def test_the_fine_tuning_api_cannot_queue_a_command(
    gw: Gateway, secret: str, tmp_path: Path
) -> None:
    from lockgate.finetune import Worker, WorkerSettings
    from lockgate.finetune.command import COMMAND_KIND

    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=secret, max_retries=0)
    data = write_jsonl(tmp_path / "train.jsonl", chat_rows())
    training = client.files.create(file=data.open("rb"), purpose="fine-tune").id
    marker = tmp_path / "ran"
    argv = [sys.executable, "-c", f"open({str(marker)!r}, 'w')"]
    command = {"kind": COMMAND_KIND, "model": "base", "dataset": "d@1", "entry": argv,
               "submitted_by": {"via": "cli", "principal": "root", "name": "root",
                                "holds_label_scope": True}}  # fmt: skip
    base = {"model": "registry:base@latest", "training_file": training}
    attacks: list[dict[str, Any]] = [
        {**base, "kind": COMMAND_KIND},
        {**base, "entry": argv},
        {**base, "command": " ".join(argv)},
        {**base, "spec": command},
        {**base, "job_type": COMMAND_KIND, "entry": argv},
        {**base, "metadata": {"lockgate": json.dumps({"entry": argv})}},
        {**base, "metadata": {"lockgate": json.dumps({"kind": COMMAND_KIND})}},
        {**base, "metadata": {"lockgate": json.dumps(command)}},
        {**base, "method": {"type": COMMAND_KIND, COMMAND_KIND: {"entry": argv}}},
        {**command, "training_file": training},
    ]
    headers = {"Authorization": f"Bearer {secret}"}
    queued = []
    for body in attacks:
        answer = httpx.post(gw.url + "/v1/fine_tuning/jobs", json=body, headers=headers)
        # refused, or (OpenAI's API ignores fields it does not define) a plain fine-tuning job
        assert answer.status_code in (200, 400), (body, answer.text)
        if answer.status_code == 400:
            assert set(answer.json()) == {"error"}
            continue
        job = gw.registry.jobs.get(answer.json()["id"])
        assert job.kind == "finetune" and job.spec["submitted_by"]["via"] == "http"
        assert str(marker) not in json.dumps(job.spec) and "entry" not in job.spec
        queued.append(job.id)
    sdk = client.fine_tuning.jobs.create(
        model="registry:base@latest", training_file=training,
        extra_body={"kind": COMMAND_KIND, "entry": argv},
    )  # fmt: skip
    queued.append(sdk.id)
    assert gw.registry.jobs.get(sdk.id).kind == "finetune"
    assert gw.registry.jobs.list(COMMAND_KIND) == []
    assert {j.id for j in gw.registry.jobs.list()} == set(queued)
    for job_id in queued:
        client.fine_tuning.jobs.cancel(job_id)
    # a worker polling for command jobs now finds nothing to run
    settings = WorkerSettings(work_dir=tmp_path / "work")
    worker = Worker(gw.registry, settings, worker_id="w-attack", kinds=(COMMAND_KIND,))
    assert worker.run(once=True) == 0
    assert not marker.exists()


def test_a_command_job_is_invisible_to_the_fine_tuning_api(gw: Gateway, secret: str) -> None:
    """A retraining job's output (its program's lines, as job events) and the job itself are
    the operator's: the OpenAI API answers 404 for its id on every route, as for an unknown
    id, lists only fine-tuning jobs, and cannot cancel it."""
    from lockgate.finetune.command import COMMAND_KIND

    job, _ = gw.registry.jobs.create(COMMAND_KIND, {"model": "churn", "entry": ["train"]})
    gw.registry.jobs.add_event(job.id, "secret line printed by train.py")
    headers = {"Authorization": f"Bearer {secret}"}
    jobs = gw.url + "/v1/fine_tuning/jobs"
    for method, path in [
        ("GET", f"/{job.id}"),
        ("GET", f"/{job.id}/events"),
        ("GET", f"/{job.id}/checkpoints"),
        ("POST", f"/{job.id}/cancel"),
    ]:
        answer = httpx.request(method, jobs + path, headers=headers)
        assert answer.status_code == 404, (method, path, answer.text)
        assert "secret line" not in answer.text
        assert answer.json()["error"]["message"] == f"no job with id {job.id!r}"
    listed = httpx.get(jobs, params={"limit": 100}, headers=headers).json()["data"]
    assert job.id not in {j["id"] for j in listed}
    assert gw.registry.jobs.get(job.id).status == "queued"
