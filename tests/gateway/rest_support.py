"""Shared by the REST API tests: a gateway with auth on, on SQLite and on PostgreSQL, keys of
each scope, and an HTTP client per key."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from lockgate.registry import RegistrySettings
from tests.conftest import _truncate_all
from tests.gateway.conftest import Gateway, StartGateway

BODY_CAP = 64 * 1024  # gateway.requests.max_body_bytes in these modules
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def rest_gateway(
    request: pytest.FixtureRequest, start_gateway: StartGateway, tmp: pytest.TempPathFactory
) -> Gateway:
    settings = None
    if request.param == "postgres":
        url = request.getfixturevalue("pg_url")
        _truncate_all(url)
        settings = RegistrySettings(data_dir=tmp.mktemp("pg"), database_url=url)
    return start_gateway(settings, auth="required", requests={"max_body_bytes": BODY_CAP})


SCOPES = {
    "reader": ["registry:read"],
    "writer": ["registry:read", "registry:write"],
    "labeller": ["registry:read", "registry:label"],
    "releaser": ["registry:read", "registry:label", "registry:approve"],
    "approver": ["registry:read", "registry:approve"],
    "approver2": ["registry:read", "registry:approve"],
    "admin": ["admin"],
    "inference": ["inference"],
}


@dataclass
class Clients:
    gw: Gateway
    by_name: dict[str, httpx.Client]
    key_ids: dict[str, str]

    def __getitem__(self, name: str) -> httpx.Client:
        return self.by_name[name]


def make_clients(gw: Gateway) -> Iterator[Clients]:
    clients, ids = {}, {}
    for name, scopes in SCOPES.items():
        key = gw.registry.keys.create(name, scopes=scopes)
        ids[name] = key.id
        clients[name] = httpx.Client(
            base_url=gw.url + "/api/v1", headers={"authorization": f"Bearer {key.secret}"},
            timeout=30,
        )  # fmt: skip
    clients["anonymous"] = httpx.Client(base_url=gw.url + "/api/v1", timeout=30)
    yield Clients(gw, clients, ids)
    for client in clients.values():
        client.close()


def error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    return dict(body["error"])
