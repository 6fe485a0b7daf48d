"""The LoRA trainer: a lean loop over transformers + PEFT.

* Model: ``AutoModelForCausalLM.from_pretrained(attn_implementation="sdpa")``, bf16 weights
  when the GPU supports bf16 (adapters stay fp32 and run under autocast), else fp32;
  optional gradient checkpointing (non-reentrant).
* Data: :mod:`finetune.encoding` (loss masks), :mod:`finetune.packing` (order, packing).
* Loss: summed token cross-entropy over a whole optimizer step (all micro-batches of the
  accumulation, all ranks) divided by the number of trained tokens in it, so every trained
  token weighs the same however sequences fall into micro-batches. Logits are computed only
  at positions that predict a trained token (``logits_to_keep`` with indices), which skips
  the vocabulary projection for prompt tokens.
* Steps: ``steps_per_epoch = ceil(micro_batches / (gradient_accumulation x world_size))``;
  total steps are fixed before the first step, so a resumed run ends on the same step
  (:mod:`finetune.schedule`: steps, the micro-batches of each step, the learning rate).
* Checkpoints every ``checkpoint_every`` steps and at the end (:mod:`finetune.checkpoints`);
  a run starts from the latest checkpoint in its checkpoint directory when there is one.
* DDP: when launched by ``torchrun`` each rank takes every ``world_size``-th micro-batch;
  rank 0 alone reports metrics and writes checkpoints.

The loop, one part per concern: :func:`_setup` (model, data, optimizer, schedule),
:func:`_resume` (the latest checkpoint), :func:`_train_step` (one optimizer step, its
micro-batches through :func:`finetune.steps.accumulate`), :func:`_after_step` (evaluation,
reporting, checkpoints, a cancel) and :func:`_finish` (the adapter and the final metrics).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from lockgate.finetune import _torch
from lockgate.finetune.checkpoints import (
    TrainState,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from lockgate.finetune.data import load_examples
from lockgate.finetune.devices import DevicePlan, plan_devices
from lockgate.finetune.encoding import Encoded, encode_all
from lockgate.finetune.errors import TrainingFailed
from lockgate.finetune.packing import collate_packed, collate_padded, micro_batches
from lockgate.finetune.schedule import Schedule
from lockgate.finetune.spec import JobSpec, TrainingParams
from lockgate.finetune.steps import Autocast, accumulate, agree, evaluate


class TrainingStopped(Exception):
    """Raised inside the loop when the hooks ask it to stop (a cancel)."""


class TrainHooks(Protocol):
    def on_resume(self, step: int) -> None: ...

    def on_step(self, step: int, total: int, metrics: dict[str, float]) -> None: ...

    def on_checkpoint(self, step: int, path: Path) -> None: ...

    def should_stop(self) -> bool: ...


class NullHooks:
    def on_resume(self, step: int) -> None:
        return None

    def on_step(self, step: int, total: int, metrics: dict[str, float]) -> None:
        return None

    def on_checkpoint(self, step: int, path: Path) -> None:
        return None

    def should_stop(self) -> bool:
        return False


@dataclass
class TrainResult:
    adapter_dir: Path
    steps: int
    total_steps: int
    resumed_from: int | None
    tokens_seen: int
    metrics: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "adapter_dir": str(self.adapter_dir),
            "steps": self.steps,
            "total_steps": self.total_steps,
            "resumed_from": self.resumed_from,
            "tokens_seen": self.tokens_seen,
            "metrics": self.metrics,
        }


@dataclass(frozen=True)
class TrainInputs:
    spec: JobSpec
    base_model: str  # a directory (or hub id) from_pretrained can load here
    train_path: Path
    val_path: Path | None
    output_dir: Path  # the final adapter goes to output_dir / "adapter"
    checkpoint_dir: Path


def fingerprint(spec: JobSpec) -> str:
    data = {
        "lora": spec.lora.model_dump(),
        "training": spec.training.model_dump(),
        "base": spec.base_model,
        "data": [spec.training_file, spec.validation_file],
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def load_model(base_model: str, torch: Any, *, dtype: Any, device: str) -> tuple[Any, Any]:
    transformers = _torch.transformers()
    tokenizer = transformers.AutoTokenizer.from_pretrained(base_model)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        base_model, dtype=dtype, attn_implementation="sdpa"
    )
    return model.to(device), tokenizer


def add_lora(model: Any, spec: JobSpec) -> Any:
    peft = _torch.peft()
    config = peft.LoraConfig(
        r=spec.lora.r,
        lora_alpha=spec.lora.lora_alpha,
        lora_dropout=spec.lora.dropout,
        target_modules=spec.lora.modules_for(getattr(model.config, "model_type", None)),
        task_type="CAUSAL_LM",
    )
    return peft.get_peft_model(model, config)


class _Loss:
    """Summed next-token cross-entropy over trained positions of one packed/padded batch."""

    def __init__(self, model: Any, torch: Any) -> None:
        self.torch = torch
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        self.select = "logits_to_keep" in inspect.signature(base.forward).parameters

    def __call__(self, model: Any, batch: dict[str, Any]) -> tuple[Any, int]:
        torch = self.torch
        labels = batch["labels"]
        targets = labels[:, 1:]
        keep = targets != -100
        n = int(keep.sum())
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        if self.select and labels.shape[0] == 1:
            index = keep[0].nonzero().squeeze(-1)  # positions predicting a trained token
            logits = model(**inputs, use_cache=False, logits_to_keep=index).logits[0]
            gold = targets[0, index]
        else:
            logits = model(**inputs, use_cache=False).logits[:, :-1][keep]
            gold = targets[keep]
        loss = torch.nn.functional.cross_entropy(logits.float(), gold, reduction="sum")
        return loss, n


@contextmanager
def _distributed(torch: Any) -> Iterator[tuple[int, int]]:
    dist = torch.distributed
    if not dist.is_torchelastic_launched():
        yield 0, 1
        return
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend)
    try:
        yield dist.get_rank(), dist.get_world_size()
    finally:
        dist.destroy_process_group()


def train(inputs: TrainInputs, hooks: TrainHooks | None = None) -> TrainResult:
    """Train (or resume) a LoRA adapter; returns where it went and the final metrics."""
    torch = _torch.torch()
    with _distributed(torch) as (rank, world):
        return _train(inputs, hooks or NullHooks(), torch, rank, world)


def _train(
    inputs: TrainInputs, hooks: TrainHooks, torch: Any, rank: int, world: int
) -> TrainResult:
    run = _setup(inputs, torch, rank, world)
    state, resumed_from = _resume(run, hooks)
    metrics: dict[str, float] = {}
    run.model.train()
    while state.step < run.schedule.total:
        state, metrics = _train_step(run, state)
        _after_step(run, state, metrics, hooks)
    return _finish(run, state, metrics, resumed_from)


@dataclass
class _Run:
    """What one rank's loop works with, built once by :func:`_setup`."""

    inputs: TrainInputs
    params: TrainingParams
    torch: Any
    rank: int
    world: int
    device: str
    model: Any  # the PEFT model: evaluated, checkpointed, saved
    wrapped: Any  # what the training forward runs: ``model``, in DDP on several ranks
    trainable: list[Any]
    optimizer: Any
    scheduler: Any
    loss_fn: _Loss
    collate: Callable[[list[Encoded]], dict[str, Any]]
    autocast: Autocast
    train_set: list[Encoded]
    val_set: list[Encoded]
    dropped: int  # training examples with no trained token left after truncation
    schedule: Schedule


def _device(torch: Any, plan: DevicePlan, rank: int, world: int) -> str:
    """This rank's device: its own GPU under torchrun, else the current one (or the CPU)."""
    if plan.device != "cuda":
        return "cpu"
    if world > 1:
        local = rank % torch.cuda.device_count()
        torch.cuda.set_device(local)
        return f"cuda:{local}"
    return f"cuda:{torch.cuda.current_device()}"


def _datasets(
    inputs: TrainInputs, tokenizer: Any, max_len: int
) -> tuple[list[Encoded], list[Encoded], int]:
    """The encoded training and validation sets, and how many training examples were dropped."""
    train_set, dropped = encode_all(tokenizer, load_examples(inputs.train_path), max_len)
    if not train_set:
        raise TrainingFailed("no training example has a trained token after truncation")
    val_set: list[Encoded] = []
    if inputs.val_path is not None:
        val_set, _ = encode_all(tokenizer, load_examples(inputs.val_path), max_len)
    return train_set, val_set, dropped


def _setup(inputs: TrainInputs, torch: Any, rank: int, world: int) -> _Run:
    """Load the model and data, add LoRA, and build the optimizer and the schedule."""
    spec, params = inputs.spec, inputs.spec.training
    plan = plan_devices(spec.gpus, params.bf16)
    device = _device(torch, plan, rank, world)
    torch.manual_seed(params.seed)  # before the LoRA weights are drawn
    dtype = torch.bfloat16 if plan.bf16 else torch.float32
    model, tokenizer = load_model(inputs.base_model, torch, dtype=dtype, device=device)
    max_len = spec.seq_length(getattr(model.config, "max_position_embeddings", None))
    train_set, val_set, dropped = _datasets(inputs, tokenizer, max_len)
    if params.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model = add_lora(model, spec)
    model.peft_config["default"].base_model_name_or_path = spec.base_model
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        trainable, lr=params.learning_rate, weight_decay=params.weight_decay
    )
    schedule = Schedule.plan(
        len(train_set),
        batch_size=params.batch_size,
        accumulation=params.gradient_accumulation,
        world=world,
        epochs=params.epochs,
        max_steps=params.max_steps,
        warmup_ratio=params.warmup_ratio,
    )
    # a plain function, as before: LambdaLR keeps it out of the checkpoint's scheduler state
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: schedule.lr_factor(s))
    wrapped = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    pad_id = tokenizer.pad_token_id or 0

    def collate(batch: list[Encoded]) -> dict[str, Any]:
        if params.packing:
            return collate_packed(batch, torch)
        return collate_padded(batch, torch, pad_id)

    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if plan.bf16 else nullcontext
    return _Run(
        inputs, params, torch, rank, world, device, model, wrapped, trainable, optimizer,
        scheduler, _Loss(model, torch), collate, autocast, train_set, val_set, dropped, schedule,
    )  # fmt: skip


def _resume(run: _Run, hooks: TrainHooks) -> tuple[TrainState, int | None]:
    """The state to start from: the latest checkpoint's (loaded into the model, optimizer,
    scheduler and RNGs), else step 0; and the step resumed from, if any."""
    fresh = TrainState(0, run.schedule.total, 0, 0, 0, fingerprint(run.inputs.spec))
    last = latest_checkpoint(run.inputs.checkpoint_dir)
    if last is None:
        return fresh, None
    saved = load_checkpoint(last, run.model, run.optimizer, run.scheduler, run.torch)
    if saved.fingerprint != fresh.fingerprint or saved.total_steps != fresh.total_steps:
        raise TrainingFailed(f"checkpoint {last} belongs to another spec; remove it to restart")
    if run.rank == 0:
        hooks.on_resume(saved.step)
    return saved, saved.step


def _step_batches(run: _Run, step: int) -> list[dict[str, Any]]:
    """This rank's micro-batches of optimizer step ``step``, collated (still on the CPU)."""
    schedule, params = run.schedule, run.params
    order = micro_batches(len(run.train_set), params.batch_size, params.seed, schedule.epoch(step))
    return [
        run.collate([run.train_set[j] for j in order[i]]) for i in schedule.picks(step, run.rank)
    ]


def _train_step(run: _Run, state: TrainState) -> tuple[TrainState, dict[str, float]]:
    """One optimizer step from ``state``: the state after it and the step's metrics."""
    world, steps_per_epoch = run.world, run.schedule.steps_per_epoch
    batches = _step_batches(run, state.step)
    started = time.perf_counter()
    done = accumulate(
        run.wrapped, batches, run.loss_fn, run.torch,
        device=run.device, world=world, autocast=run.autocast,
    )  # fmt: skip
    grad_norm = float(run.torch.nn.utils.clip_grad_norm_(run.trainable, run.params.max_grad_norm))
    lr = float(run.scheduler.get_last_lr()[0])
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    elapsed = max(time.perf_counter() - started, 1e-9)
    state = run.schedule.after(state, done.tokens * world)
    metrics = {
        "loss": done.loss_sum / max(done.trained / world, 1.0),
        "learning_rate": lr,
        "grad_norm": grad_norm,
        "tokens_per_s": done.tokens * world / elapsed,
        "epoch": state.step / steps_per_epoch,
    }
    return state, metrics


def _after_step(run: _Run, state: TrainState, metrics: dict[str, float], hooks: TrainHooks) -> None:
    """Evaluate, report and checkpoint as the spec asks; stop (every rank) when told to."""
    params, step, total = run.params, state.step, state.total_steps
    eval_every = params.eval_every or params.checkpoint_every or 0
    if run.val_set and eval_every and (step % eval_every == 0 or step == total):
        metrics["val_loss"] = _evaluate(run)
    if run.rank == 0 and (step % params.log_every == 0 or step == total or "val_loss" in metrics):
        hooks.on_step(step, total, dict(metrics))
    every = params.checkpoint_every
    if run.rank == 0 and ((every and step % every == 0) or step == total):
        path = save_checkpoint(
            run.inputs.checkpoint_dir, state, run.model, run.optimizer, run.scheduler, run.torch
        )
        hooks.on_checkpoint(step, path)
    if step < total and agree(hooks.should_stop(), run.torch, run.world, run.device):
        raise TrainingStopped(f"stopped at step {step} of {total}")


def _finish(
    run: _Run, state: TrainState, metrics: dict[str, float], resumed_from: int | None
) -> TrainResult:
    """Save the adapter (rank 0) and complete the final metrics."""
    adapter_dir = run.inputs.output_dir / "adapter"
    if run.rank == 0:
        run.model.save_pretrained(adapter_dir)
    if run.val_set and "val_loss" not in metrics:
        metrics["val_loss"] = _evaluate(run)
    if run.dropped:
        metrics["dropped_examples"] = float(run.dropped)
    total = run.schedule.total
    return TrainResult(adapter_dir, state.step, total, resumed_from, state.tokens_seen, metrics)


def _evaluate(run: _Run) -> float:
    return evaluate(
        run.model, run.val_set, run.params.batch_size, run.collate, run.loss_fn,
        run.torch, run.device, run.autocast,
    )  # fmt: skip
