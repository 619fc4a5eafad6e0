"""MonitorMetricAbsent: every metric a symptom alert, recording rule or SLO reads is guarded by an absent alert or
excluded in alerts/absent.yml with its reason (checked with a real PromQL parser, not the build's own scan); the
build refuses a metric it cannot guard and a stale exclusion; and on the live stack, up and running, no absent
alert's expression matches anything (the selectors are present whenever their producer is up)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from alerts.build import ABSENT_ALERT, ALERTS_DIR, WATCHDOG, BuildError, build
from tests.alerts.livestack import LiveStack
from tests.dashboards.expressions import metric_names, recorded_metrics


def _rules(name: str) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for group in yaml.safe_load((ALERTS_DIR / "generated" / name).read_text(encoding="utf-8"))["groups"]:
        rules.extend(group["rules"])
    return rules


def _absent_alerts() -> list[dict[str, Any]]:
    return [rule for rule in _rules("absent.yml") if rule["alert"] == ABSENT_ALERT]


def _guarded() -> set[str]:
    labels = set()
    for rule in _absent_alerts():
        labels.add(re.search(r'"metric", "(\w+)', rule["expr"]).group(1))  # type: ignore[union-attr]
    return labels


def test_every_metric_a_rule_reads_is_guarded_or_excluded_with_a_reason() -> None:
    excluded = yaml.safe_load((ALERTS_DIR / "absent.yml").read_text(encoding="utf-8"))["exclude"]
    assert all(str(reason).strip() for reason in excluded.values())
    recorded = recorded_metrics()
    read: set[str] = set()
    for path in sorted((ALERTS_DIR / "generated").glob("*.yml")):
        if path.name == "absent.yml":
            continue
        for rule in _rules(path.name):
            if rule.get("alert") != WATCHDOG:
                read |= metric_names(rule["expr"]) - recorded - {"ALERTS"}
    # The monitor's backup job produces it (once it has seen a backup): guarded, not excluded.
    assert "musdpay_backup_last_success_timestamp_seconds" in _guarded()
    unguarded = sorted(read - _guarded() - set(excluded))
    assert not unguarded, f"read by a rule, neither guarded by {ABSENT_ALERT} nor excluded: {unguarded}"
    assert "up" in _guarded()  # a job without any target
    # The bucket a latency SLI counts is guarded on its own: a changed bucket boundary silences the SLO.
    assert any('le=\\"0.5\\"' in rule["expr"] for rule in _absent_alerts())


def _copy(tmp_path: Path) -> Path:
    root = tmp_path / "alerts"
    shutil.copytree(ALERTS_DIR, root, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    return root


def test_a_metric_without_a_job_or_a_stale_exclusion_is_an_error(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    path = root / "rules" / "api.yml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace('up{job="${api_job}"} == 0', "up == 0 and musdpay_new_metric_seconds > 0"), "utf-8")
    with pytest.raises(BuildError, match=r"musdpay_new_metric_seconds .*has no job"):
        build(root)
    path.write_text(text, "utf-8")
    absent = root / "absent.yml"
    absent.write_text(absent.read_text(encoding="utf-8") + "  musdpay_gone_total: read by nobody\n", "utf-8")
    with pytest.raises(BuildError, match="excluded but read by no rule: musdpay_gone_total"):
        build(root)


def test_a_new_rule_gets_its_absent_alert_and_test(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    path = root / "rules" / "api.yml"
    text = path.read_text(encoding="utf-8")
    new = text.replace('up{job="${api_job}"} == 0', 'musdpay_new_metric_seconds{job="${api_job}"} > 0')
    path.write_text(new, "utf-8")
    files = build(root)
    assert '"metric", "musdpay_new_metric_seconds"' in files["generated/absent.yml"]
    assert "MonitorMetricAbsent musdpay_new_metric_seconds of musdpay-api" in files["tests/absent.test.yml"]


@pytest.mark.integration
def test_no_absent_alert_matches_on_the_live_stack(live_stack: LiveStack) -> None:
    matched = {}
    for rule in _absent_alerts():
        result = live_stack.prometheus.query(rule["expr"])
        if result:
            matched[rule["expr"]] = [r["metric"] for r in result]
    assert not matched, f"absent on a healthy stack: {matched}"
