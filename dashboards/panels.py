"""Small builders over grafana-foundation-sdk shared by every dashboard: the Prometheus datasource, the
`instance` and `provider` variables, and time series and stat panels from (expression, legend) pairs.

Expressions use Grafana's `$__rate_interval` and `$__range` and the variables `$instance` and `$provider`
(multi-value, "All" = `.*`), always as `=~"$var"` matchers."""

from __future__ import annotations

from dataclasses import dataclass, field

from grafana_foundation_sdk.builders import dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.builders.common import StackingConfig
from grafana_foundation_sdk.models.common import StackingMode
from grafana_foundation_sdk.models.dashboard import DataSourceRef, VariableRefresh, VariableSort

__all__ = ["DATASOURCE", "Panel", "Row", "Target", "build_dashboard", "instance_variable", "provider_variable"]

DATASOURCE = DataSourceRef(type_val="prometheus", uid="prometheus")
_REF_IDS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass(frozen=True)
class Target:
    expr: str
    legend: str = ""
    exemplar: bool = False


@dataclass(frozen=True)
class Panel:
    title: str
    targets: tuple[Target, ...]
    description: str = ""
    unit: str = "short"
    kind: str = "timeseries"  # or "stat"
    width: int = 8
    height: int = 8
    stacked: bool = False


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...] = field(default_factory=tuple)


def _variable(name: str, label: str, query: str) -> dashboard.QueryVariable:
    return (
        dashboard.QueryVariable(name)
        .label(label)
        .query(query)
        .datasource(DATASOURCE)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
    )


def instance_variable() -> dashboard.QueryVariable:
    return _variable("instance", "Instance", 'label_values(up{job=~"musdpay-.*"}, instance)')


def provider_variable() -> dashboard.QueryVariable:
    return _variable("provider", "RPC provider", "label_values(musdpay_monitor_rpc_up, provider)")


def _panel(spec: Panel, panel_id: int) -> timeseries.Panel | stat.Panel:
    built: timeseries.Panel | stat.Panel
    if spec.kind == "stat":
        built = stat.Panel()
    else:
        series = timeseries.Panel().fill_opacity(10).line_width(1)
        if spec.stacked:
            series = series.stacking(StackingConfig().mode(StackingMode.NORMAL))
        built = series
    built = built.id(panel_id).title(spec.title).datasource(DATASOURCE).unit(spec.unit).span(spec.width)
    built = built.height(spec.height)
    if spec.description:
        built = built.description(spec.description)
    for index, target in enumerate(spec.targets):
        query = prometheus.Dataquery().expr(target.expr).ref_id(_REF_IDS[index]).datasource(DATASOURCE)
        if target.legend:
            query = query.legend_format(target.legend)
        if target.exemplar:
            query = query.exemplar(True)
        built = built.with_target(query)
    return built


def build_dashboard(
    uid: str, title: str, description: str, rows: list[Row], *, variables: list[dashboard.QueryVariable]
) -> dashboard.Dashboard:
    board = (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["musdpay"])
        .time("now-6h", "now")
        .refresh("30s")
        .timezone("utc")
        .editable()
    )
    for variable in variables:
        board = board.with_variable(variable)
    panel_id = 1
    for row in rows:
        board = board.with_row(dashboard.Row(row.title).id(panel_id))
        panel_id += 1
        for spec in row.panels:
            board = board.with_panel(_panel(spec, panel_id))
            panel_id += 1
    return board
