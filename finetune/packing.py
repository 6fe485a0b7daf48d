"""Micro-batches: the order of examples, and how a micro-batch becomes tensors.

Order: each epoch is a permutation of the examples drawn from ``random.Random(seed, epoch)``
— independent of torch's RNG, so a resumed run sees exactly the batches the interrupted one
would have. Micro-batch ``i`` of an epoch holds examples ``perm[i*B:(i+1)*B]``.

Padding-free packing (:func:`collate_packed`): the micro-batch's sequences are concatenated
into one row of shape ``[1, total_tokens]`` with ``position_ids`` restarting at 0 for each
sequence and no attention mask. transformers (>= 4.53) turns restarting position ids into a
block-diagonal causal mask for SDPA (and varlen kernels for flash-attention), so no token
attends across a sequence boundary and no compute is spent on padding — the same contract as
``DataCollatorWithFlattening``, written here so batches stay tied to our data order. Every
sequence's first label is -100, so no loss crosses a boundary either.

:func:`collate_padded` pads to the longest sequence in the micro-batch (the plain recipe),
used when ``packing: false`` and by the benchmark's baseline.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from lockgate.finetune.encoding import Encoded


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    order = list(range(n))
    random.Random(f"{seed}:{epoch}").shuffle(order)
    return order


def micro_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    order = epoch_order(n, seed, epoch)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def collate_packed(batch: Sequence[Encoded], torch: Any) -> dict[str, Any]:
    ids: list[int] = []
    positions: list[int] = []
    labels: list[int] = []
    for seq in batch:
        ids.extend(seq.input_ids)
        positions.extend(range(len(seq.input_ids)))
        labels.extend([-100, *seq.labels[1:]])
    rows = {"input_ids": ids, "position_ids": positions, "labels": labels}
    return {key: torch.tensor([values], dtype=torch.long) for key, values in rows.items()}


def collate_padded(batch: Sequence[Encoded], torch: Any, pad_id: int) -> dict[str, Any]:
    width = max(len(seq.input_ids) for seq in batch)
    ids, mask, labels = [], [], []
    for seq in batch:
        pad = width - len(seq.input_ids)
        ids.append(seq.input_ids + [pad_id] * pad)
        mask.append([1] * len(seq.input_ids) + [0] * pad)
        labels.append(seq.labels + [-100] * pad)
    rows = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    return {key: torch.tensor(values, dtype=torch.long) for key, values in rows.items()}
