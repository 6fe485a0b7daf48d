"""Import optional dependencies, saying which extra to install when one is missing."""

from __future__ import annotations

import importlib
from types import ModuleType

from lockgate.registry.errors import MissingExtra


def require(module: str, *, feature: str, extra: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtra(feature, extra) from exc
