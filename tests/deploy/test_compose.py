"""docker-compose.yml checked without Docker (there is no daemon in CI): it validates against the vendored Compose
Specification schema, everything it mounts exists (or is an operator's secret named in the secrets README),
every MUSDPAY_* variable it sets is one the code reads, its ports agree with the settings and the configs it
mounts, and its Prometheus config passes promtool with the real rules."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from monitor.config import load_config
from payment.core.config import ENV_PREFIX, SECRET_FIELDS, Settings
from tests.alerts.support import promtool
from tests.support.services import ROOT

COMPOSE_FILE = ROOT / "docker-compose.yml"
SCHEMA = ROOT / "deploy" / "schemas" / "compose-spec.json"
COMPOSE_DIR = ROOT / "deploy" / "compose"
SECRETS_DIR = COMPOSE_DIR / "secrets"
PROMETHEUS = COMPOSE_DIR / "prometheus.yml"
IMAGE = "musdpay:${MUSDPAY_IMAGE_TAG:-local}"
API_PORT = Settings.model_fields["port"].default
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 (what a container must bind for its neighbours to reach it)
# Variables a musdpay process reads besides Settings: alerts/alertmanager.yml's placeholders (read by
# `musdpay alerts render`, alerts/alertmanager.py), and the OpenTelemetry SDK's.
OTHER_VARIABLES = {"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SERVICE_NAME"}


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    return loaded


def _services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = _compose()["services"]
    return services


def _musdpay_services() -> dict[str, dict[str, Any]]:
    return {name: s for name, s in _services().items() if str(s.get("image", "")).startswith(IMAGE)}


def _alert_variables() -> set[str]:
    text = (ROOT / "alerts" / "alertmanager.yml").read_text(encoding="utf-8")
    names = set(re.findall(r"\$\{(MUSDPAY_ALERT_[A-Z0-9_]+)", text))
    source = (ROOT / "alerts" / "alertmanager.py").read_text(encoding="utf-8")
    return names | set(re.findall(r"\"(MUSDPAY_ALERT_[A-Z0-9_]+)\"", source))


def _setting_variables() -> set[str]:
    names = {f"{ENV_PREFIX}{field.upper()}" for field in Settings.model_fields}
    return names | {f"{ENV_PREFIX}{field.upper()}_FILE" for field in SECRET_FIELDS}


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "environment is written as a mapping throughout"
    return {str(k): str(v) for k, v in env.items()}


def _prometheus_jobs() -> dict[str, dict[str, Any]]:
    config = yaml.safe_load(PROMETHEUS.read_text(encoding="utf-8"))
    return {job["job_name"]: job for job in config["scrape_configs"]}


def _static_targets(job: dict[str, Any]) -> list[str]:
    return [target for static in job.get("static_configs", []) for target in static["targets"]]


def test_compose_file_validates_against_the_compose_specification() -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    assert "draft-07" in schema["$schema"]
    validator = jsonschema.Draft7Validator(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(_compose())]
    assert errors == []


def test_the_topology_is_there() -> None:
    services = _services()
    assert {
        "proxy", "api", "migrate", "deliver", "monitor", "postgres", "postgres-replica", "redis", "prometheus",
        "alertmanager-config", "alertmanager", "grafana", "otel-collector", "jaeger", "postgres-exporter",
        "redis-exporter", "chain", "stripe", "receivers",
    } <= set(services)  # fmt: skip
    assert services["api"]["deploy"]["replicas"] == 2
    for name in ("chain", "stripe", "receivers"):
        assert services[name]["profiles"] == ["dev"], name
    for name, service in services.items():
        assert service.get("profiles") == ["dev"] or name not in {"chain", "stripe", "receivers"}
        assert "network_mode" not in service, f"{name}: services talk over the bridge network, by name"
        assert service["networks"] == ["musdpay"], name
    assert _compose()["networks"]["musdpay"]["driver"] == "bridge"


def test_every_image_is_pinned() -> None:
    for name, service in _services().items():
        image = str(service["image"])
        if image.startswith("musdpay:"):
            assert "build" in service, f"{name}: the musdpay image is built from the Dockerfile"
            continue
        repository, _, tag = image.rpartition(":")
        assert repository, f"{name}: {image}"
        assert tag != "latest", f"{name}: {image}"
        assert re.search(r"\d+\.\d+", tag), f"{name}: {image} is not pinned to a version"


def test_migrations_run_once_before_the_services_that_need_the_schema() -> None:
    services = _services()
    assert services["migrate"]["command"] == ["db", "upgrade"]
    assert services["migrate"]["restart"] == "no"
    for name in ("api", "deliver", "monitor"):
        assert services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}, name
        assert _environment(services[name])["MUSDPAY_AUTO_MIGRATE"] == "false"
    assert services["alertmanager"]["depends_on"]["alertmanager-config"] == {
        "condition": "service_completed_successfully"
    }


def test_the_api_runs_behind_one_proxy_hop_with_shared_state_and_no_delivery_worker() -> None:
    api = _services()["api"]
    env = _environment(api)
    assert env["MUSDPAY_TRUSTED_PROXY_HOPS"] == "1"
    assert env["MUSDPAY_DELIVERY_WORKER_ENABLED"] == "false"
    assert env["MUSDPAY_REDIS_URL"].startswith("redis://redis:6379")
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4318"
    assert "jwt_keys" in api["secrets"], "every replica needs the same JWT keys"
    assert _services()["deliver"]["command"] == ["deliver"]


def test_musdpay_services_run_unprivileged_on_a_read_only_root() -> None:
    dockerfile_uid = "10001"
    for name, service in _musdpay_services().items():
        assert service["user"] == f"{dockerfile_uid}:{dockerfile_uid}", name
        assert service["read_only"] is True, name
        assert "/tmp" in service["tmpfs"], name
    assert "10001:10001" in (ROOT / "Dockerfile").read_text(encoding="utf-8")


def test_health_checks_where_the_brief_needs_them() -> None:
    services = _services()
    assert "/readyz" in " ".join(services["api"]["healthcheck"]["test"])
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"]
    assert "pg_isready" in services["postgres-replica"]["healthcheck"]["test"]
    assert "ping" in services["redis"]["healthcheck"]["test"]
    assert "http://127.0.0.1:9090/-/ready" in services["prometheus"]["healthcheck"]["test"]
    assert "http://127.0.0.1:9093/-/ready" in services["alertmanager"]["healthcheck"]["test"]
    for name in ("migrate", "alertmanager-config"):  # one-shot: the image's API healthcheck would never pass
        assert services[name]["healthcheck"] == {"disable": True}, name


def _bind_sources(service: dict[str, Any]) -> list[str]:
    sources = []
    for volume in service.get("volumes", []):
        source = volume["source"] if isinstance(volume, dict) else volume.split(":", 1)[0]
        if source.startswith((".", "/")):
            sources.append(source)
    return sources


def test_everything_mounted_exists_and_every_secret_is_documented() -> None:
    compose = _compose()
    named_volumes = set(compose["volumes"])
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if not source.startswith((".", "/")):
                assert source in named_volumes, f"{name}: named volume {source} is not declared"
        for source in _bind_sources(service):
            assert source.startswith("./"), f"{name}: {source} is outside the repository"
            assert (ROOT / source).exists(), f"{name} mounts {source}, which does not exist"
        if "build" in service:
            build = service["build"]
            assert (ROOT / build["context"] / build["dockerfile"]).is_file(), name
        for secret in service.get("secrets", []):
            assert secret in compose["secrets"], f"{name}: secret {secret} is not declared"
    readme = (SECRETS_DIR / "README.md").read_text(encoding="utf-8")
    for name, secret in compose["secrets"].items():
        path = ROOT / secret["file"]
        assert path.parent == SECRETS_DIR, f"secret {name} lives outside deploy/compose/secrets"
        assert f"| `{path.name}` |" in readme, f"secret {name} is not described in deploy/compose/secrets/README.md"
    ignored = (SECRETS_DIR / ".gitignore").read_text(encoding="utf-8").split()
    assert ignored[0] == "*" or "*" in ignored, "the secrets directory ignores everything but its README"


def test_the_dev_secrets_script_writes_every_declared_secret() -> None:
    script = (COMPOSE_DIR / "make-dev-secrets.sh").read_text(encoding="utf-8")
    written = set(re.findall(r"^put (\w+) ", script, re.MULTILINE))
    assert written == set(_compose()["secrets"])


def test_every_musdpay_variable_it_sets_is_read_by_the_code() -> None:
    known = _setting_variables() | _alert_variables()
    for name, service in _musdpay_services().items():
        for variable in _environment(service):
            if variable.startswith(ENV_PREFIX):
                assert variable in known, f"{name} sets {variable}, which no setting reads"
            else:
                assert variable in OTHER_VARIABLES, f"{name} sets {variable}"
    for variable, value in _environment(_services()["api"]).items():
        if variable.endswith("_FILE"):
            assert value.startswith("/run/secrets/"), variable
    dev_env = (COMPOSE_DIR / "dev.env").read_text(encoding="utf-8")
    for variable in re.findall(r"^(MUSDPAY_\w+)=", dev_env, re.MULTILINE):
        assert variable in known | {"MUSDPAY_PUBLIC_HOST"}, f"dev.env sets {variable}"


def test_ports_agree_with_the_settings_the_configs_and_the_proxy() -> None:
    services = _services()
    assert API_PORT == 3001
    api = services["api"]
    assert api["command"][-2:] == ["--port", str(API_PORT)]
    assert _environment(api)["MUSDPAY_PORT"] == str(API_PORT)
    assert api["expose"] == [str(API_PORT)]
    assert f"127.0.0.1:{API_PORT}/readyz" in " ".join(api["healthcheck"]["test"])

    jobs = _prometheus_jobs()
    [sd] = jobs["musdpay-api"]["dns_sd_configs"]
    assert sd == {"names": ["api"], "type": "A", "port": API_PORT, "refresh_interval": "15s"}

    monitor_config = load_config(COMPOSE_DIR / "monitor.yml", environ={}, text=_monitor_text_without_secret_files())
    assert monitor_config.server.host == ALL_INTERFACES
    monitor_port = monitor_config.server.port
    assert services["monitor"]["command"][-2:] == ["--port", str(monitor_port)]
    assert _static_targets(jobs["musdpay-monitor"]) == [f"monitor:{monitor_port}"]

    delivery_port = Settings.model_fields["delivery_metrics_port"].default
    assert _environment(services["deliver"])["MUSDPAY_DELIVERY_METRICS_PORT"] == str(delivery_port)
    assert _environment(services["deliver"])["MUSDPAY_HOST"] == ALL_INTERFACES
    assert _static_targets(jobs["musdpay-deliver"]) == [f"deliver:{delivery_port}"]

    upstreams = _environment(services["proxy"])["API_UPSTREAMS"].split()
    assert upstreams == [f"{_compose()['name']}-api-{i}:{API_PORT}" for i in range(1, api["deploy"]["replicas"] + 1)]
    caddyfile = (COMPOSE_DIR / "Caddyfile").read_text(encoding="utf-8")
    for directive in ("reverse_proxy {$API_UPSTREAMS}", "lb_policy round_robin", "health_uri /readyz"):
        assert directive in caddyfile
    assert "{$SITE_ADDRESS}" in caddyfile
    assert _environment(services["proxy"])["SITE_ADDRESS"] == "${MUSDPAY_PUBLIC_HOST:-:80}"


def _monitor_text_without_secret_files() -> str:
    # ${file:/run/secrets/...} only exists in the container: check the rest of the config here.
    text = (COMPOSE_DIR / "monitor.yml").read_text(encoding="utf-8")
    assert "${file:/run/secrets/database_replica_url}" in text
    assert "database_replica_url" in _services()["monitor"]["secrets"]
    return text.replace("${file:/run/secrets/database_replica_url}", "postgresql+psycopg://u:p@postgres-replica/db")


def test_prometheus_scrapes_every_job_the_rules_select_and_keeps_its_flags() -> None:
    thresholds = yaml.safe_load((ROOT / "alerts" / "thresholds.yml").read_text(encoding="utf-8"))
    values = thresholds.get("values", thresholds)
    jobs = _prometheus_jobs()
    for key in ("api_job", "monitor_job"):
        assert _find(values, key) in jobs, key
    assert {"prometheus", "alertmanager", "musdpay-deliver", "postgres", "redis"} <= set(jobs)
    assert _static_targets(jobs["postgres"]) == ["postgres-exporter:9187"]
    assert _static_targets(jobs["redis"]) == ["redis-exporter:9121"]
    command = _services()["prometheus"]["command"]
    assert "--enable-feature=exemplar-storage" in command
    assert "./alerts/generated:/etc/prometheus/rules:ro" in _services()["prometheus"]["volumes"]
    assert yaml.safe_load(PROMETHEUS.read_text(encoding="utf-8"))["rule_files"] == ["/etc/prometheus/rules/*.yml"]


def _find(node: Any, key: str) -> Any:
    if isinstance(node, dict):
        if key in node:
            return node[key]
        for value in node.values():
            found = _find(value, key)
            if found is not None:
                return found
    return None


def test_grafana_gets_the_compose_datasources_and_the_shared_dashboards() -> None:
    datasources = yaml.safe_load(
        (COMPOSE_DIR / "grafana" / "datasources" / "datasources.yml").read_text(encoding="utf-8")
    )["datasources"]
    by_uid = {d["uid"]: d for d in datasources}
    assert by_uid["prometheus"]["url"] == "http://prometheus:9090"
    assert by_uid["traces"]["type"] == "jaeger"
    assert by_uid["traces"]["url"] == "http://jaeger:16686"
    exemplars = by_uid["prometheus"]["jsonData"]["exemplarTraceIdDestinations"]
    assert exemplars == [{"name": "trace_id", "datasourceUid": "traces"}]
    volumes = _services()["grafana"]["volumes"]
    assert "./dashboards/provisioning/dashboards:/etc/grafana/provisioning/dashboards:ro" in volumes
    provider = yaml.safe_load((ROOT / "dashboards/provisioning/dashboards/musdpay.yml").read_text(encoding="utf-8"))
    assert f"./dashboards/json:{provider['providers'][0]['options']['path']}:ro" in volumes


def test_the_collector_forwards_otlp_to_jaeger() -> None:
    config = yaml.safe_load((COMPOSE_DIR / "otel-collector.yml").read_text(encoding="utf-8"))
    assert config["receivers"]["otlp"]["protocols"]["http"]["endpoint"] == "0.0.0.0:4318"
    assert config["exporters"]["otlp"] == {"endpoint": "jaeger:4317", "tls": {"insecure": True}}
    assert config["service"]["pipelines"]["traces"]["exporters"] == ["otlp"]
    assert "batch" in config["service"]["pipelines"]["traces"]["processors"]


def test_alertmanager_and_its_renderer_read_the_same_secret_files() -> None:
    services = _services()
    env = _environment(services["alertmanager-config"])
    assert env["MUSDPAY_ALERT_SECRETS_DIR"] == "/run/secrets"
    # The values of the parsed file (its comments name placeholders too): ${secret:NAME} is read by the renderer,
    # a *_file value ending in a file name in the secrets directory by Alertmanager.
    values = _strings(yaml.safe_load((ROOT / "alerts" / "alertmanager.yml").read_text(encoding="utf-8")))
    rendered_secrets = {name for value in values for name in re.findall(r"\$\{secret:(\w+)\}", value)}
    file_secrets = {m.group(1) for value in values if (m := re.search(r"_SECRETS_DIR[^}]*\}/(\w+)$", value))}
    assert rendered_secrets
    assert file_secrets
    assert rendered_secrets <= set(services["alertmanager-config"]["secrets"])
    assert file_secrets <= set(services["alertmanager"]["secrets"])
    templates = env["MUSDPAY_ALERT_TEMPLATES_DIR"]
    assert f"./alerts/templates:{templates}:ro" in services["alertmanager"]["volumes"]


def _strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, list):
        return [s for item in node for s in _strings(item)]
    if isinstance(node, dict):
        return [s for item in node.values() for s in _strings(item)]
    return []


def test_the_dev_chain_file_is_what_the_chain_service_serves() -> None:
    chain = json.loads((COMPOSE_DIR / "dev" / "chain.json").read_text(encoding="utf-8"))
    assert chain["rpcUrl"] == "http://chain:8545"
    assert chain["chainId"] == Settings.model_fields["chain_id"].default
    assert chain["musdAddress"] == Settings.model_fields["musd_address"].default
    dev_env = (COMPOSE_DIR / "dev.env").read_text(encoding="utf-8")
    assert f"MUSDPAY_MUSD_ADDRESS={chain['musdAddress']}" in dev_env
    assert "COMPOSE_PROFILES=dev" in dev_env
    assert _services()["chain"]["build"]["target"] == "dev"


@pytest.mark.integration
def test_promtool_checks_the_compose_prometheus_config_with_the_real_rules(tmp_path: Path) -> None:
    # In the container the rules are mounted on /etc/prometheus/rules; here they are the repository's.
    config = yaml.safe_load(PROMETHEUS.read_text(encoding="utf-8"))
    config["rule_files"] = [str(ROOT / "alerts" / "generated" / "*.yml")]
    copy = tmp_path / "prometheus.yml"
    copy.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    result = subprocess.run(
        [promtool(), "check", "config", str(copy)], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr
    assert len(list((ROOT / "alerts" / "generated").glob("*.yml"))) > 0
