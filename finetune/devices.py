"""What the machine can do: CUDA devices, bf16, and the check behind ``--gpus N``."""

from __future__ import annotations

from dataclasses import dataclass

from lockgate.finetune import _torch
from lockgate.finetune.errors import SettingImpossible


@dataclass(frozen=True)
class DevicePlan:
    device: str  # "cuda" | "cpu"
    gpus: int  # devices used (0 on CPU)
    bf16: bool


def cuda_device_count() -> int:
    torch = _torch.torch()
    return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0


def check_gpus(gpus: int | None, *, available: int | None = None) -> None:
    """Refuse ``gpus`` this machine does not have (``None`` and 0 always fit)."""
    if not gpus:
        return
    have = cuda_device_count() if available is None else available
    if have < gpus:
        found = "none" if have == 0 else f"only {have}"
        raise SettingImpossible(
            f"--gpus {gpus} asks for {gpus} CUDA device(s) but this machine has {found}; "
            "use --gpus 0 to train on the CPU, or submit with --executor kubernetes to run on "
            "a GPU node",
            param="gpus",
        )


def plan_devices(gpus: int | None, bf16: bool | None) -> DevicePlan:
    """Pick the device for this process (one rank): CUDA when asked or present."""
    torch = _torch.torch()
    have = cuda_device_count()
    check_gpus(gpus, available=have)
    use_cuda = have > 0 and gpus != 0
    supports_bf16 = bool(use_cuda and torch.cuda.is_bf16_supported())
    if bf16 and not supports_bf16:
        raise SettingImpossible(
            "bf16 was asked for but no CUDA device here supports it", param="training.bf16"
        )
    return DevicePlan(
        device="cuda" if use_cuda else "cpu",
        gpus=(gpus or 1) if use_cuda else 0,
        bf16=supports_bf16 if bf16 is None else bool(bf16),
    )
