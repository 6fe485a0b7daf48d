"""Spec parsing, data validation and submission: every check before anything is queued."""

from __future__ import annotations

from pathlib import Path

import pytest

from lockgate.finetune import (
    BaseModelNotFound,
    SettingImpossible,
    SpecInvalid,
    TrainingDataInvalid,
    load_spec,
    parse_spec,
    scan_file,
    spec_from_openai,
    submit_job,
)
from lockgate.finetune.spec import Submitter
from lockgate.registry import Registry
from lockgate.registry.errors import InvalidInput
from tests.finetune.conftest import chat_rows, write_jsonl

NO_HUB = lambda repo: (False, "the Hugging Face Hub is not reachable from this machine")  # noqa: E731


def _spec(model: Path | str, train: Path, **extra: object) -> dict[str, object]:
    return {
        "base_model": str(model),
        "training_file": str(train),
        "output_model": "bot",
        "gpus": 0,
        **extra,
    }


def test_spec_defaults_and_per_architecture_targets() -> None:
    spec = parse_spec({"base_model": "x", "training_file": "t", "output_model": "m"})
    assert spec.lora.lora_alpha == 32
    assert spec.lora.modules_for("llama")[:4] == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert spec.lora.modules_for("gpt2") == ["c_attn", "c_proj", "c_fc"]
    assert spec.lora.modules_for("unheard-of") == "all-linear"
    assert spec.executor_name == "local"
    assert parse_spec({**spec.model_dump(), "gpus": 4}).executor_name == "torchrun"


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"lora": {"r": 0}}, "lora.r"),
        ({"training": {"epochs": 0}}, "training.epochs"),
        ({"lora": {"dropout": 1.5}}, "lora.dropout"),
        ({"lr": 1}, "lr"),
        ({"executor": "torchrun"}, "spec"),
    ],
)
def test_impossible_spec_values_are_named(patch: dict[str, object], field: str) -> None:
    with pytest.raises(SpecInvalid) as err:
        parse_spec({"base_model": "x", "training_file": "t", "output_model": "m", **patch})
    assert field in err.value.message
    assert err.value.exit_code == 2


def test_yaml_spec_paths_are_relative_to_the_spec(tmp_path: Path, train_file: Path) -> None:
    (tmp_path / "spec.yaml").write_text(
        "base_model: model\ntraining_file: train.jsonl\noutput_model: bot\n"
        "lora: {r: 4}\ntraining: {epochs: 1}\n"
    )
    spec = load_spec(tmp_path / "spec.yaml")
    assert spec.training_file == str(train_file)
    assert spec.lora.r == 4


def test_openai_request_maps_onto_a_spec() -> None:
    spec = spec_from_openai(
        {
            "model": "registry:tiny@production",
            "training_file": "file-abc",
            "suffix": "bot",
            "hyperparameters": {"n_epochs": 2, "batch_size": "auto", "learning_rate_multiplier": 2},
        }
    )
    assert (spec.base_model, spec.output_model, spec.training.epochs) == (
        "registry:tiny@production",
        "bot",
        2,
    )
    assert spec.training.learning_rate == pytest.approx(4e-4)
    assert spec.training.batch_size == 8
    # a plain name is a registry reference; method.supervised hyper-parameters count too
    spec = spec_from_openai(
        {
            "model": "tiny",
            "training_file": "file-abc",
            "method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 5}}},
            "metadata": {"lockgate": '{"lora": {"r": 4}, "training": {"max_seq_length": 64}}'},
        }
    )
    assert (spec.base_model, spec.output_model) == ("registry:tiny", "tiny-ft")
    assert (spec.training.epochs, spec.lora.r, spec.training.max_seq_length) == (5, 4, 64)
    assert spec.eval is None and spec.submitted_by is None


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"training_file": "/etc/passwd"}, "training_file"),
        ({"validation_file": "data/valid.jsonl"}, "validation_file"),
        ({"metadata": {"lockgate": {"eval": {"suite": "/tmp/s.yaml"}}}}, "metadata.lockgate.eval"),
        ({"metadata": {"lockgate": {"training_file": "/x"}}}, "metadata.lockgate.training_file"),
        ({"metadata": {"lockgate": {"output_model": "prod"}}}, "metadata.lockgate.output_model"),
        ({"metadata": {"lockgate": {"gpus": 4}}}, "metadata.lockgate.gpus"),
        ({"metadata": {"lockgate": {"lora": {"bias": "all"}}}}, "metadata.lockgate.lora.bias"),
        ({"metadata": {"lockgate": {"lora": 3}}}, "metadata.lockgate.lora"),
        ({"metadata": {"lockgate": "not json"}}, "metadata.lockgate"),
        ({"hyperparameters": {"n_epochs": 0}}, "hyperparameters.n_epochs"),
        ({"hyperparameters": {"n_epochs": "3"}}, "hyperparameters.n_epochs"),
        ({"method": {"type": "dpo"}}, "method.type"),
        ({"model": 3}, "model"),
    ],
)
def test_an_openai_request_sets_no_paths_and_only_tuning_settings(
    body: dict[str, object], param: str
) -> None:
    with pytest.raises(SpecInvalid) as err:
        spec_from_openai({"model": "registry:tiny@1", "training_file": "file-abc", **body})
    assert err.value.param == param and param in err.value.message


def test_formats_are_detected_and_bad_rows_named(tmp_path: Path) -> None:
    good = write_jsonl(
        tmp_path / "a.jsonl",
        [
            {"prompt": "2+2=", "completion": " 4"},
            {"prompt": "3+3=", "completion": " 6"},
        ],
    )
    assert scan_file(good).format == "completion"
    alpaca = scan_file(
        write_jsonl(tmp_path / "b.jsonl", [{"instruction": "Say hi", "input": "", "output": "hi"}])
    )
    assert alpaca.format == "alpaca" and alpaca.examples[0].messages is not None
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"messages": [{"role": "user", "content": "hi"}, '
        '{"role": "assistant", "content": "yo"}]}\n'
        "not json\n"
        '{"messages": [{"role": "user", "content": "hi"}]}\n'
        "\n"
        '{"messages": [{"role": "wizard", "content": "hi"}]}\n'
        '{"prompt": "a", "completion": "b"}\n'
        '{"messages": [{"role": "user", "content": 3}, {"role": "assistant", "content": "x"}]}\n'
    )
    report = scan_file(bad)
    assert [p.line for p in report.problems] == [2, 3, 5, 6, 7]
    reasons = " | ".join(p.reason for p in report.problems)
    assert "not JSON" in reasons and "no assistant message" in reasons
    # the decoder's message is finished with where it stopped, never cut at "… at"
    control = tmp_path / "control.jsonl"
    control.write_text('{"prompt": "a\tb", "completion": "c"}\n')
    [problem] = scan_file(control).problems
    assert problem.reason == "not JSON: Invalid control character at column 14", problem.reason
    assert "'wizard'" in reasons and "one format per file" in reasons


def test_bad_rows_queue_nothing(registry: Registry, tiny_model: Path, tmp_path: Path) -> None:
    rows: list[object] = [*chat_rows(), {"messages": []}, {"foo": 1}]
    train = write_jsonl(tmp_path / "t.jsonl", rows)
    with pytest.raises(TrainingDataInvalid) as err:
        submit_job(registry, _spec(tiny_model, train))
    assert "line 5" in err.value.message and "line 6" in err.value.message
    assert "nothing was queued" in err.value.message
    assert registry.jobs.list() == []
    assert registry.files.list() == []


def test_unknown_base_model_is_a_clear_error(registry: Registry, train_file: Path) -> None:
    with pytest.raises(BaseModelNotFound, match="no such directory"):
        submit_job(registry, _spec("./nowhere/model", train_file))
    with pytest.raises(BaseModelNotFound, match="not found in the registry"):
        submit_job(registry, _spec("registry:missing@production", train_file))
    with pytest.raises(BaseModelNotFound, match="Hub is not reachable"):
        submit_job(registry, _spec("meta-llama/Llama-3.2-1B", train_file), probe_hub=NO_HUB)
    assert registry.jobs.list() == []


def test_gpus_that_are_not_there(registry: Registry, tiny_model: Path, train_file: Path) -> None:
    import torch

    if torch.cuda.device_count() >= 2:
        pytest.skip("this machine has two GPUs")
    with pytest.raises(SettingImpossible, match="--gpus 2 asks for 2 CUDA device"):
        submit_job(registry, _spec(tiny_model, train_file, gpus=2))
    assert registry.jobs.list() == []


def test_submit_uploads_files_pins_the_base_and_is_idempotent(
    registry: Registry, tiny_model: Path, train_file: Path
) -> None:
    registry.models.register("tiny", "hf", path=tiny_model)
    registry.labels.set("model", "tiny", "production", 1)
    spec = _spec("registry:tiny@production", train_file)
    job, created = submit_job(registry, spec, idempotency_key="k1")
    assert created and job.status == "queued"
    assert job.spec["base_model"] == "registry:tiny@1"
    assert job.spec["training_file"].startswith("file-")
    again, created_again = submit_job(registry, spec, idempotency_key="k1")
    assert again.id == job.id and not created_again
    events = [e.message for e in registry.jobs.events(job.id)]
    assert any("files validated: 4 training row(s) (chat)" in m for m in events)
    # a file id is accepted as the training file
    by_id, _ = submit_job(registry, {**spec, "training_file": job.spec["training_file"]})
    assert by_id.spec["training_file"] == job.spec["training_file"]


def test_the_submitter_is_recorded_and_a_remote_one_names_no_paths(
    registry: Registry, tiny_model: Path, train_file: Path
) -> None:
    registry.models.register("tiny", "hf", path=tiny_model)
    job, _ = submit_job(registry, _spec(tiny_model, train_file))  # the machine's own user
    assert job.spec["submitted_by"] == {
        "via": "cli", "principal": "tester", "name": "tester", "holds_label_scope": True,
    }  # fmt: skip
    assert job.created_by == "tester"
    remote = Submitter(via="http", principal="key_1", name="ml", holds_label_scope=False)
    upload = job.spec["training_file"]
    for spec, param in (
        (_spec(tiny_model, train_file), "base_model"),
        (_spec("registry:tiny@1", train_file), "training_file"),
        ({**_spec("registry:tiny@1", train_file), "training_file": upload,
          "eval": {"suite": str(train_file)}}, "eval"),
    ):  # fmt: skip
        with pytest.raises(SpecInvalid) as err:
            submit_job(registry, spec, submitter=remote)
        assert err.value.param == param
    job, _ = submit_job(
        registry, {**_spec("registry:tiny@1", train_file), "training_file": upload},
        submitter=remote,
    )  # fmt: skip
    assert job.spec["submitted_by"]["via"] == "http" and job.created_by == "key_1 (ml)"
    # a spec file cannot claim a submitter: the entry point's replaces it
    claimed = {**_spec(tiny_model, train_file), "submitted_by": remote.model_dump()}
    job, _ = submit_job(registry, claimed)
    assert job.spec["submitted_by"]["via"] == "cli"


def test_the_output_model_name_is_checked_before_queueing(
    registry: Registry, tiny_model: Path, train_file: Path
) -> None:
    with pytest.raises(InvalidInput) as err:
        submit_job(registry, {**_spec(tiny_model, train_file), "output_model": "../escape"})
    assert err.value.param == "output_model"
    assert registry.jobs.list() == []
