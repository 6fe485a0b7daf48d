"""Benchmark: lockgate's packed LoRA training against the plain transformers + PEFT recipe.

Same model (built from a config, random weights), same data (chat-like sequences of varied
length, loss on the second half of each), same LoRA settings, same effective batch:

* ``lockgate``: padding-free packing (one row per micro-batch, position ids restarting per
  sequence, SDPA), logits only at trained positions, bf16 weights + autocast where the GPU
  supports bf16, fp32 on CPU.
* ``baseline``: the recipe from the transformers/PEFT docs — ``Trainer``, a collator that
  pads to the longest sequence in the batch, ``fp16=True`` on GPU (fp32 weights), fp32 on CPU.

Each recipe runs in its own process, so peak memory is its own: peak GPU memory allocated
on CUDA, peak resident set size (RSS) on CPU. tokens/s counts real (non-padding) tokens.
Target (issue 6, on a GPU): at least 1.5x the baseline's tokens/s at no more memory.
``--gradient-checkpointing`` turns it on in both recipes (non-reentrant, as lockgate's
trainer does); ``--max-len`` with ``--median-len`` makes the sequences longer; ``--json``
writes the figures for ``gpu_check.py``. Shapes: ``model_shapes.py`` (random weights).

    .venv/bin/python tests/benchmarks/finetune_throughput.py --device cpu   # tiny, ~1 min
    .venv/bin/python tests/benchmarks/finetune_throughput.py --device cuda --shape qwen2-0.5b
"""

from __future__ import annotations

import argparse
import json
import math
import random
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from model_shapes import SHAPES, build_config  # noqa: E402


def make_data(
    n: int, vocab: int, min_len: int, max_len: int, seed: int = 0, mu: float = 5.0
) -> list[Any]:
    """Lengths log-normal around e**mu tokens (148 by default), capped at ``max_len``."""
    from lockgate.finetune.encoding import Encoded

    rng = random.Random(seed)
    out = []
    for _ in range(n):
        length = int(min(max_len, max(min_len, rng.lognormvariate(mu, 0.8))))
        ids = [rng.randrange(4, vocab) for _ in range(length)]
        cut = length // 2
        out.append(Encoded(ids, [-100] * cut + ids[cut:]))
    return out


def build_model(shape: str, torch: Any, dtype: Any) -> Any:
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(
        build_config(shape), attn_implementation="sdpa", dtype=dtype
    )


def lora(model: Any) -> Any:
    from peft import LoraConfig, get_peft_model

    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    config = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules=targets,
                        task_type="CAUSAL_LM")  # fmt: skip
    return get_peft_model(model, config)


def peak_memory(torch: Any, device: str) -> tuple[float, str]:
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20, "peak GPU MiB"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "peak RSS MiB (CPU)"


def run_lockgate(args: argparse.Namespace, data: list[Any], torch: Any) -> dict[str, Any]:
    from lockgate.finetune.packing import collate_packed
    from lockgate.finetune.trainer import _Loss

    cuda = args.device == "cuda"
    bf16 = cuda and torch.cuda.is_bf16_supported()
    model = build_model(args.shape, torch, torch.bfloat16 if bf16 else torch.float32)
    if args.gradient_checkpointing:  # as finetune.trainer does it
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model = lora(model)
    model.to(args.device).train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-4)
    loss_fn = _Loss(model, torch)
    per_step = args.batch_size * args.grad_accum
    tokens, started = 0, 0.0
    for step in range(args.steps + args.warmup):
        if step == args.warmup:
            if cuda:
                torch.cuda.synchronize()
            tokens, started = 0, time.perf_counter()
        chunk = [data[(step * per_step + i) % len(data)] for i in range(per_step)]
        batches = [chunk[i : i + args.batch_size] for i in range(0, per_step, args.batch_size)]
        trained = sum(sum(1 for x in s.labels[1:] if x != -100) for s in chunk)
        for mb in batches:
            batch = {k: v.to(args.device) for k, v in collate_packed(mb, torch).items()}
            ctx = torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else _null()
            with ctx:
                loss, _ = loss_fn(model, batch)
            (loss / trained).backward()
            tokens += batch["input_ids"].numel()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    if cuda:
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - started
    mem, unit = peak_memory(torch, args.device)
    return {"recipe": "lockgate (packed, bf16)" if bf16 else "lockgate (packed)",
            "tokens_per_s": tokens / elapsed, "peak_mem_mib": mem, "mem_unit": unit,
            "tokens": tokens, "seconds": elapsed}  # fmt: skip


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def run_baseline(args: argparse.Namespace, data: list[Any], torch: Any) -> dict[str, Any]:
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from lockgate.finetune.packing import collate_padded

    cuda = args.device == "cuda"
    model = lora(build_model(args.shape, torch, torch.float32))
    per_step = args.batch_size * args.grad_accum
    n = per_step * (args.steps + args.warmup)
    rows = [{"input_ids": data[i % len(data)].input_ids, "labels": data[i % len(data)].labels}
            for i in range(n)]  # fmt: skip

    def collate(features: list[dict[str, Any]]) -> dict[str, Any]:
        from lockgate.finetune.encoding import Encoded

        return collate_padded([Encoded(f["input_ids"], f["labels"]) for f in features], torch, 0)

    clock: dict[str, float] = {}

    class Timer(TrainerCallback):  # type: ignore[misc]
        def on_step_end(self, targs: Any, state: Any, control: Any, **kw: Any) -> None:
            if state.global_step == args.warmup:
                if cuda:
                    torch.cuda.synchronize()
                clock["start"] = time.perf_counter()

    targs = TrainingArguments(
        output_dir=str(Path(args.tmp) / "baseline"), per_device_train_batch_size=args.batch_size,
        gradient_accumulation_steps=args.grad_accum, max_steps=args.steps + args.warmup,
        learning_rate=1e-4, fp16=cuda, use_cpu=not cuda, logging_steps=10**9, save_strategy="no",
        report_to=[], dataloader_drop_last=False, remove_unused_columns=False,
        disable_tqdm=True, seed=0, gradient_checkpointing=args.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False},
    )  # fmt: skip
    trainer = Trainer(model=model, args=targs, train_dataset=rows, data_collator=collate,
                      callbacks=[Timer()])  # fmt: skip
    trainer.train()
    if cuda:
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - clock["start"]
    # the Trainer shuffles with a seeded sampler; real tokens of the timed steps, on average
    mean_len = sum(len(r["input_ids"]) for r in rows) / len(rows)
    tokens = mean_len * per_step * args.steps
    mem, unit = peak_memory(torch, args.device)
    return {"recipe": "baseline (Trainer, pad longest" + (", fp16)" if cuda else ")"),
            "tokens_per_s": tokens / elapsed, "peak_mem_mib": mem, "mem_unit": unit,
            "tokens": tokens, "seconds": elapsed}  # fmt: skip


def child(args: argparse.Namespace) -> None:
    import torch

    if args.device == "cpu":
        torch.set_num_threads(args.threads)
    vocab = SHAPES[args.shape]["vocab_size"]
    mu = math.log(args.median_len) if args.median_len else 5.0
    data = make_data(args.examples, vocab, 16, args.max_len, mu=mu)
    run = run_lockgate if args.recipe == "lockgate" else run_baseline
    print(json.dumps(run(args, data, torch)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--grad-accum", type=int, default=2)
    p.add_argument("--max-len", type=int, default=512)
    p.add_argument("--median-len", type=int, help="median sequence length (default 148)")
    p.add_argument("--examples", type=int, default=512)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--recipes", default="baseline,lockgate", help="comma-separated, in order")
    p.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    p.add_argument("--recipe", choices=["lockgate", "baseline"], help=argparse.SUPPRESS)
    p.add_argument("--tmp", default="/tmp/lockgate-ft-bench", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.recipe:
        child(args)
        return
    results = {}
    for recipe in args.recipes.split(","):
        cmd = [sys.executable, __file__, "--recipe", recipe, *sys.argv[1:]]
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            sys.exit(f"{recipe} failed:\n{out.stderr[-3000:]}")
        results[recipe] = json.loads(out.stdout.strip().splitlines()[-1])
    config = {
        k: getattr(args, k)
        for k in (
            "device",
            "shape",
            "steps",
            "warmup",
            "batch_size",
            "grad_accum",
            "max_len",
            "median_len",
            "examples",
            "gradient_checkpointing",
        )
    }
    summary: dict[str, Any] = {"config": config, "results": results}
    print(f"device={args.device} shape={args.shape} steps={args.steps} "
          f"batch={args.batch_size}x{args.grad_accum} max_len={args.max_len} "
          f"gradient_checkpointing={args.gradient_checkpointing}")  # fmt: skip
    for r in results.values():
        print(f"  {r['recipe']:<40} {r['tokens_per_s']:>10.0f} tokens/s  "
              f"{r['peak_mem_mib']:>8.0f} {r['mem_unit']}")  # fmt: skip
    if {"baseline", "lockgate"} <= set(results):
        base, ours = results["baseline"], results["lockgate"]
        summary["speedup"] = ours["tokens_per_s"] / base["tokens_per_s"]
        summary["memory_ratio"] = ours["peak_mem_mib"] / base["peak_mem_mib"]
        print(f"  speed-up {summary['speedup']:.2f}x, "
              f"memory {summary['memory_ratio']:.2f}x of the baseline")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
