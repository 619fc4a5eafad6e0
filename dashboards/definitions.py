"""The musdpay dashboards: payments, API, RPC providers, database, SLOs and the monitor.

Every metric named here is in docs/metrics.md or recorded by alerts/generated (a test checks both, and that each
query returns data from a Prometheus that scraped a real run)."""

from __future__ import annotations

from collections.abc import Callable

from grafana_foundation_sdk.builders import dashboard

from dashboards.panels import Panel, Row, Target, build_dashboard, instance_variable, provider_variable

__all__ = ["DASHBOARDS"]

API = 'job="musdpay-api",instance=~"$instance"'
MON = 'job="musdpay-monitor",instance=~"$instance"'
# The payment service's processes that deliver MUSD and call the RPC providers: the API, and `musdpay deliver`.
PAY = 'job=~"musdpay-api|musdpay-deliver",instance=~"$instance"'
RATE = "[$__rate_interval]"


def T(expr: str, legend: str = "", *, exemplar: bool = False) -> Target:
    return Target(expr, legend, exemplar)


def payments() -> dashboard.Dashboard:
    rows = [
        Row(
            "Volume and conversion",
            (
                Panel(
                    "Fulfilled volume",
                    (
                        T(
                            "sum by (currency) (increase(musdpay_onramp_payment_volume_total"
                            f'{{{API},status="fulfillment_complete"}}[$__range]))',
                            "{{currency}}",
                        ),
                    ),
                    "Fiat amount of sessions that reached fulfillment_complete in the time range.",
                    kind="stat",
                    width=6,
                ),
                Panel(
                    "Volume by final status",
                    (
                        T(
                            f"sum by (currency, status) (rate(musdpay_onramp_payment_volume_total{{{API}}}{RATE}))",
                            "{{status}} {{currency}}",
                        ),
                    ),
                    "Fiat amount per second of sessions reaching a final status.",
                    width=9,
                ),
                Panel(
                    "Success rate (cohort)",
                    (T(f"musdpay_monitor_onramp_success_ratio{{{MON}}}", "{{window}}"),),
                    "Fulfilled over ended sessions of each window's cohort (monitor).",
                    unit="percentunit",
                    width=9,
                ),
                Panel(
                    "Status funnel",
                    (
                        T(
                            f"sum by (to_status) (increase(musdpay_onramp_status_transitions_total{{{API}}}[$__range]))",
                            "{{to_status}}",
                        ),
                    ),
                    "Sessions entering each status in the time range (creation is from_status=creating).",
                    kind="stat",
                    width=12,
                ),
                Panel(
                    "Sessions by outcome (cohort)",
                    (
                        T(
                            f"sum by (window, outcome) (musdpay_monitor_onramp_sessions{{{MON}}})",
                            "{{window}} {{outcome}}",
                        ),
                    ),
                    width=12,
                ),
                Panel(
                    "Fulfillment time",
                    (
                        T(
                            "histogram_quantile(0.5, sum by (le) (rate(musdpay_onramp_fulfillment_duration_seconds_bucket"
                            f"{{{API}}}{RATE})))",
                            "p50",
                        ),
                        T(
                            "histogram_quantile(0.95, sum by (le) (rate(musdpay_onramp_fulfillment_duration_seconds_bucket"
                            f"{{{API}}}{RATE})))",
                            "p95",
                        ),
                    ),
                    "Session creation to fulfillment_complete.",
                    unit="s",
                ),
                Panel(
                    "Session creation failures",
                    (
                        T(
                            f"sum by (reason) (rate(musdpay_onramp_session_create_failures_total{{{API}}}{RATE}))",
                            "{{reason}}",
                        ),
                    ),
                    unit="reqps",
                ),
                Panel(
                    "Refunds and disputes",
                    (
                        T(f"sum by (window) (musdpay_monitor_stripe_window_refunds{{{MON}}})", "refunds {{window}}"),
                        T(f"sum by (window) (musdpay_monitor_stripe_window_disputes{{{MON}}})", "disputes {{window}}"),
                    ),
                    "Created at Stripe within each window (monitor).",
                ),
            ),
        ),
        Row(
            "Delivery",
            (
                Panel(
                    "Paid, not delivered",
                    (T(f"sum(musdpay_monitor_pipeline_undelivered_sessions{{{MON}}})", "sessions"),),
                    "Paid sessions whose MUSD delivery is not verified long after it became due.",
                    kind="stat",
                    width=6,
                ),
                Panel(
                    "Amount at risk",
                    (T(f"sum by (currency) (musdpay_monitor_pipeline_undelivered_amount{{{MON}}})", "{{currency}}"),),
                    "Fiat paid and MUSD owed in those sessions.",
                    kind="stat",
                    width=6,
                ),
                Panel(
                    "Deliveries by outcome",
                    (
                        T(
                            f"sum by (mode, outcome) (rate(musdpay_delivery_total{{{PAY}}}{RATE}))",
                            "{{mode}} {{outcome}}",
                        ),
                    ),
                    width=6,
                ),
                Panel(
                    "Deliveries by status (all)",
                    (T(f"sum by (status) (musdpay_monitor_pipeline_deliveries{{{MON}}})", "{{status}}"),),
                    width=6,
                ),
                Panel(
                    "Delivery time",
                    (
                        T(
                            "histogram_quantile(0.95, sum by (le, mode) (rate(musdpay_delivery_duration_seconds_bucket"
                            f"{{{API}}}{RATE})))",
                            "p95 {{mode}}",
                        ),
                    ),
                    "From fulfillment_complete to the transfer verified on chain.",
                    unit="s",
                ),
                Panel(
                    "Stuck in fulfillment_processing",
                    (
                        T(f"musdpay_monitor_pipeline_stuck_sessions{{{MON}}}", "sessions"),
                        T(f"musdpay_monitor_pipeline_open_sessions{{{MON}}}", "open sessions"),
                    ),
                ),
                Panel(
                    "Treasury balance",
                    (
                        T(f"musdpay_monitor_treasury_balance{{{MON}}}", "{{asset}}"),
                        T(f"musdpay_monitor_treasury_minimum_balance{{{MON}}}", "minimum {{asset}}"),
                    ),
                ),
            ),
        ),
        Row(
            "Stripe",
            (
                Panel(
                    "Webhooks by outcome",
                    (T(f"sum by (outcome) (rate(musdpay_webhook_events_total{{{API}}}{RATE}))", "{{outcome}}"),),
                    unit="reqps",
                ),
                Panel(
                    "Webhook lag and silence",
                    (
                        T(
                            "histogram_quantile(0.95, sum by (le) (rate(musdpay_webhook_lag_seconds_bucket"
                            f"{{{API}}}{RATE})))",
                            "p95 lag",
                        ),
                        T(f"musdpay_monitor_pipeline_webhook_silence_seconds{{{MON}}}", "silence"),
                    ),
                    unit="s",
                ),
                Panel(
                    "Stripe calls and errors",
                    (
                        T(
                            f"sum by (operation) (rate(musdpay_stripe_request_duration_seconds_count{{{API}}}{RATE}))",
                            "{{operation}}",
                        ),
                        T(f"sum by (error_type) (rate(musdpay_stripe_errors_total{{{API}}}{RATE}))", "{{error_type}}"),
                        T(f"musdpay_monitor_stripe_up{{{MON}}}", "monitor: up"),
                    ),
                ),
            ),
        ),
        Row(
            "Reconciliation and ledgers",
            (
                Panel(
                    "Reconciliation passes",
                    (
                        T(
                            f"sum by (outcome) (increase(musdpay_reconcile_runs_total{{{API}}}[$__range]))",
                            "{{outcome}}",
                        ),
                    ),
                    "Passes over the range by outcome (success, skipped: another instance holds the lease, errors).",
                    kind="stat",
                    width=6,
                ),
                Panel(
                    "Repaired by reconciliation",
                    (
                        T(f"sum(increase(musdpay_reconcile_events_recovered_total{{{API}}}[$__range]))", "events"),
                        T(f"sum(increase(musdpay_reconcile_sessions_corrected_total{{{API}}}[$__range]))", "sessions"),
                    ),
                    "Events whose delivery failed at Stripe, recovered; sessions corrected from Stripe's object. "
                    "Anything here means webhooks were lost.",
                    kind="stat",
                    width=6,
                ),
                Panel(
                    "Since the last pass",
                    (T(f"time() - max(musdpay_reconcile_last_success_timestamp_seconds{{{API}}})", "last pass"),),
                    "Time since any instance finished a reconciliation pass.",
                    kind="stat",
                    unit="s",
                    width=6,
                ),
                Panel(
                    "Ledger checks",
                    (T(f"sum by (outcome) (increase(musdpay_ledger_checks_total{{{API}}}[$__range]))", "{{outcome}}"),),
                    kind="stat",
                    width=6,
                ),
                Panel(
                    "Open ledger discrepancies",
                    (T(f"max by (kind) (musdpay_ledger_discrepancies{{{API}}})", "{{kind}}"),),
                    "Stripe, our database and the chain disagree (musdpay reconcile --report lists them).",
                ),
                Panel(
                    "Amount at stake",
                    (
                        T(
                            f"max by (kind, currency) (musdpay_ledger_discrepancy_amount{{{API}}})",
                            "{{kind}} {{currency}}",
                        ),
                    ),
                    "In the open discrepancies, by kind and currency (0 when none is open).",
                ),
            ),
        ),
    ]
    return build_dashboard(
        "musdpay-payments",
        "musdpay / Payments overview",
        "Onramp volume and conversion, the status funnel, MUSD delivery and money at risk, Stripe.",
        rows,
        variables=[instance_variable()],
    )


def api() -> dashboard.Dashboard:
    route = 'route!~"/metrics|/healthz|/readyz"'
    rows = [
        Row(
            "RED per route",
            (
                Panel(
                    "Requests per route",
                    (
                        T(
                            f"sum by (route) (rate(musdpay_http_request_duration_seconds_count{{{API}}}{RATE}))",
                            "{{route}}",
                        ),
                    ),
                    unit="reqps",
                    width=12,
                ),
                Panel(
                    "Server errors per route",
                    (
                        T(
                            f'sum by (route) (rate(musdpay_http_request_duration_seconds_count{{{API},status_code=~"5.."}}{RATE}))'
                            f" / sum by (route) (rate(musdpay_http_request_duration_seconds_count{{{API}}}{RATE}))",
                            "{{route}}",
                        ),
                    ),
                    "Share of each route's requests answered 5xx.",
                    unit="percentunit",
                    width=12,
                ),
                Panel(
                    "Latency per route (exemplars link to traces)",
                    (
                        T(
                            "histogram_quantile(0.99, sum by (le, route) (rate(musdpay_http_request_duration_seconds_bucket"
                            f"{{{API},{route}}}{RATE})))",
                            "p99 {{route}}",
                            exemplar=True,
                        ),
                        T(
                            "histogram_quantile(0.5, sum by (le, route) (rate(musdpay_http_request_duration_seconds_bucket"
                            f"{{{API},{route}}}{RATE})))",
                            "p50 {{route}}",
                            exemplar=True,
                        ),
                    ),
                    "Click an exemplar (a dot) to open the request's trace.",
                    unit="s",
                    width=24,
                ),
                Panel(
                    "Responses by status",
                    (
                        T(
                            f"sum by (status_code) (rate(musdpay_http_request_duration_seconds_count{{{API}}}{RATE}))",
                            "{{status_code}}",
                        ),
                    ),
                    unit="reqps",
                    stacked=True,
                ),
                Panel(
                    "In flight", (T(f"sum by (instance) (musdpay_http_requests_in_flight{{{API}}})", "{{instance}}"),)
                ),
                Panel(
                    "Stripe latency",
                    (
                        T(
                            "histogram_quantile(0.99, sum by (le, operation) (rate(musdpay_stripe_request_duration_seconds_bucket"
                            f"{{{API}}}{RATE})))",
                            "p99 {{operation}}",
                        ),
                    ),
                    unit="s",
                ),
            ),
        ),
        Row(
            "Process",
            (
                Panel(
                    "CPU", (T(f"rate(process_cpu_seconds_total{{{API}}}{RATE})", "{{instance}}"),), unit="percentunit"
                ),
                Panel("Resident memory", (T(f"process_resident_memory_bytes{{{API}}}", "{{instance}}"),), unit="bytes"),
                Panel(
                    "Open file descriptors",
                    (
                        T(f"process_open_fds{{{API}}}", "{{instance}}"),
                        T(f"process_max_fds{{{API}}}", "max {{instance}}"),
                    ),
                ),
            ),
        ),
    ]
    return build_dashboard(
        "musdpay-api",
        "musdpay / API",
        "Rate, errors and duration of the payment API per route, with exemplars linking to traces.",
        rows,
        variables=[instance_variable()],
    )


def rpc() -> dashboard.Dashboard:
    prov = 'provider=~"$provider"'
    rows = [
        Row(
            "Availability",
            (
                Panel(
                    "Availability over 30d against the SLA",
                    (
                        T(f'1 - slo:sli_error:ratio_rate30d{{slo=~"rpc-availability-.*",{prov}}}', "{{provider}}"),
                        T(
                            f"max by (provider) (musdpay_monitor_rpc_sla_target_ratio{{{MON},{prov}}})",
                            "SLA {{provider}}",
                        ),
                    ),
                    "Share of the monitor's probes answered on the right chain, and each provider's SLA target.",
                    unit="percentunit",
                    width=12,
                ),
                Panel(
                    "Up (monitor) and state (API pool)",
                    (
                        T(f"musdpay_monitor_rpc_up{{{MON},{prov}}}", "up {{provider}}"),
                        T(
                            f"max by (provider, state) (musdpay_rpc_provider_state{{{PAY},{prov}}}) > 0",
                            "{{provider}} {{state}}",
                        ),
                        T(
                            f"max by (provider) (musdpay_rpc_provider_selected{{{PAY},{prov}}})",
                            "selected {{provider}}",
                        ),
                    ),
                    width=12,
                ),
            ),
        ),
        Row(
            "Latency and errors",
            (
                Panel(
                    "Latency quantiles (API calls)",
                    tuple(
                        T(
                            f"histogram_quantile({q}, sum by (le, provider) (rate(musdpay_rpc_request_duration_seconds_bucket"
                            f'{{{PAY},{prov},outcome="success"}}{RATE})))',
                            f"p{int(q * 100)} {{{{provider}}}}",
                        )
                        for q in (0.5, 0.95, 0.99)
                    ),
                    unit="s",
                ),
                Panel(
                    "Probe latency (monitor)",
                    (
                        T(
                            "histogram_quantile(0.99, sum by (le, provider) (rate(musdpay_monitor_rpc_latency_seconds_bucket"
                            f"{{{MON},{prov}}}{RATE})))",
                            "p99 {{provider}}",
                        ),
                    ),
                    unit="s",
                ),
                Panel(
                    "Errors by class",
                    (
                        T(
                            f"sum by (provider, kind) (rate(musdpay_rpc_errors_total{{{PAY},{prov}}}{RATE}))",
                            "API {{provider}} {{kind}}",
                        ),
                        T(
                            f"sum by (provider, kind) (rate(musdpay_monitor_rpc_errors_total{{{MON},{prov}}}{RATE}))",
                            "monitor {{provider}} {{kind}}",
                        ),
                    ),
                    unit="reqps",
                ),
                Panel(
                    "Failovers",
                    (
                        T(
                            f"sum by (from_provider, to_provider) (rate(musdpay_rpc_failovers_total{{{PAY}}}{RATE}))",
                            "{{from_provider}} -> {{to_provider}}",
                        ),
                    ),
                    unit="reqps",
                ),
                Panel(
                    "Calls by method",
                    (
                        T(
                            f"sum by (provider, method) (rate(musdpay_rpc_request_duration_seconds_count{{{PAY},{prov}}}{RATE}))",
                            "{{provider}} {{method}}",
                        ),
                    ),
                    unit="reqps",
                ),
                Panel(
                    "Chain id match",
                    (T(f"musdpay_monitor_rpc_chain_id_match{{{MON},{prov}}}", "{{provider}}"),),
                ),
            ),
        ),
        Row(
            "Head",
            (
                Panel(
                    "Head lag (blocks)",
                    (
                        T(f"musdpay_monitor_rpc_head_lag_blocks{{{MON},{prov}}}", "monitor {{provider}}"),
                        T(
                            f"max by (provider) (musdpay_rpc_provider_head_lag_blocks{{{PAY},{prov}}})",
                            "API {{provider}}",
                        ),
                    ),
                ),
                Panel(
                    "Head lag and age (seconds)",
                    (
                        T(f"musdpay_monitor_rpc_head_lag_seconds{{{MON},{prov}}}", "lag {{provider}}"),
                        T(f"musdpay_monitor_rpc_head_age_seconds{{{MON},{prov}}}", "age {{provider}}"),
                        T(f"musdpay_monitor_rpc_best_head_age_seconds{{{MON}}}", "best head age"),
                    ),
                    unit="s",
                ),
                Panel(
                    "Head block and stalls",
                    (
                        T(f"musdpay_monitor_rpc_head_block{{{MON},{prov}}}", "{{provider}}"),
                        T(f"musdpay_monitor_rpc_head_stalled{{{MON},{prov}}}", "stalled {{provider}}"),
                    ),
                ),
            ),
        ),
        Row(
            "Credits",
            (
                Panel(
                    "Credits used per second",
                    (
                        T(
                            f"sum by (provider) (rate(musdpay_monitor_rpc_credits_used_total{{{MON},{prov}}}{RATE}))",
                            "monitor {{provider}}",
                        ),
                        T(f"provider:musdpay_rpc_api_credits:rate1h{{{prov}}}", "API {{provider}}"),
                    ),
                    "The API's calls priced with the monitor's credit table (recording rule).",
                    width=12,
                ),
                Panel(
                    "Month projection against the quota",
                    (
                        T(f"provider:musdpay_rpc_credits:month_projected{{{prov}}}", "projected {{provider}}"),
                        T(
                            f"max by (provider) (musdpay_monitor_rpc_month_credit_quota{{{MON},{prov}}})",
                            "quota {{provider}}",
                        ),
                    ),
                    width=12,
                ),
            ),
        ),
    ]
    return build_dashboard(
        "musdpay-rpc",
        "musdpay / RPC providers",
        "Mezo JSON-RPC providers: availability against SLA, latency, errors by class, head lag, credits.",
        rows,
        variables=[instance_variable(), provider_variable()],
    )


def database() -> dashboard.Dashboard:
    rows = [
        Row(
            "Server (monitor)",
            (
                Panel("Up", (T(f"musdpay_monitor_db_up{{{MON}}}", "{{database}}"),), kind="stat", width=4),
                Panel(
                    "Schema at head",
                    (T(f"musdpay_monitor_db_migrations_at_head{{{MON}}}", "{{database}}"),),
                    kind="stat",
                    width=4,
                ),
                Panel(
                    "Connect and query latency",
                    (
                        T(
                            "histogram_quantile(0.99, sum by (le, database) (rate(musdpay_monitor_db_connect_duration_seconds_bucket"
                            f"{{{MON}}}{RATE})))",
                            "connect p99 {{database}}",
                        ),
                        T(
                            "histogram_quantile(0.99, sum by (le, database) (rate(musdpay_monitor_db_query_duration_seconds_bucket"
                            f"{{{MON}}}{RATE})))",
                            "query p99 {{database}}",
                        ),
                    ),
                    unit="s",
                    width=16,
                ),
                Panel(
                    "Connections by state",
                    (
                        T(
                            f"sum by (database, state) (musdpay_monitor_db_connections{{{MON}}})",
                            "{{database}} {{state}}",
                        ),
                        T(f"musdpay_monitor_db_max_connections{{{MON}}}", "max {{database}}"),
                    ),
                    stacked=True,
                ),
                Panel(
                    "Connections used",
                    (T(f"musdpay_monitor_db_connections_used_ratio{{{MON}}}", "{{database}}"),),
                    unit="percentunit",
                ),
                Panel("Size", (T(f"musdpay_monitor_db_size_bytes{{{MON}}}", "{{database}}"),), unit="bytes"),
                Panel(
                    "Oldest open transaction",
                    (T(f"musdpay_monitor_db_oldest_transaction_seconds{{{MON}}}", "{{database}}"),),
                    unit="s",
                ),
                Panel(
                    "Replication lag",
                    (T(f"musdpay_monitor_db_replication_lag_seconds{{{MON}}}", "{{database}}"),),
                    "Replica only (database.replica_url in monitor.yml).",
                    unit="s",
                ),
                Panel(
                    "Backup age",
                    (T("time() - max by (database) (musdpay_backup_last_success_timestamp_seconds)", "{{database}}"),),
                    "From the backup job's metric (docs/alerts.md).",
                    unit="s",
                ),
                Panel(
                    "Probe errors",
                    (
                        T(
                            f"sum by (database, kind) (rate(musdpay_monitor_db_errors_total{{{MON}}}{RATE}))",
                            "{{database}} {{kind}}",
                        ),
                    ),
                ),
            ),
        ),
        Row(
            "API connection pool",
            (
                Panel(
                    "Pool",
                    (
                        T(f"sum by (instance) (musdpay_db_pool_connections_in_use{{{API}}})", "in use {{instance}}"),
                        T(f"sum by (instance) (musdpay_db_pool_size{{{API}}})", "size {{instance}}"),
                        T(
                            f"sum by (instance) (musdpay_db_pool_overflow_connections{{{API}}})",
                            "overflow {{instance}}",
                        ),
                    ),
                    width=12,
                ),
                Panel(
                    "Pool wait",
                    (
                        T(
                            f"histogram_quantile(0.99, sum by (le) (rate(musdpay_db_pool_wait_seconds_bucket{{{API}}}{RATE})))",
                            "p99",
                        ),
                    ),
                    unit="s",
                    width=12,
                ),
            ),
        ),
    ]
    return build_dashboard(
        "musdpay-database",
        "musdpay / Database",
        "The database from outside (the monitor's probes) and the API's connection pool.",
        rows,
        variables=[instance_variable()],
    )


def slos() -> dashboard.Dashboard:
    burn = [
        T(f"slo:sli_error:ratio_rate{window} / on (slo) group_left () slo:error_budget:ratio", f"{{{{slo}}}} {window}")
        for window in ("5m", "1h", "6h", "1d", "3d")
    ]
    rows = [
        Row(
            "Error budgets",
            (
                Panel(
                    "Error budget remaining (30d)",
                    (T("slo:error_budget_remaining:ratio", "{{slo}}"),),
                    "1 - error ratio over the period / error budget; below 0 the SLO is missed.",
                    kind="stat",
                    unit="percentunit",
                    width=24,
                ),
                Panel("Objectives", (T("slo:objective:ratio", "{{slo}}"),), kind="stat", unit="percentunit", width=12),
                Panel(
                    "Error ratio over 30d", (T("slo:sli_error:ratio_rate30d", "{{slo}}"),), unit="percentunit", width=12
                ),
            ),
        ),
        Row(
            "Burn rates",
            (
                Panel(
                    "Burn rate per window",
                    tuple(burn),
                    "Error ratio over the window / error budget: 14.4 over 1h and 5m pages, 3 over 1d and 2h opens a ticket.",
                    width=16,
                ),
                Panel(
                    "Events per second (1h)",
                    (T("slo:sli_events:rate1h", "{{slo}}"),),
                    "What the low-traffic guard counts.",
                    width=8,
                ),
                Panel(
                    "Budget burn alerts",
                    (
                        T(
                            'count by (alertname, severity) (ALERTS{alertname=~".+BudgetBurn",alertstate="firing"}) or vector(0)',
                            "{{alertname}} {{severity}}",
                        ),
                    ),
                    width=24,
                ),
            ),
        ),
    ]
    return build_dashboard(
        "musdpay-slos",
        "musdpay / SLOs",
        "Error budgets and burn rates of the SLOs in alerts/slo.yml.",
        rows,
        variables=[],
    )


def monitor() -> dashboard.Dashboard:
    rows = [
        Row(
            "Probes",
            (
                Panel(
                    "Last run succeeded",
                    (T(f"musdpay_monitor_probe_success{{{MON}}}", "{{probe}} {{target}}"),),
                    width=12,
                ),
                Panel(
                    "Since last success",
                    (
                        T(
                            f"time() - musdpay_monitor_probe_last_success_timestamp_seconds{{{MON}}}",
                            "{{probe}} {{target}}",
                        ),
                    ),
                    unit="s",
                    width=12,
                ),
                Panel(
                    "Runs by outcome",
                    (
                        T(
                            f"sum by (probe, outcome) (rate(musdpay_monitor_probe_runs_total{{{MON}}}{RATE}))",
                            "{{probe}} {{outcome}}",
                        ),
                    ),
                    unit="reqps",
                ),
                Panel(
                    "Run duration",
                    (
                        T(
                            "histogram_quantile(0.95, sum by (le, probe) (rate(musdpay_monitor_probe_duration_seconds_bucket"
                            f"{{{MON}}}{RATE})))",
                            "p95 {{probe}}",
                        ),
                    ),
                    unit="s",
                ),
                Panel(
                    "Scheduling lag",
                    (
                        T(
                            "histogram_quantile(0.99, sum by (le, probe) (rate(musdpay_monitor_probe_scheduling_lag_seconds_bucket"
                            f"{{{MON}}}{RATE})))",
                            "p99 {{probe}}",
                        ),
                    ),
                    unit="s",
                ),
            ),
        ),
        Row(
            "Scrapes and alerts",
            (
                Panel("Targets up", (T("up", "{{job}} {{instance}}"),)),
                Panel("Scrape duration", (T("scrape_duration_seconds", "{{job}}"),), unit="s"),
                Panel(
                    "Alerts firing",
                    (T('count by (severity) (ALERTS{alertstate="firing"}) or vector(0)', "{{severity}}"),),
                ),
            ),
        ),
    ]
    return build_dashboard(
        "musdpay-monitor",
        "musdpay / Monitor health",
        "The monitor's own probes, Prometheus's scrape targets and firing alerts.",
        rows,
        variables=[instance_variable()],
    )


DASHBOARDS: dict[str, Callable[[], dashboard.Dashboard]] = {
    "musdpay-payments": payments,
    "musdpay-api": api,
    "musdpay-rpc": rpc,
    "musdpay-database": database,
    "musdpay-slos": slos,
    "musdpay-monitor": monitor,
}
