"""The batched call-record exporter: one row per call in the registry, off the request path.

``submit`` puts the record on a bounded queue and returns at once; when the queue is full
the record is dropped and counted (``lockgate_call_records_dropped_total{reason="queue_full"}``).
A thread of its own wakes on the first record, lets ``flush_interval_s`` worth gather, adds
the cost and writes them with one ``record`` per ``batch_size``: one transaction per
interval rather than one per call, which keeps the writer's share of the GIL small.
A failed write drops that batch, counts it and carries on: a slow or absent database never
slows or fails a request.

Shutdown (SIGTERM: uvicorn lets in-flight calls finish, then the app's lifespan ends and
calls :meth:`CallRecorder.close`): every queued record is written at once, without waiting
for the interval, in batches until the queue is empty; a record submitted after that (a call
cancelled at the end of ``server.graceful_shutdown_s``) is written on the spot. If the
database cannot take them within ``close``'s time, what is left is counted as dropped
(``reason="shutdown"``) and logged. So SIGTERM loses no record.

``kill -9`` (or an out-of-memory kill, a power cut) loses what is in memory at that moment:
the records of the calls finished in the last ``flush_interval_s`` (1 s by default) plus the
batch being written, never more than ``queue_size`` (10,000) records; and calls in flight
then never get a record at all.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence
from typing import Protocol

from lockgate.gateway.costs import CostTable
from lockgate.gateway.metrics import Metrics
from lockgate.gateway.settings import CallRecordSettings
from lockgate.registry.calls import NewCall

log = logging.getLogger(__name__)


class CallSink(Protocol):
    def record(self, records: Sequence[NewCall]) -> int: ...


class CallRecorder:
    def __init__(
        self,
        sink: CallSink,
        settings: CallRecordSettings,
        metrics: Metrics,
        costs: CostTable | None = None,
    ) -> None:
        self._sink = sink
        self._settings = settings
        self._metrics = metrics
        self._costs = costs
        self._queue: queue.Queue[NewCall] = queue.Queue(maxsize=settings.queue_size)
        self._thread = threading.Thread(target=self._run, name="lockgate-call-records", daemon=True)
        self._dropped = metrics.records_dropped.labels("queue_full")
        self._failed = metrics.records_dropped.labels("write_failed")
        self._last_warning = 0.0
        self._closing = threading.Event()
        self._abandoned = threading.Event()  # close() ran out of time: take no more
        self._closed = False
        metrics.watch_queue(self._queue.qsize)

    def start(self) -> None:
        self._thread.start()

    def submit(self, record: NewCall) -> None:
        if self._closed:  # a straggler after close (shutdown only): written on the spot
            self._write([record])
            return
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self._dropped.inc()

    def close(self, timeout_s: float = 10.0) -> None:
        """Write every queued record (within ``timeout_s``; the rest is counted as dropped)
        and stop the thread; later records are written as they come."""
        self._closing.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        if self._thread.is_alive():
            self._abandoned.set()
        left = 0
        while True:
            try:
                record = self._queue.get_nowait()
            except queue.Empty:
                break
            if self._abandoned.is_set():
                left += 1
            else:  # queued between the writer's last look and its exit
                self._write([record])
        self._closed = True
        if left:
            self._metrics.records_dropped.labels("shutdown").inc(left)
            log.warning(
                "%d call records were not written at shutdown: the registry did not take them "
                "within %.0f s",
                left,
                timeout_s,
            )

    def _run(self) -> None:
        """Wait for a record, let ``flush_interval_s`` of them gather, write them in batches;
        once closing, write everything queued at once."""
        interval = self._settings.flush_interval_s
        while not self._closing.is_set():
            try:
                first = self._queue.get(timeout=interval)
            except queue.Empty:
                continue
            self._closing.wait(interval)  # one write per interval, not one per record
            self._write_queued([first], self._queue.qsize() + 1)
        self._write_queued([], None)

    def _write_queued(self, batch: list[NewCall], limit: int | None) -> None:
        """Write ``batch`` and the queued records, ``batch_size`` at a time: ``limit`` of
        them in all, or (None) until the queue is empty."""
        size = self._settings.batch_size
        taken = len(batch)
        while not self._abandoned.is_set():  # once abandoned, close() counts the queue
            while len(batch) < size and (limit is None or taken < limit):
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
                taken += 1
            if not batch:
                return
            self._write(batch)
            batch = []

    def _write(self, batch: list[NewCall]) -> None:
        if self._costs is not None:
            for record in batch:
                if record.cost_usd is None:
                    record.cost_usd = self._costs.cost(
                        record.provider, record.model, record.input_tokens, record.output_tokens,
                    )  # fmt: skip
        try:
            written = self._sink.record(batch)
        except Exception:  # boundary: the registry may be slow or down; requests go on
            self._failed.inc(len(batch))
            now = time.monotonic()
            if now - self._last_warning > 60:
                self._last_warning = now
                log.warning("could not write %d call records", len(batch), exc_info=True)
            return
        self._metrics.records_written.inc(written)
