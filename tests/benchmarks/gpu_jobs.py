"""Whole fine-tuning jobs through lockgate's real worker, for ``gpu_check.py``.

Each subcommand is one process (its peak memory is its own) and writes its figures as JSON:

* ``setup``: a base model of the chosen shape (random weights, tokenizer built here,
  ``model_shapes.py``) registered as the ``hf`` model ``gpu-check-base``, and a small chat
  dataset.
* ``local``: a job through ``Worker.poll_once`` and the local executor, which registers
  ``gpu-check-local@1``; then the same job again in a worker process that is SIGKILLed after
  its first checkpoint, resumed by a worker with another work_dir (the checkpoint comes from
  the artifact store), ending on the same step and, within tolerance, the same loss.
* ``torchrun``: the same job through the ``torchrun`` executor, one process (the path a
  multi-GPU node takes), registering ``gpu-check-torchrun@1``; compared with the local run.

    .venv/bin/python tests/benchmarks/gpu_jobs.py setup --device cpu --shape tiny \\
        --work W --out W/setup.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

BASE = "gpu-check-base"
# per shape: training rows, batch size, epochs, answer length in words (-> 12 steps)
JOB_SIZES = {"tiny": (16, 4, 3, (8, 40)), "qwen2-0.5b": (192, 16, 1, (20, 120))}
CHECKPOINT_EVERY = 4
LOSS_TOLERANCE = {"cpu": 1e-3, "cuda": 1e-2}  # relative; bf16 kernels on CUDA are not bitwise

KILLABLE_WORKER = """
import sys, time
from pathlib import Path
from lockgate.registry import Registry, RegistrySettings
from lockgate.finetune import Worker, WorkerSettings
from lockgate.finetune.reporting import RegistryHooks
reported = RegistryHooks.on_step
def on_step(self, step, total, metrics):  # slower steps, so the kill lands mid-job
    reported(self, step, total, metrics); time.sleep(0.2)
RegistryHooks.on_step = on_step
registry = Registry(RegistrySettings.model_validate_json(sys.argv[1]))
Worker(registry, WorkerSettings(work_dir=Path(sys.argv[2]), heartbeat_interval_s=0.1),
       worker_id="doomed").poll_once()
"""


def _registry(work: Path) -> Any:
    from lockgate.registry import Registry, RegistrySettings

    return Registry(RegistrySettings(data_dir=work / "registry"), actor="gpu-check")


def _peak_memory(device: str) -> dict[str, Any]:
    if device == "cuda":
        import torch

        return {"peak_mem_mib": torch.cuda.max_memory_allocated() / 2**20, "mem_unit": "GPU"}
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"peak_mem_mib": rss, "mem_unit": "RSS (CPU)"}


def imported_distributions() -> list[str]:
    """The installed distributions this process imported (what the device must have)."""
    import importlib.metadata as md

    tops = {name.split(".")[0] for name in list(sys.modules)}
    found = md.packages_distributions()
    return sorted({d for top in tops for d in found.get(top, [])})


def setup(args: argparse.Namespace) -> dict[str, Any]:
    from model_shapes import chat_rows, write_model_dir

    started = time.perf_counter()
    model_dir = write_model_dir(args.shape, args.work / "base-model", device=args.device)
    built = time.perf_counter() - started
    rows, _, _, answer_words = JOB_SIZES[args.shape]
    data = chat_rows(rows, seed=7, answer_words=answer_words)
    for name, part in (("train", data), ("val", data[:8])):
        text = "".join(json.dumps(r) + "\n" for r in part)
        (args.work / f"{name}.jsonl").write_text(text, encoding="utf-8")
    registry = _registry(args.work)
    version, _ = registry.models.register(BASE, "hf", path=model_dir, message="gpu_check base")
    registry.close()
    size = sum(f.stat().st_size for f in model_dir.iterdir()) / 2**20
    return {"base_model": f"{version.name}@{version.version}", "model_mib": size,
            "build_s": built, "seconds": time.perf_counter() - started}  # fmt: skip


def job_spec(args: argparse.Namespace, output_model: str, **extra: Any) -> dict[str, Any]:
    _, batch, epochs, _ = JOB_SIZES[args.shape]
    return {
        "base_model": f"registry:{BASE}@latest",
        "training_file": str(args.work / "train.jsonl"),
        "validation_file": str(args.work / "val.jsonl"),
        "output_model": output_model,
        "gpus": 1 if args.device == "cuda" else 0,
        "lora": {"r": 16},
        "training": {"epochs": epochs, "batch_size": batch, "learning_rate": 1e-3,
                     "checkpoint_every": CHECKPOINT_EVERY, "max_seq_length": 512},
        **extra,
    }  # fmt: skip


def _step_rate(registry: Any, run_id: str) -> float | None:
    """Median tokens/s of the job's steps after the first (which pays for warm-up)."""
    rates = sorted(p.value for p in registry.runs.get(run_id).series
                   if p.key == "tokens_per_s" and p.step > 1)  # fmt: skip
    return rates[len(rates) // 2] if rates else None


def _job_figures(registry: Any, done: Any, seconds: float) -> dict[str, Any]:
    result = done.result or {}
    return {
        "status": done.status, "error": done.error, "model": result.get("model"),
        "steps": result.get("steps"), "total_steps": result.get("total_steps"),
        "loss": (result.get("metrics") or {}).get("loss"),
        "val_loss": (result.get("metrics") or {}).get("val_loss"),
        "tokens_seen": result.get("tokens_seen"), "seconds": seconds,
        "step_tokens_per_s": _step_rate(registry, done.run_id) if done.run_id else None,
    }  # fmt: skip


def local(args: argparse.Namespace) -> dict[str, Any]:
    from lockgate.finetune import Worker, WorkerSettings, submit_job

    registry = _registry(args.work)
    folder = args.work / "local"
    shutil.rmtree(folder, ignore_errors=True)
    spec = job_spec(args, "gpu-check-local")
    submit_job(registry, spec)
    started = time.perf_counter()
    done = Worker(
        registry, WorkerSettings(work_dir=folder / "a"), worker_id="gpu-check"
    ).poll_once()
    assert done is not None
    out: dict[str, Any] = {"job": _job_figures(registry, done, time.perf_counter() - started)}
    out["job"].update(_peak_memory(args.device))
    out["registered"] = _is_lora(registry, out["job"]["model"])

    # the same job again: SIGKILL its worker after the first checkpoint, resume elsewhere
    job, _ = submit_job(registry, spec)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    child = subprocess.Popen(
        [sys.executable, "-c", KILLABLE_WORKER, registry.settings.model_dump_json(),
         str(folder / "b")], cwd=ROOT, env=env,
    )  # fmt: skip
    deadline = time.monotonic() + args.kill_timeout
    mark = f"checkpoint at step {CHECKPOINT_EVERY}"
    while not any(e.message.startswith(mark) for e in registry.jobs.events(job.id)):
        if child.poll() is not None:
            raise RuntimeError("the worker to kill ended before its first checkpoint")
        if time.monotonic() > deadline:
            child.kill()
            raise RuntimeError(f"no {mark!r} within {args.kill_timeout} s")
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    time.sleep(1.0)  # the dead worker's heartbeat goes stale
    settings = WorkerSettings(work_dir=folder / "c", stale_after_s=0.5)
    started = time.perf_counter()
    resumed = Worker(registry, settings, worker_id="rescuer").poll_once()
    assert resumed is not None and resumed.id == job.id, resumed
    figures = _job_figures(registry, resumed, time.perf_counter() - started)
    figures["attempts"] = resumed.attempts
    figures["resumed_from"] = (resumed.result or {}).get("resumed_from")
    ref_loss, loss = out["job"]["loss"], figures["loss"]
    diff = abs(loss - ref_loss) / abs(ref_loss) if loss is not None and ref_loss else None
    figures["loss_rel_diff"] = diff
    figures["tolerance"] = LOSS_TOLERANCE[args.device]
    figures["holds"] = bool(
        resumed.status == "succeeded" and resumed.attempts == 2
        and (figures["resumed_from"] or 0) >= CHECKPOINT_EVERY
        and figures["steps"] == out["job"]["steps"]
        and diff is not None and diff <= LOSS_TOLERANCE[args.device]
    )  # fmt: skip
    out["resume"] = figures
    registry.close()
    return out


def _is_lora(registry: Any, ref: str | None) -> bool:
    return bool(ref) and registry.models.get(ref).flavor == "lora"


def torchrun(args: argparse.Namespace) -> dict[str, Any]:
    from lockgate.finetune import Worker, WorkerSettings, submit_job
    from lockgate.finetune.executors import ExecutorSettings

    registry = _registry(args.work)
    folder = args.work / "torchrun"
    shutil.rmtree(folder, ignore_errors=True)
    sibling = Path(sys.executable).parent / "torchrun"
    launcher = str(sibling) if sibling.exists() else "torchrun"
    executors = ExecutorSettings(torchrun=launcher, poll_interval_s=0.2)
    if args.device == "cuda":  # one GPU: the spec asks for torchrun itself
        spec = job_spec(args, "gpu-check-torchrun", executor="torchrun")
        settings = WorkerSettings(work_dir=folder, executors=executors)
    else:  # a spec cannot ask for torchrun without GPUs; the worker can force it
        spec = job_spec(args, "gpu-check-torchrun")
        settings = WorkerSettings(work_dir=folder, executor="torchrun", executors=executors)
    submit_job(registry, spec)
    started = time.perf_counter()
    done = Worker(registry, settings, worker_id="gpu-check-torchrun").poll_once()
    assert done is not None
    out: dict[str, Any] = {"job": _job_figures(registry, done, time.perf_counter() - started)}
    out["registered"] = _is_lora(registry, out["job"]["model"])
    out["launcher"] = launcher
    log = next(folder.glob("jobs/*/output/launch.log"), None)
    out["launch_log_tail"] = log.read_text(errors="replace")[-1500:] if log else None
    out["compared_with_local"] = _compare(registry, folder, args.compare_with, out["job"]["model"])
    registry.close()
    return out


def _compare(registry: Any, folder: Path, local_ref: str, ref: str | None) -> dict[str, Any] | None:
    """The torchrun adapter against the local executor's (same spec, same seed)."""
    from lockgate.registry.errors import NotFound

    if ref is None:
        return None
    try:
        other, ours = registry.models.get(local_ref), registry.models.get(ref)
    except NotFound:
        return None
    from safetensors.torch import load_file

    tensors, raw = [], []
    for name, version in (("local", other), ("torchrun", ours)):
        path = registry.models.fetch(f"{version.name}@{version.version}", folder / name)
        tensors.append(load_file(str(path / "adapter_model.safetensors")))
        raw.append((path / "adapter_model.safetensors").read_bytes())
    a, b = tensors
    same_keys = set(a) == set(b)
    diff = max(float((a[k].float() - b[k].float()).abs().max()) for k in a) if same_keys else None
    loss, ref_loss = ours.spec["metrics"].get("loss"), other.spec["metrics"].get("loss")
    rel = abs(loss - ref_loss) / abs(ref_loss) if loss is not None and ref_loss else None
    return {"same_tensors": same_keys, "max_abs_weight_diff": diff, "loss_rel_diff": rel,
            "identical_weights_file": raw[0] == raw[1]}  # fmt: skip


COMMANDS = {"setup": setup, "local": local, "torchrun": torchrun}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("command", choices=sorted(COMMANDS))
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--shape", choices=sorted(JOB_SIZES), default="tiny")
    p.add_argument("--work", type=Path, required=True, help="shared folder of the gpu_check run")
    p.add_argument("--out", type=Path, required=True, help="JSON file for the figures")
    p.add_argument("--threads", type=int, default=1, help="torch threads on CPU")
    p.add_argument("--kill-timeout", type=float, default=180.0)
    p.add_argument("--compare-with", default="gpu-check-local@1", help="torchrun: the local run")
    args = p.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.device == "cpu" and args.command != "torchrun":  # its parent needs no torch
        import torch

        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    figures = COMMANDS[args.command](args)
    figures["process_s"] = time.perf_counter() - started
    figures["litellm_imported"] = "litellm" in sys.modules
    figures["distributions"] = imported_distributions()
    args.out.write_text(json.dumps(figures, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
