"""Scale-out shown on one machine (issue 14): the fixtures every module of ``tests/scale``
shares. Each module gets a PostgreSQL registry database of its own (created, migrated, and
dropped after it); Redis is the machine's. Without PostgreSQL, Redis or (for the replicas)
HAProxy, the tests skip and say why; ``.ci/run`` provides all three.

Run them together: ``.venv/bin/pytest -q tests/scale``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lockgate.registry import db as registry_db
from tests.conftest import scratch_pg_database
from tests.gateway.servers import ServerThread
from tests.gateway.upstream import Upstream
from tests.scale.cluster import REDIS_URL


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/scale/" in item.nodeid:
            item.add_marker(pytest.mark.postgres)
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="module")
def scale_database() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this module (its URL)."""
    with scratch_pg_database("lockgate_scale") as url:
        engine = registry_db.make_engine(url)
        registry_db.upgrade(engine)
        engine.dispose()
        yield url


@pytest.fixture(scope="module")
def redis_url() -> str:
    try:
        import redis

        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except Exception as exc:  # any failure: skip and say why
        pytest.skip(f"Redis not reachable at {REDIS_URL}: {exc}")
    return REDIS_URL


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    """The fake OpenAI upstream of the gateway tests, on loopback (``url`` set)."""
    stub = Upstream()
    server = ServerThread(stub.app).start()
    stub.url = server.url  # type: ignore[attr-defined]
    yield stub
    server.stop()
