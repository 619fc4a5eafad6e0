"""Every Prometheus the project ships keeps at least the SLO period of alerts/slo.yml and a margin: otherwise a
"30-day" error budget, burn rate or SLA figure would silently cover what Prometheus kept (15 days by default).

The minimum is derived from alerts/slo.yml, never written here: lengthen the period and these tests name every
Prometheus that would fall short (`make run`, docker-compose.yml, each Kubernetes overlay's Prometheus object).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from alerts.local import PROMETHEUS_RETENTION
from tests.support.services import ROOT, require

# Past the period: a week, so a monthly SLA report run a few days late, or over a 31-day month, still has data.
MARGIN = timedelta(days=7)
_UNITS = {"y": 365 * 86400, "w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1, "ms": 0.001}
_DURATION = re.compile(r"(\d+)(ms|y|w|d|h|m|s)")


def duration(text: str) -> timedelta:
    """A Prometheus duration (`40d`, `1w3d`, `720h`)."""
    parts = _DURATION.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise ValueError(f"not a Prometheus duration: {text!r}")
    return timedelta(seconds=sum(int(number) * _UNITS[unit] for number, unit in parts))


def minimum() -> timedelta:
    period = yaml.safe_load((ROOT / "alerts" / "slo.yml").read_text(encoding="utf-8"))["period"]
    return duration(str(period)) + MARGIN


def test_durations_parse_as_prometheus_writes_them() -> None:
    assert duration("40d") == timedelta(days=40)
    assert duration("1w3d") == timedelta(days=10)
    assert duration("720h") == timedelta(days=30)
    for bad in ("", "40", "d40", "4 d", "40days"):
        with pytest.raises(ValueError, match="not a Prometheus duration"):
            duration(bad)


def test_make_run_keeps_the_slo_period() -> None:
    # musdpay dev passes it as --storage.tsdb.retention.time (and tests/musdpay/test_dev_platform.py reads the
    # flag back from the running Prometheus).
    assert duration(PROMETHEUS_RETENTION) >= minimum()


def test_docker_compose_keeps_the_slo_period() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    command = compose["services"]["prometheus"]["command"]
    flags = [arg for arg in command if str(arg).startswith("--storage.tsdb.retention.time=")]
    assert len(flags) == 1, "docker-compose.yml's Prometheus must set its retention (the default is 15 days)"
    assert duration(flags[0].split("=", 1)[1]) >= minimum()


def _rendered(overlay: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    require(kubectl is not None, "kubectl (Debian package kubectl) renders the kustomize overlays")
    assert kubectl is not None
    out = subprocess.run([kubectl, "kustomize", str(overlay)], check=True, capture_output=True, text=True).stdout
    return [document for document in yaml.safe_load_all(out) if document]


@pytest.mark.integration
def test_every_kubernetes_prometheus_keeps_the_slo_period() -> None:
    overlays = sorted(path for path in (ROOT / "deploy" / "k8s" / "overlays").iterdir() if path.is_dir())
    assert overlays
    found = []
    for overlay in overlays:
        for document in _rendered(overlay):
            if document.get("kind") == "Prometheus" and document["apiVersion"].startswith("monitoring.coreos.com/"):
                retention = document["spec"].get("retention")
                assert retention is not None, f"{overlay.name}: Prometheus {document['metadata']['name']} keeps 24h"
                assert duration(retention) >= minimum(), (overlay.name, retention)
                found.append(overlay.name)
    assert found, "no overlay ships a Prometheus object"
