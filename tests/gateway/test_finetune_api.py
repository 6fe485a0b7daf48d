"""Fine-tuning through the OpenAI SDK against the gateway, and the trained adapter served by
the gateway's in-process local provider — on a tiny model built from a config, on CPU."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import openai
import pytest

from tests.finetune.conftest import QA, build_tiny_model, chat_rows
from tests.gateway.conftest import Gateway, StartGateway

if TYPE_CHECKING:
    from lockgate.finetune.encoding import Encoded

pytest.importorskip("torch")
pytest.importorskip("peft")


@pytest.fixture(scope="module")
def ft_gateway(start_gateway: StartGateway, tmp_path_factory: pytest.TempPathFactory) -> Gateway:
    import torch

    torch.set_num_threads(2)
    gateway = start_gateway(auth="required")
    base = build_tiny_model(tmp_path_factory.mktemp("base") / "tiny")
    gateway.registry.models.register("tiny-base", "hf", path=base)
    return gateway


@pytest.fixture(scope="module")
def ft_key(ft_gateway: Gateway) -> str:
    """A real key, made through the registry: auth is on in this module."""
    scopes = ["inference", "registry:read", "registry:write"]
    secret = ft_gateway.registry.keys.create("ft-tests", scopes=scopes).secret
    assert secret is not None
    return secret


def _client(gateway: Gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0)


def _encoded(gateway: Gateway, data: Path) -> list[Encoded]:
    """The file's examples as the trainer tokenizes them, with the base model's tokenizer."""
    from transformers import AutoTokenizer

    from lockgate.finetune.data import scan_file
    from lockgate.finetune.encoding import encode_example

    with tempfile.TemporaryDirectory() as tmp:
        folder = gateway.registry.models.fetch("tiny-base@1", Path(tmp) / "base")
        tokenizer = AutoTokenizer.from_pretrained(folder)
    encoded = [encode_example(tokenizer, e, 512) for e in scan_file(data).examples]
    return [e for e in encoded if e is not None]


def _jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_jobs_api_trains_registers_and_serves(
    ft_gateway: Gateway, ft_key: str, tmp_path: Path
) -> None:
    from lockgate.finetune import Worker, WorkerSettings

    client = _client(ft_gateway, ft_key)
    train = client.files.create(file=_jsonl(tmp_path / "t.jsonl", chat_rows(2)).open("rb"),
                                purpose="fine-tune")  # fmt: skip
    assert train.id.startswith("file-") and train.purpose == "fine-tune"
    assert client.files.retrieve(train.id).bytes == (tmp_path / "t.jsonl").stat().st_size

    job = client.fine_tuning.jobs.create(
        model="registry:tiny-base@latest", training_file=train.id, suffix="tiny-qa",
        hyperparameters={"n_epochs": 12, "learning_rate_multiplier": 25, "batch_size": 4},
    )  # fmt: skip
    assert job.status == "queued" and job.model == "registry:tiny-base@1"  # the label, pinned
    assert [j.id for j in client.fine_tuning.jobs.list().data] == [job.id]

    handled = Worker(ft_gateway.registry, WorkerSettings(work_dir=tmp_path / "work")).run(once=True)
    assert handled == 1
    done = client.fine_tuning.jobs.retrieve(job.id)
    assert done.status == "succeeded", done.error
    assert done.fine_tuned_model == "registry:tiny-qa@1"
    # every token of every example is read in each of the 12 epochs (padding may add more)
    examples = sum(len(e.input_ids) for e in _encoded(ft_gateway, tmp_path / "t.jsonl"))
    assert isinstance(done.trained_tokens, int) and done.trained_tokens >= 12 * examples > 0
    events = client.fine_tuning.jobs.list_events(job.id, limit=100).data
    assert any("checkpoint" in e.message for e in events)
    checkpoints = client.fine_tuning.jobs.checkpoints.list(job.id).data
    assert checkpoints and checkpoints[0].step_number > 0

    question, answer = QA[0]
    messages = [{"role": "user", "content": question}]
    tuned = client.chat.completions.create(model=done.fine_tuned_model, messages=messages,
                                           max_tokens=16)  # fmt: skip
    base = client.chat.completions.create(model="registry:tiny-base@latest", messages=messages,
                                          max_tokens=16)  # fmt: skip
    assert tuned.choices[0].message.content.strip() == answer
    assert base.choices[0].message.content.strip() != answer
    assert tuned.usage is not None and tuned.usage.completion_tokens > 0
    # counted as generated, never more than asked for (re-encoding the text counted 28 of 16)
    assert base.usage is not None and 0 < base.usage.completion_tokens <= 16
    if base.choices[0].finish_reason == "length":
        assert base.usage.completion_tokens == 16
    streamed = list(client.chat.completions.create(
        model="registry:tiny-base@latest", messages=messages, max_tokens=16, stream=True,
        stream_options={"include_usage": True}))  # fmt: skip
    usage = streamed[-1].usage
    assert usage is not None and usage.completion_tokens == base.usage.completion_tokens

    pieces = [
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(
            model=done.fine_tuned_model, messages=messages, max_tokens=16, stream=True
        )
        if c.choices
    ]
    assert len([p for p in pieces if p]) > 1 and "".join(pieces).strip() == answer

    deadline = time.monotonic() + 5
    while (
        len(calls := ft_gateway.registry.calls.list(limit=50)) < 5 and time.monotonic() < deadline
    ):
        time.sleep(0.05)  # records are written off the request path, in batches
    local = [c for c in calls if c["provider"] == "local"]
    assert len(local) == 4 and {c["status_code"] for c in local} == {200}
    assert {c["deployment"] for c in local} == {"tiny-qa@1", "tiny-base@1"}


def test_bad_data_is_refused_before_anything_is_queued(
    ft_gateway: Gateway, ft_key: str, tmp_path: Path
) -> None:
    client = _client(ft_gateway, ft_key)
    bad = _jsonl(tmp_path / "bad.jsonl", [*chat_rows(), {"messages": [{"role": "user"}]}])
    upload = client.files.create(file=bad.open("rb"), purpose="fine-tune")
    before = len(client.fine_tuning.jobs.list().data)
    with pytest.raises(openai.BadRequestError) as err:
        client.fine_tuning.jobs.create(model="registry:tiny-base@latest", training_file=upload.id)
    assert "line 5" in str(err.value)
    with pytest.raises(openai.BadRequestError, match="no model named 'nope'"):
        client.fine_tuning.jobs.create(model="registry:nope@latest", training_file=upload.id)
    assert len(client.fine_tuning.jobs.list().data) == before


def test_cancel_a_queued_job(ft_gateway: Gateway, ft_key: str, tmp_path: Path) -> None:
    client = _client(ft_gateway, ft_key)
    upload = client.files.create(file=_jsonl(tmp_path / "t.jsonl", chat_rows()).open("rb"),
                                 purpose="fine-tune")  # fmt: skip
    job = client.fine_tuning.jobs.create(model="registry:tiny-base@latest", training_file=upload.id)
    assert client.fine_tuning.jobs.cancel(job.id).status == "cancelled"
    with pytest.raises(openai.NotFoundError):
        client.fine_tuning.jobs.retrieve("ftjob-missing")


def test_scopes_guard_the_management_api(start_gateway: StartGateway, tmp_path: Path) -> None:
    gateway = start_gateway(admin_key="lg-admin-for-ft-tests")
    inference = gateway.registry.keys.create("app", scopes=["inference"]).secret
    writer = gateway.registry.keys.create("ml", scopes=["registry:write", "registry:read"]).secret
    data = _jsonl(tmp_path / "t.jsonl", chat_rows())

    def as_key(key: str | None) -> openai.OpenAI:
        return openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0)

    with pytest.raises(openai.AuthenticationError):
        as_key("lg-not-a-key").files.list()
    with pytest.raises(openai.PermissionDeniedError, match="registry:write"):
        as_key(inference).files.create(file=data.open("rb"), purpose="fine-tune")
    upload = as_key(writer).files.create(file=data.open("rb"), purpose="fine-tune")
    assert as_key("lg-admin-for-ft-tests").files.retrieve(upload.id).id == upload.id
    with pytest.raises(openai.PermissionDeniedError):
        as_key(inference).fine_tuning.jobs.list()


def test_a_client_that_leaves_mid_stream_stops_the_local_generation(
    ft_gateway: Gateway, ft_key: str
) -> None:
    """The local provider stops generating once the client has gone, instead of running to
    ``max_tokens`` while holding the base model that every other request on it waits for."""
    client = _client(ft_gateway, ft_key)
    model, limit = "registry:tiny-base@latest", 200
    messages = [{"role": "user", "content": QA[0][0]}]
    full = client.chat.completions.create(model=model, messages=messages, max_tokens=limit)
    assert full.choices[0].finish_reason == "length"  # left alone, it runs to the limit
    [base] = ft_gateway.state.providers["local"]._bases.values()  # the loaded tiny-base
    before = base.generated_tokens

    stream = client.chat.completions.create(
        model=model, messages=messages, max_tokens=limit, stream=True
    )
    next(iter(stream))  # the first token is here
    stream.close()  # and the client is gone

    assert base.lock.acquire(timeout=60)  # the generation has ended
    base.lock.release()
    generated = base.generated_tokens - before
    assert 1 <= generated < limit, generated  # 200 when the generation is not stopped
