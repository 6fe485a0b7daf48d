"""The Helm chart (deploy/helm/lockgate): the real helm lints and renders it, every rendered
manifest is validated against Kubernetes' own OpenAPI schemas (strict, pinned version), and
what operators rely on is asserted on the rendered objects: probes, non-root pods, the
migration hook's ordering, the GPU request, secrets by reference, and a values schema that
refuses a bad value before anything is rendered."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate
import pytest
import yaml

from lockgate.gateway.config import LockgateSettings, load_settings
from tests.deploy.conftest import (
    CHART,
    DEPLOY,
    DeployGateway,
    clean_environ,
    final_user_uid,
    run,
    tool,
)

KUBERNETES_VERSION = "1.32.0"
MINIMAL = CHART / "ci" / "minimal-values.yaml"
PRODUCTION = CHART / "ci" / "production-values.yaml"
Manifest = dict[str, Any]


def helm_template(*args: str) -> tuple[int, str, str]:
    done = run(tool("helm"), "template", "rel", str(CHART), *args, env=clean_environ())
    return done.returncode, done.stdout, done.stderr


def render(*args: str) -> list[Manifest]:
    code, out, err = helm_template(*args)
    assert code == 0, err
    return [doc for doc in yaml.safe_load_all(out) if doc]


@pytest.fixture(scope="module")
def minimal() -> list[Manifest]:
    return render("-f", str(MINIMAL))


@pytest.fixture(scope="module")
def production() -> list[Manifest]:
    return render("-f", str(PRODUCTION))


def one(manifests: list[Manifest], kind: str, suffix: str = "") -> Manifest:
    found = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"].endswith(suffix)]
    assert len(found) == 1, f"{kind} *{suffix}: {[m['metadata']['name'] for m in found]}"
    return found[0]


def pod_specs(manifests: list[Manifest]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{m['kind']}/{m['metadata']['name']}", m["spec"]["template"]["spec"])
        for m in manifests
        if m["kind"] in ("Deployment", "Job")
    ]


def container(deployment: Manifest) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    result: dict[str, Any] = containers[0]
    return result


def hook_weight(manifest: Manifest) -> int:
    return int(manifest["metadata"]["annotations"].get("helm.sh/hook-weight", "0"))


def hooks(manifest: Manifest) -> set[str]:
    value = manifest["metadata"].get("annotations", {}).get("helm.sh/hook", "")
    return {h.strip() for h in value.split(",") if h.strip()}


@pytest.mark.parametrize("values", [MINIMAL, PRODUCTION], ids=["minimal", "production"])
def test_helm_lint_passes_strict(values: Path) -> None:
    done = run(tool("helm"), "lint", "--strict", str(CHART), "-f", str(values))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 chart(s) failed" in done.stdout


def test_the_chart_defaults_say_which_two_values_are_missing() -> None:
    code, _, err = helm_template()
    assert code != 0
    assert "secrets.databaseUrl: set secrets.databaseUrl.secretName" in err
    code, _, err = helm_template("--set", "secrets.databaseUrl.value=postgresql://db/lockgate")
    assert code != 0
    assert "secrets.adminKey: set secrets.adminKey.secretName" in err


@pytest.mark.parametrize("values", [MINIMAL, PRODUCTION], ids=["minimal", "production"])
def test_every_rendered_manifest_is_valid_kubernetes(values: Path) -> None:
    manifests = render("-f", str(values))
    assert len(manifests) >= 6
    for manifest in manifests:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def test_the_validator_refuses_a_misspelt_field(minimal: list[Manifest]) -> None:
    """The check above means something: strict validation refuses an unknown field."""
    deployment = yaml.safe_load(yaml.safe_dump(one(minimal, "Deployment", "-gateway")))
    container(deployment)["readinesProbe"] = {"httpGet": {"path": "/readyz", "port": "http"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_probes_reach_readyz_and_healthz_on_the_container_port(
    minimal: list[Manifest], deploy_gateway: DeployGateway
) -> None:
    gateway = container(one(minimal, "Deployment", "-gateway"))
    ports = {p["name"]: p["containerPort"] for p in gateway["ports"]}
    args = gateway["args"]
    assert args[:3] == ["serve", "--host", "0.0.0.0"]
    assert int(args[args.index("--port") + 1]) == ports["http"]
    expected = {
        "readinessProbe": "/readyz",
        "livenessProbe": "/healthz",
        "startupProbe": "/healthz",
    }
    for probe, path in expected.items():
        assert gateway[probe]["httpGet"] == {"path": path, "port": "http"}, probe
        # and the gateway answers there, without a key, as the kubelet asks
        assert httpx.get(deploy_gateway.url + path, timeout=10).status_code == 200, path


@pytest.mark.parametrize("values", [MINIMAL, PRODUCTION], ids=["minimal", "production"])
def test_every_pod_runs_as_the_images_non_root_user_on_a_read_only_root(values: Path) -> None:
    uid = final_user_uid(DEPLOY / "Dockerfile")
    assert uid == final_user_uid(DEPLOY / "Dockerfile.worker")
    for where, spec in pod_specs(render("-f", str(values))):
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, where
        assert pod["runAsUser"] == uid != 0, where
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert spec["automountServiceAccountToken"] is False, where
        for c in spec["containers"]:
            security = c["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["capabilities"]["drop"] == ["ALL"], where
            # what lockgate writes lies on a volume: the data directory and /tmp
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            env = {e["name"]: e.get("value") for e in c["env"]}
            data_dir = env["LOCKGATE_DATA_DIR"]
            assert any(data_dir.startswith(path) for path in mounts), (where, data_dir)
            assert "/tmp" in mounts, where


def test_the_migration_job_is_a_hook_that_runs_before_the_rollout(
    minimal: list[Manifest], production: list[Manifest]
) -> None:
    for manifests in (minimal, production):
        job = one(manifests, "Job", "-migrate")
        assert {"pre-install", "pre-upgrade"} <= hooks(job)
        spec = job["spec"]["template"]["spec"]
        assert spec["containers"][0]["args"] == ["db", "upgrade"]
        assert spec["restartPolicy"] == "Never"
        # a pre-install hook runs before the release's own objects exist: it may use none
        assert "serviceAccountName" not in spec
        rendered = {(m["kind"], m["metadata"]["name"]): m for m in manifests}
        for entry in spec["containers"][0]["env"]:
            ref = entry.get("valueFrom", {}).get("secretKeyRef")
            if ref is None:
                continue
            secret = rendered.get(("Secret", ref["name"]))
            if secret is None:  # a Secret the operator created beforehand
                continue
            assert {"pre-install", "pre-upgrade"} <= hooks(secret), ref["name"]
            assert hook_weight(secret) < hook_weight(job), ref["name"]
            assert ref["key"] in secret["data"]
    # by value, the URL travels in the hook's own Secret; by reference, in the operator's
    env = container(one(production, "Job", "-migrate"))["env"]
    reference = {"secretKeyRef": {"name": "lockgate-db-app", "key": "uri"}}
    assert {"name": "LOCKGATE_DATABASE_URL", "valueFrom": reference} in env


def test_turning_the_migration_off_renders_no_job() -> None:
    manifests = render("-f", str(MINIMAL), "--set", "migration.enabled=false")
    assert not [m for m in manifests if m["kind"] == "Job" or hooks(m)]


def test_the_worker_requests_gpus_and_runs_the_finetune_worker(
    minimal: list[Manifest], production: list[Manifest]
) -> None:
    assert not [m for m in minimal if m["metadata"]["name"].endswith("-worker")]
    worker = container(one(production, "Deployment", "-worker"))
    assert worker["args"][:2] == ["finetune", "worker"]
    assert worker["image"] == "ghcr.io/lockgate/lockgate-worker:0.1.0"
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert worker["resources"]["requests"]["nvidia.com/gpu"] == 1
    spec = one(production, "Deployment", "-worker")["spec"]
    assert spec["strategy"] == {"type": "Recreate"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec[
        "template"
    ]["spec"]["tolerations"]
    shm = {v["name"]: v for v in spec["template"]["spec"]["volumes"]}["shm"]
    assert shm["emptyDir"]["medium"] == "Memory"
    two = render("-f", str(PRODUCTION), "--set", "worker.gpus=2")
    assert (
        container(one(two, "Deployment", "-worker"))["resources"]["limits"]["nvidia.com/gpu"] == 2
    )
    none = render("-f", str(PRODUCTION), "--set", "worker.gpus=0", "--set", "worker.kind=command")
    cpu_only = container(one(none, "Deployment", "-worker"))
    assert "nvidia.com/gpu" not in cpu_only["resources"]["limits"]
    assert cpu_only["args"] == ["finetune", "worker", "--kind", "command"]


SECRET_NAME = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|DATABASE_URL|REDIS_URL")


@pytest.mark.parametrize("values", [MINIMAL, PRODUCTION], ids=["minimal", "production"])
def test_secrets_are_referenced_never_inlined(values: Path) -> None:
    manifests = render("-f", str(values))
    given = yaml.safe_load(values.read_text())["secrets"]
    inline = [
        item["value"] for item in given.values() if isinstance(item, dict) and item.get("value")
    ]
    for where, spec in pod_specs(manifests):
        for c in spec["containers"]:
            for entry in c["env"]:
                if SECRET_NAME.search(entry["name"]):
                    assert set(entry) == {"name", "valueFrom"}, (where, entry["name"])
                    assert "secretKeyRef" in entry["valueFrom"], (where, entry["name"])
    for manifest in manifests:
        if manifest["kind"] != "Secret":
            text = yaml.safe_dump(manifest)
            assert not [v for v in inline if v in text], manifest["metadata"]["name"]


def test_existing_secrets_are_used_and_the_chart_makes_none(production: list[Manifest]) -> None:
    assert not [m for m in production if m["kind"] == "Secret"]
    gateway = container(one(production, "Deployment", "-gateway"))
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in gateway["env"] if "valueFrom" in e}
    assert refs == {
        "LOCKGATE_DATABASE_URL": {"name": "lockgate-db-app", "key": "uri"},
        "LOCKGATE_GATEWAY__REDIS_URL": {"name": "lockgate-redis", "key": "url"},
        "LOCKGATE_ADMIN_KEY": {"name": "lockgate-admin", "key": "admin-key"},
        "LOCKGATE_UI_SESSION_SECRET": {"name": "lockgate-admin", "key": "ui-session-secret"},
    }
    assert gateway["envFrom"] == [{"secretRef": {"name": "lockgate-provider-keys"}}]


def test_provider_keys_by_value_go_into_a_secret_read_with_env_from() -> None:
    manifests = render("-f", str(MINIMAL), "--set", "secrets.providerKeys.OPENAI_API_KEY=sk-x1")
    secret = one(manifests, "Secret", "-provider-keys")
    assert set(secret["data"]) == {"OPENAI_API_KEY"}
    gateway = container(one(manifests, "Deployment", "-gateway"))
    assert gateway["envFrom"] == [{"secretRef": {"name": secret["metadata"]["name"]}}]


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("gateway.replicaCount=-1", "gateway.replicaCount: Must be greater than or equal to 1"),
        ("gateway.replicas=3", "Additional property replicas is not allowed"),
        ("worker.kind=everything", "worker.kind must be one of the following"),
        ("image.pullPolicy=Sometimes", "image.pullPolicy must be one of the following"),
        ("gateway.service.type=Ingress", "gateway.service.type must be one of the following"),
        ("secrets.providerKeys.bad-name=x", 'Property name of "bad-name" does not match'),
        ("config.gatway.routes=x", 'Property name of "gatway" does not match'),
        ("gateway.port=80", "gateway.port: Must be greater than or equal to 1024"),
    ],
)
def test_the_values_schema_refuses_a_bad_value(setting: str, message: str) -> None:
    code, out, err = helm_template("-f", str(MINIMAL), "--set", setting)
    assert code != 0
    assert "don't meet the specifications of the schema" in err
    assert message in err, err
    assert out == ""


def test_the_schema_knows_every_section_of_lockgate_yaml() -> None:
    import json

    schema = json.loads((CHART / "values.schema.json").read_text())
    sections = schema["properties"]["config"]["propertyNames"]["enum"]
    assert set(sections) == set(LockgateSettings.model_fields)


@pytest.mark.parametrize("values", [MINIMAL, PRODUCTION], ids=["minimal", "production"])
def test_the_configmap_is_a_lockgate_yaml_that_lockgate_accepts(
    values: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = one(render("-f", str(values)), "ConfigMap", "-config")
    path = tmp_path / "lockgate.yaml"
    path.write_text(config["data"]["lockgate.yaml"])
    for name in [n for n in os.environ if n.startswith(("LOCKGATE_", "OTEL_"))]:
        monkeypatch.delenv(name)
    settings = load_settings(path)
    assert settings.gateway.admin_key_env == "LOCKGATE_ADMIN_KEY"
    assert settings.ui.session_secret_env == "LOCKGATE_UI_SESSION_SECRET"
    gateway = one(render("-f", str(values)), "Deployment", "-gateway")
    drain = settings.server.shutdown_drain_s + settings.server.graceful_shutdown_s + 10
    assert gateway["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > drain
    probe = container(gateway)["readinessProbe"]
    assert settings.server.shutdown_drain_s >= probe["periodSeconds"] * probe["failureThreshold"]


def test_a_config_change_rolls_the_pods() -> None:
    def checksum(*args: str) -> str:
        deployment = one(render("-f", str(MINIMAL), *args), "Deployment", "-gateway")
        value: str = deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        return value

    assert checksum() != checksum("--set", "config.server.graceful_shutdown_s=20")


def test_service_hpa_and_pdb_select_the_gateway_pods(
    minimal: list[Manifest], production: list[Manifest]
) -> None:
    for manifests in (minimal, production):
        deployment = one(manifests, "Deployment", "-gateway")
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        service = one(manifests, "Service")
        assert service["spec"]["selector"].items() <= labels.items()
        assert service["spec"]["ports"][0]["targetPort"] == "http"
        pdb = one(manifests, "PodDisruptionBudget")
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
        worker = [m for m in manifests if m["metadata"]["name"].endswith("-worker")]
        for w in worker:  # the Service must not send calls to a worker pod
            assert (
                not service["spec"]["selector"].items()
                <= w["spec"]["template"]["metadata"]["labels"].items()
            )
    assert one(minimal, "Deployment", "-gateway")["spec"]["replicas"] == 2
    assert not [m for m in minimal if m["kind"] == "HorizontalPodAutoscaler"]
    deployment = one(production, "Deployment", "-gateway")
    assert "replicas" not in deployment["spec"]  # the autoscaler owns it
    hpa = one(production, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1", "kind": "Deployment", "name": deployment["metadata"]["name"],
    }  # fmt: skip
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 20)


def _key_lines(text: str) -> list[tuple[int, int, str, bool, bool]]:
    """(line number, indent, key, commented, leaf) for each mapping key of a YAML file:
    commented when a comment line stands right above it, a leaf when its value is on its line."""
    found = []
    previous = ""
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        match = re.match(r"^(\s*)([A-Za-z][\w.-]*):(.*)$", line)
        if match and not stripped.startswith("#"):
            value = match.group(3).split(" #")[0].strip()
            found.append(
                (number, len(match.group(1)), match.group(2), previous.startswith("#"), bool(value))
            )
        if stripped:
            previous = stripped
    return found


def test_every_value_is_documented() -> None:
    """Each value of values.yaml has a comment right above it or above a key enclosing it."""
    undocumented = []
    parents: list[tuple[int, bool]] = []  # (indent, documented) of the enclosing keys
    for number, indent, key, commented, leaf in _key_lines((CHART / "values.yaml").read_text()):
        while parents and parents[-1][0] >= indent:
            parents.pop()
        documented = commented or any(doc for _, doc in parents)
        if leaf and not documented:
            undocumented.append(f"line {number}: {key}")
        parents.append((indent, documented))
    assert not undocumented, undocumented


def test_the_documentation_check_finds_an_undocumented_value(tmp_path: Path) -> None:
    text = "gateway:\n  # -- Replicas.\n  replicaCount: 2\n  port: 4000\n"
    leaves = [(k, c) for _, _, k, c, leaf in _key_lines(text) if leaf]
    assert leaves == [("replicaCount", True), ("port", False)]
