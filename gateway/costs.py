"""Cost per call from litellm's model cost map, loaded in a background thread.

The map is the JSON file bundled with the litellm package, read directly: importing litellm
would take seconds and over 100 MB per worker. It is read once, off the request path, into
a plain dict of per-token prices; until it is ready (or for an unknown model) cost is None.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from pathlib import Path

import orjson

COST_MAP_FILE = "model_prices_and_context_window_backup.json"

log = logging.getLogger(__name__)


class CostTable:
    def __init__(self) -> None:
        self._prices: dict[str, tuple[float, float]] = {}
        self.ready = threading.Event()

    def load_in_background(self) -> threading.Thread:
        thread = threading.Thread(target=self._load, name="lockgate-cost-map", daemon=True)
        thread.start()
        return thread

    def _load(self) -> None:
        try:
            spec = importlib.util.find_spec("litellm")
            if spec is None or not spec.submodule_search_locations:
                return
            path = Path(next(iter(spec.submodule_search_locations))) / COST_MAP_FILE
            model_cost = orjson.loads(path.read_bytes())
            prices = {}
            for name, entry in model_cost.items():
                if not isinstance(entry, dict):
                    continue
                given = entry.get("input_cost_per_token"), entry.get("output_cost_per_token")
                if isinstance(given[0], (int, float)):
                    out = given[1] if isinstance(given[1], (int, float)) else 0.0
                    prices[name] = (float(given[0]), float(out))
            self._prices = prices
        except Exception:  # boundary: costs are optional, calls are not
            log.warning(
                "litellm's model cost map could not be read; costs stay empty", exc_info=True
            )
        finally:
            self.ready.set()

    def cost(
        self, provider: str | None, model: str | None, input_tokens: int | None,
        output_tokens: int | None,
    ) -> float | None:  # fmt: skip
        if not model or (input_tokens is None and output_tokens is None):
            return None
        prices = self._prices.get(model)
        if prices is None and provider:
            prices = self._prices.get(f"{provider}/{model}")
        if prices is None and "/" in model:
            prices = self._prices.get(model.split("/", 1)[1])
        if prices is None:
            return None
        return (input_tokens or 0) * prices[0] + (output_tokens or 0) * prices[1]
