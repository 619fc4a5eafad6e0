"""alerts/generated is what `musdpay alerts build` makes of slo.yml, rules/ and thresholds.yml, and every alert
is complete: for, severity, summary, description, a runbook that exists and a dashboard that exists."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from alerts.build import (
    ALERTS_DIR,
    BURN_ALERTS,
    PROMETHEUS_RULE,
    SEVERITIES,
    WATCHDOG,
    WINDOWS,
    BuildError,
    build,
    check,
    write,
)
from tests.support.services import ROOT


def generated_rules() -> list[dict[str, Any]]:
    rules = []
    for path in sorted((ALERTS_DIR / "generated").glob("*.yml")):
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            rules.extend(group["rules"])
    return rules


def alerts() -> list[dict[str, Any]]:
    return [rule for rule in generated_rules() if "alert" in rule]


def test_generated_rules_are_up_to_date() -> None:
    assert check() == [], "alerts/generated is out of date: run `musdpay alerts build` and commit the result"


def test_every_alert_is_complete_and_links_to_its_runbook_and_dashboard() -> None:
    dashboards = {path.stem for path in (ROOT / "dashboards" / "json").glob("*.json")}
    names = set()
    for rule in alerts():
        name = rule["alert"]
        names.add(name)
        # Watchdog keeps the name every dead man's switch integration knows it by (kube-prometheus's).
        assert name == WATCHDOG or re.fullmatch(
            r"(PaymentApi|Rpc|Stripe|Onramp|Payments|Treasury|Ledger|Database|Wal|Recovery|Monitor)[A-Za-z]+", name
        )
        assert "for" in rule, name
        assert rule["labels"]["severity"] in SEVERITIES or (name, rule["labels"]["severity"]) == (WATCHDOG, "none")
        assert rule["labels"]["service"]
        annotations = rule["annotations"]
        assert annotations["summary"]
        assert annotations["description"]
        assert annotations["runbook_url"].endswith(f"/docs/runbooks/{name}.md")
        runbook = ROOT / "docs" / "runbooks" / f"{name}.md"
        assert runbook.is_file(), f"{name} has no runbook at {runbook}"
        text = runbook.read_text(encoding="utf-8")
        assert text.startswith(f"# {name}\n"), runbook
        for section in ("## Meaning", "## Check", "## Act"):
            assert section in text, f"{runbook} lacks {section}"
        uid = annotations["dashboard_url"].rsplit("/d/", 1)[1]
        assert uid in dashboards, f"{name} links to a dashboard that does not exist: {uid}"
    runbooks = {path.stem for path in (ROOT / "docs" / "runbooks").glob("*.md")}
    assert runbooks == names, "one runbook per alert, and none for alerts that do not exist"


def test_required_symptom_alerts_exist() -> None:
    names = {rule["alert"] for rule in alerts()}
    required = {
        "PaymentApiDown", "PaymentApiHighErrorRate", "PaymentApiHighLatency",
        "RpcProviderDown", "RpcChainIdMismatch", "RpcProviderHeadLag", "RpcProviderStalled", "RpcCreditBudgetBurn",
        "StripeApiErrors", "OnrampSuccessRateDrop", "StripeWebhooksStalled",
        "PaymentsStuck", "PaymentsPaidNotDelivered", "PaymentsDeliveryMismatch", "TreasuryBalanceLow",
        "DatabaseDown", "DatabaseReplicationLag", "DatabaseBackupStale",
        "MonitorProbeFailing", "MonitorScrapeTargetDown",
    }  # fmt: skip
    assert required <= names
    severities = {rule["alert"]: rule["labels"]["severity"] for rule in alerts()}
    assert severities["PaymentsPaidNotDelivered"] == "critical"
    assert severities["PaymentsDeliveryMismatch"] == "critical"


def test_each_slo_records_every_window_and_alerts_at_the_workbook_burn_rates() -> None:
    slos = yaml.safe_load((ALERTS_DIR / "slo.yml").read_text(encoding="utf-8"))
    period = slos["period"]
    names = {slo["name"] for slo in slos["slos"]}
    assert {"api-availability", "api-latency", "onramp-fulfillment", "webhook-freshness"} <= names
    assert {"delivery-verification", "rpc-availability-spectrum", "rpc-availability-public"} <= names
    spectrum = next(slo for slo in slos["slos"] if slo["name"] == "rpc-availability-spectrum")
    assert spectrum["objective"] == 99.9
    records = {(rule["record"], rule.get("labels", {}).get("slo")) for rule in generated_rules() if "record" in rule}
    for name in names:
        for window in (*WINDOWS, period):
            assert (f"slo:sli_error:ratio_rate{window}", name) in records
            assert (f"slo:sli_events:rate{window}", name) in records
        assert ("slo:error_budget_remaining:ratio", name) in records
        burns = [rule for rule in alerts() if rule["expr"].count(f'{{slo="{name}"}}') and "burn" in rule["labels"]]
        assert {rule["labels"]["burn"] for rule in burns} == {"page", "ticket"}
        for rule in burns:
            severity, _, pairs, _ = next(b for b in BURN_ALERTS if b[1] == rule["labels"]["burn"])
            assert rule["labels"]["severity"] == severity
            for long, short, factor in pairs:
                assert f"slo:sli_error:ratio_rate{long}" in rule["expr"]
                assert f"slo:sli_error:ratio_rate{short}" in rule["expr"]
                assert f"({factor} * " in rule["expr"]
            assert "* 3600 >=" in rule["expr"], "the low-traffic guard"


def test_thresholds_live_in_one_place(tmp_path: Path) -> None:
    # Rule sources hold no numeric threshold or duration of their own: only ${name} references.
    for path in (ALERTS_DIR / "rules").glob("*.yml"):
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    assert str(rule["for"]).startswith("${"), f"{rule['alert']}: for is not from thresholds.yml"
                    comparisons = re.findall(r"(?:>|<|>=|<=|==)\s*([0-9.]+)(?!\w)", rule["expr"])
                    assert set(comparisons) <= {"0", "1"}, f"{rule['alert']}: literal threshold {comparisons}"


def _copy(tmp_path: Path) -> Path:
    root = tmp_path / "alerts"
    shutil.copytree(ALERTS_DIR, root, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    return root


def test_a_threshold_used_but_not_defined_is_an_error(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    path = root / "rules" / "api.yml"
    path.write_text(path.read_text(encoding="utf-8").replace("${api_down_for}", "${api_dwn_for}", 1), "utf-8")
    with pytest.raises(BuildError, match="api_dwn_for"):
        build(root)


def test_a_threshold_defined_and_never_used_is_an_error(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    path = root / "thresholds.yml"
    path.write_text(path.read_text(encoding="utf-8") + "  forgotten_threshold: 3\n", "utf-8")
    with pytest.raises(BuildError, match="forgotten_threshold"):
        build(root)


def test_an_alert_without_a_runbook_or_dashboard_is_an_error(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    path = root / "rules" / "api.yml"
    path.write_text(path.read_text(encoding="utf-8").replace("dashboard: musdpay-api", "", 1), "utf-8")
    with pytest.raises(BuildError, match="PaymentApiDown lacks dashboard"):
        build(root)


def test_the_prometheus_rule_for_kubernetes_is_what_the_build_makes() -> None:
    # deploy/k8s/base/generated/prometheusrule.yaml: one PrometheusRule with every generated group, by file name.
    path = ALERTS_DIR / PROMETHEUS_RULE
    assert path.resolve() == ROOT / "deploy" / "k8s" / "base" / "generated" / "prometheusrule.yaml"
    assert path.read_text(encoding="utf-8") == build()[PROMETHEUS_RULE], "run `musdpay alerts build` and commit"
    rule = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert (rule["apiVersion"], rule["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    groups = []
    for generated in sorted((ALERTS_DIR / "generated").glob("*.yml")):
        groups += yaml.safe_load(generated.read_text(encoding="utf-8"))["groups"]
    assert rule["spec"]["groups"] == groups


def test_check_reports_a_stale_prometheus_rule(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    write(root)
    assert check(root) == []
    rule = root / PROMETHEUS_RULE
    rule.write_text(rule.read_text(encoding="utf-8").replace("for: 10m", "for: 11m", 1), encoding="utf-8")
    assert check(root) == [PROMETHEUS_RULE]
    rule.unlink()
    assert check(root) == [PROMETHEUS_RULE]
