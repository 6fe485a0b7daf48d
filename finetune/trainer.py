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
  total steps are fixed before the first step, so a resumed run ends on the same step.
* Checkpoints every ``checkpoint_every`` steps and at the end (:mod:`finetune.checkpoints`);
  a run starts from the latest checkpoint in its checkpoint directory when there is one.
* DDP: when launched by ``torchrun`` each rank takes every ``world_size``-th micro-batch;
  rank 0 alone reports metrics and writes checkpoints.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import time
from collections.abc import Iterator
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
from lockgate.finetune.devices import plan_devices
from lockgate.finetune.encoding import Encoded, encode_all
from lockgate.finetune.errors import TrainingFailed
from lockgate.finetune.packing import collate_packed, collate_padded, micro_batches
from lockgate.finetune.spec import JobSpec


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
    spec, params = inputs.spec, inputs.spec.training
    plan = plan_devices(spec.gpus, params.bf16)
    device = f"cuda:{torch.cuda.current_device()}" if plan.device == "cuda" else "cpu"
    if world > 1 and plan.device == "cuda":
        local = rank % torch.cuda.device_count()
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    torch.manual_seed(params.seed)
    dtype = torch.bfloat16 if plan.bf16 else torch.float32
    model, tokenizer = load_model(inputs.base_model, torch, dtype=dtype, device=device)
    max_len = spec.seq_length(getattr(model.config, "max_position_embeddings", None))
    train_set, dropped = encode_all(tokenizer, load_examples(inputs.train_path), max_len)
    if not train_set:
        raise TrainingFailed("no training example has a trained token after truncation")
    val_set: list[Encoded] = []
    if inputs.val_path is not None:
        val_set, _ = encode_all(tokenizer, load_examples(inputs.val_path), max_len)
    if params.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model = add_lora(model, spec)
    model.peft_config["default"].base_model_name_or_path = spec.base_model
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        trainable, lr=params.learning_rate, weight_decay=params.weight_decay
    )
    per_epoch_mb = math.ceil(len(train_set) / params.batch_size)
    steps_per_epoch = math.ceil(per_epoch_mb / (params.gradient_accumulation * world))
    total = steps_per_epoch * params.epochs
    if params.max_steps is not None:
        total = min(total, params.max_steps)
    warmup = int(total * params.warmup_ratio)

    def schedule(s: int) -> float:
        if s < warmup:
            return (s + 1) / (warmup + 1)
        return max(0.0, (total - s) / max(1, total - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    wrapped = model
    if world > 1:
        wrapped = torch.nn.parallel.DistributedDataParallel(model)
    state = TrainState(0, total, 0, 0, 0, fingerprint(spec))
    resumed_from = None
    last = latest_checkpoint(inputs.checkpoint_dir)
    if last is not None:
        saved = load_checkpoint(last, model, optimizer, scheduler, torch)
        if saved.fingerprint != state.fingerprint or saved.total_steps != total:
            raise TrainingFailed(f"checkpoint {last} belongs to another spec; remove it to restart")
        state, resumed_from = saved, saved.step
        if rank == 0:
            hooks.on_resume(saved.step)
    loss_fn = _Loss(model, torch)
    pad_id = tokenizer.pad_token_id or 0

    def collate(batch: list[Encoded]) -> dict[str, Any]:
        if params.packing:
            return collate_packed(batch, torch)
        return collate_padded(batch, torch, pad_id)

    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if plan.bf16 else nullcontext
    eval_every = params.eval_every or params.checkpoint_every or 0
    metrics: dict[str, float] = {}
    model.train()
    while state.step < total:
        epoch = state.step // steps_per_epoch
        order = micro_batches(len(train_set), params.batch_size, params.seed, epoch)
        first = (state.step % steps_per_epoch) * params.gradient_accumulation * world
        picks = [first + a * world + rank for a in range(params.gradient_accumulation)]
        picks = [i % len(order) for i in picks if i < len(order) or world > 1]
        batches = [collate([train_set[j] for j in order[i]]) for i in picks]
        started = time.perf_counter()
        counts = torch.tensor(
            [sum(int((b["labels"][:, 1:] != -100).sum()) for b in batches)],
            dtype=torch.float64,
            device=device,
        )
        if world > 1:
            torch.distributed.all_reduce(counts)
        trained = float(counts.item())
        step_loss, tokens = 0.0, 0
        for i, batch in enumerate(batches):
            batch = {k: v.to(device) for k, v in batch.items()}
            sync = wrapped.no_sync if world > 1 and i < len(batches) - 1 else nullcontext
            with sync(), autocast():
                loss, _ = loss_fn(wrapped, batch)
                scaled = loss * world / trained
            scaled.backward()
            step_loss += float(loss.detach())
            tokens += int(batch["input_ids"].numel())
        grad_norm = float(torch.nn.utils.clip_grad_norm_(trainable, params.max_grad_norm))
        lr = float(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        elapsed = max(time.perf_counter() - started, 1e-9)
        step = state.step + 1
        state = TrainState(
            step,
            total,
            step // steps_per_epoch,
            (step % steps_per_epoch) * params.gradient_accumulation * world,
            state.tokens_seen + tokens * world,
            state.fingerprint,
        )
        metrics = {
            "loss": step_loss / max(trained / world, 1.0),
            "learning_rate": lr,
            "grad_norm": grad_norm,
            "tokens_per_s": tokens * world / elapsed,
            "epoch": step / steps_per_epoch,
        }
        if val_set and eval_every and (step % eval_every == 0 or step == total):
            metrics["val_loss"] = evaluate(
                model, val_set, params.batch_size, collate, loss_fn, torch, device, autocast
            )
        if rank == 0 and (step % params.log_every == 0 or step == total or "val_loss" in metrics):
            hooks.on_step(step, total, dict(metrics))
        every = params.checkpoint_every
        if rank == 0 and ((every and step % every == 0) or step == total):
            path = save_checkpoint(inputs.checkpoint_dir, state, model, optimizer, scheduler, torch)
            hooks.on_checkpoint(step, path)
        if step < total and _agree(hooks.should_stop(), torch, world, device):
            raise TrainingStopped(f"stopped at step {step} of {total}")
    adapter_dir = inputs.output_dir / "adapter"
    if rank == 0:
        model.save_pretrained(adapter_dir)
    if val_set and "val_loss" not in metrics:
        metrics["val_loss"] = evaluate(
            model, val_set, params.batch_size, collate, loss_fn, torch, device, autocast
        )
    if dropped:
        metrics["dropped_examples"] = float(dropped)
    return TrainResult(adapter_dir, state.step, total, resumed_from, state.tokens_seen, metrics)


def _agree(flag: bool, torch: Any, world: int, device: str) -> bool:
    """Every rank stops together (one rank stopping alone would hang the others)."""
    if world == 1:
        return flag
    value = torch.tensor([1 if flag else 0], device=device)
    torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
    return bool(value.item())


def evaluate(
    model: Any,
    examples: list[Encoded],
    batch_size: int,
    collate: Any,
    loss_fn: _Loss,
    torch: Any,
    device: str,
    autocast: Any,
) -> float:
    """Mean token loss over ``examples`` (no dropout, no gradients)."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(examples), batch_size):
            batch = {k: v.to(device) for k, v in collate(examples[i : i + batch_size]).items()}
            with autocast():
                loss, n = loss_fn(model, batch)
            total, count = total + float(loss), count + n
    if was_training:
        model.train()
    return total / max(count, 1)
