"""Fixtures: a fake OpenAI/Anthropic upstream and the gateway, each a real server on loopback."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from lockgate.gateway.app import create_app
from lockgate.gateway.config import LockgateSettings
from lockgate.gateway.settings import GatewaySettings
from lockgate.registry import Registry, RegistrySettings
from tests.gateway.servers import ServerThread
from tests.gateway.upstream import Upstream

ERROR_STATUSES = (400, 401, 403, 404, 422, 429, 500)


@dataclass
class Gateway:
    url: str
    server: ServerThread
    spans: InMemorySpanExporter
    registry: Registry
    settings: LockgateSettings

    def client(self, **kwargs: Any) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=self.url + "/v1", api_key="sk-client", max_retries=0, **kwargs
        )

    def wait_spans(self, count: int, timeout: float = 5.0) -> list[ReadableSpan]:
        deadline = time.monotonic() + timeout
        while True:
            spans = list(self.spans.get_finished_spans())
            if len(spans) >= count or time.monotonic() > deadline:
                return spans
            time.sleep(0.01)

    def record(self, request_id: str, timeout: float = 5.0) -> dict[str, Any]:
        """The call record of ``request_id`` (records are written in batches, off the path)."""
        deadline = time.monotonic() + timeout
        while True:
            for call in self.registry.calls.list(limit=500):
                if call["request_id"] == request_id:
                    return call
            assert time.monotonic() < deadline, f"no call record for {request_id!r}"
            time.sleep(0.05)

    @property
    def state(self) -> Any:
        return self.server.server.config.app.state.gateway


def gateway_settings(
    upstream_url: str, registry: RegistrySettings, **over: Any
) -> LockgateSettings:
    v1 = upstream_url + "/v1"
    key = "sk-upstream-0123456789abcdef"

    def route(model: str, **more: Any) -> dict[str, Any]:
        return {
            "deployments": [
                {"provider": "openai", "model": model, "api_base": v1, "api_key": key, **more}
            ]
        }

    def claude(key: str) -> dict[str, Any]:
        deployment = {"provider": "anthropic", "model": "anthropic/claude-3-5-haiku-20241022",
                      "api_base": upstream_url, "api_key": key}  # fmt: skip
        return {"deployments": [deployment]}

    routes = {
        "gpt-test": route("stub-model"),
        "slow": route("slow-stream"),
        "fail-502-text": route("status-502-text"),
        "down": {
            "deployments": [
                {"provider": "openai", "model": "x", "api_base": "http://127.0.0.1:9/v1"}
            ]
        },
        "claude": claude("sk-ant-test"),
        "claude-badkey": claude("sk-ant-wrong"),
        **{f"fail-{code}": route(f"status-{code}") for code in ERROR_STATUSES},
    }
    gateway: dict[str, Any] = {
        "routes": routes,
        "providers": {"openai": {"api_base": v1, "api_key": key}},
        "prompt_cache_ttl_s": 0.2,
        "key_cache_ttl_s": 0.2,
        "call_records": {"flush_interval_s": 0.05},
        "retries": {"backoff_base_s": 0.01, "backoff_max_s": 0.05},
    }
    for name, value in over.items():
        gateway[name] = (
            {**gateway[name], **value} if isinstance(value, dict) and name in gateway else value
        )
    return LockgateSettings(registry=registry, gateway=GatewaySettings.model_validate(gateway))


@pytest.fixture(scope="session")
def upstream() -> Iterator[Upstream]:
    stub = Upstream()
    server = ServerThread(stub.app).start()
    stub.url = server.url  # type: ignore[attr-defined]
    yield stub
    server.stop()


StartGateway = Callable[..., Gateway]


@pytest.fixture(scope="module")
def start_gateway(
    upstream: Upstream, sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StartGateway]:
    """Start a gateway (on a fresh SQLite registry unless given one); all stop at module end."""
    started: list[tuple[Gateway, Registry]] = []

    def start(registry_settings: RegistrySettings | None = None, **over: Any) -> Gateway:
        if registry_settings is None:
            data_dir = tmp_path_factory.mktemp("gateway")
            shutil.copy(sqlite_template, data_dir / "registry.db")
            registry_settings = RegistrySettings(data_dir=data_dir)
        settings = gateway_settings(upstream.url, registry_settings, **over)  # type: ignore[attr-defined]
        spans = InMemorySpanExporter()
        server = ServerThread(create_app(settings, span_exporters=[spans])).start()
        registry = Registry(registry_settings, actor="tester")
        gw = Gateway(server.url, server, spans, registry, settings)
        started.append((gw, registry))
        return gw

    yield start
    for gw, registry in started:
        gw.server.stop()
        registry.close()


@pytest.fixture(scope="module")
def gateway(start_gateway: StartGateway) -> Gateway:
    return start_gateway()


@pytest.fixture
def client(gateway: Gateway) -> openai.OpenAI:
    gateway.spans.clear()
    return gateway.client()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """litellm (imported in the background for its cost map) makes pydantic chatty."""
    quiet = pytest.mark.filterwarnings("ignore:.*ReadOnly.*qualifier:UserWarning")
    for item in items:
        if "tests/gateway" in str(item.path):
            item.add_marker(quiet)
