"""Draining a replica on SIGTERM before it stops (``server.shutdown_drain_s``).

A load balancer takes a replica out of rotation once its health check fails, which takes up
to its check interval times its fall count; a Kubernetes Service, once the endpoint is
removed. A replica that stopped accepting the moment it got SIGTERM would refuse what is sent
to it meanwhile. So, with ``server.shutdown_drain_s`` above 0, the first SIGTERM starts a drain:

1. ``GET /readyz`` answers 503 ``{"status": "draining"}``, so the balancer's check fails
   (``/healthz`` still answers 200: the process is alive and must not be restarted);
2. for ``shutdown_drain_s`` seconds the replica serves every request, old and new, as
   before, each answered with ``Connection: close``: kept-alive connections (the balancer's,
   or clients' through a Service) are closed after their answer and reopened elsewhere;
3. then the signal goes to the server it was meant for (uvicorn): it stops accepting, lets
   in-flight calls finish for ``server.graceful_shutdown_s``, and the app's shutdown writes
   every queued call record (:mod:`gateway.call_records`).

A second SIGTERM during the drain ends it at once; SIGINT (Ctrl+C) never waits for it. With
``shutdown_drain_s: 0`` (the default) SIGTERM goes straight to step 3, as it did before.

The handler is installed by the app's lifespan in a process the app owns (``lockgate serve``,
one worker or several: each worker drains itself) and only in the main thread, where signal
handlers live; it wraps whatever handler the server installed, and puts it back on shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

from starlette.types import Message, Send

log = logging.getLogger(__name__)
_CLOSE = (b"connection", b"close")


class Drain:
    """Whether this process is draining (set once, never cleared)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.since: float | None = None

    @property
    def draining(self) -> bool:
        return self.since is not None

    def start(self) -> None:
        if self.since is None:
            self.since = self._clock()


def closing(send: Send) -> Send:
    """``send`` with ``Connection: close`` added to the response's headers."""

    async def send_closing(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), _CLOSE]}
        await send(message)

    return send_closing


def install_drain(drain: Drain, seconds: float) -> Callable[[], None]:
    """Make the first SIGTERM start ``drain`` and reach the previous handler ``seconds``
    later (a second SIGTERM: at once). Call from the running event loop; returns the function
    that puts the previous handler back. Nothing is installed (and the returned function does
    nothing) when ``seconds`` is 0 or this is not the main thread."""
    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()
    previous = signal.getsignal(signal.SIGTERM)
    if previous is None:  # installed outside Python: the default is the best we can restore
        previous = signal.SIG_DFL
    timers: list[asyncio.TimerHandle] = []

    def restore() -> None:
        for timer in timers:
            timer.cancel()
        if signal.getsignal(signal.SIGTERM) is on_sigterm:
            signal.signal(signal.SIGTERM, previous)

    def hand_over() -> None:
        restore()
        signal.raise_signal(signal.SIGTERM)  # now the server's own handler: it stops

    def begin() -> None:
        if drain.draining:  # a second SIGTERM: stop draining
            log.warning("SIGTERM again: ending the drain now")
            hand_over()
            return
        drain.start()
        log.warning(
            "SIGTERM: draining for %g s (/readyz answers 503, requests are still served), "
            "then shutting down",
            seconds,
        )
        timers.append(loop.call_later(seconds, hand_over))

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(begin)  # a signal handler only schedules; the loop acts

    signal.signal(signal.SIGTERM, on_sigterm)
    return restore
