"""The committed dashboards are what dashboards/definitions.py builds, every query parses (promql-parser), every
metric it names is in the contract (docs/metrics.md) or produced by a rule, and Grafana's provisioning finds
them."""

from __future__ import annotations

import json

import promql_parser
import pytest
import yaml

from dashboards.build import JSON_DIR, check, panels
from tests.dashboards.expressions import (
    dashboard_targets,
    documented_metrics,
    is_documented,
    metric_names,
    recorded_metrics,
    rule_expressions,
    runnable,
)
from tests.support.services import ROOT

REQUIRED = {"musdpay-payments", "musdpay-api", "musdpay-rpc", "musdpay-database", "musdpay-slos", "musdpay-monitor"}


def test_json_is_up_to_date() -> None:
    assert check() == [], "dashboards/json is out of date: run `python -m dashboards` and commit the result"


def test_the_dashboards_exist_with_their_variables() -> None:
    documents = {path.stem: json.loads(path.read_text(encoding="utf-8")) for path in JSON_DIR.glob("*.json")}
    assert set(documents) == REQUIRED
    for uid, document in documents.items():
        assert document["uid"] == uid
        variables = {variable["name"] for variable in document["templating"].get("list", [])}
        if uid != "musdpay-slos":
            assert "instance" in variables, uid
        ids = [panel["id"] for panel in panels(document)]
        assert len(ids) == len(set(ids)), f"{uid}: panel ids repeat"
        for panel in panels(document):
            assert panel["datasource"] == {"type": "prometheus", "uid": "prometheus"}
            assert panel["targets"], f"{uid}: {panel['title']} has no query"
            assert len({target["refId"] for target in panel["targets"]}) == len(panel["targets"])
    assert "provider" in {variable["name"] for variable in documents["musdpay-rpc"]["templating"]["list"]}
    exemplars = [target for uid, _, target in dashboard_targets() if uid == "musdpay-api" and target.get("exemplar")]
    assert exemplars, "the API's latency panel shows exemplars (trace links)"


@pytest.mark.parametrize(("uid", "title", "target"), list(dashboard_targets()), ids=lambda value: str(value)[:60])
def test_every_query_parses(uid: str, title: str, target: dict[str, object]) -> None:
    promql_parser.parse(runnable(str(target["expr"])))


def test_every_rule_expression_parses() -> None:
    for name, expr in rule_expressions():
        try:
            promql_parser.parse(expr)
        except ValueError as exc:
            raise AssertionError(f"{name}: {exc}") from exc


def test_every_metric_named_is_in_the_contract_or_recorded() -> None:
    documented, recorded = documented_metrics(), recorded_metrics()
    unknown = {
        (uid, title, name)
        for uid, title, target in dashboard_targets()
        for name in metric_names(str(target["expr"]))
        if name not in recorded and not is_documented(name, documented)
    }
    assert not unknown, f"metrics named in no contract and produced by no rule: {sorted(unknown)}"


def test_grafana_provisioning() -> None:
    datasources = yaml.safe_load((ROOT / "dashboards/provisioning/datasources/prometheus.yml").read_text())
    [prometheus] = datasources["datasources"]
    assert (prometheus["uid"], prometheus["type"]) == ("prometheus", "prometheus")
    assert prometheus["jsonData"]["exemplarTraceIdDestinations"][0]["name"] == "trace_id"
    providers = yaml.safe_load((ROOT / "dashboards/provisioning/dashboards/musdpay.yml").read_text())
    [provider] = providers["providers"]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    grafana_volumes = compose["services"]["grafana"]["volumes"]
    assert f"./dashboards/json:{provider['options']['path']}:ro" in grafana_volumes
    assert "./dashboards/provisioning/dashboards:/etc/grafana/provisioning/dashboards:ro" in grafana_volumes
    # Compose has datasources of its own (service names for hosts), with the uids the dashboards query, and the
    # tracing backend the exemplars link to.
    mount = "./deploy/compose/grafana/datasources:/etc/grafana/provisioning/datasources:ro"
    assert mount in grafana_volumes
    composed = {
        source["uid"]: source
        for path in sorted((ROOT / "deploy/compose/grafana/datasources").glob("*.yml"))
        for source in yaml.safe_load(path.read_text())["datasources"]
    }
    assert composed["prometheus"]["type"] == "prometheus"
    assert composed["prometheus"]["jsonData"] == prometheus["jsonData"]
    assert composed["traces"]["type"] in {"jaeger", "tempo"}
