"""The registry's PostgreSQL going away mid-run fails no request: call records are dropped
and counted in /metrics while it is gone, and written again once it is back."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from registry import RegistrySettings
from registry import db as registry_db
from tests.conftest import PG_ADMIN_URL, _pg_available
from tests.gateway.conftest import StartGateway

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
def outage_db() -> Iterator[str]:
    if reason := _pg_available():
        pytest.skip(reason)
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"lockgate_outage_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    engine = registry_db.make_engine(url)
    registry_db.upgrade(engine)
    engine.dispose()
    yield name
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _set_database(name: str, *, up: bool) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {"true" if up else "false"}')
        if not up:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )


def _metric(gw_url: str, name: str) -> float:
    for line in httpx.get(gw_url + "/metrics").text.splitlines():
        if line.startswith(name):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.postgres
def test_the_database_going_away_fails_no_request(
    start_gateway: StartGateway, outage_db: str
) -> None:
    from sqlalchemy.engine import make_url

    url = make_url(PG_ADMIN_URL).set(database=outage_db).render_as_string(hide_password=False)
    gw = start_gateway(RegistrySettings(database_url=url))
    post = lambda rid: httpx.post(  # noqa: E731
        gw.url + "/v1/chat/completions",
        json={"model": "gpt-test", "messages": HI},
        headers={"x-request-id": rid},
    )
    assert post("before").status_code == 200
    gw.record("before")

    _set_database(outage_db, up=False)
    try:
        assert httpx.get(gw.url + "/readyz").status_code == 503
        statuses = [post(f"during-{i}").status_code for i in range(20)]
        assert statuses == [200] * 20
        dropped = 'lockgate_call_records_dropped_total{reason="write_failed"}'
        deadline = time.monotonic() + 10
        while _metric(gw.url, dropped) < 20:
            assert time.monotonic() < deadline, _metric(gw.url, dropped)
            time.sleep(0.1)
    finally:
        _set_database(outage_db, up=True)

    assert httpx.get(gw.url + "/readyz").status_code == 200
    written_before = _metric(gw.url, "lockgate_call_records_written_total")
    for i in range(5):
        assert post(f"after-{i}").status_code == 200
    gw.record("after-4")  # written again, once the database is back
    assert _metric(gw.url, "lockgate_call_records_written_total") >= written_before + 5
    ids = {c["request_id"] for c in gw.registry.list_calls(limit=100)}
    assert "before" in ids and not any(i.startswith("during-") for i in ids)
