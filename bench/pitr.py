"""The PITR drill: RPO and RTO of a PostgreSQL point-in-time restore, on a cluster of its own.

    .venv/bin/python bench/pitr.py [--sessions N] [--write-seconds S] [--output docs/benchmarks.md]

Starts its own cluster (initdb/pg_ctl in a temporary directory, WAL archived by `musdpay pitr archive-wal` to a
directory, archive_timeout 30 s), migrates it (`musdpay db upgrade`), bulk-loads N sessions (default 1,000,000)
and a webhook event each, takes a base backup (`musdpay pitr base-backup`), then writes sessions and webhook
events one commit at a time while choosing a target time 45 s before the crash (so the segment holding it has
been archived: archive_timeout bounds how long a commit waits for its segment to close). Then the crash: an
immediate stop and the data directory deleted. RTO runs from the crash to `musdpay serve`'s /readyz answering
200 on the restored cluster (`musdpay pitr restore`, replay, promotion, API start). RPO: rows acknowledged
before the target that are missing (must be 0), and the seconds between the last archived segment and the crash
(what a restore to the latest point would lose). Results between the `bench:pitr` markers of the output file.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.api import code_version, exact_command, machine, write_section
from payment.backup.pitr import archive_settings
from tests.support.pgpitr import pitr_cluster, server_directory, server_musdpay_command
from tests.support.services import free_port

MARK_START = "<!-- bench:pitr:start -->"
MARK_END = "<!-- bench:pitr:end -->"
ARCHIVE_TIMEOUT = 30
MUSDPAY = [sys.executable, "-m", "musdpay"]

SESSION_COLUMNS = (
    "id, stripe_session_id, client_secret, status, livemode, wallet_address, source_amount, source_currency, "
    "destination_currency, destination_network, request_fingerprint, last_event_id, last_event_created, "
    "created_at, updated_at"
)
WEBHOOK_COLUMNS = "id, type, livemode, stripe_created, received_at, processed_at, outcome, session_id, payload, origin"


def bulk_load(conninfo: str, sessions: int) -> None:
    """Sessions and one webhook event each, shaped like the app's rows, by generate_series in 100k chunks."""
    with psycopg.connect(conninfo, autocommit=True) as connection:
        for start in range(0, sessions, 100_000):
            end = min(start + 100_000, sessions) - 1
            connection.execute(
                f"INSERT INTO onramp_sessions ({SESSION_COLUMNS}) SELECT md5('s' || g)::uuid::text, "  # noqa: S608
                "'cos_bulk_' || g, 'cos_bulk_' || g || '_secret', 'fulfillment_complete', false, "
                "'0x52908400098527886E0F7030069857D2E4169EE7', '100.00', 'usd', 'musd', 'mezo', md5('f' || g), "
                "'evt_bulk_' || g, 1700000000 + g, now() - interval '30 days', now() - interval '30 days' "
                "FROM generate_series(%s::int, %s::int) g",
                (start, end),
            )
            connection.execute(
                f"INSERT INTO webhook_events ({WEBHOOK_COLUMNS}) SELECT 'evt_bulk_' || g, "  # noqa: S608
                "'crypto.onramp_session_updated', false, 1700000000 + g, now(), now(), 'applied', "
                "md5('s' || g)::uuid::text, '{}', 'webhook' FROM generate_series(%s::int, %s::int) g",
                (start, end),
            )


class Writer(threading.Thread):
    """A session and its webhook event per transaction, as the API writes them; each acknowledged commit noted."""

    def __init__(self, conninfo: str) -> None:
        super().__init__(daemon=True)
        self.conninfo = conninfo
        self.acked: list[tuple[float, str]] = []  # (time the commit returned, session id)
        self.stop = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.conninfo) as connection:
            while not self.stop.is_set():
                session = str(uuid.uuid4())
                try:
                    with connection.transaction():
                        connection.execute(
                            f"INSERT INTO onramp_sessions ({SESSION_COLUMNS}) VALUES (%s, %s, %s, "  # noqa: S608
                            "'requires_payment', false, '0x52908400098527886E0F7030069857D2E4169EE7', '25.00', "
                            "'usd', 'musd', 'mezo', %s, %s, 0, now(), now())",
                            (session, f"cos_{session}", f"cos_{session}_secret", session[:32], f"evt_{session}"),
                        )
                        connection.execute(
                            f"INSERT INTO webhook_events ({WEBHOOK_COLUMNS}) VALUES (%s, "  # noqa: S608
                            "'crypto.onramp_session_updated', false, 0, now(), now(), 'applied', %s, '{}', 'webhook')",
                            (f"evt_{session}", session),
                        )
                except psycopg.Error:
                    return  # the crash
                self.acked.append((time.time(), session))
                time.sleep(0.005)  # ~150 sessions/s: a busy hour's rate, not a load test


def musdpay(env: dict[str, str], *args: str) -> str:
    completed = subprocess.run([*MUSDPAY, *args], capture_output=True, text=True, env=env, timeout=3600, check=False)
    if completed.returncode != 0:
        raise SystemExit(f"musdpay {' '.join(args)} failed: {completed.stderr}")
    return completed.stdout


def drill(sessions: int, write_seconds: float) -> dict[str, object]:
    root = server_directory()
    archive = root / "archive"
    prefix = server_musdpay_command()
    command = f"{prefix} pitr archive-wal %p %f --dest {archive}"
    settings = archive_settings(command, archive_timeout_seconds=ARCHIVE_TIMEOUT)
    with pitr_cluster(root, extra=settings) as cluster:
        env = {**os.environ, "MUSDPAY_DATABASE_URL": cluster.url, "MUSDPAY_ENVIRONMENT": "development"}
        musdpay(env, "db", "upgrade")
        loaded = time.monotonic()
        bulk_load(cluster.conninfo, sessions)
        load_seconds = time.monotonic() - loaded
        backed = time.monotonic()
        musdpay(env, "pitr", "base-backup", "--dest", str(archive), "--database-url", cluster.url)
        backup_seconds = time.monotonic() - backed
        writer = Writer(cluster.conninfo)
        writer.start()
        time.sleep(write_seconds)  # the writes the restore must keep (before the target) and drop (after)
        crash_wall = time.time()
        target = datetime.fromtimestamp(crash_wall - 45, UTC)
        with psycopg.connect(cluster.conninfo) as connection:
            row = connection.execute("SELECT extract(epoch FROM last_archived_time) FROM pg_stat_archiver").fetchone()
        last_archived = float(row[0]) if row and row[0] is not None else 0.0
        crashed = time.monotonic()
        cluster.destroy()
        writer.stop.set()
        writer.join(timeout=10)

        restored = cluster.sibling("restored")
        musdpay(
            env, "pitr", "restore", "--dest", str(archive), "--pgdata", str(restored.data),
            "--target-time", target.isoformat(), "--command", prefix,
        )  # fmt: skip
        restored.chown(restored.data)
        restored.start(wait_seconds=300)
        restored.wait_promoted(timeout=300)
        promoted = time.monotonic() - crashed
        port = free_port()
        api_env = {
            **env,
            "MUSDPAY_DATABASE_URL": restored.url,
            "MUSDPAY_STRIPE_SECRET_KEY": "sk_test_drill",
            "MUSDPAY_STRIPE_WEBHOOK_SECRETS": "whsec_drill",
            "MUSDPAY_PORT": str(port),
        }
        api = subprocess.Popen([*MUSDPAY, "serve"], env=api_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)
            else:
                raise SystemExit("the API never became ready on the restored database")
            rto = time.monotonic() - crashed
        finally:
            api.terminate()
            api.wait(timeout=30)
        with psycopg.connect(restored.conninfo) as connection:
            present = {
                str(r[0]) for r in connection.execute("SELECT id FROM onramp_sessions WHERE last_event_created = 0")
            }
            total = connection.execute("SELECT count(*) FROM onramp_sessions").fetchone()
    before = [s for at, s in writer.acked if at < target.timestamp()]
    after = [s for at, s in writer.acked if at > target.timestamp()]
    return {
        "sessions": int(total[0]) if total else 0,
        "load_seconds": load_seconds,
        "backup_seconds": backup_seconds,
        "written": len(writer.acked),
        "before_target": len(before),
        "lost_before_target": sum(1 for s in before if s not in present),
        "after_target_restored": sum(1 for s in after if s in present),
        "archive_lag_seconds": crash_wall - last_archived,
        "rows_after_last_archive": sum(1 for at, _ in writer.acked if at > last_archived),
        "promoted_seconds": promoted,
        "rto_seconds": rto,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--write-seconds", type=float, default=90.0)
    parser.add_argument("--output", type=Path, default=Path("docs/benchmarks.md"))
    args = parser.parse_args()
    r = drill(args.sessions, args.write_seconds)
    ok_rpo = r["lost_before_target"] == 0 and float(r["archive_lag_seconds"]) < 60  # type: ignore[arg-type]
    ok_rto = float(r["rto_seconds"]) < 300  # type: ignore[arg-type]
    lost = f"{r['lost_before_target']} of {r['before_target']:,}"
    rpo = f"{r['archive_lag_seconds']:.1f} s ({r['rows_after_last_archive']} rows)"
    section = f"""{MARK_START}
## PostgreSQL point-in-time recovery drill (bench/pitr.py)

`{exact_command()}` on {machine()}, {code_version()}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.

Its own cluster (WAL archived to a directory by `musdpay pitr archive-wal`, `archive_timeout = {ARCHIVE_TIMEOUT}s`),
{r["sessions"]:,} sessions in the restored database (bulk-loaded with a webhook event each in
{r["load_seconds"]:.0f} s; base backup {r["backup_seconds"]:.0f} s), {r["written"]:,} sessions written one
transaction at a time after the base backup; target 45 s before the crash (immediate stop, data directory deleted).

| measure | result | target |
|---|---|---|
| rows acknowledged before the target, missing after the restore | {lost} | 0 |
| rows written after the target, restored anyway | {r["after_target_restored"]} | 0 |
| RPO: crash minus the last archived segment | {rpo} | < 60 s {"met" if ok_rpo else "MISSED"} |
| crash to promoted (restore, replay, promotion) | {r["promoted_seconds"]:.1f} s | |
| RTO: crash to the API's /readyz 200 | {r["rto_seconds"]:.1f} s | < 300 s {"met" if ok_rto else "MISSED"} |

The RPO bound is `archive_timeout`: a segment that is not full is closed and archived after 30 s, so at most
30 s of commits (plus the archive command's run) are outside the archive at any moment.
{MARK_END}"""
    write_section(args.output, section, MARK_START, MARK_END)
    print(section)


if __name__ == "__main__":
    main()
