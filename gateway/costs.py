"""Cost per call: ``gateway.prices`` first, then litellm's model cost map.

The map is the JSON file bundled with the litellm package, read directly: importing litellm
would take seconds and over 100 MB per worker. It is read once, off the request path, into
a plain dict of per-token prices: in the background at start-up when call records compute
costs, else on the first call that needs a price. A call that needs one (a key with a
budget) waits for the load (:meth:`CostTable.wait_ready`) instead of costing nothing.

A model is priced when ``gateway.prices`` or the map has it (by the model a deployment
names, ``provider/model``, or the model without its provider prefix). For an unpriced
model :meth:`CostTable.cost` is None; the proxy refuses such a call for a key with a budget
unless ``gateway.unpriced: allow`` (see :mod:`gateway.proxy`).
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from collections.abc import Mapping
from pathlib import Path

import anyio.to_thread
import orjson

from lockgate.gateway.settings import PriceSettings

COST_MAP_FILE = "model_prices_and_context_window_backup.json"
LOAD_WAIT_S = 60.0

log = logging.getLogger(__name__)
Prices = dict[str, tuple[float, float]]


def litellm_cost_map() -> Path | None:
    """Where the installed litellm keeps its bundled cost map (None: not installed)."""
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / COST_MAP_FILE


class CostTable:
    def __init__(
        self,
        prices: Mapping[str, PriceSettings] | None = None,
        *,
        cost_map: Path | None = None,
    ) -> None:
        self._overrides: Prices = {name: p.per_token() for name, p in (prices or {}).items()}
        self._prices: Prices = {}
        self._cost_map = cost_map
        self.ready = threading.Event()
        self._loading: threading.Thread | None = None
        self._lock = threading.Lock()

    def load_in_background(self) -> threading.Thread:
        """Start reading the cost map (once; later calls return the same thread)."""
        with self._lock:
            if self._loading is None:
                self._loading = threading.Thread(
                    target=self._load, name="lockgate-cost-map", daemon=True
                )
                self._loading.start()
            return self._loading

    async def wait_ready(self) -> None:
        """Return once the cost map is loaded (or could not be: then only gateway.prices)."""
        if self.ready.is_set():
            return
        self.load_in_background()
        await anyio.to_thread.run_sync(self.ready.wait, LOAD_WAIT_S, abandon_on_cancel=True)

    def _load(self) -> None:
        try:
            path = self._cost_map or litellm_cost_map()
            if path is None:
                log.warning("litellm is not installed: only gateway.prices price calls")
                return
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
        except Exception:  # boundary: the map is optional; unpriced models are refused to
            # keys with a budget (gateway.unpriced), so this fails closed, not open
            log.warning(
                "litellm's model cost map could not be read; only gateway.prices price calls",
                exc_info=True,
            )
        finally:
            self.ready.set()

    def price(self, provider: str | None, model: str | None) -> tuple[float, float] | None:
        """(input, output) USD per token, or None when the model has no price."""
        if not model:
            return None
        for table in (self._overrides, self._prices):
            prices = table.get(model)
            if prices is None and provider:
                prices = table.get(f"{provider}/{model}")
            if prices is None and "/" in model:
                prices = table.get(model.split("/", 1)[1])
            if prices is not None:
                return prices
        return None

    def cost(
        self, provider: str | None, model: str | None, input_tokens: int | None,
        output_tokens: int | None,
    ) -> float | None:  # fmt: skip
        if input_tokens is None and output_tokens is None:
            return None
        prices = self.price(provider, model)
        if prices is None:
            return None
        return (input_tokens or 0) * prices[0] + (output_tokens or 0) * prices[1]
