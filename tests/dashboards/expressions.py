"""The PromQL of the dashboards and rules: every expression, the metrics each names, and Grafana's variables
replaced by what a query needs to run outside Grafana."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import promql_parser
import yaml

from dashboards.build import JSON_DIR, panels
from tests.support.services import ROOT

__all__ = [
    "GRAFANA_VARIABLES",
    "dashboard_targets",
    "documented_metrics",
    "metric_names",
    "recorded_metrics",
    "runnable",
]

GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__range": "1h", "$instance": ".*", "$provider": ".*"}
_SUFFIXES = ("_bucket", "_count", "_sum", "_created")


def runnable(expr: str) -> str:
    for variable, value in sorted(GRAFANA_VARIABLES.items(), key=lambda item: -len(item[0])):
        expr = expr.replace(variable, value)
    return expr


def dashboard_targets() -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(dashboard uid, panel title, target) for every query of every committed dashboard."""
    for path in sorted(JSON_DIR.glob("*.json")):
        document = json.loads(path.read_text(encoding="utf-8"))
        for panel in panels(document):
            for target in panel.get("targets") or []:
                yield document["uid"], panel["title"], target


def metric_names(expr: str) -> set[str]:
    names: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.add(node.name)

    promql_parser.walk(promql_parser.parse(runnable(expr)), visit)
    return names


def recorded_metrics() -> set[str]:
    names = set()
    for path in (ROOT / "alerts" / "generated").glob("*.yml"):
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            names |= {rule["record"] for rule in group["rules"] if "record" in rule}
    return names


def documented_metrics() -> set[str]:
    """Metric names of docs/metrics.md (the contract) and the external ones docs/alerts.md expects."""
    names: set[str] = set()
    for doc in (ROOT / "docs" / "metrics.md", ROOT / "docs" / "alerts.md"):
        names |= set(re.findall(r"`([a-z_][a-z0-9_]*)`", doc.read_text(encoding="utf-8")))
    return names


def base_name(name: str) -> str:
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def is_documented(name: str, documented: set[str]) -> bool:
    if name in {"up", "scrape_duration_seconds", "ALERTS"} or name.startswith("process_"):
        return True  # Prometheus's own series, and prometheus_client's process collector (docs: `process_*`)
    return name in documented or base_name(name) in documented


def rule_expressions(root: Path = ROOT) -> Iterator[tuple[str, str]]:
    for path in sorted((root / "alerts" / "generated").glob("*.yml")):
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            for rule in group["rules"]:
                yield rule.get("alert") or rule["record"], rule["expr"]
