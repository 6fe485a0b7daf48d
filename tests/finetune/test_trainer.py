"""The trainer on a tiny Llama: loss falls, answers change, packing is exact."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lockgate.finetune.spec import parse_spec
from lockgate.finetune.trainer import TrainInputs, train
from tests.finetune.conftest import QA, chat_rows, write_jsonl


class Recorder:
    def __init__(self) -> None:
        self.steps: list[tuple[int, dict[str, float]]] = []
        self.checkpoints: list[int] = []

    def on_resume(self, step: int) -> None:
        raise AssertionError(f"a fresh training resumed from step {step}")

    def on_step(self, step: int, total: int, metrics: dict[str, float]) -> None:
        self.steps.append((step, metrics))

    def on_checkpoint(self, step: int, path: Path) -> None:
        self.checkpoints.append(step)

    def should_stop(self) -> bool:
        return False


def test_training_lowers_loss_and_changes_answers(tiny_model: Path, tmp_path: Path) -> None:
    from lockgate.finetune.inference import attach_adapter, generate, load_base

    train_file = write_jsonl(tmp_path / "train.jsonl", chat_rows(4))
    spec = parse_spec(
        {
            "base_model": str(tiny_model),
            "training_file": str(train_file),
            "output_model": "bot",
            "validation_file": str(train_file),
            "gpus": 0,
            "lora": {"r": 8},
            "training": {
                "epochs": 6,
                "batch_size": 4,
                "learning_rate": 1e-2,
                "checkpoint_every": 10,
                "eval_every": 5,
            },
        }
    )
    hooks = Recorder()
    result = train(
        TrainInputs(
            spec, str(tiny_model), train_file, train_file, tmp_path / "out", tmp_path / "ckpt"
        ),
        hooks,
    )
    assert result.steps == result.total_steps == 24
    losses = [m["loss"] for _, m in hooks.steps]
    assert losses[-1] < 0.1 * losses[0]
    assert {"loss", "learning_rate", "grad_norm", "tokens_per_s"} <= set(hooks.steps[0][1])
    val = [m["val_loss"] for _, m in hooks.steps if "val_loss" in m]
    assert len(val) >= 4 and val[-1] < val[0]
    assert hooks.checkpoints == [10, 20, 24]
    assert (result.adapter_dir / "adapter_config.json").is_file()

    base = load_base(tiny_model)
    question = [{"role": "user", "content": QA[0][0]}]
    before = generate(base, question, max_new_tokens=8)
    attach_adapter(base, result.adapter_dir, "bot")
    after = generate(base, question, adapter="bot", max_new_tokens=8)
    assert after != before
    assert after.strip().startswith("The sky is green")
    assert generate(base, question, max_new_tokens=8) == before  # base still reachable


def test_packed_forward_matches_separate_sequences(tiny_model: Path) -> None:
    import torch

    from lockgate.finetune.encoding import Encoded
    from lockgate.finetune.packing import collate_packed
    from lockgate.finetune.trainer import load_model

    model, _ = load_model(str(tiny_model), torch, dtype=torch.float32, device="cpu")
    a, b = [1, 40, 41, 42, 43], [1, 50, 51, 52]
    packed = collate_packed([Encoded(a, a), Encoded(b, b)], torch)
    assert packed["position_ids"].tolist() == [[0, 1, 2, 3, 4, 0, 1, 2, 3]]
    assert packed["labels"][0, 5].item() == -100
    with torch.no_grad():
        joint = model(
            input_ids=packed["input_ids"], position_ids=packed["position_ids"], use_cache=False
        ).logits[0]
        alone = model(input_ids=torch.tensor([b]), use_cache=False).logits[0]
    assert torch.allclose(joint[5:], alone, atol=1e-5)


@pytest.mark.parametrize("template", [True, False])
def test_loss_only_on_assistant_tokens(tmp_path: Path, template: bool) -> None:
    pytest.importorskip("transformers")
    from transformers import AutoTokenizer

    from lockgate.finetune.data import Example
    from lockgate.finetune.encoding import encode_example
    from tests.finetune.conftest import build_tiny_model

    folder = build_tiny_model(tmp_path / "m", chat_template=template)
    tok = AutoTokenizer.from_pretrained(folder)
    ex = Example(
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Who wrote Hamlet?"},
            {"role": "assistant", "content": "A cat.", "weight": 1},
        ]
    )
    enc = encode_example(tok, ex, 256)
    assert enc is not None
    trained = tok.decode(
        [t for t, lab in zip(enc.input_ids, enc.labels, strict=True) if lab != -100]
    )
    assert trained.replace("</s>", "").strip() == "A cat."
    assert "</s>" in trained  # the end of the turn is learned too
    comp = encode_example(tok, Example(prompt="2+2=", completion=" four"), 256)
    assert comp is not None
    assert tok.decode(
        [t for t, lab in zip(comp.input_ids, comp.labels, strict=True) if lab != -100]
    ).startswith(" four")


def _toy_batch(torch: Any, ids: list[int], labels: list[int]) -> dict[str, Any]:
    return {"input_ids": torch.tensor([ids]), "labels": torch.tensor([labels])}


def _toy_loss(model: Any, batch: dict[str, Any]) -> tuple[Any, int]:
    """Summed squared error of a one-number embedding predicting the next label."""
    keep = batch["labels"][:, 1:] != -100
    predicted = model(batch["input_ids"][:, :-1]).squeeze(-1)
    error = (predicted - batch["labels"][:, 1:].float())[keep]
    return (error**2).sum(), int(keep.sum())


def test_accumulation_weighs_every_trained_token_of_the_step_alike() -> None:
    """The gradient of a step is that of its mean token loss, however its sequences fall
    into micro-batches: two micro-batches give what one packed row of both gives."""
    torch = pytest.importorskip("torch")
    from lockgate.finetune.steps import accumulate

    first = ([1, 2, 3, 4], [-100, 5, 6, 7])  # 3 trained tokens
    second = ([5, 6], [-100, 9])  # 1: a per-micro-batch mean would weigh it 3 times over
    packed = (first[0] + second[0], first[1] + second[1])  # -100 at the boundary

    def grads(batches: list[tuple[list[int], list[int]]]) -> tuple[Any, Any]:
        torch.manual_seed(0)
        model = torch.nn.Embedding(10, 1)
        done = accumulate(model, [_toy_batch(torch, *b) for b in batches], _toy_loss, torch)
        return done, model.weight.grad.clone()

    split, split_grad = grads([first, second])
    whole, whole_grad = grads([packed])
    assert (split.trained, split.tokens) == (whole.trained, whole.tokens) == (4.0, 6)
    assert split.loss_sum == pytest.approx(whole.loss_sum)
    assert torch.allclose(split_grad, whole_grad)
    torch.manual_seed(0)
    model = torch.nn.Embedding(10, 1)
    loss, n = _toy_loss(model, _toy_batch(torch, *packed))
    (loss / n).backward()
    assert torch.allclose(whole_grad, model.weight.grad)  # the mean over the step's tokens


def _spec_for(model: Path, train_file: Path, **training: Any) -> Any:
    return parse_spec(
        {
            "base_model": str(model),
            "training_file": str(train_file),
            "output_model": "bot",
            "gpus": 0,
            "lora": {"r": 4},
            "training": {"batch_size": 2, "learning_rate": 5e-3, **training},
        }
    )


class StopAfter(Recorder):
    def __init__(self, step: int | None = None) -> None:
        super().__init__()
        self.stop_after = step
        self.resumed: list[int] = []

    def on_resume(self, step: int) -> None:
        self.resumed.append(step)

    def should_stop(self) -> bool:
        return self.stop_after is not None and self.steps[-1][0] >= self.stop_after


def test_a_resumed_run_continues_exactly_where_the_checkpoint_left(
    tiny_model: Path, tmp_path: Path
) -> None:
    """Stopped after step 3 with a checkpoint at 2, then resumed: steps 3 to 6 and the
    adapter are those of a run that was never stopped (accumulation, warm-up, two epochs)."""
    import torch
    from safetensors.torch import load_file

    from lockgate.finetune.trainer import TrainingStopped

    train_file = write_jsonl(tmp_path / "train.jsonl", chat_rows(2))  # 8 examples
    spec = _spec_for(
        tiny_model, train_file, epochs=3, gradient_accumulation=2, warmup_ratio=0.3,
        checkpoint_every=2,
    )  # fmt: skip

    def inputs(name: str) -> TrainInputs:
        return TrainInputs(
            spec, str(tiny_model), train_file, None, tmp_path / name, tmp_path / name / "ck"
        )

    reference = StopAfter()
    whole = train(inputs("whole"), reference)
    assert whole.total_steps == 6 and reference.checkpoints == [2, 4, 6]

    stopped = StopAfter(3)
    with pytest.raises(TrainingStopped, match="stopped at step 3 of 6"):
        train(inputs("parts"), stopped)
    assert stopped.checkpoints == [2]
    resumed = StopAfter()
    result = train(inputs("parts"), resumed)
    assert resumed.resumed == [2] and result.resumed_from == 2

    def drop_speed(steps: list[tuple[int, dict[str, float]]]) -> list[Any]:
        return [(s, {k: v for k, v in m.items() if k != "tokens_per_s"}) for s, m in steps]

    assert drop_speed(resumed.steps) == drop_speed(reference.steps[2:])
    assert (result.steps, result.tokens_seen) == (whole.steps, whole.tokens_seen)
    ours = load_file(str(result.adapter_dir / "adapter_model.safetensors"))
    theirs = load_file(str(whole.adapter_dir / "adapter_model.safetensors"))
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
