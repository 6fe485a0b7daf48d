"""The registry's PostgreSQL going away mid-run fails no request: call records are dropped
and counted in /metrics while it is gone, and written again once it is back."""

from __future__ import annotations

import time

import httpx
import pytest

from lockgate.registry import RegistrySettings
from tests.conftest import set_pg_database
from tests.gateway.conftest import StartGateway

HI = [{"role": "user", "content": "hi"}]


def _metric(gw_url: str, name: str) -> float:
    for line in httpx.get(gw_url + "/metrics").text.splitlines():
        if line.startswith(name):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.postgres
def test_the_database_going_away_fails_no_request(
    start_gateway: StartGateway, outage_db: str
) -> None:
    gw = start_gateway(RegistrySettings(database_url=outage_db))
    post = lambda rid: httpx.post(  # noqa: E731
        gw.url + "/v1/chat/completions",
        json={"model": "gpt-test", "messages": HI},
        headers={"x-request-id": rid},
    )
    assert post("before").status_code == 200
    gw.record("before")

    set_pg_database(outage_db, up=False)
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
        set_pg_database(outage_db, up=True)

    assert httpx.get(gw.url + "/readyz").status_code == 200
    written_before = _metric(gw.url, "lockgate_call_records_written_total")
    for i in range(5):
        assert post(f"after-{i}").status_code == 200
    gw.record("after-4")  # written again, once the database is back
    assert _metric(gw.url, "lockgate_call_records_written_total") >= written_before + 5
    ids = {c["request_id"] for c in gw.registry.calls.list(limit=100)}
    assert "before" in ids and not any(i.startswith("during-") for i in ids)
