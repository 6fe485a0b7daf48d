"""Loading litellm: slow (seconds), so only on first use or in a background thread.

litellm fetches its model cost map from the internet at import unless told not to; with
``gateway.litellm_local_cost_map`` (the default) it uses the copy bundled with the package.
That switch is litellm's own environment variable, set here just before the import.
"""

from __future__ import annotations

import os
import threading
import warnings
from typing import Any

_LOCK = threading.Lock()


def load_litellm(local_cost_map: bool = True) -> Any:
    with _LOCK:
        if local_cost_map:
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        with warnings.catch_warnings():  # pydantic's notes on litellm's own TypedDicts
            warnings.filterwarnings("ignore", message=".*ReadOnly.*qualifier", category=UserWarning)
            import litellm

        litellm.suppress_debug_info = True
        return litellm
