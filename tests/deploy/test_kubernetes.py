"""deploy/k8s, checked offline: each overlay rendered by `kubectl kustomize`, every built-in object valid for a
pinned Kubernetes version (kubernetes-validate, strict), the Prometheus Operator's and CloudNativePG's objects
valid for their CRDs' published schemas (deploy/schemas/crds, jsonschema, unknown fields refused as the API
server would prune them), and what the project relies on: real settings only, no inline secret, non-root
read-only containers, a grace period longer than the API's shutdown, the rules and jobs the alerts select."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from alerts.build import ALERTS_DIR, load_thresholds
from dashboards.build import build as build_dashboards
from monitor.config import load_config
from payment.core.config import SECRET_FIELDS, Environment, Settings
from tests.support.services import ROOT, require

pytestmark = pytest.mark.integration

K8S = ROOT / "deploy" / "k8s"
CRD_SCHEMAS = ROOT / "deploy" / "schemas" / "crds"
KUBERNETES_VERSION = "1.31.0"  # the oldest minor this targets is 1.30 (preStop sleep); 1.31 is what we check
OVERLAYS = {"staging": Environment.staging, "production": Environment.production}
IMAGE = "ghcr.io/musdpay/musdpay"
UID = 10001
DELIVER_JOB = "musdpay-deliver"
# Kinds whose schema is a vendored CRD's (group, version, kind) -> file.
CRD_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_v1_servicemonitor.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "monitoring.coreos.com_v1_prometheusrule.json",
    ("monitoring.coreos.com/v1", "Prometheus"): "monitoring.coreos.com_v1_prometheus.json",
    ("postgresql.cnpg.io/v1", "Cluster"): "postgresql.cnpg.io_v1_cluster.json",
    ("postgresql.cnpg.io/v1", "ScheduledBackup"): "postgresql.cnpg.io_v1_scheduledbackup.json",
}
_MUSDPAY_VAR = re.compile(r"\bMUSDPAY_[A-Z0-9_]*[A-Z0-9]\b")


class _GoYamlLoader(yaml.SafeLoader):
    """Reads kustomize's output as Go does. kustomize (go-yaml v3) writes a 40-hex-digit address unquoted, since
    it cannot be an int64 there; PyYAML would make it an int. Any integer out of int64/uint64 range stays text."""


def _int_or_text(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int | str:
    number = loader.construct_yaml_int(node)
    text = loader.construct_scalar(node)
    return number if -(2**63) <= number < 2**64 else str(text)


_GoYamlLoader.add_constructor("tag:yaml.org,2002:int", _int_or_text)


def _kubectl() -> str:
    path = shutil.which("kubectl")
    require(path is not None, "kubectl (with its built-in kustomize) is not on PATH")
    assert path is not None
    return path


@cache
def _render(directory: str) -> tuple[dict[str, Any], ...]:
    result = subprocess.run(
        [_kubectl(), "kustomize", str(K8S / directory)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, f"kubectl kustomize {directory}: {result.stderr}"
    return tuple(document for document in yaml.load_all(result.stdout, Loader=_GoYamlLoader) if document)


def render(overlay: str) -> list[dict[str, Any]]:
    return [json.loads(json.dumps(document)) for document in _render(f"overlays/{overlay}")]  # a fresh copy


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj["kind"] == kind]


def named(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [obj for obj in of_kind(objects, kind) if obj["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
    return matches[0]


def workloads(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj["kind"] in {"Deployment", "Job", "StatefulSet", "DaemonSet", "CronJob"}]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(workload)
    return [*spec.get("initContainers", []), *spec["containers"]]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container.get("env", [])}


@cache
def crd_schema(filename: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((CRD_SCHEMAS / filename).read_text(encoding="utf-8"))
    return schema


def unknown_fields(value: Any, schema: dict[str, Any], where: str) -> list[str]:
    """Fields the API server would prune: not declared where the schema declares properties and keeps nothing else
    (no additionalProperties, no x-kubernetes-preserve-unknown-fields). metadata is the API server's own."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    found: list[str] = []
    if isinstance(value, dict):
        properties = schema.get("properties")
        additional = schema.get("additionalProperties")
        for key, item in value.items():
            if where == "" and key == "metadata":
                continue
            if properties is not None and key in properties:
                found += unknown_fields(item, properties[key], f"{where}.{key}")
            elif isinstance(additional, dict):
                found += unknown_fields(item, additional, f"{where}.{key}")
            elif properties is not None and additional is not True:
                found.append(f"{where}.{key}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            found += unknown_fields(item, schema["items"], f"{where}[{index}]")
    return found


@pytest.mark.parametrize("directory", ["base", *(f"overlays/{overlay}" for overlay in sorted(OVERLAYS))])
def test_every_object_is_valid_for_kubernetes_or_its_crd(directory: str) -> None:
    objects = list(_render(directory))
    assert objects
    for obj in objects:
        what = f"{obj['kind']}/{obj['metadata']['name']}"
        crd = CRD_KINDS.get((obj["apiVersion"], obj["kind"]))
        if crd is None:
            # Raises for an unknown kind, a wrong type or (strict) a field the API does not have.
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        else:
            schema = crd_schema(crd)
            errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(obj), key=lambda error: error.json_path)
            assert not errors, f"{what}: " + "; ".join(f"{e.json_path}: {e.message}" for e in errors[:5])
            assert unknown_fields(obj, schema, "") == [], f"{what}: fields its CRD does not have"
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "musdpay", what


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_the_overlay_sets_its_namespace_environment_host_and_image(overlay: str) -> None:
    objects = render(overlay)
    (namespace,) = of_kind(objects, "Namespace")
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == namespace["metadata"]["name"], obj["metadata"]["name"]
    for workload in workloads(objects):
        for container in containers(workload):
            if workload["metadata"]["name"] == "musdpay-redis":  # the one other image: pinned to a release
                assert re.fullmatch(r"redis:\d+\.\d+\.\d+-alpine", container["image"]), container["image"]
                continue
            assert container["image"].startswith(f"{IMAGE}:"), container["image"]
            assert env_of(container)["MUSDPAY_ENVIRONMENT"]["value"] == OVERLAYS[overlay].value
    ingress = named(objects, "Ingress", "musdpay-api")
    hosts = [rule["host"] for rule in ingress["spec"]["rules"]]
    assert ingress["spec"]["tls"][0]["hosts"] == hosts
    assert ingress["spec"]["tls"][0]["secretName"]
    assert hosts != ["api.musdpay.example"] or overlay == "production"


def test_every_musdpay_variable_in_the_manifests_is_a_real_setting() -> None:
    # The variables of every manifest and config (comments included) and of each rendered overlay.
    settings = {name.upper() for name in Settings.model_fields}
    files = {name.upper() for name in SECRET_FIELDS}
    known = {f"MUSDPAY_{name}" for name in settings} | {f"MUSDPAY_{name}_FILE" for name in files}
    sources = [path for path in K8S.rglob("*") if path.suffix in {".yaml", ".yml"}]
    assert sources
    for path in sources:
        unknown = set(_MUSDPAY_VAR.findall(path.read_text(encoding="utf-8"))) - known
        assert not unknown, f"{path.relative_to(ROOT)}: not settings of payment/core/config.py: {sorted(unknown)}"
    for overlay in OVERLAYS:
        for workload in workloads(render(overlay)):
            for container in containers(workload):
                names = {name for name in env_of(container) if name.startswith("MUSDPAY_")}
                assert names <= known, sorted(names - known)


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_secrets_are_referenced_never_inlined(overlay: str) -> None:
    objects = render(overlay)
    assert of_kind(objects, "Secret") == [], "Secrets are created by the operator or CloudNativePG, never shipped"
    secret_vars = {f"MUSDPAY_{name.upper()}" for name in SECRET_FIELDS} | {"PGPASSWORD"}
    for workload in workloads(objects):
        for container in containers(workload):
            for name, item in env_of(container).items():
                if name not in secret_vars or "value" not in item:
                    continue
                # Only a URL without credentials may be written out: the database's (libpq gets them from PGUSER
                # and PGPASSWORD, themselves from a Secret) and the Redis of the rate limits (no password: a
                # NetworkPolicy admits the API pods only).
                where = f"{workload['metadata']['name']}: {name} is inlined"
                assert name in {"MUSDPAY_DATABASE_URL", "MUSDPAY_REDIS_URL"}, where
                url = urlsplit(item["value"])
                assert url.username is None
                assert url.password is None
                assert "password" not in url.query
                if name == "MUSDPAY_DATABASE_URL":
                    assert "secretKeyRef" in env_of(container)["PGPASSWORD"]["valueFrom"]
                else:
                    assert of_kind(objects, "NetworkPolicy"), "Redis without a password needs its NetworkPolicy"
            for item in container.get("envFrom", []):
                assert "secretRef" in item or "configMapRef" in item


def test_every_referenced_secret_and_key_is_documented() -> None:
    readme = (K8S / "README.md").read_text(encoding="utf-8")
    for overlay in OVERLAYS:
        objects = render(overlay)
        references: set[tuple[str, str]] = set()
        for workload in workloads(objects):
            for container in containers(workload):
                for item in container.get("env", []):
                    ref = item.get("valueFrom", {}).get("secretKeyRef")
                    if ref:
                        references.add((ref["name"], ref["key"]))
            for volume in pod_spec(workload).get("volumes", []):
                if "secret" in volume:
                    for item in volume["secret"]["items"]:
                        references.add((volume["secret"]["secretName"], item["key"]))
        for cluster in of_kind(objects, "Cluster"):
            credentials = cluster["spec"]["backup"]["barmanObjectStore"]["s3Credentials"]
            references |= {(ref["name"], ref["key"]) for ref in credentials.values()}
        for ingress in of_kind(objects, "Ingress"):
            references |= {(tls["secretName"], "tls.crt") for tls in ingress["spec"]["tls"]}
        for name, key in sorted(references):
            assert f"`{name}`" in readme, f"deploy/k8s/README.md does not list the Secret {name}"
            assert f"`{key}`" in readme, f"deploy/k8s/README.md does not list {name}'s key {key}"


# Workloads of other images: (their user, their only writable directories).
_NOT_OURS = {"musdpay-redis": (999, {"/data"})}


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_every_container_runs_as_non_root_with_a_read_only_root(overlay: str) -> None:
    for workload in workloads(render(overlay)):
        uid, writable_dirs = _NOT_OURS.get(workload["metadata"]["name"], (UID, {"/tmp", "/var/lib/musdpay"}))
        spec = pod_spec(workload)
        pod = spec.get("securityContext", {})
        assert spec.get("automountServiceAccountToken") is False, workload["metadata"]["name"]
        assert pod["runAsNonRoot"] is True
        assert pod["runAsUser"] == uid
        assert pod["seccompProfile"]["type"] == "RuntimeDefault"
        mounts_of_volumes = {volume["name"]: volume for volume in spec.get("volumes", [])}
        for container in containers(workload):
            context = container["securityContext"]
            what = f"{workload['metadata']['name']}/{container['name']}"
            assert context.get("runAsNonRoot", pod.get("runAsNonRoot")) is True, what
            assert context.get("runAsUser", pod.get("runAsUser")) == uid, what
            assert context["readOnlyRootFilesystem"] is True, what
            assert context["allowPrivilegeEscalation"] is False, what
            assert context["capabilities"]["drop"] == ["ALL"], what
            assert context.get("seccompProfile", pod["seccompProfile"])["type"] == "RuntimeDefault", what
            assert container["resources"]["requests"], what
            assert container["resources"]["limits"], what
            # The only writable places: emptyDirs (ours: /tmp and the image's state directory).
            writable = {
                mount["mountPath"]
                for mount in container.get("volumeMounts", [])
                if "emptyDir" in mounts_of_volumes[mount["name"]]
            }
            assert writable == writable_dirs, what
            for mount in container.get("volumeMounts", []):
                if "emptyDir" not in mounts_of_volumes[mount["name"]]:
                    assert mount.get("readOnly") is True, f"{what}: {mount['mountPath']}"


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_the_api_outlives_its_shutdown_grace_and_leaves_the_endpoints_first(overlay: str) -> None:
    api = named(render(overlay), "Deployment", "musdpay-api")
    (container,) = pod_spec(api)["containers"]
    env = env_of(container)
    assert env["MUSDPAY_DELIVERY_WORKER_ENABLED"]["value"] == "false"
    assert env["MUSDPAY_TRUSTED_PROXY_HOPS"]["value"] == "1"
    grace = float(
        env["MUSDPAY_SHUTDOWN_GRACE_SECONDS"]["value"]
        if "MUSDPAY_SHUTDOWN_GRACE_SECONDS" in env
        else Settings.model_fields["shutdown_grace_seconds"].default
    )
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pre_stop >= 5, "the endpoint must be gone from the Service before the API stops accepting"
    assert pod_spec(api)["terminationGracePeriodSeconds"] > pre_stop + grace
    paths = {
        probe: container[probe]["httpGet"]["path"] for probe in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    assert paths == {"startupProbe": "/healthz", "livenessProbe": "/healthz", "readinessProbe": "/readyz"}
    spread = pod_spec(api).get("topologySpreadConstraints", [])
    assert any(item["topologyKey"] == "kubernetes.io/hostname" for item in spread)
    objects = render(overlay)
    hpa = named(objects, "HorizontalPodAutoscaler", "musdpay-api")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["minReplicas"] >= 2
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert named(objects, "PodDisruptionBudget", "musdpay-api")["spec"]["minAvailable"] == 1
    service = named(objects, "Service", "musdpay-api")
    assert {"name": "http", "port": 3001, "targetPort": "http"} in service["spec"]["ports"]
    job = named(objects, "Job", "musdpay-migrate")
    assert pod_spec(job)["containers"][0]["args"] == ["db", "upgrade"]
    assert job["spec"]["backoffLimit"] >= 1
    assert job["spec"]["ttlSecondsAfterFinished"] > 0


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_the_prometheus_rule_holds_every_generated_group(overlay: str) -> None:
    (rule,) = of_kind(render(overlay), "PrometheusRule")
    expected = []
    for path in sorted((ALERTS_DIR / "generated").glob("*.yml")):
        expected += yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
    assert rule["spec"]["groups"] == expected


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_scraped_jobs_are_those_the_alerts_select(overlay: str) -> None:
    objects = render(overlay)
    values = load_thresholds().values
    services = of_kind(objects, "Service")
    jobs = {}
    for monitor in of_kind(objects, "ServiceMonitor"):
        selector = monitor["spec"]["selector"]["matchLabels"]
        (service,) = [s for s in services if selector.items() <= s["metadata"].get("labels", {}).items()]
        # The Operator's rule: the Service's label named by jobLabel, else the Service's name.
        labels = service["metadata"]["labels"]
        job = labels.get(monitor["spec"].get("jobLabel", ""), service["metadata"]["name"])
        assert job == service["metadata"]["name"], "label and name agree, so neither can drift alone"
        ports = {port["name"] for port in service["spec"]["ports"]}
        assert {endpoint["port"] for endpoint in monitor["spec"]["endpoints"]} <= ports
        jobs[monitor["metadata"]["name"]] = job
    assert sorted(jobs.values()) == sorted([values["api_job"], values["monitor_job"], DELIVER_JOB])
    (prometheus,) = of_kind(objects, "Prometheus")
    assert prometheus["spec"]["retention"] == "40d"
    assert "exemplar-storage" in prometheus["spec"]["enableFeatures"]
    wanted = prometheus["spec"]["serviceMonitorSelector"]["matchLabels"]
    assert all(wanted.items() <= m["metadata"]["labels"].items() for m in of_kind(objects, "ServiceMonitor"))
    wanted = prometheus["spec"]["ruleSelector"]["matchLabels"]
    assert all(wanted.items() <= r["metadata"]["labels"].items() for r in of_kind(objects, "PrometheusRule"))


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_dashboards_are_configmaps_for_the_grafana_sidecar(overlay: str) -> None:
    configmaps = [cm for cm in of_kind(render(overlay), "ConfigMap") if "grafana_dashboard" in cm["metadata"]["labels"]]
    assert {cm["metadata"]["labels"]["grafana_dashboard"] for cm in configmaps} == {"1"}
    found = {key.removesuffix(".json"): text for cm in configmaps for key, text in cm["data"].items()}
    assert found == build_dashboards()


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_the_database_is_cloudnativepg_with_backups_and_the_pods_use_its_services(overlay: str) -> None:
    objects = render(overlay)
    (cluster,) = of_kind(objects, "Cluster")
    name = cluster["metadata"]["name"]
    assert cluster["spec"]["instances"] == 2
    assert cluster["spec"]["backup"]["barmanObjectStore"]["destinationPath"].startswith("s3://")
    (scheduled,) = of_kind(objects, "ScheduledBackup")
    assert scheduled["spec"]["cluster"]["name"] == name
    for workload in workloads(objects):
        if workload["metadata"]["name"] in _NOT_OURS:
            continue
        for container in containers(workload):
            env = env_of(container)
            assert urlsplit(env["MUSDPAY_DATABASE_URL"]["value"]).hostname == f"{name}-rw"
            assert urlsplit(env["MUSDPAY_DATABASE_URL"]["value"]).scheme == "postgresql+psycopg"
            for variable, key in (("PGUSER", "username"), ("PGPASSWORD", "password")):
                assert env[variable]["valueFrom"]["secretKeyRef"] == {"name": f"{name}-app", "key": key}
    (config,) = [cm for cm in of_kind(objects, "ConfigMap") if "monitor.yml" in cm["data"]]
    replica = yaml.safe_load(config["data"]["monitor.yml"])["database"]["replica_url"]
    assert urlsplit(replica).hostname == f"{name}-ro"


def test_the_monitor_configs_load_and_differ_only_by_the_replica(tmp_path: Path) -> None:
    base = K8S / "base" / "monitor.yml"
    with_replica = K8S / "components" / "cloudnativepg" / "monitor.yml"
    for path in (base, with_replica):
        config = load_config(path)  # the monitor's own parser and validation
        assert config.server.host == "0.0.0.0"  # noqa: S104 - scraped from other pods
        assert config.server.port == 9101
    documents = [yaml.safe_load(path.read_text(encoding="utf-8")) for path in (base, with_replica)]
    assert documents[1]["database"].pop("replica_url")
    assert documents[0] == documents[1]


def test_the_validators_refuse_what_the_api_server_would() -> None:
    # The checks above are only worth something if they can fail: a field Kubernetes does not have, a wrong type
    # in a CRD object, a field a CRD would prune.
    objects = render("production")
    api = json.loads(json.dumps(named(objects, "Deployment", "musdpay-api")))
    pod_spec(api)["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(api, KUBERNETES_VERSION, strict=True)
    cluster = json.loads(json.dumps(named(objects, "Cluster", "musdpay-db")))
    cluster["spec"]["instances"] = "two"
    schema = crd_schema(CRD_KINDS[("postgresql.cnpg.io/v1", "Cluster")])
    assert list(jsonschema.Draft7Validator(schema).iter_errors(cluster))
    monitor = json.loads(json.dumps(named(objects, "ServiceMonitor", "musdpay-api")))
    monitor["spec"]["endpoints"][0]["scrapeProtocol"] = "OpenMetricsText1.0.0"
    schema = crd_schema(CRD_KINDS[("monitoring.coreos.com/v1", "ServiceMonitor")])
    assert unknown_fields(monitor, schema, "") == [".spec.endpoints[0].scrapeProtocol"]


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_each_process_listens_on_the_port_its_service_and_probes_use(overlay: str) -> None:
    objects = render(overlay)
    flags = {"musdpay-api": "--port", "musdpay-monitor": "--port", "musdpay-deliver": "--metrics-port"}
    for name, flag in flags.items():
        (container,) = pod_spec(named(objects, "Deployment", name))["containers"]
        args = container["args"]
        port = int(args[args.index(flag) + 1])
        assert [item["containerPort"] for item in container["ports"]] == [port], name
        (port_name,) = [item["name"] for item in container["ports"]]
        service = named(objects, "Service", name)
        assert [item["targetPort"] for item in service["spec"]["ports"]] == [port_name], name
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            if probe in container:
                assert container[probe]["httpGet"]["port"] == port_name, f"{name} {probe}"
    assert "--host" in pod_spec(named(objects, "Deployment", "musdpay-api"))["containers"][0]["args"]
    (deliver,) = pod_spec(named(objects, "Deployment", "musdpay-deliver"))["containers"]
    assert env_of(deliver)["MUSDPAY_HOST"]["value"] == "0.0.0.0"  # noqa: S104 - scraped from other pods
