"""``lockgate serve``: the gateway under uvicorn (uvloop and httptools when installed).

One worker runs the app built here from the settings already read; several workers each
build their own from ``gateway.app:app_factory``, which reads the same configuration.
"""

from __future__ import annotations

import os
from pathlib import Path

from gateway.config import LockgateSettings


def serve(
    settings: LockgateSettings,
    *,
    config_path: Path | None = None,
    host: str | None = None,
    port: int | None = None,
    workers: int | None = None,
    log_level: str = "info",
) -> None:
    import uvicorn

    host = host or settings.server.host
    port = port or settings.server.port
    workers = workers or settings.server.workers
    common = {
        "host": host, "port": port, "loop": "auto", "http": "auto", "access_log": False,
        "log_level": log_level, "timeout_graceful_shutdown": settings.server.graceful_shutdown_s,
    }  # fmt: skip
    if workers > 1:
        if config_path is not None:
            # the worker processes read the configuration themselves (load_settings)
            os.environ["LOCKGATE_CONFIG"] = str(config_path.resolve())
        uvicorn.run("gateway.app:app_factory", factory=True, workers=workers, **common)  # type: ignore[arg-type]
        return
    from gateway.app import create_app

    uvicorn.run(create_app(settings), **common)  # type: ignore[arg-type]
