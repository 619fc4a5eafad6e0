"""The `musdpay` command: the one place that wires every part of the project together."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from click.decorators import FC

__all__ = ["main"]


@click.group()
def main() -> None:
    """musdpay: buy MUSD on Mezo with a card, and the platform that watches it."""


@main.command()
@click.option("--host", default=None, help="Interface to bind (default: MUSDPAY_HOST or 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default: MUSDPAY_PORT or 3001).")
@click.option("--workers", type=int, default=1, show_default=True, help="Worker processes.")
def serve(host: str | None, port: int | None, workers: int) -> None:
    """Run the payment API."""
    import uvicorn

    from payment.core.config import get_settings

    settings = get_settings()
    scratch = None
    if workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        # Each worker is its own process: metrics must be summed across them through a shared directory.
        scratch = tempfile.mkdtemp(prefix="musdpay-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = scratch
    try:
        uvicorn.run(
            "payment.api:create_served_app",
            factory=True,
            host=host or settings.host,
            port=port or settings.port,
            workers=workers,
            timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
            proxy_headers=False,
            server_header=False,
            log_config=None,  # the app configures JSON logging itself, in every worker
            access_log=False,
        )
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


@main.command()
@click.option("--host", default=None, help="Interface of /metrics (default: MUSDPAY_HOST or 127.0.0.1).")
@click.option(
    "--metrics-port", type=click.IntRange(0, 65535), default=None, help="Port of /metrics (default: 9102; 0: any)."
)
def deliver(host: str | None, metrics_port: int | None) -> None:
    """Run the MUSD delivery worker alone (verification, or treasury transfers), until SIGTERM."""
    from payment.core.config import get_settings
    from payment.core.logs import configure_logging
    from payment.delivery.standalone import run_worker

    settings = get_settings()
    overrides = {"host": host, "delivery_metrics_port": metrics_port}
    settings = settings.model_copy(update={name: value for name, value in overrides.items() if value is not None})
    configure_logging(settings.log_level, json_output=settings.log_format == "json")
    run_worker(settings)


@main.command()
@click.option("--ledgers", "ledgers_only", is_flag=True, help="Run the ledger check instead of the Stripe pass.")
@click.option("--report", is_flag=True, help="Run the ledger check and print its table and the open discrepancies.")
def reconcile(ledgers_only: bool, report: bool) -> None:
    """Run one Stripe reconciliation pass now (sessions retrieved, failed-delivery events recovered), then exit;
    or, with --ledgers or --report, the three-ledger check (Stripe, the database and the chain agree).

    Safe beside the API's own passes and webhooks (everything it does is idempotent). Exit 1 when Stripe, the
    chain or the database cannot be reached, 2 when Stripe is not configured; the ledger check exits 3 when
    discrepancies are open."""
    from sqlalchemy.exc import OperationalError

    from payment.core.config import get_settings
    from payment.core.db import create_db_engine, make_session_factory
    from payment.core.logs import configure_logging
    from payment.core.metrics import PaymentMetrics
    from payment.core.telemetry import Telemetry
    from payment.reconcile.service import RunOutcome, run_pass
    from payment.reconcile.stripe import ReconcileStripe, StripeUnavailable

    settings = get_settings()
    configure_logging(settings.log_level, json_output=settings.log_format == "json")
    telemetry = Telemetry(metrics=PaymentMetrics(process_collectors=False))
    stripe = ReconcileStripe.from_settings(settings, telemetry)
    if stripe is None:
        click.echo("reconcile failed: Stripe is not configured (MUSDPAY_STRIPE_SECRET_KEY)", err=True)
        sys.exit(2)
    engine = create_db_engine(settings)
    try:
        if ledgers_only or report:
            sys.exit(_ledger_check(settings, engine, stripe, telemetry, show_table=report))
        pass_report = run_pass(
            factory=make_session_factory(engine), stripe=stripe, settings=settings, telemetry=telemetry
        )
    except StripeUnavailable as exc:
        click.echo(f"reconcile failed: Stripe unavailable ({exc.error_type.value}); nothing more was done", err=True)
        sys.exit(1)
    except OperationalError as exc:
        click.echo(f"reconcile failed: database unavailable ({type(exc.orig).__name__})", err=True)
        sys.exit(1)
    finally:
        engine.dispose()
    truncated = (
        " (more failed events than one pass reads: run again)" if pass_report.outcome is RunOutcome.truncated else ""
    )
    click.echo(
        f"reconcile: {pass_report.sessions_checked} sessions checked, {pass_report.sessions_corrected} corrected, "
        f"{pass_report.events_recovered} events recovered ({pass_report.events_listed} listed){truncated}"
    )


def _ledger_check(settings: Any, engine: Any, stripe: Any, telemetry: Any, *, show_table: bool) -> int:
    import asyncio
    from datetime import UTC, datetime

    from payment.chain.client import ChainClient
    from payment.chain.errors import RpcError
    from payment.chain.pool import ProviderPool
    from payment.core.db import make_session_factory, run_db_on
    from payment.ledgers import service as ledgers

    factory = make_session_factory(engine)

    async def check() -> Any:
        pool = ProviderPool.from_settings(settings, telemetry)
        await pool.start()
        try:
            context = ledgers.build_context(
                settings,
                factory=factory,
                run_db=run_db_on(engine),
                fetch_stripe_session=stripe.retrieve_session,
                chain=ChainClient(pool),
                metrics=telemetry.metrics,
                clock=lambda: datetime.now(UTC),
            )
            return await ledgers.check_window(context, settings)
        finally:
            await pool.aclose()

    try:
        result = asyncio.run(check())
    except RpcError as exc:
        click.echo(f"ledger check failed: the chain cannot be read ({exc})", err=True)
        return 1
    still_open = ledgers.open_discrepancies(factory)
    if show_table:
        click.echo(ledgers.render_report(result, still_open))
    else:
        click.echo(
            f"ledgers: {result.sessions_checked} purchases checked, {result.agreeing} agreeing, "
            f"{len(result.findings)} disagreements ({result.opened} new, {result.resolved} resolved), "
            f"{len(still_open)} open"
        )
    return 3 if still_open else 0


@main.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The monitor's YAML config (default: ./monitor.yml if present, else built-in defaults).",
)
@click.option("--port", type=int, default=None, help="Port of the monitor's /metrics (default: the config's, 9101).")
def monitor(config_path: Path | None, port: int | None) -> None:
    """Run the prober of RPC providers, Stripe, the database and the payment pipeline, until SIGTERM."""
    from monitor.app import run
    from monitor.config import ConfigError, load_config
    from payment.core.logs import configure_logging

    if config_path is None and Path("monitor.yml").is_file():
        config_path = Path("monitor.yml")
    try:
        config = load_config(config_path)
        if port is not None:
            config = config.model_copy(update={"server": config.server.model_copy(update={"port": port})})
        settings = config.payment_settings()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    configure_logging(settings.log_level, json_output=settings.log_format == "json")
    run(config)


@main.group()
def alerts() -> None:
    """Alert rules, SLOs and Alertmanager routing (docs/alerts.md)."""


@alerts.command("build")
@click.option("--check", is_flag=True, help="Only report generated files that are out of date (exit 1 if any).")
def alerts_build(check: bool) -> None:
    """Generate alerts/generated/*.yml (and the Kubernetes PrometheusRule of deploy/k8s) from alerts/slo.yml,
    alerts/rules/*.yml and alerts/thresholds.yml."""
    from alerts.build import BuildError, write
    from alerts.build import check as check_generated

    try:
        if check:
            stale = check_generated()
            if stale:
                raise click.ClickException(f"out of date (run musdpay alerts build): {', '.join(stale)}")
            click.echo("alerts/generated and deploy/k8s/base/generated/prometheusrule.yaml are up to date")
            return
        for path in write():
            click.echo(str(path.resolve()))
    except BuildError as exc:
        raise click.ClickException(str(exc)) from exc


@alerts.command("render")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Default: stdout.")
def alerts_render(out: Path | None) -> None:
    """Render alerts/alertmanager.yml with the environment (MUSDPAY_ALERT_*) for Alertmanager."""
    from alerts.alertmanager import RenderError, render_file

    try:
        text = render_file(os.environ)
    except RenderError as exc:
        raise click.ClickException(str(exc)) from exc
    if out is None:
        click.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")


@alerts.command("test")
@click.option("--receiver", type=click.Choice(["slack", "discord", "pagerduty", "email"]), required=True)
@click.option("--alertmanager-url", default="http://127.0.0.1:9093", show_default=True)
def alerts_test(receiver: str, alertmanager_url: str) -> None:
    """Send a test notification to one receiver, through Alertmanager (its route, template and secret)."""
    import httpx

    from alerts.alertmanager import send_test_alert

    try:
        alert = send_test_alert(alertmanager_url, receiver)
    except httpx.HTTPError as exc:
        raise click.ClickException(f"Alertmanager at {alertmanager_url}: {exc}") from exc
    click.echo(f"Sent {alert['labels']['alertname']} (test_id {alert['labels']['test_id']}) to {receiver}.")


@main.command()
@click.option("--since", default="30d", show_default=True, help="How far back: 30d, 7d, 24h, 90m, 1h30m.")
@click.option("--until", default=None, help="End: ISO 8601 (UTC if no offset) or Unix seconds; default now.")
@click.option("--prometheus", "prometheus_url", default="http://127.0.0.1:9090", show_default=True)
@click.option(
    "--monitor-config",
    "monitor_config",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The monitor config holding the providers' plans and prices (default: ./monitor.yml if present).",
)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("report.html"), show_default=True)
def report(since: str, until: str | None, prometheus_url: str, monitor_config: Path | None, out: Path) -> None:
    """Self-contained HTML report from Prometheus: RPC SLA, latency, credits and cost, payments, fees, alerts."""
    from monitor.config import ConfigError, load_config
    from operate.report import Plan, ReportError, generate

    if monitor_config is None and Path("monitor.yml").is_file():
        monitor_config = Path("monitor.yml")
    plans: dict[str, Plan] = {}
    if monitor_config is not None:
        try:
            rpc = load_config(monitor_config).rpc
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from exc
        for name, provider in rpc.providers.items():
            if provider.plan is not None:
                plan = provider.plan
                plans[name] = Plan(plan.name, plan.monthly_price_usd, provider.monthly_credit_quota)
    try:
        path = generate(
            prometheus_url=prometheus_url,
            since=since,
            until=until,
            out=out,
            plans=plans,
            plans_source=str(monitor_config) if monitor_config is not None else None,
        )
    except ReportError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(str(path))


@main.command()
@click.option("--prometheus", "prometheus_url", default="http://127.0.0.1:9090", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON document (per refresh with --watch).")
@click.option("--watch", type=click.FloatRange(min=0.1), default=None, metavar="N", help="Refresh every N seconds.")
def status(prometheus_url: str, as_json: bool, watch: float | None) -> None:
    """On-call view from Prometheus: alerts, SLOs, RPC providers, payments, Stripe (docs/operate.md).

    Exit 0 when nothing critical fires, 2 when a critical alert fires, 1 when Prometheus cannot be reached."""
    from operate.terminal import run_status

    sys.exit(run_status(prometheus_url, as_json=as_json, watch=watch))


@main.group()
def db() -> None:
    """Database schema commands."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION."""
    from payment.core import migrations
    from payment.core.config import get_settings
    from payment.core.db import create_db_engine

    engine = create_db_engine(get_settings())
    try:
        migrations.upgrade(engine, revision)
        current, head = migrations.current_and_head(engine)
    finally:
        engine.dispose()
    click.echo(f"database at revision {current} (head {head})")


# --- backups (payment/backup, docs/backups.md) ------------------------------------------------------------------

_DEST = click.option(
    "--dest", required=True, metavar="DEST", help="A directory, or s3://bucket/prefix (MUSDPAY_BACKUP_S3_ENDPOINT_URL)."
)


@main.group()
def backup() -> None:
    """Encrypted backups of the payment database (MUSDPAY_DATABASE_URL): create, list, verify, restore, prune."""


@contextmanager
def _backup_context(dest: str) -> Iterator[tuple[Any, Any, Any]]:
    """(settings, destination, key); any backup failure becomes one line on stderr and exit status 1."""
    from payment.backup.crypto import parse_key
    from payment.backup.destinations import DestinationError, open_destination
    from payment.backup.errors import BackupError
    from payment.core.config import SettingsError, get_settings

    try:
        try:
            settings = get_settings()
        except (SettingsError, ValueError) as exc:
            raise BackupError(f"invalid settings: {' '.join(str(exc).split())[:300]}") from None
        if settings.backup_encryption_key is None:
            raise BackupError(
                "no backup key: set MUSDPAY_BACKUP_ENCRYPTION_KEY or MUSDPAY_BACKUP_ENCRYPTION_KEY_FILE "
                "(32 bytes, base64 or hex: `openssl rand -base64 32`)"
            )
        key = parse_key(settings.backup_encryption_key.get_secret_value())
        destination = open_destination(dest, endpoint_url=settings.backup_s3_endpoint_url or None)
        yield settings, destination, key
    except (BackupError, DestinationError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except Exception as exc:
        # S3 (botocore) and driver errors: their class and message, never a traceback or a credential.
        if type(exc).__module__.split(".")[0] not in {"botocore", "boto3", "s3transfer", "sqlalchemy", "psycopg"}:
            raise
        click.echo(f"error: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}", err=True)
        sys.exit(1)


@backup.command("create")
@_DEST
def backup_create(dest: str) -> None:
    """Back up the database now; prints the new backup's id on the last line."""
    from payment.backup.service import create_backup

    with _backup_context(dest) as (settings, destination, key):
        manifest = create_backup(settings.database_url, destination, key)
        rows = sum(manifest.tables.values())
        click.echo(
            f"backup of {manifest.database_kind} {manifest.database_name}: {manifest.size_bytes} bytes, "
            f"{len(manifest.tables)} tables, {rows} rows, revision {manifest.schema_revision}"
        )
        click.echo(manifest.id)


@backup.command("list")
@_DEST
@click.option("--json", "as_json", is_flag=True, help="One JSON array.")
def backup_list(dest: str, as_json: bool) -> None:
    """The backups in DEST, oldest first, each checked against the key (problems shown)."""
    from payment.backup.service import list_backups

    with _backup_context(dest) as (_, destination, key):
        listed = list_backups(destination, key)
        if as_json:
            click.echo(json.dumps([item.to_json() for item in listed], indent=2))
            return
        for item in listed:
            data = item.to_json()
            if item.problem is not None:
                click.echo(f"{item.id}  BROKEN  {item.problem}")
                continue
            verified = f"verified {data['verifiedAt']}" if data["verifiedAt"] else "not verified"
            click.echo(
                f"{item.id}  {data['database']}  {data['sizeBytes']} bytes  {data['rows']} rows  "
                f"revision {data['schemaRevision']}  {verified}"
            )


@backup.command("verify")
@click.argument("backup_id", metavar="ID")
@_DEST
def backup_verify(backup_id: str, dest: str) -> None:
    """Restore ID into a scratch database (never the live one) and check checksums, row counts and revision."""
    from payment.backup.service import verify_backup

    with _backup_context(dest) as (settings, destination, key):
        verified = verify_backup(backup_id, destination, key, database_url=settings.database_url)
        head = "at head" if verified.at_head else "older than this release's head (restore migrates it)"
        click.echo(f"backup {backup_id} verified: {sum(verified.manifest.tables.values())} rows, {head}")


@backup.command("restore")
@click.argument("backup_id", metavar="ID")
@_DEST
@click.option("--database-url", "database_url", required=True, help="The database to restore into (SQLAlchemy URL).")
@click.option("--force", is_flag=True, help="Replace a database that already holds tables.")
def backup_restore(backup_id: str, dest: str, database_url: str, force: bool) -> None:
    """Restore ID into DATABASE_URL: restored and checked aside, migrated to head, then moved into place."""
    from payment.backup.service import restore_backup
    from payment.delivery.recovery import record_restore

    def mark(engine: Any, manifest: Any) -> None:
        # In the restored database before it takes the target's place: the delivery worker rebuilds the
        # deliveries from the chain before any treasury send (docs/delivery.md, After a restore).
        record_restore(engine, backup_id=manifest.id, note=f"musdpay backup restore (made {manifest.created_at})")

    with _backup_context(dest) as (_, destination, key):
        manifest = restore_backup(backup_id, destination, key, target_url=database_url, force=force, on_restored=mark)
        click.echo(f"backup {manifest.id} restored: {sum(manifest.tables.values())} rows checked, schema at head")


@backup.command("prune")
@_DEST
@click.option("--keep-daily", type=click.IntRange(min=0), default=None, help="Days kept (default: setting, 30).")
@click.option("--keep-monthly", type=click.IntRange(min=0), default=None, help="Months kept (default: setting, 12).")
@click.option("--dry-run", is_flag=True, help="Only say what would be deleted.")
def backup_prune(dest: str, keep_daily: int | None, keep_monthly: int | None, dry_run: bool) -> None:
    """Delete the backups the retention does not keep (the newest of each recent day and month are kept)."""
    from payment.backup.service import prune_backups

    with _backup_context(dest) as (settings, destination, key):
        pruned = prune_backups(
            destination,
            key,
            keep_daily=settings.backup_keep_daily if keep_daily is None else keep_daily,
            keep_monthly=settings.backup_keep_monthly if keep_monthly is None else keep_monthly,
            dry_run=dry_run,
        )
        verb = "would delete" if dry_run else "deleted"
        for backup_id in pruned.deleted:
            click.echo(f"{verb} {backup_id}")
        for backup_id in pruned.skipped:
            click.echo(f"left {backup_id} (unreadable: see `musdpay backup list`)", err=True)
        click.echo(f"kept {len(pruned.kept)}, {verb} {len(pruned.deleted)}")


@main.group()
def pitr() -> None:
    """PostgreSQL point-in-time recovery: WAL archiving, base backups, restore to a moment
    (docs/runbooks/procedures/PointInTimeRecovery.md)."""


_DEST = click.option("--dest", required=True, help="Archive destination: a directory or s3://bucket/prefix.")
_S3_ENDPOINT = click.option(
    "--s3-endpoint-url", default=None, help="S3-compatible endpoint (MinIO, moto); default: AWS S3 / boto3's own."
)


def _self_command() -> str:
    """How PostgreSQL's archive/restore_command runs this same installation of musdpay."""
    import shlex

    return f"{shlex.quote(sys.executable)} -m musdpay"


def _wal_command(verb: str, args: str, dest: str, endpoint: str | None, prefix: str | None) -> str:
    import shlex

    endpoint_flag = f" --s3-endpoint-url {shlex.quote(endpoint)}" if endpoint else ""
    return f"{prefix or _self_command()} pitr {verb} {args} --dest {shlex.quote(dest)}{endpoint_flag}"


@pitr.command("archive-wal")
@click.argument("path", type=click.Path(path_type=Path))
@click.argument("name")
@_DEST
@_S3_ENDPOINT
def pitr_archive_wal(path: Path, name: str, dest: str, s3_endpoint_url: str | None) -> None:
    """archive_command: store WAL file PATH (%p) as NAME (%f). Exit 1 unless it is stored; never overwrites a
    different file of that name (the same one again succeeds)."""
    from payment.backup.destinations import open_destination
    from payment.backup.wal import archive_wal

    try:
        archive_wal(open_destination(dest, endpoint_url=s3_endpoint_url), path, name)
    except Exception as exc:  # any failure must be a non-zero exit for PostgreSQL to keep the segment and retry
        click.echo(f"archive-wal {name} failed: {exc}", err=True)
        sys.exit(1)


@pitr.command("restore-wal")
@click.argument("name")
@click.argument("path", type=click.Path(path_type=Path))
@_DEST
@_S3_ENDPOINT
def pitr_restore_wal(name: str, path: Path, dest: str, s3_endpoint_url: str | None) -> None:
    """restore_command: write archived WAL file NAME (%f) to PATH (%p); exit 1 when it was never archived."""
    from payment.backup.destinations import open_destination
    from payment.backup.wal import restore_wal

    try:
        found = restore_wal(open_destination(dest, endpoint_url=s3_endpoint_url), name, path)
    except Exception as exc:
        click.echo(f"restore-wal {name} failed: {exc}", err=True)
        sys.exit(2)
    if not found:
        sys.exit(1)  # PostgreSQL asks for files that may not exist: not an error to print


@pitr.command("settings")
@_DEST
@_S3_ENDPOINT
@click.option("--archive-timeout", type=click.IntRange(1), default=30, show_default=True, help="Seconds (RPO bound).")
@click.option("--command", "prefix", default=None, help="How the server runs musdpay (default: this installation).")
def pitr_settings(dest: str, s3_endpoint_url: str | None, archive_timeout: int, prefix: str | None) -> None:
    """Print the postgresql.conf lines that archive WAL to DEST (restart PostgreSQL after adding them)."""
    from payment.backup.pitr import archive_settings

    command = _wal_command("archive-wal", "%p %f", dest, s3_endpoint_url, prefix)
    for name, value in archive_settings(command, archive_timeout_seconds=archive_timeout).items():
        click.echo(f"{name} = {value}")


@pitr.command("base-backup")
@_DEST
@_S3_ENDPOINT
@click.option("--database-url", default=None, help="Default: MUSDPAY_DATABASE_URL.")
def pitr_base_backup(dest: str, s3_endpoint_url: str | None, database_url: str | None) -> None:
    """Take a base backup (pg_basebackup, tar) to DEST, with backup.json (start, end, WAL range); prints its id
    on the last line."""
    from payment.backup.destinations import open_destination
    from payment.backup.pitr import PitrError, take_base_backup
    from payment.core.config import get_settings

    try:
        backup = take_base_backup(
            open_destination(dest, endpoint_url=s3_endpoint_url), database_url or get_settings().database_url
        )
    except PitrError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"base backup {backup.start_wal}..{backup.end_wal}, {backup.size_bytes} bytes, ends {backup.end_time}")
    click.echo(backup.id)


@pitr.command("list")
@_DEST
@_S3_ENDPOINT
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts.")
def pitr_list(dest: str, s3_endpoint_url: str | None, as_json: bool) -> None:
    """Base backups and the recovery window (oldest and newest recoverable point) of DEST."""
    from payment.backup.destinations import open_destination
    from payment.backup.pitr import list_base_backups, recovery_window

    destination = open_destination(dest, endpoint_url=s3_endpoint_url)
    backups, window = list_base_backups(destination), recovery_window(destination)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "baseBackups": [json.loads(backup.to_json()) for backup in backups],
                    "oldest": window.oldest.isoformat() if window.oldest else None,
                    "newest": window.newest.isoformat() if window.newest else None,
                    "newestSegment": window.newest_segment,
                }
            )
        )
        return
    for backup in backups:
        click.echo(f"{backup.id}  ends {backup.end_time.isoformat()}  {backup.start_wal}  {backup.size_bytes} bytes")
    click.echo(f"recoverable from {window.oldest} to {window.newest} (segment {window.newest_segment})")


@pitr.command("restore")
@_DEST
@_S3_ENDPOINT
@click.option("--pgdata", type=click.Path(file_okay=False, path_type=Path), required=True, help="A new, empty dir.")
@click.option("--target-time", required=True, help="ISO 8601 with a zone, e.g. 2026-12-04T10:00:00Z.")
@click.option("--backup", "backup_id", default=None, help="A base backup id (default: the newest before the target).")
@click.option("--command", "prefix", default=None, help="How the server runs musdpay (default: this installation).")
def pitr_restore(
    dest: str, s3_endpoint_url: str | None, pgdata: Path, target_time: str, backup_id: str | None, prefix: str | None
) -> None:
    """Lay out a base backup in PGDATA and configure recovery to TARGET-TIME (then `pg_ctl -D PGDATA start`:
    it replays the archive and promotes itself at the target)."""
    from datetime import datetime

    from payment.backup.destinations import open_destination
    from payment.backup.pitr import PitrError, restore_to_time

    try:
        target = datetime.fromisoformat(target_time.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter("an ISO 8601 time, e.g. 2026-12-04T10:00:00Z", param_hint="--target-time") from None
    try:
        chosen = restore_to_time(
            open_destination(dest, endpoint_url=s3_endpoint_url),
            pgdata,
            target,
            restore_command=_wal_command("restore-wal", "%f %p", dest, s3_endpoint_url, prefix),
            backup_id=backup_id,
        )
    except PitrError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"restored base backup {chosen.id} into {pgdata}; recovery to {target.isoformat()} on start")


@main.group()
def apikey() -> None:
    """API keys for servers and operators (`mpk_...`); only their hashes are stored."""


def _cli_actor() -> Any:
    import getpass
    import socket

    from payment.auth.audit import Actor

    try:
        user = getpass.getuser()
    except Exception:  # no login name (a container without a passwd entry)
        user = str(os.getuid())
    return Actor(name=f"cli:{user}@{socket.gethostname()}", role="admin", origin="cli")


@contextmanager
def _key_store(settings: Any = None) -> Iterator[Any]:
    from payment.core.config import get_settings
    from payment.core.db import create_db_engine, make_session_factory

    engine = create_db_engine(settings or get_settings())
    try:
        yield make_session_factory(engine)
    finally:
        engine.dispose()


def _print_issued(issued: Any, verb: str) -> None:
    info = issued.info
    click.echo(f"{verb} API key {info.id} ({info.name}, role {info.role.value}); it is shown once:", err=True)
    click.echo(issued.key)


@apikey.command("create")
@click.option("--name", required=True, help="Who uses the key (e.g. the dApp backend's name).")
@click.option("--role", type=click.Choice(["operator", "admin"]), required=True)
def apikey_create(name: str, role: str) -> None:
    """Create a key and print it (once) on stdout."""
    from payment.auth import apikeys
    from payment.auth.principal import Role

    with _key_store() as factory:
        issued = apikeys.create_key(factory=factory, name=name, role=Role(role), actor=_cli_actor())
    _print_issued(issued, "Created")


@apikey.command("rotate")
@click.argument("key_id")
@click.option("--grace", type=int, default=None, help="Seconds the old key stays valid (default: the setting).")
def apikey_rotate(key_id: str, grace: int | None) -> None:
    """Issue a successor of KEY_ID; the old key keeps working for the grace period."""
    from payment.auth import apikeys
    from payment.core.config import get_settings
    from payment.core.problems import Problem

    seconds = grace if grace is not None else get_settings().api_key_rotation_grace_seconds
    with _key_store() as factory:
        try:
            issued = apikeys.rotate_key(factory=factory, key_id=key_id, grace_seconds=seconds, actor=_cli_actor())
        except Problem as exc:
            raise click.ClickException(exc.detail) from exc
    _print_issued(issued, "Rotated to")
    click.echo(f"The old key {key_id} stays valid for {seconds} s.", err=True)


@apikey.command("revoke")
@click.argument("key_id")
def apikey_revoke(key_id: str) -> None:
    """Revoke KEY_ID now."""
    from payment.auth import apikeys
    from payment.core.problems import Problem

    with _key_store() as factory:
        try:
            apikeys.revoke_key(factory=factory, key_id=key_id, actor=_cli_actor())
        except Problem as exc:
            raise click.ClickException(exc.detail) from exc
    click.echo(f"Revoked API key {key_id}.")


@apikey.command("list")
def apikey_list() -> None:
    """Every key: id, role, status, name, creation and last use (to the minute)."""
    from payment.auth import apikeys

    def when(value: Any) -> str:
        return value.strftime("%Y-%m-%d %H:%M") if value is not None else "-"

    with _key_store() as factory:
        keys = apikeys.list_keys(factory=factory)
    click.echo(f"{'ID':16}  {'ROLE':8}  {'STATUS':8}  {'CREATED':16}  {'LAST USED':16}  {'EXPIRES':16}  NAME")
    for info in keys:
        click.echo(
            f"{info.id:16}  {info.role.value:8}  {info.status():8}  {when(info.created_at):16}  "
            f"{when(info.last_used_at):16}  {when(info.expires_at):16}  {info.name}"
        )


@main.group()
def sandbox() -> None:
    """Local stand-ins for external services."""


@sandbox.command("stripe")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=12111, show_default=True)
@click.option("--webhook-url", "webhook_urls", multiple=True, help="Endpoint to deliver events to (repeatable).")
@click.option("--webhook-secret", default=None, help="Signing secret (whsec_...); generated when omitted.")
@click.option("--api-key", default=None, help="Accept only this sk_test_ key (default: any sk_test_ key).")
@click.option(
    "--auto-advance",
    type=click.Choice(["requires_payment", "fulfillment_processing", "fulfillment_complete", "rejected"]),
    default=None,
    help="Drive every new session to this status automatically.",
)
@click.option("--auto-advance-delay", type=float, default=0.2, show_default=True)
@click.option("--delivery-max-attempts", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--delivery-backoff-base", type=click.FloatRange(min=0), default=0.5, show_default=True, help="Seconds.")
@click.option("--delivery-backoff-cap", type=click.FloatRange(min=0), default=60.0, show_default=True, help="Seconds.")
@click.option(
    "--chain",
    "chain_info",
    default=None,
    help="Deliver real MUSD on a local chain: the JSON line `musdpay sandbox chain` prints (or @file holding it).",
)
def sandbox_stripe(
    host: str,
    port: int,
    webhook_urls: tuple[str, ...],
    webhook_secret: str | None,
    api_key: str | None,
    auto_advance: str | None,
    auto_advance_delay: float,
    delivery_max_attempts: int,
    delivery_backoff_base: float,
    delivery_backoff_cap: float,
    chain_info: str | None,
) -> None:
    """Run the Stripe Crypto Onramp emulator."""
    from sandbox.stripe.config import EmulatorConfig
    from sandbox.stripe.server import run

    fulfiller = None
    if chain_info:
        from sandbox.chain.fulfillment import ChainFulfiller
        from sandbox.chain.local import LocalChain

        text = Path(chain_info[1:]).read_text(encoding="utf-8") if chain_info.startswith("@") else chain_info
        fulfiller = ChainFulfiller(LocalChain.attach(json.loads(text)))
    run(
        EmulatorConfig(
            host=host,
            port=port,
            webhook_urls=list(webhook_urls),
            webhook_secret=webhook_secret,
            api_key=api_key,
            auto_advance=auto_advance,
            auto_advance_delay=auto_advance_delay,
            delivery_max_attempts=delivery_max_attempts,
            delivery_backoff_base=delivery_backoff_base,
            delivery_backoff_cap=delivery_backoff_cap,
        ),
        fulfiller=fulfiller,
    )


@sandbox.command("chain")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8545, show_default=True, help="RPC port (0: a free one, printed).")
@click.option("--block-time", type=float, default=None, help="Mine a block every N seconds (too).")
@click.option("--no-automine", is_flag=True, help="Do not mine a block per transaction.")
def sandbox_chain(host: str, port: int, block_time: float | None, no_automine: bool) -> None:
    """Run a local Mezo stand-in (anvil, chain id 31611) with MUSD deployed and a funded treasury."""
    from sandbox.chain.config import ChainConfig
    from sandbox.chain.server import run

    sys.exit(run(ChainConfig(host=host, port=port, block_time=block_time, automine=not no_automine)))


@sandbox.command("rpc-proxy")
@click.option("--upstream", required=True, help="JSON-RPC URL to forward to (e.g. the local chain's).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=0, show_default=True, help="Proxy port (0: a free one, printed).")
@click.option("--control-port", type=int, default=0, show_default=True, help="Control-only port, up even when 'down'.")
@click.option("--name", default="rpc", show_default=True, help="Provider name reported in stats.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the fault rates' randomness.")
def sandbox_rpc_proxy(upstream: str, host: str, port: int, control_port: int, name: str, seed: int) -> None:
    """Run a JSON-RPC proxy that injects faults (latency, 5xx, 429, errors, stalls, drops...) on demand."""
    from sandbox.rpcproxy.config import ProxyConfig
    from sandbox.rpcproxy.server import run

    run(ProxyConfig(upstream=upstream, host=host, port=port, control_port=control_port, name=name, seed=seed))


@sandbox.command("receivers")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=9300, show_default=True, help="HTTP: webhooks, /api/received and the page.")
@click.option("--smtp-port", type=int, default=2525, show_default=True)
@click.option("--smtp-user", default=None, help="Require SMTP AUTH with this login (and --smtp-password).")
@click.option(
    "--smtp-password",
    default=None,
    envvar="MUSDPAY_RECEIVERS_SMTP_PASSWORD",
    help="Or MUSDPAY_RECEIVERS_SMTP_PASSWORD.",
)
def sandbox_receivers(host: str, port: int, smtp_port: int, smtp_user: str | None, smtp_password: str | None) -> None:
    """Run capture receivers: Slack and Discord webhooks, PagerDuty Events v2 and SMTP, validating and keeping all."""
    from sandbox.receivers.server import ReceiversConfig, run

    credentials = (smtp_user, smtp_password or "") if smtp_user else None
    run(ReceiversConfig(host=host, port=port, smtp_port=smtp_port, smtp_credentials=credentials))


def _port(flag: str, default: int, what: str) -> Callable[[FC], FC]:
    return click.option(flag, type=int, default=default, show_default=True, help=f"Port of {what}.")


@main.command()
@_port("--port", 3001, "the payment API")
@_port("--stripe-port", 12111, "the Stripe emulator")
@_port("--chain-port", 8545, "the local chain (anvil)")
@_port("--spectrum-port", 8546, 'the "spectrum" RPC fault proxy (the primary provider)')
@_port("--public-port", 8547, 'the "public" RPC fault proxy (the fallback)')
@_port("--monitor-port", 9101, "the monitor's /metrics")
@_port("--receivers-port", 9300, "the capture receivers (Slack, Discord, PagerDuty webhooks and their page)")
@_port("--smtp-port", 2525, "the capture SMTP server")
@_port("--prometheus-port", 9090, "Prometheus")
@_port("--alertmanager-port", 9093, "Alertmanager")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".musdpay"),
    show_default=True,
    help="Where the database, the Prometheus TSDB, Alertmanager's data and the dev secrets live.",
)
@click.option(
    "--log-format",
    type=click.Choice(["auto", "text", "json"]),
    default="auto",
    show_default=True,
    help="Children's logs: auto is text on a terminal, else MUSDPAY_LOG_FORMAT or json.",
)
@click.option("--scrape-interval", default=None, help="Prometheus scrape interval (default: prometheus.yml's).")
@click.option("--evaluation-interval", default=None, help="Rule evaluation interval (default: prometheus.yml's).")
@click.option("--auto-advance", default=None, help="Passed to the emulator (e.g. fulfillment_complete).")
def dev(
    port: int,
    stripe_port: int,
    chain_port: int,
    spectrum_port: int,
    public_port: int,
    monitor_port: int,
    receivers_port: int,
    smtp_port: int,
    prometheus_port: int,
    alertmanager_port: int,
    state_dir: Path,
    log_format: str,
    scrape_interval: str | None,
    evaluation_interval: str | None,
    auto_advance: str | None,
) -> None:
    """Run the whole platform: chain, RPC proxies, Stripe emulator, API, monitor, Prometheus, Alertmanager and
    capture receivers (SQLite, development), until Ctrl-C."""
    from musdpay.devstack import DevOptions, DevPorts, PortInUse, run_dev

    terminal = sys.stdout.isatty()
    if log_format == "auto":
        log_format = "text" if terminal else os.environ.get("MUSDPAY_LOG_FORMAT", "json")
    ports = DevPorts(
        api=port,
        stripe=stripe_port,
        chain=chain_port,
        spectrum=spectrum_port,
        public=public_port,
        monitor=monitor_port,
        receivers=receivers_port,
        smtp=smtp_port,
        prometheus=prometheus_port,
        alertmanager=alertmanager_port,
    )
    options = DevOptions(
        ports=ports,
        state_dir=state_dir,
        log_format=log_format,
        colour=terminal,
        auto_advance=auto_advance,
        scrape_interval=scrape_interval,
        evaluation_interval=evaluation_interval,
        monitor_config=Path("monitor.yml") if Path("monitor.yml").is_file() else None,
    )
    try:
        code = run_dev(options, os.environ)
    except PortInUse as exc:
        raise click.ClickException(str(exc)) from exc
    sys.exit(code)
