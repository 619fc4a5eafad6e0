"""promtool: the generated rules check, and the unit tests in alerts/tests pass; every alert has a test where it
fires and one where it stays silent, and each rate-based alert a low-traffic case."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from alerts.build import ALERTS_DIR, WATCHDOG
from tests.alerts.support import promtool

TESTS = sorted((ALERTS_DIR / "tests").glob("*.test.yml"))


def test_promtool_check_rules() -> None:
    files = sorted(str(path) for path in (ALERTS_DIR / "generated").glob("*.yml"))
    result = subprocess.run([promtool(), "check", "rules", *files], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_test_rules() -> None:
    result = subprocess.run(
        [promtool(), "test", "rules", *map(str, TESTS)], capture_output=True, text=True, timeout=120, cwd=ALERTS_DIR
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(TESTS)


def _cases() -> dict[str, dict[str, list[str]]]:
    """alertname -> {"fires": [test names], "silent": [...]} over every unit test file."""
    cases: dict[str, dict[str, list[str]]] = {}
    for path in TESTS:
        for test in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            for case in test.get("alert_rule_test", []):
                kind = "fires" if case.get("exp_alerts") else "silent"
                cases.setdefault(case["alertname"], {"fires": [], "silent": []})[kind].append(test["name"])
    return cases


def test_every_alert_fires_in_a_test_and_stays_silent_in_another() -> None:
    names = set()
    for path in (ALERTS_DIR / "generated").glob("*.yml"):
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            names |= {rule["alert"] for rule in group["rules"] if "alert" in rule}
    cases = _cases()
    missing = sorted(name for name in names if not cases.get(name, {}).get("fires"))
    assert not missing, f"alerts never shown to fire: {missing}"
    # Watchdog is the exception: it must never be silent (its silence is what the heartbeat receiver reports).
    silent = sorted(name for name in names if name != WATCHDOG and not cases[name]["silent"])
    assert not silent, f"alerts never shown to stay silent: {silent}"
    assert not cases[WATCHDOG]["silent"], "Watchdog is expected to fire at every evaluation"


def test_rate_based_and_slo_alerts_have_a_low_traffic_case() -> None:
    cases = _cases()
    guarded = ["PaymentApiHighErrorRate", "PaymentApiHighLatency", "StripeApiErrors", "OnrampSuccessRateDrop"]
    guarded += [name for name in cases if name.endswith("BudgetBurn") and name != "RpcCreditBudgetBurn"]
    for name in guarded:
        names = " ".join(cases[name]["silent"]) + " ".join(cases[name]["fires"])
        assert "low-traffic" in names or "few" in names, f"{name} has no low-traffic test"


def test_each_unit_test_file_names_existing_rule_files() -> None:
    for path in TESTS:
        for rule_file in yaml.safe_load(path.read_text(encoding="utf-8"))["rule_files"]:
            assert (Path(path.parent) / rule_file).resolve().is_file(), f"{path.name}: {rule_file}"


def test_promtool_check_config_of_the_repository_prometheus_yml() -> None:
    root = ALERTS_DIR.parent
    result = subprocess.run(
        [promtool(), "check", "config", "prometheus.yml"], capture_output=True, text=True, timeout=60, cwd=root
    )
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load((root / "prometheus.yml").read_text(encoding="utf-8"))
    targets = {job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]}
    assert targets["musdpay-api"] == ["127.0.0.1:3001"]
    assert targets["musdpay-monitor"] == ["127.0.0.1:9101"]
    assert config["rule_files"] == ["alerts/generated/*.yml"]
