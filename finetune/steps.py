"""One optimizer step's arithmetic, apart from the loop: the gradient accumulation over
micro-batches (and DDP ranks), the validation loss, and the ranks' agreement to stop.

A loss function here takes ``(model, batch)`` and returns ``(summed token loss, trained
tokens)`` of that micro-batch, as :class:`finetune.trainer._Loss` does.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from lockgate.finetune.encoding import Encoded

LossFn = Callable[[Any, dict[str, Any]], tuple[Any, int]]
Autocast = Callable[[], AbstractContextManager[Any]]


@dataclass(frozen=True)
class StepLoss:
    loss_sum: float  # summed token loss of this rank's micro-batches
    trained: float  # trained tokens of the whole step, all ranks
    tokens: int  # input tokens this rank read


def accumulate(
    model: Any,
    batches: list[dict[str, Any]],
    loss_fn: LossFn,
    torch: Any,
    *,
    device: str = "cpu",
    world: int = 1,
    autocast: Autocast = nullcontext,
) -> StepLoss:
    """Forward and backward over one optimizer step's micro-batches, leaving in the gradients
    that of the step's summed token loss divided by the step's trained tokens (all
    micro-batches, all ranks: DDP averages over ranks, hence ``x world``). Under DDP the
    gradients are synchronised once, on the last micro-batch."""
    counts = torch.tensor(
        [sum(int((b["labels"][:, 1:] != -100).sum()) for b in batches)],
        dtype=torch.float64,
        device=device,
    )
    if world > 1:
        torch.distributed.all_reduce(counts)
    trained = float(counts.item())
    loss_sum, tokens = 0.0, 0
    for i, batch in enumerate(batches):
        batch = {k: v.to(device) for k, v in batch.items()}
        sync = model.no_sync if world > 1 and i < len(batches) - 1 else nullcontext
        with sync(), autocast():
            loss, _ = loss_fn(model, batch)
            scaled = loss * world / trained
        scaled.backward()
        loss_sum += float(loss.detach())
        tokens += int(batch["input_ids"].numel())
    return StepLoss(loss_sum, trained, tokens)


def agree(flag: bool, torch: Any, world: int, device: str) -> bool:
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
    collate: Callable[[list[Encoded]], dict[str, Any]],
    loss_fn: LossFn,
    torch: Any,
    device: str,
    autocast: Autocast,
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
