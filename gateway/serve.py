"""``lockgate serve``: the gateway under uvicorn (uvloop and httptools when installed).

One worker runs the app built here from the settings already read; several workers each
build their own from ``lockgate.gateway.app:app_factory``, which reads the same configuration.
Either way the worker tunes the garbage collector once its state is built (:func:`tune_runtime`).

At start-up it says, on stderr in uvicorn's log format, which configuration file it read
(``--config``, ``$LOCKGATE_CONFIG`` or ``./lockgate.yaml``; or "no configuration file:
built-in defaults") and which routes it serves, and warns, one line per route and
variable, about a deployment whose ``api_key_env`` names an unset variable
(:func:`startup_report`): its calls would go upstream without a key.

Before binding, :func:`gateway.auth.check_exposure` refuses a gateway without API keys on
anything but loopback, and an ``admin_key_env`` naming an unset variable.

On SIGTERM each worker first drains for ``server.shutdown_drain_s`` (``/readyz`` fails while
requests are still served, so a load balancer takes it out: :mod:`gateway.drain`); then
uvicorn stops accepting, lets in-flight calls (streams) finish for
``server.graceful_shutdown_s``, then runs the app's shutdown, which writes every queued call
record before the process exits (:mod:`gateway.call_records`).
"""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path

from lockgate.gateway.config import LockgateSettings
from lockgate.gateway.settings import GatewaySettings


def _log_line(level: str, message: str) -> str:
    """``INFO:     message``, as uvicorn's default formatter writes its own lines."""
    return f"{level + ':':<9} {message}"


def unset_key_warnings(gateway: GatewaySettings) -> list[str]:
    """One line per route and variable: a deployment names ``api_key_env`` but the
    variable was unset or empty when the settings were read (so no key was resolved)."""
    lines = []
    for name, route in gateway.routes.items():
        missing: dict[str, list[str]] = {}
        for deployment in route.deployments:
            if deployment.api_key_env and deployment.api_key is None:
                missing.setdefault(deployment.api_key_env, []).append(deployment.label)
        for var, labels in missing.items():
            lines.append(
                f"route {name!r}: api_key_env {var} is not set, so {', '.join(labels)} "
                f"will be called without a key; export {var} before `lockgate serve`"
            )
    return lines


def startup_report(settings: LockgateSettings) -> list[str]:
    """The lines ``serve`` writes before binding: the configuration file, the routes, a
    warning per route whose key variable is unset, and whether UI sessions outlive the
    process."""
    source = settings.source_file
    lines = [
        _log_line("INFO", f"configuration file: {source}")
        if source is not None
        else _log_line("INFO", "no configuration file: built-in defaults")
    ]
    routes = settings.gateway.routes
    if routes:
        served = ", ".join(
            f"{name} ({', '.join(d.label for d in route.deployments)})"
            for name, route in routes.items()
        )
        lines.append(_log_line("INFO", f"routes: {served}"))
    else:
        lines.append(
            _log_line("INFO", "routes: none configured (registry: and prompt: models only)")
        )
    lines += [_log_line("WARNING", w) for w in unset_key_warnings(settings.gateway)]
    if settings.ui.enabled and not settings.ui.session_secret_env:
        lines.append(_log_line("INFO", (
            "ui: no ui.session_secret_env, so UI sessions are signed with a random secret of "
            "this process: they do not survive a restart and are not shared between workers"
        )))  # fmt: skip
    return lines


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

    from lockgate.gateway.auth import check_exposure

    host = host or settings.server.host
    port = port or settings.server.port
    workers = workers or settings.server.workers
    for line in startup_report(settings):
        print(line, file=sys.stderr, flush=True)
    check_exposure(settings, host, None)
    common = {
        "host": host, "port": port, "loop": "auto", "http": "auto", "access_log": False,
        "log_level": log_level, "timeout_graceful_shutdown": settings.server.graceful_shutdown_s,
    }  # fmt: skip
    if workers > 1:
        source = settings.source_file or config_path
        if source is not None:
            # the worker processes read the configuration themselves (load_settings)
            os.environ["LOCKGATE_CONFIG"] = str(source.resolve())
        uvicorn.run("lockgate.gateway.app:app_factory", factory=True, workers=workers, **common)  # type: ignore[arg-type]
        return
    from lockgate.gateway.app import create_app

    app = create_app(settings, tune_runtime=True, drain_on_sigterm=True)
    uvicorn.run(app, **common)  # type: ignore[arg-type]


# Allocations (less deallocations) between two young-generation collections: Python's
# default of 700 means a collection every few requests, each scanning the objects of every
# call in flight.
GC_YOUNG_THRESHOLD = 10_000
# How long a thread may hold the GIL while another waits for it (Python's default: 5 ms).
SWITCH_INTERVAL_S = 0.001


def tune_runtime() -> None:
    """Keep the collector off the request path of a serving worker, and the writer threads
    from holding the event loop up for long.

    With the default thresholds the collector took 12-25% of the CPU of a proxied
    call and its full collections, walking the ~165,000 objects of the imported libraries and
    the app's state, paused the event loop for 100-150 ms: the gateway's p99 (see
    docs/benchmarks.md, "Gateway"). Everything alive once the state is built lives as long as
    the worker, so it is moved out of the collector's sight (``gc.freeze``), and young
    collections run every :data:`GC_YOUNG_THRESHOLD` allocations instead of 700. Cyclic
    garbage is still collected; reference counting frees everything else at once.

    The call-record writer and the OTLP exporter run Python in threads; while one of them
    holds the GIL the event loop waits for up to the switch interval at every step of a
    request. 1 ms instead of 5 ms took the p99 at concurrency 1 from ~13 ms to ~6 ms.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    sys.setswitchinterval(SWITCH_INTERVAL_S)


def refreeze() -> None:
    """After an import that ends once the worker is tuned (litellm's warm-up, in a thread,
    see :mod:`gateway.providers.litellm_sdk`): its objects join the frozen ones, out of the
    collector's sight, as everything alive at start-up did. Nothing in a process that froze
    nothing (an app in a test, or built without ``tune_runtime``)."""
    if gc.get_freeze_count():
        gc.collect()
        gc.freeze()
