"""Checkpoints: everything a resumed run needs to continue exactly where one stopped.

A checkpoint is a folder ``step-NNNNNNN`` under the job's checkpoint directory::

    adapter/          the LoRA weights and adapter_config.json (``save_pretrained``)
    optimizer.pt      AdamW state
    scheduler.pt      learning-rate schedule state
    rng.pt            torch (CPU and CUDA) and Python RNG states (dropout continues alike)
    state.json        step, total_steps, epoch and micro-batch position, tokens seen

It is written under a temporary name and renamed into place, so a worker killed while
saving leaves the previous checkpoint intact. The last ``keep`` checkpoints are kept.

With the registry, each checkpoint is also copied to the artifact store as the run artifact
``checkpoint/step-NNNNNNN`` (:func:`upload_checkpoint`), and a worker that resumes the job
on another machine fetches the latest one first (:func:`restore_checkpoint`): a requeued job
resumes wherever it lands, not only where its checkpoint directory is.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lockgate.registry.registry import Registry

PREFIX = "step-"
ARTIFACT_PREFIX = "checkpoint/"


@dataclass(frozen=True)
class TrainState:
    step: int  # optimizer steps done
    total_steps: int
    epoch: int  # the epoch the next step belongs to
    micro_batch: int  # the first micro-batch (of that epoch) the next step reads
    tokens_seen: int
    fingerprint: str  # what the run trains: a checkpoint of another spec is not resumed


def checkpoint_dirs(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX)]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX) :]))


def latest_checkpoint(root: Path) -> Path | None:
    dirs = [p for p in checkpoint_dirs(root) if (p / "state.json").is_file()]
    return dirs[-1] if dirs else None


def read_state(path: Path) -> TrainState:
    return TrainState(**json.loads((path / "state.json").read_text(encoding="utf-8")))


def save_checkpoint(
    root: Path,
    state: TrainState,
    model: Any,
    optimizer: Any,
    scheduler: Any,
    torch: Any,
    *,
    keep: int = 2,
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{PREFIX}{state.step:07d}"
    tmp = root / f".tmp-{final.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    model.save_pretrained(tmp / "adapter")
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    rng = {"torch": torch.get_rng_state(), "python": _python_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    torch.save(rng, tmp / "rng.pt")
    (tmp / "state.json").write_text(json.dumps(asdict(state)), encoding="utf-8")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in checkpoint_dirs(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(
    path: Path, model: Any, optimizer: Any, scheduler: Any, torch: Any
) -> TrainState:
    from peft import set_peft_model_state_dict
    from peft.utils import load_peft_weights

    device = next(p.device for p in model.parameters())
    set_peft_model_state_dict(model, load_peft_weights(str(path / "adapter"), device=str(device)))
    optimizer.load_state_dict(
        torch.load(path / "optimizer.pt", map_location=device, weights_only=True)
    )
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
    rng = torch.load(path / "rng.pt", weights_only=True)
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    random.setstate(_python_tuple(rng["python"]))
    return read_state(path)


def _python_state() -> list[Any]:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def _python_tuple(state: list[Any]) -> tuple[Any, ...]:
    return (state[0], tuple(state[1]), state[2])


def upload_checkpoint(registry: Registry, run_id: str, path: Path) -> str:
    """Copy a checkpoint folder to the artifact store as a run artifact; returns its digest."""
    return registry.runs.log_artifact(run_id, ARTIFACT_PREFIX + path.name, path)


def stored_checkpoint(registry: Registry, run_id: str) -> tuple[int, str] | None:
    """The step and digest of the run's latest stored checkpoint, if it has one."""
    found = [
        (int(name[len(ARTIFACT_PREFIX + PREFIX) :]), digest)
        for name, digest in registry.runs.artifacts(run_id).items()
        if name.startswith(ARTIFACT_PREFIX + PREFIX)
    ]
    return max(found) if found else None


def restore_checkpoint(registry: Registry, run_id: str, root: Path) -> int | None:
    """Fetch the run's latest stored checkpoint into ``root`` when it is newer than the
    latest one there (a job resumed on another machine); returns its step, or None when
    nothing was fetched."""
    stored = stored_checkpoint(registry, run_id)
    if stored is None:
        return None
    step, digest = stored
    local = latest_checkpoint(root)
    if local is not None and read_state(local).step >= step:
        return None
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{PREFIX}{step:07d}"
    tmp = root / f".fetch-{final.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        registry.artifacts.fetch_dir(digest, tmp)  # hash-verified
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    return step
