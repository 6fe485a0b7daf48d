"""Scale-out on one machine: ``lockgate serve`` replicas (real processes, real ports) on one
PostgreSQL registry and one Redis, behind HAProxy (Debian's ``/usr/sbin/haproxy``), and a
steady load of calls through it with every outcome kept.

The HAProxy configuration here is the one docs/scaling.md recommends, with faster checks:
round robin, an HTTP check of ``/readyz`` every :data:`CHECK_INTER_MS`, a server taken out
after :data:`CHECK_FALL` failed checks, connection failures and empty responses retried
(``retry-on``) on the other replica (``option redispatch 1``). Each answer names the replica
that gave it in ``x-lockgate-replica``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import yaml

ROOT = Path(__file__).resolve().parents[2]
HAPROXY = os.environ.get("LOCKGATE_HAPROXY") or shutil.which("haproxy") or "/usr/sbin/haproxy"
REDIS_URL = "redis://127.0.0.1:6379/0"
REPLICA_HEADER = "x-lockgate-replica"
CHECK_INTER_MS = 200  # HAProxy's check interval (docs/scaling.md: 2s in production)
CHECK_FALL = 3  # failed checks before a server is taken out
CHECK_RISE = 2  # passed checks before it is put back
DRAIN_S = 2.0  # server.shutdown_drain_s of the replicas: > CHECK_FALL * CHECK_INTER_MS
FLUSH_INTERVAL_S = 1.0  # gateway.call_records.flush_interval_s (the default)
PROMPT_CACHE_TTL_S = 1.0  # gateway.prompt_cache_ttl_s
# USD per token: a call to the fake upstream (7 prompt tokens, 2 completion) costs $0.001
PRICE = {"input_per_token": 0.0001, "output_per_token": 0.00015}
CALL_COST_USD = 0.001
MESSAGES = [{"role": "user", "content": "hi"}]


def why_no_haproxy() -> str | None:
    if not Path(HAPROXY).is_file():
        return f"HAProxy is not installed at {HAPROXY} (apt-get install haproxy; .ci/run does)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _environment() -> dict[str, str]:
    """The caller's environment without its ``LOCKGATE_*`` settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith("LOCKGATE_")}


def replica_config(database_url: str, data_dir: Path, port: int, upstream: str) -> dict[str, Any]:
    """A replica's ``lockgate.yaml``: the shared registry database and Redis, its own port
    and data folder, two routes to the fake upstream (``gpt-test``; ``slow``: a stream of
    0.6 s) with a price, and the drain and cache settings of these tests."""

    def route(model: str) -> dict[str, Any]:
        deployment = {"provider": "openai", "model": model, "api_base": upstream + "/v1",
                      "api_key": "sk-upstream-0123456789abcdef"}  # fmt: skip
        return {"deployments": [deployment]}

    return {
        "registry": {"database_url": database_url, "data_dir": str(data_dir)},
        "server": {
            "host": "127.0.0.1",
            "port": port,
            "shutdown_drain_s": DRAIN_S,
            "graceful_shutdown_s": 5,
        },
        "gateway": {
            "routes": {"gpt-test": route("stub-model"), "slow": route("slow-stream")},
            "prices": {"stub-model": PRICE, "slow-stream": PRICE},
            "prompt_cache_ttl_s": PROMPT_CACHE_TTL_S,
            "key_cache_ttl_s": 1.0,
            "redis_url": REDIS_URL,
            "call_records": {"flush_interval_s": FLUSH_INTERVAL_S},
        },
        "ui": {"enabled": False},
    }


@dataclass
class Replica:
    """One ``lockgate serve`` process with a folder and ``lockgate.yaml`` of its own."""

    name: str
    folder: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.folder / "serve.log"

    def start(self) -> None:
        """Start the process (the port may be the one a previous process of it held)."""
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "lockgate.gateway.cli", "serve",
                 "--config", str(self.folder / "lockgate.yaml")],
                cwd=self.folder, env=_environment(), stdout=subprocess.DEVNULL, stderr=log,
            )  # fmt: skip

    def wait_ready(self, timeout: float = 120) -> None:
        """Until ``/readyz`` answers 200 (the process failing meanwhile fails the test)."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while True:
            code = self.process.poll()
            assert code is None, f"replica {self.name} exited {code}: {self.tail()}"
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"replica {self.name} not ready: {self.tail()}"
            time.sleep(0.1)

    def send(self, sig: signal.Signals) -> None:
        assert self.process is not None and self.process.poll() is None
        self.process.send_signal(sig)

    def wait_exit(self, timeout: float = 30) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


HAPROXY_DEFAULTS = """defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout check 2s
    retries 2
    option redispatch 1
    retry-on conn-failure empty-response
"""
"""The ``defaults`` of docs/scaling.md's load balancer (timeouts shortened for tests), shared
with tests/benchmarks/lb_throughput.py."""


def haproxy_config(port: int, stats: Path, servers: dict[str, int]) -> str:
    """The load balancer of docs/scaling.md with the fast checks of these tests."""
    lines = "\n".join(f"    server {name} 127.0.0.1:{p} check" for name, p in servers.items())
    return f"""global
    maxconn 2000
    stats socket {stats} mode 600 level admin

{HAPROXY_DEFAULTS}
frontend gateway
    bind 127.0.0.1:{port}
    default_backend replicas

backend replicas
    balance roundrobin
    option httpchk
    http-check send meth GET uri /readyz ver HTTP/1.1 hdr Host localhost
    http-check expect status 200
    default-server inter {CHECK_INTER_MS}ms fall {CHECK_FALL} rise {CHECK_RISE}
    http-response set-header {REPLICA_HEADER} %s
{lines}
"""


class HAProxy:
    """HAProxy in the foreground in front of ``servers`` (name → port)."""

    def __init__(self, folder: Path, servers: dict[str, int]) -> None:
        self.folder = folder
        self.port = free_port()
        self.stats_socket = folder / "haproxy.sock"
        self.config = folder / "haproxy.cfg"
        self.config.write_text(haproxy_config(self.port, self.stats_socket, servers))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        checked = subprocess.run([HAPROXY, "-c", "-q", "-f", str(self.config)],
                                 capture_output=True, text=True)  # fmt: skip
        assert checked.returncode == 0, checked.stderr
        with open(self.folder / "haproxy.log", "ab") as log:
            self.process = subprocess.Popen(
                [HAPROXY, "-db", "-f", str(self.config)], stdout=log, stderr=log
            )
        deadline = time.monotonic() + 30
        while not self.stats_socket.exists():
            assert self.process.poll() is None, (self.folder / "haproxy.log").read_text()
            assert time.monotonic() < deadline, "HAProxy did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def stats(self) -> dict[str, dict[str, str]]:
        """``show stat`` of the backend's servers: server name → its columns."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(str(self.stats_socket))
            sock.sendall(b"show stat\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        header, *rows = data.decode().strip().splitlines()
        names = header.lstrip("# ").split(",")
        servers = {}
        for row in rows:
            values = dict(zip(names, row.split(","), strict=False))
            if values["pxname"] == "replicas" and values["svname"] not in ("FRONTEND", "BACKEND"):
                servers[values["svname"]] = values
        return servers

    def retries(self) -> int:
        """Retries and redispatches so far, over every server."""
        return sum(int(s["wretr"] or 0) + int(s["wredis"] or 0) for s in self.stats().values())

    def wait_status(self, server: str, status: str, timeout: float = 60) -> float:
        """Seconds until HAProxy says ``server`` is ``status`` (UP or DOWN)."""
        started = time.monotonic()
        while self.stats()[server]["status"] != status:
            assert time.monotonic() - started < timeout, (server, status, self.stats()[server])
            time.sleep(0.02)
        return time.monotonic() - started


@dataclass
class Outcome:
    request_id: str
    started: float
    ended: float
    status: int | None  # None: no HTTP answer at all
    replica: str | None
    error: str | None = None


@dataclass
class Load:
    """Calls to ``base_url`` from ``threads`` threads, each pausing ``pause_s`` between its
    calls, through the official SDK without its retries; every outcome is kept."""

    base_url: str
    key: str
    threads: int = 4
    pause_s: float = 0.05
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Load:
        for _ in range(self.threads):
            worker = threading.Thread(target=self._run, daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(30)

    def _run(self) -> None:
        client = openai.OpenAI(base_url=self.base_url + "/v1", api_key=self.key, max_retries=0,
                               timeout=15)  # fmt: skip
        while not self._stop.is_set():
            self.outcomes.append(call(client))
            self._stop.wait(self.pause_s)
        client.close()

    def errors(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status != 200 or o.error is not None]


def call(client: openai.OpenAI, model: str = "gpt-test", **extra: Any) -> Outcome:
    """One chat completion with a request id of its own; its outcome."""
    request_id = uuid.uuid4().hex
    started = time.monotonic()
    try:
        raw = client.chat.completions.with_raw_response.create(
            model=model, messages=MESSAGES, extra_headers={"x-request-id": request_id}, **extra
        )
        content = raw.parse().choices[0].message.content
        wrong = None if content == "Hello world" else f"unexpected answer {content!r}"
        return Outcome(request_id, started, time.monotonic(), raw.status_code,
                       raw.headers.get(REPLICA_HEADER), wrong)  # fmt: skip
    except openai.APIStatusError as exc:
        return Outcome(request_id, started, time.monotonic(), exc.status_code,
                       exc.response.headers.get(REPLICA_HEADER), str(exc))  # fmt: skip
    except openai.APIError as exc:  # no answer: a connection refused, reset or timed out
        return Outcome(request_id, started, time.monotonic(), None, None, repr(exc))


def write_config(folder: Path, config: dict[str, Any]) -> None:
    (folder / "lockgate.yaml").write_text(yaml.safe_dump(config))
