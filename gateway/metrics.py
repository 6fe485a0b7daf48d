"""Prometheus metrics on a registry of the app's own (not the process-global default).

=============================================  ==========================================
``lockgate_requests_total``                    operation, route, status
``lockgate_request_duration_seconds``          operation, route (histogram)
``lockgate_time_to_first_token_seconds``       operation, route (histogram, streams)
``lockgate_tokens_total``                      operation, route, type (input | output)
``lockgate_cost_usd_total``                    operation, route (litellm's cost map)
``lockgate_errors_total``                      operation, route, status, error_type
``lockgate_call_records_written_total``        call records stored in the registry
``lockgate_call_records_dropped_total``        reason (queue_full | write_failed)
``lockgate_call_records_queue_depth``          call records waiting to be written
``lockgate_limiter_errors_total``              the limiter (Redis) failed; requests admitted
``lockgate_judgments_total``                   judge, outcome (gateway.judges)
``lockgate_judge_scores_dropped_total``        reason (write_failed | queue_full | shutdown)
=============================================  ==========================================

With several workers each process counts for itself; scrape each or aggregate upstream.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "lockgate_requests", "Calls answered.", ["operation", "route", "status"], registry=r
        )
        self.duration = Histogram(
            "lockgate_request_duration_seconds", "Time to the last byte of a call.",
            ["operation", "route"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.ttft = Histogram(
            "lockgate_time_to_first_token_seconds", "Time to the first streamed chunk.",
            ["operation", "route"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.tokens = Counter(
            "lockgate_tokens", "Tokens used.", ["operation", "route", "type"], registry=r
        )
        self.cost = Counter(
            "lockgate_cost_usd", "Cost of calls in US dollars.", ["operation", "route"], registry=r
        )
        self.errors = Counter(
            "lockgate_errors", "Calls that failed.",
            ["operation", "route", "status", "error_type"], registry=r,
        )  # fmt: skip
        self.records_written = Counter(
            "lockgate_call_records_written", "Call records stored in the registry.", registry=r
        )
        self.records_dropped = Counter(
            "lockgate_call_records_dropped", "Call records not stored.", ["reason"], registry=r
        )
        self.queue_depth = Gauge(
            "lockgate_call_records_queue_depth", "Call records waiting to be written.", registry=r
        )
        self.limiter_errors = Counter(
            "lockgate_limiter_errors", "Limiter failures (requests admitted).", registry=r
        )
        self.judgments = Counter(
            "lockgate_judgments", "Calls sampled by an LLM judge, by outcome.",
            ["judge", "outcome"], registry=r,
        )  # fmt: skip
        self.judge_scores_dropped = Counter(
            "lockgate_judge_scores_dropped", "Judge scores not stored.", ["reason"], registry=r
        )
        self._children: dict[tuple[Any, ...], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def observe_call(
        self,
        operation: str,
        route: str,
        status: int,
        duration_s: float,
        ttft_s: float | None,
        input_tokens: int | None,
        output_tokens: int | None,
        error_type: str | None,
    ) -> None:
        status_text = str(status)
        self._child(self.requests, operation, route, status_text).inc()
        self._child(self.duration, operation, route).observe(duration_s)
        if ttft_s is not None:
            self._child(self.ttft, operation, route).observe(ttft_s)
        if input_tokens:
            self._child(self.tokens, operation, route, "input").inc(input_tokens)
        if output_tokens:
            self._child(self.tokens, operation, route, "output").inc(output_tokens)
        if error_type is not None:
            self._child(self.errors, operation, route, status_text, error_type).inc()

    def observe_cost(self, operation: str, route: str, cost_usd: float | None) -> None:
        """Count a call's cost (None: no price known, e.g. a local model)."""
        if cost_usd:
            self._child(self.cost, operation, route).inc(cost_usd)

    def watch_queue(self, depth: Callable[[], float]) -> None:
        self.queue_depth.set_function(depth)

    def render(self) -> bytes:
        return generate_latest(self.registry)
