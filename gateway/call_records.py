"""The batched call-record exporter: one row per call in the registry, off the request path.

``submit`` puts the record on a bounded queue and returns at once; when the queue is full
the record is dropped and counted (``lockgate_call_records_dropped_total{reason="queue_full"}``).
A thread of its own takes records in batches (up to ``batch_size``, or whatever arrived
within ``flush_interval_s``), adds the cost, and writes them with one ``record_calls``.
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
_STOP = object()


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
        if not self._thread.is_alive():
            return
        try:
            self._queue.put(_STOP, timeout=timeout_s)
        except queue.Full:
            return
        self._thread.join(timeout_s)

    def _run(self) -> None:
        batch_size, interval = self._settings.batch_size, self._settings.flush_interval_s
        stopping = False
        while not stopping:
            try:
                first = self._queue.get(timeout=interval)
            except queue.Empty:
                continue
            batch: list[dict[str, Any]] = []
            item = first
            while True:
                if item is _STOP:
                    stopping = True
                    break
                batch.append(item)
                if len(batch) >= batch_size:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                self._write(batch)

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
