"""Call records land in the registry for every request, failures included (SQLite and
PostgreSQL); the writer never blocks a request when the database is slow or down."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from lockgate.gateway.call_records import CallRecorder
from lockgate.gateway.metrics import Metrics
from lockgate.gateway.settings import CallRecordSettings
from lockgate.registry import Registry, RegistrySettings
from lockgate.registry.calls import NewCall
from tests.gateway.conftest import StartGateway
from tests.gateway.upstream import stall


def _wait_calls(registry: Registry, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        calls = registry.calls.list(limit=100)
        if len(calls) >= count or time.monotonic() > deadline:
            return calls
        time.sleep(0.05)


def test_every_request_is_recorded(
    start_gateway: StartGateway, registry_settings: RegistrySettings
) -> None:
    gw = start_gateway(registry_settings)
    gw.registry.prompts.push("greet", [{"role": "user", "content": "hi {{ name }}"}])
    client = gw.client()
    client.chat.completions.create(
        model="gpt-test",
        messages=[],
        extra_body={"prompt": {"name": "greet", "variables": {"name": "A"}}},
        extra_headers={"x-request-id": "req-1"},
    )
    list(client.chat.completions.create(model="gpt-test", messages=[], stream=True))
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="fail-429", messages=[])
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=[])
    client.embeddings.create(model="gpt-test", input="x")
    calls = {c["request_id"]: c for c in _wait_calls(gw.registry, 5)}
    assert len(calls) == 5
    first = calls["req-1"]
    assert first["operation"] == "chat" and first["route"] == "gpt-test"
    assert (first["model"], first["provider"], first["deployment"]) == (
        "stub-model",
        "openai",
        "openai/stub-model",
    )
    assert (first["prompt_name"], first["prompt_version"]) == ("greet", 1)
    assert (first["status_code"], first["error_type"], first["stream"]) == (200, None, False)
    assert (first["input_tokens"], first["output_tokens"]) == (7, 2)
    assert first["latency_ms"] > 0 and first["trace_id"] and len(first["trace_id"]) == 32
    by_status = sorted((c["status_code"], c["error_type"], c["stream"]) for c in calls.values())
    assert by_status == [
        (200, None, False),
        (200, None, False),
        (200, None, True),
        (404, "model_not_found", False),
        (429, "429", False),
    ]
    streamed = next(c for c in calls.values() if c["stream"])
    assert streamed["ttft_ms"] is not None and streamed["output_tokens"] == 2
    deadline = time.monotonic() + 5  # the counter moves just after the rows commit
    while "lockgate_call_records_written_total 5.0" not in httpx.get(gw.url + "/metrics").text:
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_a_known_model_gets_a_cost(start_gateway: StartGateway, upstream: Any) -> None:
    deployment = {"provider": "openai", "model": "gpt-4o-mini", "api_base": upstream.url + "/v1"}
    gw = start_gateway(routes={"priced": {"deployments": [deployment]}})
    assert gw.state.costs.ready.wait(30)
    gw.client().chat.completions.create(model="priced", messages=[])
    (call,) = _wait_calls(gw.registry, 1)
    assert call["model"] == "gpt-4o-mini"
    assert call["cost_usd"] == pytest.approx(7 * 0.15e-6 + 2 * 0.6e-6)
    # the same cost reaches Prometheus, for the dashboard's spend panels and budget alerts
    metrics = httpx.get(gw.url + "/metrics").text
    (line,) = [x for x in metrics.splitlines() if x.startswith("lockgate_cost_usd_total{")]
    assert 'operation="chat"' in line and 'route="priced"' in line
    assert float(line.rsplit(" ", 1)[1]) == pytest.approx(call["cost_usd"])


def _call(request_id: str) -> NewCall:
    return NewCall(request_id=request_id, operation="chat", status_code=200, latency_ms=1.0)


class _SlowSink:
    def __init__(self, delay: float, fail: bool = False) -> None:
        self.delay, self.fail, self.batches = delay, fail, 0

    def record(self, records: Sequence[NewCall]) -> int:
        time.sleep(self.delay)
        self.batches += 1
        if self.fail:
            raise ConnectionError("database is down")
        return len(records)


def _value(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def test_a_slow_database_never_blocks_and_drops_are_counted() -> None:
    metrics = Metrics()
    settings = CallRecordSettings(queue_size=5, batch_size=2, flush_interval_s=0.01)
    recorder = CallRecorder(_SlowSink(0.5), settings, metrics)
    recorder.start()
    started = time.perf_counter()
    for i in range(50):
        recorder.submit(_call(str(i)))
    assert time.perf_counter() - started < 0.05
    dropped = _value(metrics, "lockgate_call_records_dropped_total", reason="queue_full")
    assert dropped >= 40
    recorder.close(timeout_s=0.1)


def test_close_writes_everything_queued_or_counts_what_it_could_not() -> None:
    """Shutdown (the lifespan's close): every queued record is written, however many
    intervals it takes; what a too-slow database leaves unwritten when the time is up is
    counted as dropped (reason ``shutdown``) and logged, never lost in silence."""
    metrics = Metrics()
    sink = _SlowSink(0.0)
    settings = CallRecordSettings(queue_size=5000, batch_size=100, flush_interval_s=5.0)
    recorder = CallRecorder(sink, settings, metrics)
    recorder.start()
    for i in range(1000):
        recorder.submit(_call(str(i)))
    started = time.monotonic()
    recorder.close()
    assert _value(metrics, "lockgate_call_records_written_total") == 1000
    assert time.monotonic() - started < 2  # not a flush interval more

    metrics = Metrics()
    slow = CallRecorder(_SlowSink(0.3), CallRecordSettings(batch_size=2, flush_interval_s=0.01),
                        metrics)  # fmt: skip
    slow.start()
    for i in range(20):
        slow.submit(_call(str(i)))
    slow.close(timeout_s=0.5)
    written = _value(metrics, "lockgate_call_records_written_total")
    dropped = _value(metrics, "lockgate_call_records_dropped_total", reason="shutdown")
    assert written < 20 and dropped > 0
    time.sleep(1)  # the writer's batch in hand when the time ran out may still land
    written = _value(metrics, "lockgate_call_records_written_total")
    assert written + dropped == 20


def test_a_failing_database_is_counted_and_survived() -> None:
    metrics = Metrics()
    sink = _SlowSink(0.0, fail=True)
    recorder = CallRecorder(sink, CallRecordSettings(flush_interval_s=0.01), metrics)
    recorder.start()
    for i in range(3):
        recorder.submit(_call(str(i)))
    recorder.close()
    assert sink.batches >= 1
    assert _value(metrics, "lockgate_call_records_dropped_total", reason="write_failed") == 3


# --- shutdown: SIGTERM writes every queued record -------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_serve(config: Path, port: int) -> subprocess.Popen[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LOCKGATE_")}
    server = subprocess.Popen(
        [sys.executable, "-m", "lockgate.gateway.cli", "serve", "--config", str(config),
         "--port", str(port)],
        cwd=Path(__file__).resolve().parents[2], env=environ, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while True:
        assert server.poll() is None, server.communicate()[0]
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                return server
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "lockgate serve did not start"
        time.sleep(0.1)


class _Serve:
    """A real ``lockgate serve`` over a fresh SQLite registry, with its calls' outcomes."""

    def __init__(
        self, upstream: Any, tmp_path: Path, sqlite_template: Path, graceful_s: float
    ) -> None:
        self.data_dir = tmp_path / "data"
        self.data_dir.mkdir()
        shutil.copy(sqlite_template, self.data_dir / "registry.db")
        deployment = {"provider": "openai", "api_base": upstream.url + "/v1",
                      "api_key": "sk-upstream-0123456789"}  # fmt: skip
        routes = {
            name: {"deployments": [{**deployment, "model": model}]}
            for name, model in (("fast", "stub-model"), ("slow", "slow-stream"),
                                ("stuck", "stuck-stream"))
        }  # fmt: skip
        config = tmp_path / "lockgate.yaml"
        config.write_text(json.dumps({
            "registry": {"data_dir": str(self.data_dir)},
            "server": {"graceful_shutdown_s": graceful_s},
            # the default interval: up to a second of records is queued at any moment
            "gateway": {"routes": routes,
                        "call_records": {"flush_interval_s": 1.0, "compute_cost": False}},
        }))  # fmt: skip
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}/v1/chat/completions"
        self.server = _start_serve(config, port)
        self.answered: list[str] = []  # request ids the gateway answered (a status line came)
        self.errors: list[str] = []
        self.streaming = threading.Semaphore(0)  # released at each stream's first chunk
        self.stop = threading.Event()
        self._lock = threading.Lock()

    def _answered(self, request_id: str) -> None:
        with self._lock:
            self.answered.append(request_id)

    def stream(self, route: str, request_id: str) -> None:
        body = {"model": route, "messages": [], "stream": True}
        try:
            with httpx.stream("POST", self.url, json=body, timeout=60,
                              headers={"x-request-id": request_id}) as resp:  # fmt: skip
                self._answered(request_id)
                lines = resp.iter_lines()
                next(lines)
                self.streaming.release()
                text = "".join(lines)
            if route == "slow" and not text.rstrip().endswith("data: [DONE]"):
                self.errors.append(f"{request_id}: {text}")
        except httpx.TransportError:
            if route == "slow":
                self.errors.append(f"{request_id}: cut")
            self.streaming.release()

    def load(self, worker: int) -> None:
        for i in itertools.count():
            if self.stop.is_set():
                return
            request_id = f"load-{worker}-{i}"
            try:
                resp = httpx.post(self.url, json={"model": "fast", "messages": []},
                                  headers={"x-request-id": request_id}, timeout=60)  # fmt: skip
            except httpx.TransportError:  # refused once the server stops accepting
                continue
            self._answered(request_id)
            if resp.status_code != 200:
                self.errors.append(f"{request_id}: {resp.status_code} {resp.text}")

    def run(self, streams: list[tuple[str, str]]) -> str:
        """Load for a while, open ``streams``, SIGTERM once each is mid-way, keep loading."""
        try:
            loaders = [threading.Thread(target=self.load, args=(w,)) for w in range(4)]
            for thread in loaders:
                thread.start()
            time.sleep(1.5)  # the load's records are queued; a batch or two written
            streaming = [threading.Thread(target=self.stream, args=s) for s in streams]
            for thread in streaming:
                thread.start()
            for _ in streams:
                assert self.streaming.acquire(timeout=30), "a stream did not start"
            self.server.send_signal(signal.SIGTERM)
            time.sleep(0.5)  # the load goes on against a server shutting down
            self.stop.set()
            for thread in [*loaders, *streaming]:
                thread.join(60)
            output, _ = self.server.communicate(timeout=60)
        finally:
            self.stop.set()
            if self.server.poll() is None:
                self.server.kill()
        # uvicorn re-raises the signal once it has shut down cleanly
        assert self.server.returncode in (0, -signal.SIGTERM), output
        assert "Application shutdown complete" in output, output
        assert self.errors == []
        return output

    def records(self) -> dict[str, dict[str, Any]]:
        registry = Registry(RegistrySettings(data_dir=self.data_dir))
        try:
            return {c["request_id"]: c for c in registry.calls.list(limit=100_000)}
        finally:
            registry.close()


def test_sigterm_mid_stream_and_mid_load_loses_no_record(
    upstream: Any, tmp_path: Path, sqlite_template: Path
) -> None:
    """SIGTERM with slow streams and a stream of plain calls in flight and a second of records
    queued: the streams finish (within ``server.graceful_shutdown_s``), and every call the
    gateway answered has its record once the process has exited, and no other.
    (``kill -9`` loses what is queued at that moment: see gateway/call_records.py.)"""
    serve = _Serve(upstream, tmp_path, sqlite_template, graceful_s=20)
    serve.run([("slow", f"stream-{i}") for i in range(6)])
    records = serve.records()
    assert len(serve.answered) > 20
    assert sorted(records) == sorted(serve.answered)
    assert {records[f"stream-{i}"]["status_code"] for i in range(6)} == {200}


def test_a_stream_cut_by_the_shutdown_deadline_is_recorded(
    upstream: Any, tmp_path: Path, sqlite_template: Path
) -> None:
    """Streams still running when ``server.graceful_shutdown_s`` runs out are cancelled by
    uvicorn just before the app shuts down: their records (499) are written all the same."""
    upstream.script("stuck-stream", then=stall(30, after=1))
    serve = _Serve(upstream, tmp_path, sqlite_template, graceful_s=1)
    try:
        output = serve.run([("stuck", f"stuck-{i}") for i in range(3)])
    finally:
        upstream.script("stuck-stream")
    assert "timeout graceful shutdown exceeded" in output
    records = serve.records()
    assert sorted(records) == sorted(serve.answered)
    assert {records[f"stuck-{i}"]["status_code"] for i in range(3)} == {499}
