"""The drain on SIGTERM (``server.shutdown_drain_s``, :mod:`gateway.drain`) in one process:
the handler's hand-over to the server's own, and what a draining gateway answers. The drain
of real replicas behind HAProxy is in tests/scale/test_replicas.py."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

import httpx
import pytest
import yaml

from lockgate.gateway.config import ConfigError, load_settings
from lockgate.gateway.drain import Drain, install_drain
from tests.gateway.conftest import StartGateway


class Recorder:
    """Stands for the server's SIGTERM handler (uvicorn's ``handle_exit``)."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.calls.append(time.monotonic())


@pytest.fixture
def server_handler() -> Iterator[Recorder]:
    recorder = Recorder()
    original = signal.signal(signal.SIGTERM, recorder)
    yield recorder
    signal.signal(signal.SIGTERM, original)


async def _until(condition: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)


async def test_sigterm_drains_then_reaches_the_servers_handler(server_handler: Recorder) -> None:
    drain = Drain()
    restore = install_drain(drain, 0.3)
    sent = time.monotonic()
    os.kill(os.getpid(), signal.SIGTERM)
    await _until(lambda: drain.draining)
    assert server_handler.calls == []  # still serving
    await _until(lambda: server_handler.calls)
    assert server_handler.calls[0] - sent >= 0.3
    assert signal.getsignal(signal.SIGTERM) is server_handler  # handed back
    restore()  # at shutdown: nothing left to undo
    assert signal.getsignal(signal.SIGTERM) is server_handler


async def test_a_second_sigterm_ends_the_drain_at_once(server_handler: Recorder) -> None:
    drain = Drain()
    install_drain(drain, 30)
    os.kill(os.getpid(), signal.SIGTERM)
    await _until(lambda: drain.draining)
    os.kill(os.getpid(), signal.SIGTERM)
    await _until(lambda: server_handler.calls, timeout=2)
    assert len(server_handler.calls) == 1


async def test_no_drain_configured_leaves_sigterm_to_the_server(server_handler: Recorder) -> None:
    restore = install_drain(Drain(), 0)
    assert signal.getsignal(signal.SIGTERM) is server_handler
    restore()
    drain = Drain()
    restore = install_drain(drain, 5)
    restore()  # a shutdown without SIGTERM puts the server's handler back
    assert signal.getsignal(signal.SIGTERM) is server_handler and not drain.draining


def test_a_draining_gateway_fails_readyz_and_closes_connections(
    start_gateway: StartGateway,
) -> None:
    gw = start_gateway()
    with httpx.Client(base_url=gw.url) as http:
        assert http.get("/readyz").json()["status"] != "draining"  # ready, or warming up
        hello = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}
        before = http.post("/v1/chat/completions", json=hello)
        assert before.status_code == 200 and before.headers.get("connection") != "close"
        gw.state.drain.start()
        ready = http.get("/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == "draining"
        assert ready.headers["connection"] == "close"
        assert http.get("/healthz").status_code == 200  # alive: not to be restarted
        # requests are still served, fast path and router alike, each closing its connection
        answer = gw.client().chat.completions.with_raw_response.create(
            model="gpt-test", messages=[{"role": "user", "content": "hi"}]
        )
        assert answer.status_code == 200 and answer.headers["connection"] == "close"
        assert http.get("/v1/models").headers["connection"] == "close"


def test_the_drain_setting_is_checked(tmp_path: Path) -> None:
    config = tmp_path / "lockgate.yaml"
    config.write_text(yaml.safe_dump({"server": {"shutdown_drain_s": -1}}))
    with pytest.raises(ConfigError, match=r"server\.shutdown_drain_s"):
        load_settings(config)
    config.write_text(yaml.safe_dump({"server": {"shutdown_drain_s": 15}}))
    assert load_settings(config).server.shutdown_drain_s == 15
