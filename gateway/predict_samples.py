"""Sampled ``:predict`` rows, written to the registry's ``prediction_samples`` off the path.

:meth:`SampleWriter.submit` puts rows on a bounded queue (``gateway.predict.sample_queue_size``)
and returns at once; a full queue drops them and counts them
(``lockgate_prediction_samples_dropped_total{reason="queue_full"}``). A thread of its own
wakes on the first row, lets ``sample_flush_interval_s`` worth gather and writes them in one
statement; a failed write drops that batch and counts it (``reason="write_failed"``). On
close, what is queued is written at once. The call records' exporter
(:mod:`gateway.call_records`) works the same way; samples are fewer and need no cost.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter

from lockgate.registry.predictions import NewSample

log = logging.getLogger(__name__)
BATCH = 1000  # rows per write


class SampleSink(Protocol):
    def record(self, samples: Sequence[NewSample]) -> int: ...


class SampleWriter:
    def __init__(
        self,
        sink: SampleSink,
        *,
        queue_size: int,
        flush_interval_s: float,
        metrics: CollectorRegistry,
    ) -> None:
        self._sink = sink
        self._interval = flush_interval_s
        self._queue: queue.Queue[NewSample] = queue.Queue(maxsize=queue_size)
        self._closing = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="lockgate-prediction-samples", daemon=True
        )
        dropped = Counter(
            "lockgate_prediction_samples_dropped", "Sampled :predict rows not stored.",
            ["reason"], registry=metrics,
        )  # fmt: skip
        self._written = Counter(
            "lockgate_prediction_samples_written", "Sampled :predict rows stored.",
            registry=metrics,
        )  # fmt: skip
        self._full = dropped.labels("queue_full")
        self._failed = dropped.labels("write_failed")
        self._last_warning = 0.0

    def start(self) -> None:
        self._thread.start()

    def submit(self, samples: Sequence[NewSample]) -> None:
        for sample in samples:
            try:
                self._queue.put_nowait(sample)
            except queue.Full:
                self._full.inc()

    def close(self, timeout_s: float = 10.0) -> None:
        """Write what is queued (within ``timeout_s``) and stop the thread."""
        self._closing.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while not self._closing.is_set():
            try:
                first = self._queue.get(timeout=self._interval)
            except queue.Empty:
                continue
            self._closing.wait(self._interval)  # one write per interval
            self._drain([first])
        self._drain([])

    def _drain(self, batch: list[NewSample]) -> None:
        while True:
            while len(batch) < BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if not batch:
                return
            self._write(batch)
            batch = []

    def _write(self, batch: list[NewSample]) -> None:
        try:
            self._written.inc(self._sink.record(batch))
        except Exception:  # boundary: the registry may be slow or down; requests go on
            self._failed.inc(len(batch))
            now = time.monotonic()
            if now - self._last_warning > 60:
                self._last_warning = now
                log.warning("could not write %d prediction samples", len(batch), exc_info=True)
