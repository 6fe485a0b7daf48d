"""Running a ``command`` job's entry point: no shell, a clean working directory, an
environment without lockgate's own settings, a timeout, and its output kept as job events.

The child runs in a session (process group) of its own, so a timeout or a cancel stops it
and everything it started; on Linux it is also killed when the worker that started it dies
(``PR_SET_PDEATHSIG``), so a requeued job never runs twice at once.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

# Environment variables of the worker never passed to the entry point: lockgate's own
# settings (the registry's database URL and credentials, API keys).
HIDDEN_PREFIXES = ("LOCKGATE_",)
LINE_CHARS = 2000  # a longer output line is cut
TAIL_LINES = 20  # stderr lines kept for a failure's reason
STOP_GRACE_S = 5.0


@dataclass
class ProcessOutcome:
    """How the entry point ended. ``reason``: why it did not succeed (None: exit 0)."""

    exit_code: int | None
    reason: str | None = None
    timed_out: bool = False
    stopped: bool = False  # by a cancel or a lost claim
    lines: int = 0
    dropped: int = 0
    stderr_tail: list[str] = field(default_factory=list)


def child_environment(
    extra: Mapping[str, str], base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The worker's environment without ``LOCKGATE_*``, plus the job's variables."""
    source = os.environ if base is None else base
    env = {k: v for k, v in source.items() if not k.startswith(HIDDEN_PREFIXES)}
    env.update(extra)
    return env


def _die_with_parent() -> None:  # pragma: no cover - runs in the child, before exec
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _pump(stream: IO[bytes], name: str, lines: queue.Queue[tuple[str, str] | None]) -> None:
    with stream:
        for raw in iter(stream.readline, b""):
            text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            lines.put((name, text[:LINE_CHARS] + ("…" if len(text) > LINE_CHARS else "")))
    lines.put(None)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the child's process group, SIGKILL after a grace period."""
    for sig, wait in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run_entry_point(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout_s: float,
    max_lines: int,
    on_lines: Callable[[list[tuple[str, str]]], None],
    should_stop: Callable[[], bool],
    poll_s: float = 0.2,
) -> ProcessOutcome:
    """Run ``argv`` (no shell) in ``cwd`` until it exits, ``timeout_s`` passes or
    ``should_stop()``; its stdout and stderr lines go to ``on_lines`` in batches, the first
    ``max_lines`` of them (the rest are counted)."""
    posix = sys.platform != "win32"
    try:
        proc = subprocess.Popen(
            list(argv), cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, shell=False,
            start_new_session=posix,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )  # fmt: skip
    except OSError as exc:
        return ProcessOutcome(None, f"the entry point could not start: {argv[0]}: {exc.strerror}")
    lines: queue.Queue[tuple[str, str] | None] = queue.Queue()
    pumps = [
        threading.Thread(target=_pump, args=(s, n, lines), daemon=True)
        for s, n in ((proc.stdout, "stdout"), (proc.stderr, "stderr"))
    ]
    for pump in pumps:
        pump.start()
    outcome = ProcessOutcome(None)
    deadline = time.monotonic() + timeout_s
    open_streams = len(pumps)
    while True:
        batch: list[tuple[str, str]] = []
        try:
            item = lines.get(timeout=poll_s)
            while True:
                if item is None:
                    open_streams -= 1
                else:
                    batch.append(item)
                item = lines.get_nowait()
        except queue.Empty:
            pass
        _keep(outcome, batch, max_lines, on_lines)
        if open_streams == 0 and proc.poll() is not None:
            break
        if time.monotonic() > deadline and not outcome.timed_out:
            outcome.timed_out = True
            _stop(proc)
        elif should_stop() and not outcome.stopped:
            outcome.stopped = True
            _stop(proc)
    outcome.exit_code = proc.wait()
    if outcome.dropped:
        on_lines([("lockgate", f"… {outcome.dropped} more output line(s) not kept")])
    if outcome.timed_out:
        outcome.reason = (
            f"the entry point timed out after {timeout_s:g} s (finetune.command_timeout_s)"
        )
    elif outcome.stopped:
        outcome.reason = "the entry point was stopped"
    elif outcome.exit_code != 0:
        tail = "; ".join(outcome.stderr_tail[-5:])
        outcome.reason = f"the entry point exited with status {outcome.exit_code}" + (
            f": {tail}" if tail else ""
        )
    return outcome


def _keep(
    outcome: ProcessOutcome,
    batch: list[tuple[str, str]],
    max_lines: int,
    on_lines: Callable[[list[tuple[str, str]]], None],
) -> None:
    for stream, text in batch:
        if stream == "stderr" and text.strip():
            outcome.stderr_tail = [*outcome.stderr_tail[-(TAIL_LINES - 1) :], text]
    room = max(0, max_lines - outcome.lines)
    kept = batch[:room]
    outcome.lines += len(kept)
    outcome.dropped += len(batch) - len(kept)
    if kept:
        on_lines(kept)
