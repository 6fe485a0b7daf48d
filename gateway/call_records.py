"""The batched call-record exporter: one row per call in the registry, off the request path.

``submit`` puts the record on a bounded queue and returns at once; when the queue is full
the record is dropped and counted (``lockgate_call_records_dropped_total{reason="queue_full"}``).
A thread of its own wakes on the first record, lets ``flush_interval_s`` worth gather, adds
the cost and writes them with one ``record_calls`` per ``batch_size``: one transaction per
interval rather than one per call, which keeps the writer's share of the GIL small.
A failed write drops that batch, counts it and carries on: a slow or absent database never
slows or fails a request.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from gateway.costs import CostTable
from gateway.metrics import Metrics
from gateway.settings import CallRecordSettings

log = logging.getLogger(__name__)


class CallSink(Protocol):
    def record_calls(self, records: Sequence[Mapping[str, Any]]) -> int: ...


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
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=settings.queue_size)
        self._thread = threading.Thread(target=self._run, name="lockgate-call-records", daemon=True)
        self._dropped = metrics.records_dropped.labels("queue_full")
        self._failed = metrics.records_dropped.labels("write_failed")
        self._last_warning = 0.0
        self._closing = threading.Event()
        metrics.watch_queue(self._queue.qsize)

    def start(self) -> None:
        self._thread.start()

    def submit(self, record: dict[str, Any]) -> None:
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self._dropped.inc()

    def close(self, timeout_s: float = 5.0) -> None:
        """Write what is queued (within ``timeout_s``) and stop the thread."""
        self._closing.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _run(self) -> None:
        """Wait for a record, let ``flush_interval_s`` of them gather, write them in batches."""
        interval = self._settings.flush_interval_s
        while True:
            try:
                first = self._queue.get(timeout=interval)
            except queue.Empty:
                if self._closing.is_set():
                    return
                continue
            self._closing.wait(interval)  # one write per interval, not one per record
            pending = [first]
            while True:
                try:
                    pending.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            size = self._settings.batch_size
            for start in range(0, len(pending), size):
                self._write(pending[start : start + size])

    def _write(self, batch: list[dict[str, Any]]) -> None:
        if self._costs is not None:
            for record in batch:
                if record.get("cost_usd") is None:
                    record["cost_usd"] = self._costs.cost(
                        record.get("provider"), record.get("model"),
                        record.get("input_tokens"), record.get("output_tokens"),
                    )  # fmt: skip
        try:
            written = self._sink.record_calls(batch)
        except Exception:  # boundary: the registry may be slow or down; requests go on
            self._failed.inc(len(batch))
            now = time.monotonic()
            if now - self._last_warning > 60:
                self._last_warning = now
                log.warning("could not write %d call records", len(batch), exc_info=True)
            return
        self._metrics.records_written.inc(written)
