"""A custom scorer used by the suite tests (``module:function``)."""

from __future__ import annotations

from typing import Any


def length_ratio(output: str, reference: str, example: dict[str, Any]) -> float:
    return len(output) / max(1, len(reference))
