"""The step schedule: how many optimizer steps a run takes, which micro-batches each step
reads, where a resumed run picks up, and the learning rate of each step. Pure arithmetic (no
torch), so every rule here is checked without a model.

* Steps: ``steps_per_epoch = ceil(micro_batches / (gradient_accumulation x world_size))``;
  ``total`` is ``steps_per_epoch x epochs`` capped by ``max_steps``, fixed before the first
  step, so a resumed run ends on the same step as an uninterrupted one.
* Micro-batches: step ``s`` reads, in the epoch ``s // steps_per_epoch``, the
  ``gradient_accumulation x world_size`` micro-batches from
  ``(s mod steps_per_epoch) x gradient_accumulation x world_size`` on; rank ``r`` takes every
  ``world_size``-th of them from the ``r``-th. The last step of an epoch may run short: alone,
  it reads what is left; under DDP every rank must run the same number of micro-batches, so
  positions past the end wrap around to the start of the epoch.
* Learning rate: a linear warm-up over the first ``int(total x warmup_ratio)`` steps, then a
  linear decay to 0 at ``total`` (the factor :class:`torch.optim.lr_scheduler.LambdaLR`
  multiplies the base rate by).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lockgate.finetune.checkpoints import TrainState


@dataclass(frozen=True)
class Schedule:
    micro_batches: int  # per epoch: ceil(examples / batch_size)
    accumulation: int  # micro-batches per rank per optimizer step
    world: int  # ranks (1 without torchrun)
    steps_per_epoch: int
    total: int  # optimizer steps of the whole run
    warmup: int  # warm-up steps

    @classmethod
    def plan(
        cls,
        examples: int,
        *,
        batch_size: int,
        accumulation: int,
        world: int,
        epochs: int,
        max_steps: int | None = None,
        warmup_ratio: float = 0.0,
    ) -> Schedule:
        """The schedule of a run over ``examples`` training sequences."""
        if examples < 1:
            raise ValueError("a schedule needs at least one example")
        micro_batches = math.ceil(examples / batch_size)
        steps_per_epoch = math.ceil(micro_batches / (accumulation * world))
        total = steps_per_epoch * epochs
        if max_steps is not None:
            total = min(total, max_steps)
        warmup = int(total * warmup_ratio)
        return cls(micro_batches, accumulation, world, steps_per_epoch, total, warmup)

    def lr_factor(self, step: int) -> float:
        """The multiplier of the base learning rate at optimizer step ``step`` (0-based)."""
        if step < self.warmup:
            return (step + 1) / (self.warmup + 1)
        return max(0.0, (self.total - step) / max(1, self.total - self.warmup))

    def epoch(self, step: int) -> int:
        """The epoch optimizer step ``step`` (0-based) belongs to."""
        return step // self.steps_per_epoch

    def first_micro_batch(self, step: int) -> int:
        """The position in its epoch's order of the first micro-batch step ``step`` reads."""
        return (step % self.steps_per_epoch) * self.accumulation * self.world

    def picks(self, step: int, rank: int) -> list[int]:
        """Positions in the epoch's order of the micro-batches ``rank`` reads at ``step``."""
        first = self.first_micro_batch(step)
        wanted = [first + a * self.world + rank for a in range(self.accumulation)]
        n = self.micro_batches
        return [i % n for i in wanted if i < n or self.world > 1]

    def after(self, state: TrainState, tokens: int) -> TrainState:
        """The state once the step ``state.step`` is done, having read ``tokens`` input tokens
        (over all ranks): what a checkpoint saves and a resumed run starts from."""
        step = state.step + 1
        return TrainState(
            step,
            self.total,
            self.epoch(step),
            self.first_micro_batch(step),
            state.tokens_seen + tokens,
            state.fingerprint,
        )
