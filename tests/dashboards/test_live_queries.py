"""Every dashboard query returns data from a Prometheus that scraped a real run of the stack (tests/alerts/
livestack.py: a paid session delivered on chain, a rejected one, invalid requests, a Stripe outage, the primary
RPC failing for a while), and every metric the dashboards name exists there, scraped or recorded."""

from __future__ import annotations

import httpx
import pytest

from tests.alerts.livestack import LiveStack
from tests.dashboards.expressions import dashboard_targets, metric_names, runnable

pytestmark = pytest.mark.integration

# Panels that cannot have data in the local stack, and why. Nothing else may be empty.
NO_LOCAL_DATA = {
    ("musdpay-database", "Replication lag"): "no streaming replica is started (docs/monitor.md, Not covered)",
    ("musdpay-database", "Backup age"): "no backup job exports musdpay_backup_last_success_timestamp_seconds",
}


def test_every_panel_query_returns_data(live_stack: LiveStack) -> None:
    empty = []
    for uid, title, target in dashboard_targets():
        if (uid, title) in NO_LOCAL_DATA:
            continue
        expr = runnable(str(target["expr"]))
        if not live_stack.prometheus.query(expr):
            empty.append(f"{uid} / {title}: {expr}")
    assert not empty, "queries without data:\n" + "\n".join(empty)


def test_every_metric_named_exists_in_prometheus(live_stack: LiveStack) -> None:
    response = httpx.get(f"{live_stack.prometheus.url}/api/v1/label/__name__/values", timeout=10)
    known = set(response.json()["data"])
    missing = {
        (uid, title, name)
        for uid, title, target in dashboard_targets()
        if (uid, title) not in NO_LOCAL_DATA
        for name in metric_names(str(target["expr"]))
        if name not in known and name != "ALERTS"
    }
    assert not missing, sorted(missing)


def test_latency_exemplars_carry_trace_ids(live_stack: LiveStack) -> None:
    response = httpx.get(
        f"{live_stack.prometheus.url}/api/v1/query_exemplars",
        params={"query": 'musdpay_http_request_duration_seconds_bucket{job="musdpay-api"}', "start": 0, "end": 4e9},
        timeout=10,
    )
    exemplars = [exemplar for series in response.json()["data"] for exemplar in series["exemplars"]]
    assert exemplars, "Prometheus stored no exemplar of the API's latency histogram"
    assert all(len(exemplar["labels"]["trace_id"]) == 32 for exemplar in exemplars)
