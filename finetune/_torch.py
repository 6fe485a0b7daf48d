"""Lazy access to the training stack, naming the extra to install when it is missing."""

from __future__ import annotations

from types import ModuleType

from lockgate.registry._extras import require

FEATURE = "fine-tuning"
EXTRA = "finetune"


def torch() -> ModuleType:
    return require("torch", feature=FEATURE, extra=EXTRA)


def transformers() -> ModuleType:
    return require("transformers", feature=FEATURE, extra=EXTRA)


def peft() -> ModuleType:
    return require("peft", feature=FEATURE, extra=EXTRA)


def require_stack() -> None:
    """Fail early, with the install hint, when any part of the stack is missing."""
    torch()
    transformers()
    peft()
