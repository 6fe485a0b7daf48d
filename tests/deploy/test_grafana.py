"""Grafana's provisioned lockgate dashboard (deploy/grafana/). Every metric its PromQL names
must be one a running gateway exports (read from its /metrics, so renaming a metric in
gateway/metrics.py fails here); its cost panels' SQL is run against a registry migrated by
`lockgate db upgrade` in PostgreSQL, through the read-only role compose creates for Grafana."""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.deploy.conftest import BIN, DEPLOY, DeployGateway, clean_environ

GRAFANA = DEPLOY / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "lockgate.json"
PROMETHEUS_OWN = {"up"}  # series Prometheus writes itself for every target
SAMPLE_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("_sum", "_count", "_created", ""),
    "gauge": ("",),
}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and",
                "or", "unless", "offset", "inf", "nan"}  # fmt: skip


def dashboard() -> dict[str, Any]:
    result: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return result


def datasources() -> dict[str, dict[str, Any]]:
    config = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "lockgate.yaml").read_text()
    )
    return {d["uid"]: d for d in config["datasources"]}


def targets(board: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            found.append((panel["title"], target))
    return found


def prometheus_queries(board: dict[str, Any]) -> list[tuple[str, str]]:
    queries = [(title, t["expr"]) for title, t in targets(board) if "expr" in t]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            queries.append((f"${variable['name']}", variable["query"]["query"]))
    return queries


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression (or a Grafana label_values query) reads."""
    names = set(re.findall(r"label_values\(\s*([a-zA-Z_:][\w:]*)\s*,", expr))
    expr = re.sub(r"label_values\([^)]*\)", " ", expr)
    expr = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', " ", expr)  # strings
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", expr)  # label matchers, ranges
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    expr = re.sub(r"\$\w+", " ", expr)  # Grafana variables
    expr = re.sub(r"(?<![\w:])\d+(\.\d+)?([eE][-+]?\d+)?", " ", expr)  # numbers
    for match in re.finditer(r"([a-zA-Z_:][\w:]*)(\s*\()?", expr):
        if match.group(2) is None and match.group(1).lower() not in PROMQL_WORDS:
            names.add(match.group(1))
    return names


def exported_sample_names(metrics_text: str) -> set[str]:
    names = set()
    for family in text_string_to_metric_families(metrics_text):
        for suffix in SAMPLE_SUFFIXES.get(family.type, ("",)):
            names.add(family.name + suffix)
    return names


@pytest.fixture(scope="module")
def exported(deploy_gateway: DeployGateway) -> set[str]:
    """The sample names the gateway serves at /metrics (with no call made yet, a labelled
    metric has no sample, but its family is announced)."""
    answer = httpx.get(deploy_gateway.url + "/metrics", timeout=10)
    assert answer.status_code == 200
    names = exported_sample_names(answer.text)
    assert "lockgate_requests_total" in names
    return names


def test_the_metric_name_extraction() -> None:
    expr = (
        "histogram_quantile(0.95, sum by (le, route) (rate(lockgate_request_duration_seconds_bucket"
        '{instance=~"$instance", route=~"$route"}[$__rate_interval]))) / '
        "clamp_min(sum(rate(lockgate_requests_total[5m])), 1e-9) and on (route) up"
    )
    assert metric_names(expr) == {
        "lockgate_request_duration_seconds_bucket", "lockgate_requests_total", "up",
    }  # fmt: skip
    assert metric_names("label_values(lockgate_requests_total, instance)") == {
        "lockgate_requests_total"
    }


def test_the_dashboard_is_valid_and_uses_the_provisioned_datasources() -> None:
    board = dashboard()
    assert board["uid"] == "lockgate-gateway"
    sources = datasources()
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    for title, target in targets(board):
        source = target["datasource"]
        assert source["uid"] in sources, title
        assert sources[source["uid"]]["type"] == source["type"], title
        assert ("expr" in target) == (source["type"] == "prometheus"), title
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
    provider = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "lockgate.yaml").read_text()
    )
    assert provider["providers"][0]["options"]["path"] == "/etc/grafana/dashboards"


def test_every_metric_the_dashboard_reads_is_exported_by_the_gateway(
    exported: set[str],
) -> None:
    unknown = {}
    for title, expr in prometheus_queries(dashboard()):
        missing = metric_names(expr) - exported - PROMETHEUS_OWN
        if missing:
            unknown[title] = sorted(missing)
    assert not unknown, f"metrics the gateway does not export: {unknown}"


def test_the_check_catches_a_renamed_metric(exported: set[str]) -> None:
    renamed = "sum(rate(lockgate_request_total[5m]))"  # requests, misspelt
    assert metric_names(renamed) - exported == {"lockgate_request_total"}


def test_the_dashboard_charts_what_operators_watch() -> None:
    read = set().union(*(metric_names(expr) for _, expr in prometheus_queries(dashboard())))
    for name in (
        "lockgate_requests_total",
        "lockgate_errors_total",
        "lockgate_request_duration_seconds_bucket",
        "lockgate_time_to_first_token_seconds_bucket",
        "lockgate_tokens_total",
        "lockgate_call_records_queue_depth",
        "lockgate_call_records_dropped_total",
        "lockgate_limiter_errors_total",
    ):
        assert name in read, name
    quantiles = {
        m.group(1)
        for _, expr in prometheus_queries(dashboard())
        for m in re.finditer(r"histogram_quantile\((0\.\d+)", expr)
    }
    assert {"0.5", "0.95", "0.99"} <= quantiles
    sql = [t["rawSql"] for _, t in targets(dashboard()) if "rawSql" in t]
    assert sql and all("cost_usd" in q for q in sql)


def _grant_sql(owner: str, database: str, reader: str) -> str:
    """deploy/postgres/grafana-reader.sql for this test's own roles and database."""
    text = (DEPLOY / "postgres" / "grafana-reader.sql").read_text()
    text = text.replace("grafana_reader", reader)
    text = text.replace("DATABASE lockgate", f'DATABASE "{database}"')
    return text.replace("FOR ROLE lockgate", f"FOR ROLE {owner}")


@pytest.mark.postgres
def test_the_cost_panels_run_on_the_registry_as_the_read_only_role(tmp_path: Path) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    from lockgate.registry import Registry, RegistrySettings
    from lockgate.registry.calls import NewCall
    from tests.conftest import PG_ADMIN_URL, _pg_available, scratch_pg_database

    source = datasources()["lockgate-postgres"]
    compose_sql = (DEPLOY / "postgres" / "grafana-reader.sql").read_text()
    assert (
        f"CREATE ROLE {source['user']} LOGIN PASSWORD '{source['secureJsonData']['password']}'"
        in compose_sql
    )
    suffix = uuid.uuid4().hex[:8]
    owner, reader = f"lg_owner_{suffix}", f"lg_reader_{suffix}"
    try:
        with scratch_pg_database("lockgate_deploy") as url:  # skips when PostgreSQL is down
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
                admin.execute(f"CREATE ROLE {owner} LOGIN")  # type: ignore[arg-type]
            database = make_url(url).database
            assert database
            owner_url = make_url(url).set(username=owner).render_as_string(hide_password=False)
            reader_url = make_url(url).set(username=reader).render_as_string(hide_password=False)
            with psycopg.connect(url, autocommit=True) as conn:  # as the image's superuser
                conn.execute(f'ALTER DATABASE "{database}" OWNER TO {owner}')
                conn.execute(_grant_sql(owner, database, reader))  # type: ignore[arg-type]
            # the compose file's one-shot, as the database's owner
            env = clean_environ() | {"LOCKGATE_DATABASE_URL": owner_url}
            command = [str(BIN / "lockgate"), "db", "upgrade"]
            done = subprocess.run(
                command, env=env, capture_output=True, text=True, timeout=300, check=False
            )
            assert done.returncode == 0, done.stdout + done.stderr
            now = datetime.now(UTC)
            settings = RegistrySettings(database_url=owner_url, data_dir=tmp_path)
            registry = Registry(settings, actor="tester")
            try:
                registry.calls.record([
                    NewCall(request_id="a", operation="chat", status_code=200, latency_ms=5,
                            model="gpt-4o-mini", key_id="k1", cost_usd=0.25, created_at=now),
                    NewCall(request_id="b", operation="chat", status_code=200, latency_ms=5,
                            model="gpt-4o-mini", key_id="k2", cost_usd=0.5, created_at=now),
                    NewCall(request_id="c", operation="chat", status_code=200, latency_ms=5,
                            model="claude", cost_usd=1.0, created_at=now - timedelta(days=9)),
                    NewCall(request_id="d", operation="chat", status_code=502, latency_ms=5,
                            model="claude", created_at=now),
                ])  # fmt: skip
            finally:
                registry.close()
            window = "created_at BETWEEN now() - interval '1 day' AND now() + interval '1 hour'"
            results = []
            with psycopg.connect(reader_url) as conn:
                for title, target in targets(dashboard()):
                    if "rawSql" not in target:
                        continue
                    sql = re.sub(r"\$__timeFilter\(created_at\)", window, target["rawSql"])
                    assert "$__" not in sql, (title, sql)
                    rows = conn.execute(sql).fetchall()  # type: ignore[arg-type]
                    results.append({row[1]: row[2] for row in rows})
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute("DELETE FROM call_records")
            assert results == [{"gpt-4o-mini": 0.75}, {"k1": 0.25, "k2": 0.5}]
    finally:  # roles outlive databases: drop them once the database is gone
        if _pg_available() is None:
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
                admin.execute(f"DROP ROLE IF EXISTS {reader}")  # type: ignore[arg-type]
                admin.execute(f"DROP ROLE IF EXISTS {owner}")  # type: ignore[arg-type]
